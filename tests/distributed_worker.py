"""Run by torchrun from tests/test_distributed.py: one rank's part of a check that the CLI cannot make.

    torchrun --nproc-per-node 2 tests/distributed_worker.py gates OUT_DIR OVERRIDES...
        a few training steps; writes each step's stochastic-depth decisions of this rank to OUT_DIR/gates-RANK.json
    torchrun --nproc-per-node 2 tests/distributed_worker.py stop RUN_DIR STOP_AT OVERRIDES...
        trains a new run in RUN_DIR and stops at iteration STOP_AT, as a Ctrl-C would, leaving a checkpoint
    torchrun --nproc-per-node 2 tests/distributed_worker.py bn-gradients OUT_DIR
        one float64 step of ResNet-20 wrapped for training with and without model.sync_bn against one process on
        the whole batch; writes the largest relative gradient and running-statistics differences to OUT_DIR
"""

import copy
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from resnetlab.config import load_config
from resnetlab.layers.stochastic_depth import DropPath
from resnetlab.models import create_model
from resnetlab.training.distributed import init_distributed, shutdown_distributed, wrap_for_training
from resnetlab.training.epoch import StopFlag, train_one_epoch
from resnetlab.training.session import train
from resnetlab.training.trainer import TrainingInterrupted, build_run


def record_gates(out_dir: Path, overrides: list[str]) -> None:
    distributed, device = init_distributed("cpu")
    run = build_run(load_config(None, overrides), device, lambda message: None, distributed)
    gates = [module for module in run.model.modules() if isinstance(module, DropPath)]
    steps = []
    with StopFlag() as stop:
        train_one_epoch(run, stop, on_step=lambda state, loss, error: steps.append([g.last_kept for g in gates]))
    (out_dir / f"gates-{distributed.rank}.json").write_text(json.dumps(steps))
    shutdown_distributed(distributed)


def stop_early(run_dir: Path, stop_at: int, overrides: list[str]) -> None:
    distributed, device = init_distributed("cpu")
    try:
        train(load_config(None, overrides), run_dir=run_dir, device=device, progress=False,
              stop_at_iteration=stop_at, distributed=distributed, log=lambda message: None)
    except TrainingInterrupted:
        pass
    finally:
        shutdown_distributed(distributed)


def relative_differences(got: dict, reference: dict) -> float:
    return max(float((got[key] - reference[key]).abs().max() / reference[key].abs().max()) for key in reference)


def compare_bn_gradients(out_dir: Path) -> None:
    """Float64, because BN's float32 gradients are themselves only good to about 1e-2 relative on a batch this
    small (the terms of dx nearly cancel): an exact check needs the precision to see a wrong term."""
    distributed, device = init_distributed("cpu")
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(16, 3, 16, 16, dtype=torch.float64, generator=generator)
    labels = torch.randint(0, 10, (16,), generator=generator)
    mine = slice(distributed.rank * 8, distributed.rank * 8 + 8)
    results = {}
    for sync_bn in (False, True):
        torch.manual_seed(1)
        model = create_model("resnet20").double()
        single = copy.deepcopy(model)
        F.cross_entropy(single(images), labels).backward()
        wrapped = wrap_for_training(model, distributed, torch.device(device), sync_bn)
        F.cross_entropy(wrapped(images[mine]), labels[mine]).backward()  # DDP averages the gradients
        statistics = [key for key in single.state_dict() if key.endswith(("running_mean", "running_var"))]
        results["sync_bn" if sync_bn else "per_rank_bn"] = {
            "gradient": relative_differences({k: p.grad for k, p in model.named_parameters()},
                                             {k: p.grad for k, p in single.named_parameters()}),
            "running_statistics": relative_differences({k: model.state_dict()[k] for k in statistics},
                                                       {k: single.state_dict()[k] for k in statistics}),
        }
    if distributed.is_main:
        (out_dir / "bn-gradients.json").write_text(json.dumps(results))
    shutdown_distributed(distributed)


if __name__ == "__main__":
    mode, target = sys.argv[1], Path(sys.argv[2])
    if mode == "gates":
        record_gates(target, sys.argv[3:])
    elif mode == "bn-gradients":
        compare_bn_gradients(target)
    else:
        stop_early(target, int(sys.argv[3]), sys.argv[4:])
