"""Export (ONNX, TorchScript, safetensors) checked against PyTorch, loading exported and foreign weights back,
and refusing files that would run code."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import resnetlab
from resnetlab.cli import main
from resnetlab.config import load_config
from resnetlab.deploy import WeightsMismatchError, load_predictor, load_pretrained, load_weights
from resnetlab.deploy.card import CardError, ModelCard, card_path
from resnetlab.deploy.export import FLOAT32_TOLERANCE, export_checkpoint
from resnetlab.training.checkpoint import CheckpointError, load_checkpoint
from resnetlab.training.session import train
from torchvision_reference import deterministic_state_dict, reference_input

FIXTURE = json.loads((Path(__file__).parent / "data" / "torchvision_resnet_layout.json").read_text())
TINY_RUN = ["data.synthetic_train_size=96", "data.synthetic_test_size=16", "data.validation_size=16",
            "train.batch_size=16", "train.iterations=3", "train.compile=false"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A ResNet-20 with stochastic depth, a few steps trained (BN statistics away from their defaults)."""
    folder = tmp_path_factory.mktemp("deploy") / "run"
    config = load_config(None, [*TINY_RUN, "model.options.stochastic_depth=0.5"])
    train(config, run_dir=folder, log=lambda message: None, progress=False)
    return folder


def uint8_images(count: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8, generator=generator)


@pytest.mark.parametrize("format", ["onnx", "torchscript", "safetensors"])
def test_an_export_gives_the_checkpoints_logits_at_any_batch_size(trained, tmp_path, format):
    suffix = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "safetensors": ".safetensors"}[format]
    result = export_checkpoint(trained, format, tmp_path / f"model{suffix}")
    assert result.path.is_file() and result.card == tmp_path / "model.json" and result.card.is_file()
    assert 0 <= result.max_abs_difference <= FLOAT32_TOLERANCE
    original, exported = load_predictor(trained), load_predictor(result.path)
    images = uint8_images(5)  # neither of the batch sizes the export was checked at
    reference = original.logits(images)
    assert reference.shape == (5, 10) and float(reference.std()) > 0
    assert float((exported.logits(images) - reference).abs().max()) <= FLOAT32_TOLERANCE
    assert exported.classes == original.classes and exported.image_size == 32


def test_fused_bn_exports_fewer_layers_with_the_same_outputs(trained, tmp_path):
    plain = export_checkpoint(trained, "safetensors", tmp_path / "plain.safetensors")
    fused = export_checkpoint(trained, "safetensors", tmp_path / "fused.safetensors", fuse_bn=True)
    assert ModelCard.read(fused.card).fused_bn and not ModelCard.read(plain.card).fused_bn
    plain_model, fused_model = load_pretrained(plain.path), load_pretrained(fused.path)
    count = lambda model: sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # noqa: E731
    assert count(plain_model) == 19 and count(fused_model) == 0  # ResNet-20: every BN follows a conv
    images = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert float((plain_model(images) - fused_model(images)).abs().max()) <= FLOAT32_TOLERANCE


def test_load_pretrained_rebuilds_the_model_with_its_options(trained, tmp_path):
    result = export_checkpoint(trained, "safetensors", tmp_path / "net.safetensors")
    model = resnetlab.load_pretrained(result.path)
    assert isinstance(model, resnetlab.ResNet) and not model.training
    assert model.expected_depth() < 20  # the stochastic-depth option came back from the card
    saved = load_checkpoint(trained / "last.pt")["model"]
    assert all(torch.equal(saved[key], value) for key, value in model.state_dict().items())


