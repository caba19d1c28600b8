"""A run's parts and one epoch of training: `build_run` assembles data, model, optimizer, schedule and the
training step from a config; `train_one_epoch` runs the step over an epoch. `resnetlab.training.session` drives
a whole run (start or resume, epochs, evaluation, checkpoints, summary).

Everything that decides a run's numbers is a function of the config and the iteration: the data order and
augmentation (seed, epoch, batch), the stochastic-depth gates (seed, iteration), the learning rate (iteration
and the warm-up state). A checkpoint stores the rest (weights, optimizer, warm-up, global RNGs), so a resumed
run in deterministic mode ends with the same bits as an uninterrupted one.
"""

from __future__ import annotations

import math
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from resnetlab.config import Config, ConfigError, to_dict
from resnetlab.data.datasets import DataBundle, build_data
from resnetlab.errors import ResnetlabError
from resnetlab.layers.stochastic_depth import set_gate_generator
from resnetlab.schedules import ErrorThresholdWarmup, LRSchedule, epochs_to_iterations
from resnetlab.training.checkpoint import capture_rng_state, restore_rng_state
from resnetlab.training.distributed import SINGLE, Distributed, check_global_batch, wrap_for_training
from resnetlab.training.performance import memory_format, prepare_forward, should_compile, tune_allocator
from resnetlab.training.precision import PrecisionChoice, resolve_precision
from resnetlab.training.step import TrainStep, make_optimizer

CHECKPOINT_FORMAT = 2  # 2: the warm-up state is its own entry ("warmup"); 1 kept it in "train_state"


class TrainingDiverged(ResnetlabError, RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 3


class TrainingInterrupted(ResnetlabError, RuntimeError):
    """Stopped by a signal (or a test); a checkpoint at the exact position was written."""

    exit_code = 130


@dataclass
class TrainState:
    """The position and bookkeeping of a run, saved in every checkpoint."""

    epoch: int = 0  # the epoch in progress (0-based)
    batch: int = 0  # the next batch of that epoch
    iteration: int = 0  # optimizer steps done
    epoch_seen: int = 0  # images, summed loss, misclassified images and seconds of the epoch in progress,
    epoch_loss_sum: float = 0.0  # kept here so an epoch interrupted and resumed reports the same numbers
    epoch_wrong: int = 0
    epoch_seconds: float = 0.0  # training time only: data and steps, not probes, evaluation or the progress bar
    best_val_error: float | None = None
    best_epoch: int | None = None
    test_error_at_best_val: float | None = None


@dataclass
class Run:
    """What `build_run` assembles from a config."""

    config: Config
    data: DataBundle
    model: torch.nn.Module  # the network itself (its state_dict is the checkpoint's)
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    total_iterations: int
    device: torch.device
    step: TrainStep  # the model (DDP-wrapped, compiled) trained on one batch
    precision: PrecisionChoice = PrecisionChoice("fp32", "fp32", "set in the config")
    warmup: ErrorThresholdWarmup | None = None  # the error-threshold warm-up's state, when the schedule has one
    state: TrainState = field(default_factory=TrainState)
    distributed: Distributed = SINGLE  # this process's rank among the data-parallel processes

    @property
    def memory_format(self) -> torch.memory_format:
        return self.step.memory_format


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic)


def make_schedule(config: Config, iterations_per_epoch: int, total_iterations: int) -> LRSchedule:
    """The config's schedule in iterations (milestones given in epochs are converted)."""
    schedule, warmup = config.train.schedule, config.train.schedule.warmup
    milestones = tuple(schedule.milestones)
    if schedule.unit == "epochs":
        milestones = epochs_to_iterations(milestones, iterations_per_epoch)
    milestones = tuple(m for m in milestones if m < total_iterations)  # a short run ends before late steps
    return LRSchedule(name=schedule.name, base_lr=config.train.lr, milestones=milestones, gamma=schedule.gamma,
                      total_steps=total_iterations, warmup=warmup.kind, warmup_steps=warmup.steps,
                      warmup_lr=warmup.lr, warmup_threshold=warmup.threshold)


def build_run(config: Config, device: str | torch.device = "cpu", log: Callable[[str], None] = print,
              distributed: Distributed = SINGLE) -> Run:
    """Data, model, optimizer, schedule and training step of a config; under torchrun (``distributed``) this
    rank's shard of the data and the model wrapped in DistributedDataParallel (with BN over the global batch if
    ``model.sync_bn``)."""
    seed_everything(config.train.seed, config.train.deterministic)  # the same on every rank: the same init
    if config.train.tune_allocator:
        tune_allocator()
    device = torch.device(device)
    if distributed.enabled:
        check_global_batch(config.train.batch_size, distributed)
    data = build_data(config.data, config.train.seed, config.train.batch_size, device, shard=distributed.shard())
    if config.model.num_classes is not None and config.model.num_classes < len(data.classes):
        raise ConfigError(f"model.num_classes={config.model.num_classes} is fewer than the {len(data.classes)} classes "
                          f"of {config.data.name}; remove it (the data set's count is the default) or raise it")
    model = config.model.build(len(data.classes)).to(device)
    gates = torch.Generator()  # CPU: the gates are decided on the host, no device sync
    set_gate_generator(model, gates)
    total = config.train.iterations or config.train.epochs * data.train.num_batches
    # The memory format is set before DDP wraps the model: DDP's gradient buckets follow the parameters' strides.
    model.to(memory_format=memory_format(config.train.channels_last))
    trained = wrap_for_training(model, distributed, device, config.model.sync_bn)
    model = getattr(trained, "module", trained)  # sync_bn replaced the BN layers inside it
    forward = prepare_forward(trained, channels_last=config.train.channels_last,
                              compile=should_compile(config.train.compile, total, model), log=log)
    optimizer = make_optimizer(model, config.train)
    schedule = make_schedule(config, data.train.num_batches, total)
    precision = resolve_precision(config.train.precision, device)
    step = TrainStep(forward, optimizer, memory_format(config.train.channels_last), device.type,
                     precision.precision, gates, config.train.seed, config.train.label_smoothing)
    return Run(config, data, model, optimizer, schedule, total, device, step, precision,
               schedule.make_error_warmup(), distributed=distributed)


