"""The model registry: lookup, close matches, duplicates, options."""

import pytest
import torch

import resnetlab
from resnetlab.models import ModelSpec, UnknownModelError, cifar_resnet, register_model, registry


def test_list_models_is_complete_and_filterable():
    names = resnetlab.list_models()
    for required in ("resnet20", "resnet1202", "plain110", "resnet18", "resnet152", "plain34", "preact_resnet1001",
                     "preact_resnet200", "preact_resnet110"):
        assert required in names
    assert len(names) == len(set(names))
    assert resnetlab.list_models("preact_*") == [n for n in names if n.startswith("preact_")]
    assert resnetlab.list_models("nothing*") == []


def test_unknown_name_lists_close_matches():
    with pytest.raises(UnknownModelError, match="resnet110") as info:
        resnetlab.create_model("resnet111")
    assert "\n" not in str(info.value)
    with pytest.raises(UnknownModelError, match="resnetlab models"):
        resnetlab.create_model("vgg16")


def test_duplicate_registration_is_an_error(monkeypatch):
    monkeypatch.setattr(registry.MODELS, "_items", dict(registry.MODELS._items))
    spec = ModelSpec("resnet38", cifar_resnet, {"depth": 38}, "cifar", 38, "test", "test")
    register_model(spec)
    assert resnetlab.create_model("resnet38").depth == 38
    with pytest.raises(ValueError, match="already registered"):
        register_model(spec)


def test_unknown_and_fixed_options_are_named():
    with pytest.raises(ValueError, match="unknown option.*'shortcutt'"):
        resnetlab.create_model("resnet20", shortcutt="B")
    with pytest.raises(ValueError, match="fixed by the name"):
        resnetlab.create_model("resnet20", depth=32)


def test_options_reach_the_model():
    model = resnetlab.create_model("resnet20", shortcut="B", num_classes=100)
    assert isinstance(model.layer2[0].downsample, torch.nn.Sequential) and model.fc.out_features == 100
