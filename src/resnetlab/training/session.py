"""A training run's lifecycle, from start (or resume) to its summary: what ``resnetlab train`` runs.

    train(config)  ->  Session.start or Session.resume  ->  per epoch: Session.run_epoch, Session.end_epoch
                   ->  Session.finish

The run folder:

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
from collections.abc import Callable, Sequence
from pathlib import Path

from resnetlab.config import Config, config_from_dict, save_config
from resnetlab.data.augment import Normalizer
from resnetlab.errors import ResnetlabError
from resnetlab.training.checkpoint import BEST_CHECKPOINT, LAST_CHECKPOINT, load_newest_readable, save_checkpoint
from resnetlab.training.distributed import SINGLE, Distributed
from resnetlab.training.environment import record_environment
from resnetlab.training.epoch import StopFlag, host_sync_interval, start_next_epoch, train_one_epoch
from resnetlab.training.evaluation import evaluate
from resnetlab.training.metrics_log import MetricsLog
from resnetlab.training.plots import plot_error_curves, record_series
from resnetlab.training.probes import Probe
from resnetlab.training.trainer import (
    Run,
    TrainingInterrupted,
    build_run,
    checkpoint_state,
    restore,
)

SUMMARY_FILE = "summary.json"
_now = time.monotonic  # the clock of the time-based checkpoints (seconds; tests replace it)
CURVES_FILE = "error_curves.png"


class RunFolderError(ResnetlabError, FileExistsError):
    """A new run would overwrite the run already in its folder."""


def new_run_dir(config: Config, run_dir: str | Path | None = None) -> Path:
    name = config.run.name or f"{config.model.name}-{config.data.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(run_dir) if run_dir is not None else Path(config.run.out_dir) / name
    if (run_dir / LAST_CHECKPOINT).exists():
        raise RunFolderError(f"run folder {run_dir} already holds a run; resume it with --resume {run_dir} "
                             "or choose another run.name")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


class Session:
    """One run and its folder: the steps of `train`, each small enough to read on its own."""

    def __init__(self, run: Run, run_dir: Path, log: Callable[[str], None], resumed_at: int | None,
                 logged_epochs: int | None = None) -> None:
        self.run, self.run_dir, self.log, self.resumed_at = run, run_dir, log, resumed_at
        self.main = run.distributed.is_main
        # A resume keeps the per-epoch records its checkpoint had seen (checkpoints before that count: those up
        # to its iteration)
        self.metrics = MetricsLog(run_dir, resume_after_iteration=resumed_at, write=self.main,
                                  kept_records=logged_epochs)
        self.probes: Sequence[Probe] = ()
        self.bar = None
        self.saved_at = _now()  # when the last checkpoint was written (or the run opened), in seconds
        self.saved_iteration = run.state.iteration  # ... and at which iteration

    # ---- start or resume -----------------------------------------------------------------------------------
    @classmethod
    def start(cls, config: Config, run_dir: str | Path | None, device: str, log: Callable[[str], None],
              distributed: Distributed, precision: str | None = None) -> Session:
        """A new run: rank 0 names and creates the folder (its name may hold a timestamp), the others take it."""
        folder = new_run_dir(config, run_dir) if distributed.is_main else None
        folder = Path(distributed.broadcast(str(folder) if folder is not None else None))
        if distributed.is_main:
            save_config(config, folder / "config.yaml")
        run = build_run(config, device, log, distributed, precision=precision)
        if distributed.is_main:
            record_environment(folder, config.train.seed, run.precision.to_dict(), distributed.world_size)
        sizes = run.data.split_sizes
        log(f"run folder {folder}: {config.model.name} on {config.data.name} ({sizes['train']} train / "
            f"{sizes['val']} val / {sizes['test']} test images), {run.total_iterations} iterations of batch "
            f"{config.train.batch_size}, {run.precision.describe()}")
        return cls(run, folder, log, resumed_at=None)

    @classmethod
    def resume(cls, path: str | Path, device: str, log: Callable[[str], None], distributed: Distributed,
               precision: str | None = None) -> Session:
        """The run of a folder (or checkpoint file), rebuilt from its saved config, at its checkpoint's position."""
        path = Path(path)
        checkpoint, _ = load_newest_readable(path / LAST_CHECKPOINT if path.is_dir() else path, log)
        folder = path if path.is_dir() else path.parent
        if distributed.is_main:  # a write cut short by a kill (the checkpoint it was replacing is intact)
            for unfinished in folder.glob(f".{LAST_CHECKPOINT}.tmp*"):
                unfinished.unlink()
        run = build_run(config_from_dict(checkpoint["config"]), device, log, distributed,
                        resuming=Normalizer.from_state_dict(checkpoint["normalizer"]), precision=precision)
        restore(run, checkpoint)
        saved_world = int(checkpoint.get("world_size", 1))
        if saved_world != distributed.world_size:
            log(f"note: the checkpoint was written by {saved_world} process(es), resuming with "
                f"{distributed.world_size}: the global batch and the data order are unchanged, the per-process "
                "BN batches are not (use model.sync_bn for the same statistics)")
        saved = (checkpoint.get("precision") or {}).get("precision", "fp32")
        if saved != run.precision.precision:
            log(f"note: the run trained in {saved} so far and continues in {run.precision.precision} on this machine "
                f"({run.precision.reason}), so it will not end with the bits of an uninterrupted run")
        if distributed.is_main:
            record_environment(folder, run.config.train.seed, run.precision.to_dict(), distributed.world_size,
                               resumed_at=run.state.iteration)
        log(f"resuming {folder} at iteration {run.state.iteration} (epoch {run.state.epoch + 1}), "
            f"{run.precision.describe()}")
        return cls(run, folder, log, resumed_at=run.state.iteration, logged_epochs=checkpoint.get("logged_epochs"))

    def open(self, probes: Sequence[Probe], progress: bool | None) -> None:
        """Start the probes and the progress bar (counted in images, so it shows images/s and the ETA)."""
        from tqdm import tqdm  # imported here: tqdm pulls in more than the rest of a run's start needs

        if self.run.data.skipped:
            self.log(f"skipped {len(self.run.data.skipped)} unreadable images (data.skip_bad=true), first: "
                     f"{self.run.data.skipped[0][0]}")
        self.probes = probes
        for probe in probes:
            probe.start(self.run, self.run_dir, self.resumed_at)
        enabled = (sys.stderr.isatty() if progress is None else progress) and self.main
        self.bar = tqdm(total=self.run.total_iterations, initial=self.run.state.iteration, unit="img",
                        unit_scale=self.run.config.train.batch_size, disable=not enabled, dynamic_ncols=True,
                        desc=self.run.config.model.name)

    # ---- one epoch ------------------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.run.state.iteration >= self.run.total_iterations

    def run_epoch(self, stop: StopFlag, stop_at_iteration: int | None = None) -> dict:
        """Train to the end of the epoch; on a stop request, write a checkpoint at the exact position first."""
        try:
            return train_one_epoch(self.run, stop, on_step=self._after_step, stop_at_iteration=stop_at_iteration,
                                   sync_every=host_sync_interval(self.run, probes=bool(self.probes)))
        except TrainingInterrupted as stopped:
            self.save()
            stopped.run_dir = self.run_dir
            raise

    def save(self) -> None:
        """Write the checkpoint at the current position (rank 0), keeping train.keep_checkpoints of them; a
        second save at the same iteration (the epoch's end after a save at its last step) replaces the first."""
        iteration = self.run.state.iteration
        keep = 1 if iteration == self.saved_iteration else self.run.config.train.keep_checkpoints
        if self.main:
            state = {**checkpoint_state(self.run), "logged_epochs": len(self.metrics.records)}
            save_checkpoint(state, self.run_dir / LAST_CHECKPOINT, keep=keep)
        self.saved_at, self.saved_iteration = _now(), iteration

    def _after_step(self, state, loss: float, batch_error: float) -> None:
        self.bar.update(1)
        for probe in self.probes:
            probe.after_step(self.run, loss, batch_error)
        # Within an epoch too: a kill loses minutes, not the epoch. Steps read in groups (a GPU) arrive here
        # together at the group's last position, so an interval counts as reached when it was crossed.
        train = self.run.config.train
        every, minutes = train.checkpoint_every_iterations, train.checkpoint_every_minutes
        if state.iteration == self.saved_iteration:
            return
        if (every and state.iteration // every > self.saved_iteration // every) or \
                (minutes and _now() - self.saved_at >= 60 * minutes):
            self.save()

    # ---- end of epoch ---------------------------------------------------------------------------------------
    def end_epoch(self, record: dict) -> dict:
        """Evaluate (every ``eval_every`` epochs and at the end), keep the best epoch, log, plot, checkpoint."""
        run, train = self.run, self.run.config.train
        epoch = run.state.epoch + 1
        if run.state.batch >= run.data.train.num_batches:
            start_next_epoch(run.state)
        expected_depth = run.model.expected_depth() if hasattr(run.model, "expected_depth") else None
        record = {"epoch": epoch, "iteration": run.state.iteration, **record, "expected_depth": expected_depth}
        if epoch % train.eval_every == 0 or self.finished:
            record.update(self._evaluate_splits())
            self._update_best(record)
        self.metrics.append(record)
        self.bar.set_postfix(train_err=f"{record['train_error']:.3f}",
                             test_err=f"{record.get('test_error', float('nan')):.3f}")
        (self.log if self.bar.disable else self.bar.write)(epoch_line(record))
        if self.main:
            records = self.metrics.records
            curves = {run.config.model.name: (record_series(records, "train_error"),
                                              record_series(records, "test_error"))}
            plot_error_curves({f"{run.config.model.name} on {run.config.data.name}": curves},
                              self.run_dir / CURVES_FILE)
        if epoch % train.checkpoint_every == 0 or self.finished:
            self.save()
        return record

    def _evaluate_splits(self) -> dict:
        run, record = self.run, {}
        for split in ("val", "test"):
            result = evaluate(run.model, run.data.eval_batches(split), len(run.data.classes), run.memory_format,
                              run.distributed, per_class=split == "test" and self.finished)
            record.update({f"{split}_{key}": value for key, value in (result or {}).items()})
        return record

    def _update_best(self, record: dict) -> None:
        state, val_error = self.run.state, record.get("val_error")
        if val_error is None or (state.best_val_error is not None and val_error >= state.best_val_error):
            return
        state.best_val_error, state.best_epoch = val_error, record["epoch"]
        state.test_error_at_best_val = record.get("test_error")
        if self.main:
            save_checkpoint(checkpoint_state(self.run), self.run_dir / BEST_CHECKPOINT)

    # ---- finish ---------------------------------------------------------------------------------------------
    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.metrics.close()
        for probe in self.probes:
            probe.close()

    def finish(self) -> dict:
        """The run's summary (written to ``summary.json`` by rank 0)."""
        run, records = self.run, self.metrics.records
        last = records[-1] if records else {}
        summary = {
            "model": run.config.model.name, "data": run.config.data.name, "iterations": run.state.iteration,
            "epochs": len(records), "final_test_error": last.get("test_error"),
            "final_test_top5_error": last.get("test_top5_error"),
            "final_test_per_class_accuracy": dict(zip(run.data.classes, last["test_per_class_accuracy"]))
            if last.get("test_per_class_accuracy") else None,
            "best_val_error": run.state.best_val_error, "best_epoch": run.state.best_epoch,
            "test_error_at_best_val": run.state.test_error_at_best_val,
            "train_seconds": sum(r.get("epoch_seconds", 0.0) for r in records),
            "run_dir": str(self.run_dir), "world_size": run.distributed.world_size,
        }
        if self.main:
            (self.run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        return summary


def train(config: Config | None = None, *, resume: str | Path | None = None, device: str = "cpu",
          progress: bool | None = None, stop_at_iteration: int | None = None, log=print,
          run_dir: str | Path | None = None, probes: Sequence[Probe] = (),
          distributed: Distributed = SINGLE, precision: str | None = None) -> dict:
    """Train a new run from ``config``, or continue the run folder ``resume``; returns the summary.

    ``run_dir`` names the new run's folder (default: from ``config.run``); ``probes`` measure during training
    (`resnetlab.training.probes`, single process only); ``distributed``: this process's rank under torchrun
    (`resnetlab.training.distributed.init_distributed`); ``precision``: fp32 or bf16 in place of the config's
    ``train.precision`` for this call only (the saved config keeps its setting).

    Raises `TrainingInterrupted` after writing a checkpoint at the exact position (SIGINT/SIGTERM or
    ``stop_at_iteration``), and `TrainingDiverged` on a NaN/inf loss (the last checkpoint stays as it was).
    """
    if not distributed.is_main:
        log = _silent
    if probes and distributed.enabled:
        raise ValueError("probes measure a single-process run; run the reproduction without torchrun")
    if resume is not None:
        session = Session.resume(resume, device, log, distributed, precision)
    else:
        session = Session.start(config or Config(), run_dir, device, log, distributed, precision)
    try:
        session.open(probes, progress)
        with StopFlag() as stop:
            while not session.finished:
                session.end_epoch(session.run_epoch(stop, stop_at_iteration))
    finally:
        session.close()
    return session.finish()


def _silent(message: str) -> None:
    """The log of ranks other than 0: rank 0 speaks for the run."""


def epoch_line(record: dict) -> str:
    parts = [f"epoch {record['epoch']:>3}", f"iter {record['iteration']:>6}", f"loss {record['train_loss']:.4f}",
             f"train err {100 * record['train_error']:5.2f}%"]
    for key, label in (("val_error", "val err"), ("test_error", "test err"), ("test_top5_error", "test top-5 err")):
        if record.get(key) is not None:
            parts.append(f"{label} {100 * record[key]:5.2f}%")
    parts.append(f"lr {record['lr']:.4g}")
    if record.get("images_per_second"):
        parts.append(f"{record['images_per_second']:.0f} img/s")
    return ", ".join(parts)
