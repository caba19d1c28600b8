"""Fine-tuning: a run starts from a torchvision-layout file on a small 3-class image folder. The backbone starts
as the file's, the classifier afresh, the frozen stages (and their BN statistics) stay as they were, and the
normalization is ImageNet's, as the weights expect."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnetlab.cli import main
from resnetlab.config import load_config
from resnetlab.deploy.initial_weights import IMAGENET_MEAN, IMAGENET_STD
from resnetlab.deploy.weights import WeightsMismatchError
from resnetlab.training.checkpoint import load_checkpoint
from resnetlab.training.session import train
from resnetlab.training.trainer import build_run
from torchvision_reference import deterministic_state_dict

FIXTURE = json.loads((Path(__file__).parent / "data" / "torchvision_resnet_layout.json").read_text())
FROZEN = ("conv1", "bn1", "layer1", "layer2")  # train.freeze=stage2: the stem and the first two stages
CLASSES = ("cloud", "grass", "sand")


def quiet(*args, **kwargs):
    pass


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNETLAB_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def torchvision_file(tmp_path_factory):
    """resnet18 weights in torchvision's layout (the parity fixture's), saved as a plain .pth state dict."""
    path = tmp_path_factory.mktemp("weights") / "resnet18-torchvision.pth"
    torch.save(deterministic_state_dict(FIXTURE["models"]["resnet18"]["state_dict"]), path)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """3 classes of 48-px PNGs (train: 8 each, test: 4 each), told apart by their colour."""
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("test", 4)):
        for label, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for index in range(count):
                pixels = rng.integers(0, 100, (48, 48, 3), dtype=np.uint8)
                pixels[..., label] += 120
                Image.fromarray(pixels).save(root / split / name / f"{index}.png")
    return root


def finetune_config(tmp_path, folder, weights, *extra):
    return load_config(None, ["model.name=resnet18", f"model.weights={weights}", "data.name=folder",
                              f"data.root={folder}", "data.validation_size=0", "train.epochs=2",
                              "train.schedule.unit=epochs", "train.schedule.milestones=[]",
                              "train.batch_size=8", "train.lr=0.05", "train.precision=fp32", "train.compile=false",
                              "train.freeze=stage2", f"run.out_dir={tmp_path}", "run.name=tuned", *extra])


def test_the_backbone_starts_as_the_file_and_the_classifier_afresh(tmp_path, folder, torchvision_file):
    messages = []
    run = build_run(finetune_config(tmp_path, folder, torchvision_file), log=messages.append)
    source = torch.load(torchvision_file, weights_only=True)
    state = run.model.state_dict()
    for key, value in source.items():
        if not key.startswith("fc."):
            assert torch.equal(state[key], value), key
    assert state["fc.weight"].shape == (3, 512) and source["fc.weight"].shape == (1000, 512)
    assert any("classifier starts afresh" in m and "fc.weight (1000, 512) -> (3, 512)" in m for m in messages)
    normalizer = run.data.normalizer  # the weights' normalization: ImageNet's, not this folder's
    assert normalizer.mode == "per_channel"
    assert torch.allclose(normalizer.mean.flatten(), torch.tensor(IMAGENET_MEAN))
    assert torch.allclose(normalizer.std.flatten(), torch.tensor(IMAGENET_STD))
    trainable = {id(p) for group in run.optimizer.param_groups for p in group["params"]}
    assert all(id(p) not in trainable for name in FROZEN for p in getattr(run.model, name).parameters())


def test_frozen_stages_and_their_statistics_stay_the_files(tmp_path, folder, torchvision_file):
    train(finetune_config(tmp_path, folder, torchvision_file), log=quiet)
    source = torch.load(torchvision_file, weights_only=True)
    trained = load_checkpoint(tmp_path / "tuned" / "last.pt")["model"]
    frozen = [key for key in source if key.split(".")[0] in FROZEN and "num_batches_tracked" not in key]
    assert frozen and all(torch.equal(trained[key], source[key]) for key in frozen)
    assert any(key.endswith("running_mean") for key in frozen)  # BN statistics included
    assert not torch.equal(trained["layer3.0.conv1.weight"], source["layer3.0.conv1.weight"])  # layer3 trains


def test_the_backbone_learns_at_its_share_of_the_learning_rate(tmp_path, folder, torchvision_file):
    config = finetune_config(tmp_path, folder, torchvision_file, "train.backbone_lr_scale=0.1", "train.freeze=none")
    run = build_run(config, log=quiet)
    backbone, head = run.optimizer.param_groups
    assert (backbone["lr_scale"], head["lr_scale"]) == (0.1, 1.0)
    assert [id(p) for p in head["params"]] == [id(p) for p in run.model.fc.parameters()]
    from resnetlab.training.epoch import StopFlag, train_step

    images, labels = next(iter(run.data.train.batches(0, 0)))
    train_step(run, images, labels, StopFlag())
    assert backbone["lr"] == pytest.approx(0.005) and head["lr"] == pytest.approx(0.05)


def test_weights_of_another_network_are_refused_in_one_line(tmp_path, folder, torchvision_file, capsys):
    with pytest.raises(WeightsMismatchError, match=r"does not fit ResNet: .*missing: layer1\.2"):
        build_run(finetune_config(tmp_path, folder, torchvision_file, "model.name=resnet34"), log=quiet)
    code = main(["train", "model.name=resnet18", f"model.weights={tmp_path / 'nothing.pth'}", "data.name=folder",
                 f"data.root={folder}", "data.validation_size=0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "nothing.pth not found" in err[0]


def test_a_finetuned_run_resumes_without_its_weights_file(tmp_path, folder, torchvision_file):
    copy = tmp_path / "copy.pth"
    copy.write_bytes(torchvision_file.read_bytes())
    from resnetlab.training.trainer import TrainingInterrupted

    with pytest.raises(TrainingInterrupted):
        train(finetune_config(tmp_path, folder, copy), stop_at_iteration=2, log=quiet)
    copy.unlink()  # the checkpoint holds the weights now
    summary = train(resume=tmp_path / "tuned", log=quiet)
    assert summary["iterations"] == 6


def test_create_model_starts_from_a_file(torchvision_file):
    import warnings

    import resnetlab

    source = torch.load(torchvision_file, weights_only=True)
    with pytest.warns(UserWarning, match=r"classifier \(fc.weight, fc.bias\) .* starts afresh"):
        model = resnetlab.create_model("resnet18", num_classes=3, weights=torchvision_file)
    assert torch.equal(model.layer4[1].conv2.weight, source["layer4.1.conv2.weight"]) and model.fc.out_features == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 1000 classes, as the file: every key loads, nothing to warn about
        full = resnetlab.create_model("resnet18", weights=torchvision_file)
    assert torch.equal(full.fc.weight, source["fc.weight"])


def test_a_classifier_trained_on_other_class_names_starts_afresh(tmp_path, folder):
    # Same number of classes, other names: the file's classifier would map them wrongly, so it is not kept.
    train(load_config(None, ["model.name=resnet20", "data.name=folder", f"data.root={folder}",
                             "data.validation_size=0", "train.epochs=1", "train.schedule.unit=epochs",
                             "train.schedule.milestones=[]", "train.batch_size=8", "train.precision=fp32",
                             f"run.out_dir={tmp_path}", "run.name=source"]), log=quiet)
    renamed = tmp_path / "renamed"
    for split in ("train", "test"):
        for old, new in zip(CLASSES, ("ash", "bark", "coal")):
            (renamed / split).mkdir(parents=True, exist_ok=True)
            (renamed / split / new).symlink_to(folder / split / old)
    messages = []
    run = build_run(load_config(None, ["model.name=resnet20", f"model.weights={tmp_path / 'source'}",
                                       "data.name=folder", f"data.root={renamed}", "data.validation_size=0",
                                       "train.precision=fp32"]), log=messages.append)
    source = load_checkpoint(tmp_path / "source" / "last.pt")["model"]
    assert not torch.equal(run.model.fc.weight, source["fc.weight"])
    assert torch.equal(run.model.layer3[2].conv2.weight, source["layer3.2.conv2.weight"])
    assert any("classes (cloud, grass, sand, ...) are not these" in m for m in messages)
