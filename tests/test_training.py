"""The trainer: a tiny run end to end, bitwise resume, the NaN guard, and the run folder's contents."""

import json

import pytest
import torch
import yaml
from PIL import Image

from resnetlab.config import load_config
from resnetlab.data.synthetic import make_synthetic
from resnetlab.training.checkpoint import load_checkpoint
from resnetlab.training.session import train
from resnetlab.training.trainer import TrainingDiverged, TrainingInterrupted

# A run of a few seconds: ResNet-20 on 192 synthetic training images (32 more held out for validation),
# batch 32, 3 epochs of 6 iterations, stochastic depth on so that the gates matter.
TINY = ["data.synthetic_train_size=224", "data.synthetic_test_size=64", "data.validation_size=32",
        "train.batch_size=32", "train.epochs=3", "train.schedule.unit=epochs",
        "train.schedule.milestones=[2]", "model.stochastic_depth={p_last: 0.5}", "train.deterministic=true",
        "train.precision=fp32"]  # float32 on every machine: the warm-up and NaN tests pin float32 trajectories


def tiny_config(tmp_path, *extra):
    return load_config(None, [*TINY, f"run.out_dir={tmp_path}", *extra])


def quiet(*args, **kwargs):
    pass


def test_a_tiny_run_writes_its_folder(tmp_path):
    summary = train(tiny_config(tmp_path, "run.name=tiny"), log=quiet)
    run = tmp_path / "tiny"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert [r["iteration"] for r in records] == [6, 12, 18]
    for key in ("train_loss", "train_error", "val_error", "test_error", "lr", "images_per_second", "expected_depth"):
        assert key in records[-1]
    assert records[-1]["expected_depth"] == pytest.approx((3 * 9 - 1) / 4)  # ResNet-20: 9 units, p_L = 0.5
    assert records[0]["lr"] == pytest.approx(0.1) and records[-1]["lr"] == pytest.approx(0.01)  # /10 at epoch 2
    assert summary["final_test_error"] == records[-1]["test_error"]
    assert summary["test_error_at_best_val"] is not None and summary["best_epoch"] in (1, 2, 3)
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["batch_size"] == 32
    environment = json.loads((run / "environment.json").read_text())
    assert environment["torch"] == torch.__version__ and environment["seed"] == 0
    with Image.open(run / "error_curves.png") as image:
        assert image.format == "PNG" and image.size[0] > 300
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    checkpoint = load_checkpoint(run / "last.pt")
    assert checkpoint["train_state"]["iteration"] == 18
    assert checkpoint["classes"] == list(make_synthetic(0, 0).classes)


def final_weights(run_dir):
    return load_checkpoint(run_dir / "last.pt")["model"]


@pytest.mark.parametrize("stop_at", [4, 6, 11])  # mid-epoch, at an epoch boundary, mid-epoch later
def test_interrupted_and_resumed_run_is_bitwise_identical(tmp_path, stop_at):
    train(tiny_config(tmp_path, "run.name=straight"), log=quiet)
    with pytest.raises(TrainingInterrupted) as info:
        train(tiny_config(tmp_path, "run.name=broken"), stop_at_iteration=stop_at, log=quiet)
    assert info.value.run_dir == tmp_path / "broken"
    assert load_checkpoint(tmp_path / "broken" / "last.pt")["train_state"]["iteration"] == stop_at
    train(resume=tmp_path / "broken", log=quiet)
    straight, resumed = final_weights(tmp_path / "straight"), final_weights(tmp_path / "broken")
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    def lines(name):
        return [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]

    def drop_timing(record):  # wall-clock fields differ between any two runs
        return {k: v for k, v in record.items() if k not in ("images_per_second", "epoch_seconds")}
    assert [drop_timing(r) for r in lines("broken")] == [drop_timing(r) for r in lines("straight")]


def test_the_error_threshold_warmup_survives_a_resume(tmp_path):
    # At lr 0.01 the mean batch error of this tiny run falls below 0.87 after about 10 iterations (measured: 0.869
    # at iteration 10), so the warm-up ends after the interruption at 7 and the resumed run must find that end.
    extra = ["train.schedule.warmup.kind=error_threshold", "train.schedule.warmup.threshold=0.87",
             "train.schedule.warmup.min_steps=0"]  # no floor: the paper's 400 iterations would outlast the run
    train(tiny_config(tmp_path, "run.name=straight", *extra), log=quiet)
    with pytest.raises(TrainingInterrupted):
        train(tiny_config(tmp_path, "run.name=broken", *extra), stop_at_iteration=7, log=quiet)
    interrupted = load_checkpoint(tmp_path / "broken" / "last.pt")["warmup"]
    train(resume=tmp_path / "broken", log=quiet)
    straight, resumed = final_weights(tmp_path / "straight"), final_weights(tmp_path / "broken")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    # The window of batch errors travelled in the checkpoint, and the warm-up had not ended when it was written:
    # the resumed run decided the end itself, at the same iteration as the straight one.
    assert len(interrupted["recent_errors"]) == 7 and interrupted["warmup_done_at"] is None
    ended = load_checkpoint(tmp_path / "straight" / "last.pt")["warmup"]["warmup_done_at"]
    assert ended is not None and ended >= 7
    assert load_checkpoint(tmp_path / "broken" / "last.pt")["warmup"]["warmup_done_at"] == ended