def test_export_and_predict_from_the_command_line(trained, tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    assert main(["export", str(trained), "--format", "onnx", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "max abs difference of the logits" in printed
    image = tmp_path / "image.png"
    Image.fromarray(np.asarray(uint8_images(1, seed=3)[0].permute(1, 2, 0))).save(image)
    outputs = []
    for model in (str(trained), str(out)):
        assert main(["predict", model, str(image), "--top", "3"]) == 0
        outputs.append(capsys.readouterr().out.splitlines())
    assert len(outputs[0]) == 4 and [line.split()[1] for line in outputs[0][1:]] == \
        [line.split()[1] for line in outputs[1][1:]]  # the same classes in the same order


def test_bad_export_requests_give_one_line(trained, tmp_path, capsys):
    assert main(["export", str(trained), "--format", "onnx", "--out", str(tmp_path / "x.onnyx")]) == 2
    assert "must end in .onnx" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing"), "--format", "onnx"]) == 2
    assert "not found" in capsys.readouterr().err
    lonely = tmp_path / "lonely.safetensors"
    export_checkpoint(trained, "safetensors", lonely).card.unlink()
    with pytest.raises(CardError, match="lonely.json not found.*keep the two files together"):
        load_pretrained(lonely)


# ---- weights from other tools ----
def test_a_torchvision_file_loads_and_gives_torchvisions_logits(tmp_path):
    entry = FIXTURE["models"]["resnet18"]
    torch.save(deterministic_state_dict(entry["state_dict"]), tmp_path / "resnet18-torchvision.pth")
    model = load_weights_into("resnet18", tmp_path / "resnet18-torchvision.pth")
    with torch.no_grad():
        logits = model(reference_input())
    expected = torch.tensor(entry["logits"]).reshape(entry["logits_shape"])
    assert float((logits - expected).abs().max()) <= 1e-4 * float(expected.abs().max())


def load_weights_into(name, source, **options):
    model = resnetlab.create_model(name, **options)
    load_weights(model, source)
    return model.eval()


def test_ddp_and_compiled_prefixes_are_removed(tmp_path):
    source = resnetlab.create_model("resnet20")
    wrapped = {f"module._orig_mod.{key}": value for key, value in source.state_dict().items()}
    torch.save({"epoch": 3, "state_dict": wrapped}, tmp_path / "ddp.pt")  # a typical training script's file
    model = load_weights_into("resnet20", tmp_path / "ddp.pt")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in source.state_dict().items())


def test_a_mismatch_names_the_first_keys():
    state = resnetlab.create_model("resnet18").state_dict()
    with pytest.raises(WeightsMismatchError, match=r"missing: layer1\.2\.conv1\.weight"):
        load_weights(resnetlab.create_model("resnet34"), state)  # ResNet-34 has a third unit in stage 1
    with pytest.raises(WeightsMismatchError, match=r"of another shape \(file vs model\): fc\.weight "
                                                   r"\(1000, 512\) vs \(10, 512\)"):
        load_weights(resnetlab.create_model("resnet18", num_classes=10), state)


def test_non_strict_loading_keeps_a_new_classifier():
    imagenet = resnetlab.create_model("resnet18").state_dict()
    model = resnetlab.create_model("resnet18", num_classes=10)
    head = model.fc.weight.clone()
    mismatch = load_weights(model, imagenet, strict=False)
    assert mismatch.reshaped and mismatch.reshaped[0].startswith("fc.weight") and not mismatch.missing
    assert torch.equal(model.fc.weight, head) and torch.equal(model.conv1.weight, imagenet["conv1.weight"])


# ---- files that would run code ----
class RunsShell:
    """Pickles to ``os.system(command)``: a plain ``torch.load``/``pickle.load`` would run the command."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def malicious_checkpoint(path: Path, side_effect: Path) -> Path:
    payload = {"model": resnetlab.create_model("resnet20").state_dict(), "config": {},
               "hook": RunsShell(f"touch '{side_effect}'")}
    torch.save(payload, path)
    return path


def test_a_checkpoint_asking_for_code_is_refused_without_running_it(tmp_path):
    side_effect = tmp_path / "side_effect"
    path = malicious_checkpoint(tmp_path / "evil.pt", side_effect)
    with pytest.raises(CheckpointError, match=r"refusing to load .*evil\.pt.*(posix|os|nt)\.system"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_weights(resnetlab.create_model("resnet20"), path)
    assert not side_effect.exists()


@pytest.mark.parametrize("command", [["predict", "{model}", "{image}"], ["eval", "{model}"],
                                     ["export", "{model}", "--format", "safetensors"],
                                     ["train", "--resume", "{model}"]])
def test_every_command_refuses_a_malicious_checkpoint_in_one_line(tmp_path, capsys, command):
    side_effect = tmp_path / "side_effect"
    model = malicious_checkpoint(tmp_path / "evil.pt", side_effect)
    image = tmp_path / "image.png"
    Image.new("RGB", (32, 32)).save(image)
    assert main([part.format(model=model, image=image) for part in command]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("resnetlab: error: refusing to load") and "Traceback" not in err[0]
    assert not side_effect.exists()


def test_a_corrupt_safetensors_file_is_named(trained, tmp_path):
    result = export_checkpoint(trained, "safetensors", tmp_path / "net.safetensors")
    data = result.path.read_bytes()
    result.path.write_bytes(data[:8] + b"{not json" + data[17:])  # a broken header
    with pytest.raises(CheckpointError, match="net.safetensors is not a readable safetensors file"):
        load_pretrained(result.path)


def test_a_card_cannot_name_code_only_registered_models(trained, tmp_path):
    result = export_checkpoint(trained, "safetensors", tmp_path / "net.safetensors")
    card = json.loads(card_path(result.path).read_text())
    card["model"] = "os.system"
    card_path(result.path).write_text(json.dumps(card))
    with pytest.raises(resnetlab.UnknownModelError, match="os.system"):
        load_pretrained(result.path)
