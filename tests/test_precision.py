"""train.precision: the auto rule, bf16 steps against fp32 steps, and what stays float32."""

import copy
import json
import sys

import pytest
import torch
import yaml

import resnetlab.training.precision as precision_module
from resnetlab.config import load_config
from resnetlab.models import cifar_resnet
from resnetlab.training.checkpoint import load_checkpoint
from resnetlab.training.environment import bf16_units
from resnetlab.training.performance import prepare_forward
from resnetlab.training.precision import PRECISION_OPTION, resolve_precision
from resnetlab.training.session import train
from resnetlab.training.step import TrainStep
from resnetlab.training.trainer import TrainingInterrupted

# bf16 keeps 8 bits of mantissa: one forward pass of a small net agrees with float32 to about 1% of the logits'
# scale, and one step's loss to well within that.
BF16_RELATIVE_TOLERANCE = 0.02


@pytest.fixture
def without_amx(monkeypatch):  # AMD EPYC Zen 3: AVX2, no bf16 instructions
    monkeypatch.setattr(precision_module, "cpu_capabilities",
                        lambda: {"avx2": True, "avx512_bf16": False, "amx_bf16": False})


@pytest.fixture
def with_amx(monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_capabilities", lambda: {"avx512_bf16": True, "amx_bf16": True})


def test_auto_picks_fp32_on_a_cpu_without_bf16_units(without_amx):
    choice = resolve_precision("auto", "cpu")
    assert choice.precision == "fp32" and "neither AMX-BF16 nor AVX512-BF16" in choice.describe()


def test_auto_picks_bf16_on_a_cpu_with_avx512_bf16_but_no_amx(monkeypatch):
    # AMD EPYC Zen 4: bf16 matmul 383 vs float32 129 GFLOP/s, ResNet-56 training 1.5x faster (docs/performance.md)
    monkeypatch.setattr(precision_module, "cpu_capabilities", lambda: {"avx512_bf16": True, "amx_bf16": False})
    choice = resolve_precision("auto", "cpu")
    assert choice.precision == "bf16" and choice.reason == "the CPU has AVX512-BF16 instructions"


@pytest.mark.parametrize("environment, suffix", [
    ({"cpu_amx_bf16": True, "cpu_avx512_bf16": True}, " (AMX-BF16)"),
    ({"cpu_amx_bf16": False, "cpu_avx512_bf16": True}, " (AVX512-BF16, no AMX)"),
    ({"cpu_amx_bf16": False, "cpu_avx512_bf16": False}, " (no bf16 units)"),
    ({"cpu_amx_bf16": False}, " (no AMX-BF16)"),  # a record written before the AVX512-BF16 field
    ({}, "")])
def test_a_recorded_machine_names_its_bf16_hardware(environment, suffix):
    assert bf16_units(environment) == suffix


def test_auto_picks_bf16_on_a_cpu_with_amx(with_amx):
    choice = resolve_precision("auto", "cpu")
    assert choice.precision == "bf16" and choice.describe() == "precision bf16 (auto: the CPU has AMX-BF16 units)"


def test_a_setting_other_than_auto_is_kept_whatever_the_cpu(without_amx):
    assert resolve_precision("bf16").precision == "bf16" and resolve_precision("fp32").precision == "fp32"
    assert resolve_precision("fp32").describe() == "precision fp32 (train.precision)"
    assert resolve_precision("bf16", source=PRECISION_OPTION).describe() == "precision bf16 (set with --precision)"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16")


def _one_step(precision: str, compile: bool = False):
    torch.manual_seed(0)
    model = cifar_resnet(8).train()
    forward = prepare_forward(model, channels_last=True, compile=compile)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    step = TrainStep(forward, optimizer, torch.channels_last, precision=precision)
    generator = torch.Generator().manual_seed(1)
    images, labels = torch.randn(16, 3, 16, 16, generator=generator), torch.randint(0, 10, (16,), generator=generator)
    before = copy.deepcopy(model.state_dict())
    loss, logits = step(0, images, labels)
    return model, optimizer, loss, logits, before


def test_a_bf16_step_agrees_with_an_fp32_step_within_bf16_tolerance():
    fp32_model, _, fp32_loss, fp32_logits, start = _one_step("fp32")
    bf16_model, optimizer, bf16_loss, bf16_logits, bf16_start = _one_step("bf16")
    assert all(torch.equal(start[k], bf16_start[k]) for k in start)  # the same initial weights
    assert bf16_logits.dtype == torch.bfloat16 and bf16_loss.dtype == torch.float32  # the loss in float32
    scale = fp32_logits.abs().max()
    assert (bf16_logits.float() - fp32_logits).abs().max() <= BF16_RELATIVE_TOLERANCE * scale
    assert abs(bf16_loss.item() - fp32_loss.item()) <= BF16_RELATIVE_TOLERANCE * fp32_loss.item()
    # The update itself points the same way: as a whole (cosine > 0.99) and tensor by tensor (> 0.9: the small
    # BN-bias gradients sum many bf16 terms and scatter most).
    bf16_weights = dict(bf16_model.named_parameters())
    deltas = {name: ((w - start[name]).detach().flatten(), (bf16_weights[name] - start[name]).detach().flatten())
              for name, w in fp32_model.named_parameters()}
    whole = [torch.cat([pair[i] for pair in deltas.values()]) for i in (0, 1)]
    assert torch.nn.functional.cosine_similarity(*whole, dim=0) > 0.99
    for name, (fp32_delta, bf16_delta) in deltas.items():
        if fp32_delta.norm() > 0:
            assert torch.nn.functional.cosine_similarity(fp32_delta, bf16_delta, dim=0) > 0.9, name
    # What bf16 must not touch: weights, optimizer state and BN statistics stay float32.
    assert all(p.dtype == torch.float32 for p in bf16_model.parameters())
    assert all(b.dtype in (torch.float32, torch.int64) for b in bf16_model.buffers())
    assert all(s["momentum_buffer"].dtype == torch.float32 for s in optimizer.state.values())


@pytest.mark.skipif(sys.platform == "win32", reason="torch.compile's CPU backend needs a C++ compiler")
def test_a_compiled_bf16_step_keeps_autocast_and_channels_last_and_gives_the_eager_outputs():
    eager_model, _, eager_loss, eager_logits, _ = _one_step("bf16")
    compiled_model, _, compiled_loss, compiled_logits, _ = _one_step("bf16", compile=True)
    assert compiled_logits.dtype == torch.bfloat16  # autocast survived compilation
    assert compiled_model.conv1.weight.grad.is_contiguous(memory_format=torch.channels_last)
    scale = eager_logits.float().abs().max()
    assert (compiled_logits.float() - eager_logits.float()).abs().max() <= BF16_RELATIVE_TOLERANCE * scale
    assert abs(compiled_loss.item() - eager_loss.item()) <= BF16_RELATIVE_TOLERANCE * eager_loss.item()


def test_a_run_names_records_and_checkpoints_its_precision(tmp_path, with_amx):
    lines = []
    config = load_config(None, ["data.synthetic_train_size=48", "data.synthetic_test_size=16",
                                "data.validation_size=16", "train.batch_size=16", "train.iterations=1",
                                f"run.out_dir={tmp_path}", "run.name=auto"])
    assert config.train.precision == "auto"  # the default
    train(config, log=lines.append)
    assert lines[0].startswith("run folder") and lines[0].endswith("precision bf16 (auto: the CPU has AMX-BF16 units)")
    environment = json.loads((tmp_path / "auto" / "environment.json").read_text())
    assert environment["precision"] == {"precision": "bf16", "setting": "auto", "reason": "the CPU has AMX-BF16 units"}
    assert load_checkpoint(tmp_path / "auto" / "last.pt")["precision"]["precision"] == "bf16"


def test_a_precision_given_for_one_call_trains_in_it_while_the_saved_config_keeps_its_setting(tmp_path, with_amx):
    """`reproduce --precision`: fp32 where auto would be bf16, said in the records with the reason; the saved
    config (which names a reproduction's run) keeps auto, so a resume without the option goes back to it."""
    lines = []
    config = load_config(None, ["data.synthetic_train_size=48", "data.synthetic_test_size=16",
                                "data.validation_size=16", "train.batch_size=16", "train.iterations=3",
                                f"run.out_dir={tmp_path}", "run.name=forced"])
    run_dir = tmp_path / "forced"
    forced = {"precision": "fp32", "setting": "fp32", "reason": PRECISION_OPTION}
    with pytest.raises(TrainingInterrupted):
        train(config, log=lines.append, precision="fp32", stop_at_iteration=1)
    assert lines[0].endswith(f"precision fp32 ({PRECISION_OPTION})")
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["precision"] == "auto"
    assert json.loads((run_dir / "environment.json").read_text())["precision"] == forced
    assert load_checkpoint(run_dir / "last.pt")["precision"] == forced

    with pytest.raises(TrainingInterrupted):  # resumed with the option: the same arithmetic, no note
        train(resume=run_dir, log=lines.append, precision="fp32", stop_at_iteration=2)
    assert load_checkpoint(run_dir / "last.pt")["precision"] == forced
    lines.clear()
    train(resume=run_dir, log=lines.append)  # without it: the config's auto, bf16 on this CPU
    assert any("trained in fp32 so far and continues in bf16" in line for line in lines)
    resumed = json.loads((run_dir / "environment.json").read_text())["resumed"]
    assert [segment["precision"] for segment in resumed] == [
        forced, {"precision": "bf16", "setting": "auto", "reason": "the CPU has AMX-BF16 units"}]
    assert load_checkpoint(run_dir / "last.pt")["precision"]["precision"] == "bf16"
