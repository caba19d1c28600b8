"""A training run from start (or a checkpoint) to its summary, with its run folder:

    RUN/config.yaml        the resolved config          RUN/environment.json  versions, git commit, machine, seed
    RUN/metrics.jsonl      one line per epoch           RUN/tensorboard/      the same scalars for TensorBoard
    RUN/last.pt, best.pt   checkpoints (atomic)         RUN/error_curves.png  training/test error, ResNet Fig. 6 style
    RUN/summary.json       test error at the last epoch and at the best validation epoch

Under torchrun every rank trains and evaluates its shard; only rank 0 writes the folder.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from resnetlab.config import Config, config_from_dict, save_config
from resnetlab.training.checkpoint import BEST_CHECKPOINT, LAST_CHECKPOINT, load_checkpoint, save_checkpoint
from resnetlab.training.distributed import SINGLE, Distributed
from resnetlab.training.environment import describe_environment
from resnetlab.training.metrics_log import MetricsLog
from resnetlab.training.plots import plot_error_curves
from resnetlab.training.probes import Probe
from resnetlab.training.trainer import (
    Run,
    StopFlag,
    TrainingInterrupted,
    build_run,
    checkpoint_state,
    evaluate,
    restore,
    start_next_epoch,
    train_one_epoch,
)

SUMMARY_FILE = "summary.json"
CURVES_FILE = "error_curves.png"


def new_run_dir(config: Config, run_dir: str | Path | None = None) -> Path:
    name = config.run.name or f"{config.model.name}-{config.data.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(run_dir) if run_dir is not None else Path(config.run.out_dir) / name
    if (run_dir / LAST_CHECKPOINT).exists():
        raise FileExistsError(f"run folder {run_dir} already holds a run; resume it with --resume {run_dir} "
                              "or choose another run.name")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _evaluate_splits(run: Run) -> dict:
    record = {}
    for split in ("val", "test"):
        result = evaluate(run.model, run.data.eval_batches(split), len(run.data.classes), run.memory_format,
                          run.distributed)
        for key, value in (result or {}).items():
            record[f"{split}_{key}"] = value
    return record


def _progress_bar(run: Run, enabled: bool | None):
    from tqdm import tqdm

    enabled = sys.stderr.isatty() if enabled is None else enabled
    enabled = enabled and run.distributed.is_main
    # Counted in images (unit_scale = batch size), so the bar shows images/s and the ETA.
    return tqdm(total=run.total_iterations, initial=run.state.iteration, unit="img",
                unit_scale=run.config.train.batch_size, disable=not enabled, dynamic_ncols=True,
                desc=run.config.model.name)


def _update_best(run: Run, record: dict, run_dir: Path) -> None:
    state, val_error = run.state, record.get("val_error")
    if val_error is None or (state.best_val_error is not None and val_error >= state.best_val_error):
        return
    state.best_val_error, state.best_epoch = val_error, record["epoch"]
    state.test_error_at_best_val = record.get("test_error")
    if run.distributed.is_main:
        save_checkpoint(checkpoint_state(run), run_dir / BEST_CHECKPOINT)


def _summary(run: Run, records: list[dict], run_dir: Path) -> dict:
    last = records[-1] if records else {}
    summary = {
        "model": run.config.model.name, "data": run.config.data.name, "iterations": run.state.iteration,
        "epochs": len(records), "final_test_error": last.get("test_error"),
        "final_test_top5_error": last.get("test_top5_error"),
        "best_val_error": run.state.best_val_error, "best_epoch": run.state.best_epoch,
        "test_error_at_best_val": run.state.test_error_at_best_val,
        "train_seconds": sum(r.get("epoch_seconds", 0.0) for r in records),
        "run_dir": str(run_dir), "world_size": run.distributed.world_size,
    }
    if run.distributed.is_main:
        (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def train(config: Config | None = None, *, resume: str | Path | None = None, device: str = "cpu",
          progress: bool | None = None, stop_at_iteration: int | None = None, log=print,
          run_dir: str | Path | None = None, probes: Sequence[Probe] = (),
          distributed: Distributed = SINGLE) -> dict:
    """Train a new run from ``config``, or continue the run folder ``resume``; returns the summary.

    ``run_dir`` names the new run's folder (default: from ``config.run``); ``probes`` measure during training
    (`resnetlab.training.probes`, single process only); ``distributed``: this process's rank under torchrun
    (`resnetlab.training.distributed.init_distributed`).

    Raises `TrainingInterrupted` after writing a checkpoint at the exact position (SIGINT/SIGTERM or
    ``stop_at_iteration``), and `TrainingDiverged` on a NaN/inf loss (the last checkpoint stays as it was).
    """
    main = distributed.is_main
    if not main:
        log = _silent
    if probes and distributed.enabled:
        raise ValueError("probes measure a single-process run; run the reproduction without torchrun")
    if resume is not None:
        run_dir = Path(resume)
        checkpoint = load_checkpoint(run_dir / LAST_CHECKPOINT if run_dir.is_dir() else run_dir)
        run_dir = run_dir if run_dir.is_dir() else run_dir.parent
        config = config_from_dict(checkpoint["config"])
        run = build_run(config, device, log, distributed)
        restore(run, checkpoint)
        saved_world = int(checkpoint.get("world_size", 1))
        if saved_world != distributed.world_size:
            log(f"note: the checkpoint was written by {saved_world} process(es), resuming with "
                f"{distributed.world_size}: the global batch and the data order are unchanged, the per-process "
                "BN batches are not (use model.sync_bn for the same statistics)")
        log(f"resuming {run_dir} at iteration {run.state.iteration} (epoch {run.state.epoch + 1})")
    else:
        config = config or Config()
        # Rank 0 names and creates the folder (its name may hold a timestamp); the others take its name.
        run_dir = new_run_dir(config, run_dir) if main else None
        run_dir = Path(distributed.broadcast(str(run_dir) if run_dir is not None else None))
        if main:
            save_config(config, run_dir / "config.yaml")
            environment = describe_environment(config.train.seed)
            environment["world_size"] = distributed.world_size
            (run_dir / "environment.json").write_text(json.dumps(environment, indent=2))
        run = build_run(config, device, log, distributed)
        log(f"run folder {run_dir}: {config.model.name} on {config.data.name} "
            f"({run.data.split_sizes['train']} train / {run.data.split_sizes['val']} val / "
            f"{run.data.split_sizes['test']} test images), {run.total_iterations} iterations of batch {config.train.batch_size}")
    if run.data.skipped:
        log(f"skipped {len(run.data.skipped)} unreadable images (data.skip_bad=true), first: {run.data.skipped[0][0]}")
    resumed_at = run.state.iteration if resume is not None else None
    metrics = MetricsLog(run_dir, resume_after_iteration=resumed_at, write=main)
    for probe in probes:
        probe.start(run, run_dir, resumed_at)

    def after_step(state, loss: float, batch_error: float) -> None:
        bar.update(1)
        for probe in probes:
            probe.after_step(run, loss, batch_error)

    bar = _progress_bar(run, progress)
    try:
        with StopFlag() as stop:
            while run.state.iteration < run.total_iterations:
                try:
                    record = train_one_epoch(run, stop, on_step=after_step, stop_at_iteration=stop_at_iteration)
                except TrainingInterrupted as stopped:
                    if main:
                        save_checkpoint(checkpoint_state(run), run_dir / LAST_CHECKPOINT)
                    stopped.run_dir = run_dir
                    raise
                epoch = run.state.epoch + 1
                finished = run.state.iteration >= run.total_iterations
                if run.state.batch >= run.data.train.num_batches:
                    start_next_epoch(run.state)
                record = {"epoch": epoch, "iteration": run.state.iteration, **record,
                          "expected_depth": _expected_depth(run.model)}
                if epoch % run.config.train.eval_every == 0 or finished:
                    record.update(_evaluate_splits(run))
                    _update_best(run, record, run_dir)
                metrics.append(record)
                bar.set_postfix(train_err=f"{record['train_error']:.3f}", test_err=f"{record.get('test_error', float('nan')):.3f}")
                (log if bar.disable else bar.write)(_epoch_line(record))
                if main:
                    plot_error_curves({config.model.name: metrics.records}, run_dir / CURVES_FILE,
                                      title=f"{config.model.name} on {config.data.name}")
                if main and (epoch % run.config.train.checkpoint_every == 0 or finished):
                    save_checkpoint(checkpoint_state(run), run_dir / LAST_CHECKPOINT)
    finally:
        bar.close()
        metrics.close()
        for probe in probes:
            probe.close()
    return _summary(run, metrics.records, run_dir)


def _silent(message: str) -> None:
    """The log of ranks other than 0: rank 0 speaks for the run."""


def _expected_depth(model: torch.nn.Module) -> float | None:
    return model.expected_depth() if hasattr(model, "expected_depth") else None


def _epoch_line(record: dict) -> str:
    parts = [f"epoch {record['epoch']:>3}", f"iter {record['iteration']:>6}", f"loss {record['train_loss']:.4f}",
             f"train err {100 * record['train_error']:5.2f}%"]
    for key, label in (("val_error", "val err"), ("test_error", "test err"), ("test_top5_error", "test top-5 err")):
        if record.get(key) is not None:
            parts.append(f"{label} {100 * record[key]:5.2f}%")
    parts.append(f"lr {record['lr']:.4g}")
    if record.get("images_per_second"):
        parts.append(f"{record['images_per_second']:.0f} img/s")
    return ", ".join(parts)
