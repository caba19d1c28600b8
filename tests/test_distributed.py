"""Data-parallel training with torchrun on the CPU (gloo, 2 processes) against one process.

The global batch is the config's ``train.batch_size`` in both, so one step of 2 ranks x B images must give the
weights one process gets from the same 2B images: exactly so up to float summation order when nothing depends
on the per-rank batch (no BN, or BN over the global batch with ``model.sync_bn``).
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from resnetlab.config import load_config, save_config
from resnetlab.training.checkpoint import load_checkpoint
from resnetlab.training.session import train

WORKER = Path(__file__).parent / "distributed_worker.py"
RANKS = 2
WEIGHT_TOLERANCE = 1e-5  # |2 ranks - 1 process| of any weight after the steps: all-reduce sums in another order
SMALL = ["data.name=synthetic", "data.synthetic_train_size=128", "data.synthetic_test_size=32",
         "data.validation_size=32", "train.batch_size=16", "train.compile=false", "train.deterministic=true",
         "train.precision=fp32"]  # float32 on every machine: the tolerances below are float32's
NO_BN = ["model.name=bn_cnn", "model.options.norm=none"]

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="this torch build has no torch.distributed gloo backend")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def torchrun(*args, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={RANKS}", "--master-addr=127.0.0.1",
               f"--master-port={free_port()}", *map(str, args)]
    # One thread per rank: the two ranks share the CI machine's 2 cores.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RESNETLAB_CACHE": str(cwd / "cache")}
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def torchrun_train(overrides: list[str], *args, cwd: Path) -> subprocess.CompletedProcess:
    """`resnetlab train CONFIG` under torchrun, the config written from ``overrides`` on the defaults (without a
    file the command line would start from the quick start's settings instead)."""
    config = cwd / "config.yaml"
    save_config(load_config(None, overrides), config)
    return torchrun("-m", "resnetlab", "train", config, *args, cwd=cwd)


def single_process(overrides: list[str], run_dir: Path) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank (OMP_NUM_THREADS=1)
    try:
        train(load_config(None, overrides), run_dir=run_dir, progress=False, log=lambda message: None)
    finally:
        torch.set_num_threads(threads)
    return load_checkpoint(run_dir / "last.pt")


def largest_difference(first: dict, second: dict) -> float:
    assert first.keys() == second.keys()
    floating = [key for key in first if first[key].is_floating_point()]
    return max(float((first[key].double() - second[key].double()).abs().max()) for key in floating)


def test_two_ranks_of_batch_b_step_like_one_process_of_batch_2b(tmp_path):
    overrides = [*SMALL, *NO_BN, "train.iterations=2"]
    reference = single_process(overrides, tmp_path / "single")
    result = torchrun_train(overrides, f"run.out_dir={tmp_path}", "run.name=ddp", cwd=tmp_path)
    assert result.stdout.count("done: test error") == 1  # rank 0 speaks for the run
    ranks = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert ranks["world_size"] == RANKS and reference["world_size"] == 1
    assert ranks["train_state"]["iteration"] == 2
    assert largest_difference(ranks["model"], reference["model"]) <= WEIGHT_TOLERANCE
    # Evaluation is gathered from both ranks' shards: the errors are those of the whole split.
    records = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    singles = [json.loads(line) for line in (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["test_error"] == pytest.approx(singles[-1]["test_error"], abs=1 / 32 + 1e-9)
    assert records[-1]["train_loss"] == pytest.approx(singles[-1]["train_loss"], rel=1e-4)


def test_stochastic_depth_gates_match_across_ranks(tmp_path):
    overrides = [*SMALL, "model.name=resnet20", "model.options.stochastic_depth=0.5", "train.iterations=6"]
    torchrun(WORKER, "gates", tmp_path, *overrides, cwd=tmp_path)
    gates = [json.loads((tmp_path / f"gates-{rank}.json").read_text()) for rank in range(RANKS)]
    assert len(gates[0]) == 6 and gates[0] == gates[1]
    dropped = sum(not kept for step in gates[0] for kept in step)
    assert 0 < dropped < 6 * 9  # some units dropped, not all: the check sees real decisions


def test_a_two_rank_run_resumes_to_the_uninterrupted_weights(tmp_path):
    overrides = [*SMALL, *NO_BN, "train.iterations=6"]
    torchrun_train(overrides, f"run.out_dir={tmp_path}", "run.name=straight", cwd=tmp_path)
    torchrun(WORKER, "stop", tmp_path / "resumed", 3, *overrides, cwd=tmp_path)
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["train_state"]["iteration"] == 3
    result = torchrun("-m", "resnetlab", "train", "--resume", tmp_path / "resumed", cwd=tmp_path)
    assert "resuming" in result.stdout and result.stdout.count("done") == 1
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    resumed = load_checkpoint(tmp_path / "resumed" / "last.pt")["model"]
    assert largest_difference(straight, resumed) == 0.0


def test_sync_bn_gives_two_ranks_the_gradients_of_one_process_and_per_rank_bn_does_not(tmp_path):
    # One float64 step of ResNet-20 through wrap_for_training (the trainer's path): BN over the global batch
    # (model.sync_bn, on CPU processes our all-reduce BN) is one process's computation up to summation order;
    # per-rank BN (8 images each) is another computation. Running statistics are compared as well.
    torchrun(WORKER, "bn-gradients", tmp_path, cwd=tmp_path)
    results = json.loads((tmp_path / "bn-gradients.json").read_text())
    assert results["sync_bn"]["gradient"] < 1e-10
    assert results["sync_bn"]["running_statistics"] < 1e-12
    assert results["per_rank_bn"]["gradient"] > 1e-3
    assert results["per_rank_bn"]["running_statistics"] > 1e-3


def test_a_sync_bn_run_trains_on_the_global_batch_statistics(tmp_path):
    # The trainer end to end with model.sync_bn on 2 CPU processes: the running statistics after one step are
    # those of one process's 16 images (float32: the forward pass is well conditioned, unlike BN's gradients).
    overrides = [*SMALL, "model.name=resnet20", "train.iterations=1"]
    reference = single_process(overrides, tmp_path / "single")["model"]
    torchrun_train([*overrides, "model.sync_bn=true"], f"run.out_dir={tmp_path}", "run.name=ddp", cwd=tmp_path)
    synchronized = load_checkpoint(tmp_path / "ddp" / "last.pt")["model"]
    statistics = [key for key in reference if key.endswith(("running_mean", "running_var"))]
    assert len(statistics) == 2 * 19  # ResNet-20's 19 BN layers
    assert largest_difference({k: synchronized[k] for k in statistics},
                              {k: reference[k] for k in statistics}) <= WEIGHT_TOLERANCE


def test_rank_shards_concatenate_to_the_single_process_batches():
    import numpy as np

    from resnetlab.data.augment import Normalizer
    from resnetlab.data.batches import ArrayBatches

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (70, 8, 8, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 70)
    normalizer = Normalizer.from_training_images(images)
    single = ArrayBatches(images, labels, 16, normalizer, augment=True, seed=3)
    shards = [ArrayBatches(images, labels, 16, normalizer, augment=True, seed=3, shard=(rank, 2)) for rank in (0, 1)]
    assert single.num_batches == 5 and shards[0].num_batches == 4  # ranks drop the incomplete last batch
    for index, (whole, *parts) in enumerate(zip(single.batches(1), *(s.batches(1) for s in shards))):
        assert [len(part[1]) for part in parts] == [8, 8]
        assert torch.equal(torch.cat([part[0] for part in parts]), whole[0])  # same crops and flips
        assert torch.equal(torch.cat([part[1] for part in parts]), whole[1])
    assert index == 3


def test_all_reduce_bn_conversion_keeps_the_weights_and_is_plain_bn_in_one_process():
    from resnetlab.layers.sync_batchnorm import AllReduceBatchNorm, convert_to_all_reduce_bn
    from resnetlab.models import create_model

    torch.manual_seed(0)
    plain = create_model("resnet20")
    converted = convert_to_all_reduce_bn(create_model("resnet20"))
    converted.load_state_dict(plain.state_dict())  # the same keys: checkpoints move between the two
    assert sum(isinstance(m, AllReduceBatchNorm) for m in converted.modules()) == 19
    assert not any(isinstance(m, torch.nn.BatchNorm2d) and not isinstance(m, AllReduceBatchNorm)
                   for m in converted.modules())
    images = torch.randn(4, 3, 16, 16)
    assert torch.equal(converted.train()(images), plain.train()(images))  # no process group: BN's own kernel
    statistic = "layer2.1.bn1.running_var"
    assert torch.equal(converted.state_dict()[statistic], plain.state_dict()[statistic])
