"""ImageNet nets have torchvision's state_dict layout and give its outputs for the same weights.

The fixture was produced by running torchvision's own resnet.py (see tests/data/README.md).
"""

import json
from pathlib import Path

import pytest
import torch

import resnetlab
from torchvision_reference import deterministic_state_dict, reference_input

FIXTURE = json.loads((Path(__file__).parent / "data" / "torchvision_resnet_layout.json").read_text())
LOGITS_RELATIVE_TOLERANCE = 1e-4


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_state_dict_keys_and_shapes_are_torchvision(name):
    layout = FIXTURE["models"][name]["state_dict"]
    ours = resnetlab.create_model(name).state_dict()
    assert [(k, list(v.shape), str(v.dtype)) for k, v in ours.items()] == [
        (k, list(shape), dtype) for k, shape, dtype in layout]


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_a_torchvision_state_dict_loads_strictly_and_gives_its_outputs(name):
    entry = FIXTURE["models"][name]
    model = resnetlab.create_model(name)
    model.load_state_dict(deterministic_state_dict(entry["state_dict"]), strict=True)
    model.eval()
    with torch.no_grad():
        logits = model(reference_input())
    expected = torch.tensor(entry["logits"], dtype=torch.float32).reshape(entry["logits_shape"])
    scale = expected.abs().max()
    assert (logits - expected).abs().max() <= LOGITS_RELATIVE_TOLERANCE * scale


def test_paper_v1_loads_the_same_weights():
    # Moving the stride does not change any shape, so v1 accepts v1.5 checkpoints too (outputs differ).
    layout = FIXTURE["models"]["resnet50"]["state_dict"]
    resnetlab.create_model("resnet50", stride_in_1x1=True).load_state_dict(deterministic_state_dict(layout))


def test_a_wrong_layout_is_refused_under_strict_loading():
    state = deterministic_state_dict(FIXTURE["models"]["resnet18"]["state_dict"])
    with pytest.raises(RuntimeError):
        resnetlab.create_model("resnet34").load_state_dict(state, strict=True)
