"""Every ImageNet-size recipe (He et al. 2015 Table 3, He et al. 2016 Table 5, the stochastic-depth ImageNet rows)
and the fine-tuning recipes train for 2 steps and evaluate on a generated folder of 224-px-and-up images, as
written (the network, the streamed augmentation with PCA lighting, 10-crop or 320-crop testing)."""

import numpy as np
import pytest
from PIL import Image

from resnetlab.config import list_recipes, load_config
from resnetlab.deploy.published import published_weights
from resnetlab.training.session import train

RECIPES = [r.name for r in list_recipes() if "imagenet" in r.name or r.name.startswith("finetune/")]
EXPECTED = 14 + 2  # Table 3: 7 rows (plain-34 and ResNet-34 A/B/C, 50, 101, 152); Table 5: 4; SD: 3; fine-tuning: 2


def make_folder(root, height, width):
    """train/ and val/ (ImageNet's layout) of 2 classes of JPEGs, 2 training and 1 test image each."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 2), ("val", 1)):
        for label, name in enumerate(("n01440764", "n01443537")):
            (root / split / name).mkdir(parents=True)
            for index in range(count):
                pixels = rng.integers(0, 120, (height, width, 3), dtype=np.uint8)
                pixels[..., label] += 100
                Image.fromarray(pixels).save(root / split / name / f"{index}.JPEG", quality=90)
    return root


@pytest.fixture(scope="module")
def image_folders(tmp_path_factory):
    """Large images for the streamed recipes, 32-px ones for the in-memory fine-tuning recipe."""
    return {"stream": make_folder(tmp_path_factory.mktemp("large"), 240, 320),
            "memory": make_folder(tmp_path_factory.mktemp("small"), 32, 32)}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNETLAB_CACHE", str(tmp_path / "cache"))


def test_every_imagenet_row_has_a_recipe():
    assert len(RECIPES) == EXPECTED, RECIPES


@pytest.mark.parametrize("name", RECIPES)
def test_each_recipe_trains_two_steps_and_evaluates(name, image_folders, tmp_path):
    recipe = load_config(name)
    overrides = [f"data.root={image_folders[recipe.data.loader]}", "train.iterations=2", "train.batch_size=2",
                 "train.precision=fp32", "train.compile=false", f"run.out_dir={tmp_path}", "run.name=smoke"]
    if recipe.data.loader == "stream":
        overrides.append("data.num_workers=0")  # worker processes would take longer than the 2 steps
    if recipe.model.weights and recipe.model.weights not in published_weights():
        overrides.append("model.weights=null")  # a checkout without the published weights
    summary = train(load_config(name, overrides), log=lambda *a, **k: None)
    assert summary["iterations"] == 2 and summary["final_test_error"] is not None
    assert set(summary["final_test_per_class_accuracy"]) == {"n01440764", "n01443537"}
