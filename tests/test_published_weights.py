"""The published weights under weights/: the card says what they are and where they came from, they load by
name into the registered network, and (with the CIFAR-10 JPEG copy at hand) evaluating them gives back the test
error their run reported."""

from pathlib import Path

import pytest
import torch

import resnetlab
from resnetlab.deploy.card import ModelCard, card_path
from resnetlab.deploy.published import PUBLISHED_WEIGHTS

RESNET20 = PUBLISHED_WEIGHTS / "cifar10_resnet20.safetensors"
CIFAR10_JPEG = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
PAPER_ITERATIONS = 64_000  # He et al. 2015, CIFAR-10 recipe: 64k iterations (lr /10 at 32k and 48k)
REPRODUCED_TO = 1e-4  # 0.01 points of test error

needs_weights = pytest.mark.skipif(not RESNET20.is_file(), reason=f"{RESNET20} not published in this checkout")


@needs_weights
def test_the_card_names_the_network_the_data_and_the_run():
    card = ModelCard.read(card_path(RESNET20))
    assert (card.model, card.num_classes, card.classes, card.image_size) == ("resnet20", 10, CIFAR10_CLASSES, 32)
    assert card.normalizer["mode"] == "per_pixel_mean" and not card.fused_bn
    provenance = card.extra["provenance"]
    assert provenance["config"]["train"]["iterations"] == PAPER_ITERATIONS
    assert provenance["config"]["data"]["validation_size"] == 0  # all 50k training images, as the paper
    assert len(provenance["environment"]["git_commit"]) >= 40 and provenance["environment"]["cpu"]
    assert 0 < provenance["summary"]["final_test_error"] < 0.2


@needs_weights
def test_the_weights_load_by_name_into_the_registered_network():
    model = resnetlab.load_pretrained("cifar10_resnet20")
    reference = resnetlab.create_model("resnet20", num_classes=10)
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in
                                                                    reference.state_dict().items()}
    assert "cifar10_resnet20" in resnetlab.published_weights()
    with torch.no_grad():
        logits = model(torch.zeros(2, 3, 32, 32))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()


@needs_weights
@pytest.mark.skipif(not CIFAR10_JPEG.is_dir(), reason=f"the CIFAR-10 JPEG copy is not at {CIFAR10_JPEG}")
def test_eval_of_the_weights_gives_back_the_reported_test_error(tmp_path):
    from resnetlab.evaluation.run import evaluate_source

    reported = ModelCard.read(card_path(RESNET20)).extra["provenance"]["summary"]["final_test_error"]
    result = evaluate_source("cifar10_resnet20", data_root=CIFAR10_JPEG, out=tmp_path)
    assert result.summary["images"] == 10_000
    assert abs(result.summary["top1_error"] - reported) <= REPRODUCED_TO
