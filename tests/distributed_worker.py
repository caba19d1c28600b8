"""Run by torchrun from tests/test_distributed.py: one rank's part of a check that the CLI cannot make.

    torchrun --nproc-per-node 2 tests/distributed_worker.py gates OUT_DIR OVERRIDES...
        a few training steps; writes each step's stochastic-depth decisions of this rank to OUT_DIR/gates-RANK.json
    torchrun --nproc-per-node 2 tests/distributed_worker.py stop RUN_DIR STOP_AT OVERRIDES...
        trains a new run in RUN_DIR and stops at iteration STOP_AT, as a Ctrl-C would, leaving a checkpoint
"""

import json
import sys
from pathlib import Path

from resnetlab.config import load_config
from resnetlab.layers.stochastic_depth import DropPath
from resnetlab.training.distributed import init_distributed, shutdown_distributed
from resnetlab.training.session import train
from resnetlab.training.trainer import StopFlag, TrainingInterrupted, build_run, train_one_epoch


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


if __name__ == "__main__":
    mode, target = sys.argv[1], Path(sys.argv[2])
    if mode == "gates":
        record_gates(target, sys.argv[3:])
    else:
        stop_early(target, int(sys.argv[3]), sys.argv[4:])
