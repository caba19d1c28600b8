"""Large-image folders train through the streamed ImageNet-recipe pipeline, evaluate with 1 or 10 crops,
and resume mid-epoch to the same bits."""

import numpy as np
import pytest
import torch
from PIL import Image

from resnetlab.cli import main
from resnetlab.config import load_config
from resnetlab.data.datasets import build_data
from resnetlab.training.checkpoint import load_checkpoint
from resnetlab.training.session import train
from resnetlab.training.trainer import TrainingInterrupted


@pytest.fixture(scope="module")
def large_folder(tmp_path_factory):
    """3 classes of 100 x 120 px images (above the 64 px in-memory limit): a colour per class, plus noise."""
    root = tmp_path_factory.mktemp("large")
    rng = np.random.default_rng(0)
    for split, count in (("train", 14), ("test", 4)):
        for label, colour in enumerate(((200, 40, 40), (40, 200, 40), (40, 40, 200))):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(rng.normal(colour, 30, (100, 120, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=90)
    return root


def streamed(root, tmp_path, *extra):
    return load_config(None, [
        "model.name=resnet20", "data.name=folder", f"data.root={root}", "data.validation_size=6",
        "data.crop=32", "data.scale=[36, 48]", "data.eval_resize=36", "data.num_workers=2", "train.batch_size=8",
        "train.epochs=2", "train.schedule.unit=epochs", "train.schedule.milestones=[1]", "train.deterministic=true",
        f"run.out_dir={tmp_path}", *extra])


def test_large_images_are_streamed_with_the_imagenet_recipe(large_folder, tmp_path):
    config = streamed(large_folder, tmp_path)
    data = build_data(config.data, seed=0, batch_size=8)
    assert type(data.train).__name__ == "StreamingBatches"
    assert data.split_sizes == {"train": 36, "val": 6, "test": 12} and data.train.num_batches == 4
    images, labels = next(data.train.batches(epoch=0))
    assert images.shape == (8, 3, 32, 32) and images.dtype == torch.float32
    assert abs(float(images.mean())) < 0.5  # normalized by the training split's channel statistics
    again, _ = next(data.train.batches(epoch=0))
    assert torch.equal(images, again)  # the same (seed, epoch) gives the same augmented batch
    other, _ = next(data.train.batches(epoch=1))
    assert not torch.equal(images, other)
    ten = build_data(streamed(large_folder, tmp_path, "data.ten_crop=true").data, seed=0, batch_size=8)
    crops, _ = next(ten.eval_batches("test"))
    assert crops.shape[1:] == (10, 3, 32, 32)


def test_streamed_run_resumes_bitwise_and_predicts(large_folder, tmp_path, capsys):
    train(streamed(large_folder, tmp_path, "run.name=straight", "data.ten_crop=true"), log=lambda *a: None)
    with pytest.raises(TrainingInterrupted):
        train(streamed(large_folder, tmp_path, "run.name=broken", "data.ten_crop=true"), stop_at_iteration=3,
              log=lambda *a: None)
    train(resume=tmp_path / "broken", log=lambda *a: None)
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")
    resumed = load_checkpoint(tmp_path / "broken" / "last.pt")
    assert all(torch.equal(straight["model"][k], resumed["model"][k]) for k in straight["model"])
    assert straight["eval_resize"] == 36 and straight["image_size"] == 32
    assert main(["predict", str(tmp_path / "straight"), str(large_folder / "test" / "class2" / "0.jpg")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and {line.split()[1] for line in lines[1:]} == {"class0", "class1", "class2"}