def test_nan_loss_stops_the_run_before_it_writes_a_checkpoint(tmp_path):
    # lr 1e30: the first update sends the weights to ~1e30 and the second step's loss is NaN, inside epoch 1,
    # before any checkpoint: the run must stop there and write none (a non-finite one would be worse than none).
    config = tiny_config(tmp_path, "run.name=nan", "train.lr=1e30")
    with pytest.raises(TrainingDiverged, match=r"loss became nan at iteration 1 \(epoch 1, lr 1e\+30\)"):
        train(config, log=quiet)
    assert (tmp_path / "nan" / "config.yaml").is_file()
    assert not (tmp_path / "nan" / "last.pt").exists()


def test_nan_after_a_checkpoint_leaves_that_checkpoint_intact(tmp_path, monkeypatch):
    import torch.nn.functional as F

    calls = {"n": 0}
    original = F.cross_entropy

    def loss_turning_nan_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        loss = original(*args, **kwargs)
        # Calls 1-6 are epoch 1's training steps, 7-8 its validation and test; the 9th is iteration 6.
        return loss * float("nan") if calls["n"] > 8 else loss

    monkeypatch.setattr(F, "cross_entropy", loss_turning_nan_in_epoch_two)
    with pytest.raises(TrainingDiverged, match=r"iteration 6 \(epoch 2"):
        train(tiny_config(tmp_path, "run.name=good"), log=quiet)
    checkpoint = load_checkpoint(tmp_path / "good" / "last.pt")
    assert checkpoint["train_state"]["iteration"] == 6  # epoch 1's checkpoint, untouched
    assert all(torch.isfinite(v).all() for v in checkpoint["model"].values() if v.is_floating_point())


def test_reading_the_loss_every_few_steps_trains_the_same_bits(tmp_path, monkeypatch):
    # On a GPU the trainer reads the step's numbers every DEFERRED_SYNC_STEPS steps, not every step; forced here
    # on the CPU (4 steps, which do not divide the 6-step epochs), the run must end with the same weights and
    # the same epoch records as one that reads every step.
    import resnetlab.training.session as session

    train(tiny_config(tmp_path, "run.name=every"), log=quiet)
    monkeypatch.setattr(session, "host_sync_interval", lambda run, probes: 4)
    train(tiny_config(tmp_path, "run.name=deferred"), log=quiet)
    for name, value in final_weights(tmp_path / "every").items():
        assert torch.equal(value, final_weights(tmp_path / "deferred")[name]), name
    records = {name: [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
               for name in ("every", "deferred")}
    for every, deferred in zip(records["every"], records["deferred"]):
        assert (every["train_loss"], every["train_error"]) == (deferred["train_loss"], deferred["train_error"])


def test_a_deferred_nan_check_names_the_exact_iteration(tmp_path, monkeypatch):
    # Read every 4 steps, the NaN of iteration 1 is found at the read after iteration 3; the error still names
    # iteration 1, and no checkpoint (with the weights it wrecked) is written.
    import resnetlab.training.session as session

    monkeypatch.setattr(session, "host_sync_interval", lambda run, probes: 4)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at iteration 1 \(epoch 1, lr 1e\+30\)"):
        train(tiny_config(tmp_path, "run.name=nan", "train.lr=1e30"), log=quiet)
    assert not (tmp_path / "nan" / "last.pt").exists()


def test_the_loss_is_read_every_step_unless_the_device_runs_ahead(tmp_path):
    from resnetlab.training.epoch import DEFERRED_SYNC_STEPS, host_sync_interval
    from resnetlab.training.trainer import build_run

    run = build_run(tiny_config(tmp_path), "cpu")
    assert host_sync_interval(run, probes=False) == 1  # the CPU computes synchronously: a read costs nothing
    run.device = torch.device("cuda")  # only the rule is asked; nothing runs on it
    assert host_sync_interval(run, probes=False) == DEFERRED_SYNC_STEPS
    assert host_sync_interval(run, probes=True) == 1  # probes act on every step's numbers


def test_a_second_run_into_the_same_folder_is_refused(tmp_path):
    train(tiny_config(tmp_path, "run.name=once", "train.epochs=1"), log=quiet)
    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny_config(tmp_path, "run.name=once", "train.epochs=1"), log=quiet)


def test_a_killed_run_resumes_from_its_last_checkpoint_to_the_same_bits(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from resnetlab.config import save_config

    longer = ["train.epochs=6"]
    train(tiny_config(tmp_path, "run.name=straight", *longer), log=quiet)
    recipe = tmp_path / "tiny.yaml"  # the same config for the command line (with no file it starts the quick start)
    save_config(tiny_config(tmp_path, "run.name=killed", *longer), recipe)
    # The same intra-op thread count as this process: another count sums in another order, other bits.
    same_threads = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    process = subprocess.Popen([sys.executable, "-m", "resnetlab", "train", str(recipe)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=same_threads)
    checkpoint = tmp_path / "killed" / "last.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)  # no handler runs: the process dies wherever it is
    assert process.wait() == -signal.SIGKILL
    killed_at = load_checkpoint(checkpoint)["train_state"]["iteration"]
    assert 0 < killed_at < 36
    train(resume=tmp_path / "killed", log=quiet)
    straight, resumed = final_weights(tmp_path / "straight"), final_weights(tmp_path / "killed")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