class StopFlag:
    """Set by SIGINT/SIGTERM so the current step finishes and a checkpoint is written at the exact position."""

    def __init__(self) -> None:
        self.raised: str | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave the default handling
                pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.raised is not None:  # a second signal: stop at once
            raise KeyboardInterrupt
        self.raised = signal.Signals(signum).name

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@dataclass
class StepResult:
    """One iteration's numbers, summed over the ranks."""

    loss_sum: float  # summed over the global batch
    wrong: int  # misclassified images of the global batch
    images: int
    stop_requested: bool  # a stop signal reached some rank

    @property
    def loss(self) -> float:
        return self.loss_sum / self.images


def train_step(run: Run, images: torch.Tensor, labels: torch.Tensor, stop: StopFlag) -> StepResult:
    """One iteration at the schedule's learning rate, refusing a non-finite loss before the update."""
    state = run.state
    lr = run.schedule.lr(state.iteration, run.warmup.warmup_done_at if run.warmup is not None else None)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    result: list[StepResult] = []

    def inspect(loss: torch.Tensor, logits: torch.Tensor) -> None:
        wrong = int((logits.detach().argmax(1) != labels).sum())
        # Summed over ranks (one small all-reduce), so that the NaN check, the warm-up rule and a stop request
        # act at the same step on every rank; in one process these are the batch's own numbers.
        loss_sum, wrong, count, votes = run.distributed.sum(
            [loss.item() * len(labels), wrong, len(labels), float(stop.raised is not None)])
        mean = loss_sum / count
        if not math.isfinite(mean):
            raise TrainingDiverged(f"loss became {mean} at iteration {state.iteration} (epoch {state.epoch + 1}, "
                                   f"lr {lr:g}); the last good checkpoint is kept: lower train.lr or add a warm-up")
        result.append(StepResult(loss_sum, int(wrong), int(count), bool(votes)))

    run.step(state.iteration, images, labels, inspect)
    return result[0]


def record_step(run: Run, result: StepResult) -> None:
    """Count the step in the epoch's totals and the warm-up's window, and advance the position."""
    state = run.state
    state.epoch_seen += result.images
    state.epoch_loss_sum += result.loss_sum
    state.epoch_wrong += result.wrong
    if run.warmup is not None:
        run.warmup.observe(state.iteration, result.wrong / result.images)
    state.iteration += 1
    state.batch += 1


def train_one_epoch(run: Run, stop: StopFlag, on_step=None, stop_at_iteration: int | None = None) -> dict:
    """Train from the state's (epoch, batch) to the epoch's end, the run's last iteration, or a stop request
    (`TrainingInterrupted`). ``on_step(state, loss, batch_error)`` runs after each step, off the epoch's clock."""
    state = run.state
    run.model.train()
    clock = time.perf_counter()
    for images, labels in run.data.train.batches(state.epoch, state.batch):
        result = train_step(run, images, labels, stop)
        record_step(run, result)
        state.epoch_seconds += time.perf_counter() - clock
        if on_step is not None:
            on_step(state, result.loss, result.wrong / result.images)
        clock = time.perf_counter()
        if state.iteration >= run.total_iterations:
            break
        if result.stop_requested or (stop_at_iteration is not None and state.iteration >= stop_at_iteration):
            raise TrainingInterrupted(stop.raised or ("stopped on another rank" if result.stop_requested else
                                                      f"stop_at_iteration={stop_at_iteration}"))
    seen = max(state.epoch_seen, 1)
    return {"train_loss": state.epoch_loss_sum / seen, "train_error": state.epoch_wrong / seen,
            "images_per_second": state.epoch_seen / state.epoch_seconds if state.epoch_seconds > 0 else None,
            "epoch_seconds": state.epoch_seconds, "lr": run.optimizer.param_groups[0]["lr"]}


def start_next_epoch(state: TrainState) -> None:
    state.epoch, state.batch = state.epoch + 1, 0
    state.epoch_seen, state.epoch_loss_sum, state.epoch_wrong, state.epoch_seconds = 0, 0.0, 0, 0.0


def checkpoint_state(run: Run) -> dict:
    """Everything a bitwise resume needs, as tensors and plain data only."""
    return {
        "format": CHECKPOINT_FORMAT,
        "config": to_dict(run.config),
        "world_size": run.distributed.world_size,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "train_state": dict(vars(run.state)),
        "warmup": run.warmup.state_dict() if run.warmup is not None else None,
        "precision": run.precision.to_dict(),
        "rng": capture_rng_state(),
        "normalizer": run.data.normalizer.state_dict(),
        "classes": list(run.data.classes),
        "image_size": run.data.image_size,
        "eval_resize": run.data.eval_resize,
    }


def restore(run: Run, checkpoint: dict) -> None:
    run.model.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    train_state = dict(checkpoint["train_state"])
    # Format 1 kept the warm-up's state in the train state.
    legacy_warmup = {key: train_state.pop(key) for key in ("warmup_done_at", "recent_errors") if key in train_state}
    run.state = TrainState(**train_state)
    if run.warmup is not None:
        saved = checkpoint.get("warmup") or {**run.warmup.state_dict(), **legacy_warmup}
        run.warmup.load_state_dict(saved)
    restore_rng_state(checkpoint["rng"])
