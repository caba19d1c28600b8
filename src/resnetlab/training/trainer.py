"""Training as small named functions: `build_run`, `train_one_epoch`, `evaluate`, and `train` tying them.

Everything that decides a run's numbers is a function of the config and the iteration: the data order and
augmentation (seed, epoch, batch), the stochastic-depth gates (seed, iteration), the learning rate (iteration
and the warm-up state). A checkpoint stores the rest (weights, optimizer, global RNGs), so a resumed run in
deterministic mode ends with the same bits as an uninterrupted one.
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
import torch.nn.functional as F

from resnetlab.config import Config, model_options, to_dict
from resnetlab.data.datasets import DataBundle, build_data
from resnetlab.data.seeding import torch_seed
from resnetlab.layers.stochastic_depth import set_gate_generator
from resnetlab.models import create_model
from resnetlab.training.checkpoint import capture_rng_state, restore_rng_state
from resnetlab.training.distributed import SINGLE, Distributed, check_global_batch, wrap_for_training
from resnetlab.training.performance import memory_format, prepare_forward, should_compile, tune_allocator
from resnetlab.training.schedules import LRSchedule, epochs_to_iterations

WARMUP_ERROR_WINDOW = 50  # iterations averaged when the paper's warm-up rule checks the training error
GATE_STREAM = 2  # tags the stochastic-depth gate stream among the seed-derived generators


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(RuntimeError):
    """Stopped by a signal (or a test); a checkpoint at the exact position was written."""


@dataclass
class TrainState:
    """The position and bookkeeping of a run, saved in every checkpoint."""

    epoch: int = 0  # the epoch in progress (0-based)
    batch: int = 0  # the next batch of that epoch
    iteration: int = 0  # optimizer steps done
    warmup_done_at: int | None = None  # iteration where the error-threshold warm-up ended
    recent_errors: list = field(default_factory=list)  # training error of the last WARMUP_ERROR_WINDOW steps
    epoch_seen: int = 0  # images, summed loss, misclassified images and seconds of the epoch in progress,
    epoch_loss_sum: float = 0.0  # kept here so an epoch interrupted and resumed reports the same numbers
    epoch_wrong: int = 0
    epoch_seconds: float = 0.0
    best_val_error: float | None = None
    best_epoch: int | None = None
    test_error_at_best_val: float | None = None


@dataclass
class Run:
    """What `build_run` assembles from a config."""

    config: Config
    data: DataBundle
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    total_iterations: int
    device: torch.device
    gate_generator: torch.Generator
    forward: Callable[[torch.Tensor], torch.Tensor]  # the model (DDP-wrapped, compiled) for training steps
    memory_format: torch.memory_format  # of the model's activations; input batches are put in it
    state: TrainState = field(default_factory=TrainState)
    distributed: Distributed = SINGLE  # this process's rank among the data-parallel processes

    @property
    def autocast(self) -> torch.autocast:
        enabled = self.config.train.precision == "bf16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)


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
    """Data, model, optimizer and schedule of a config; under torchrun (``distributed``) this rank's shard of
    the data and the model wrapped in DistributedDataParallel (with BN over the global batch if ``model.sync_bn``)."""
    seed_everything(config.train.seed, config.train.deterministic)  # the same on every rank: the same init
    if config.train.tune_allocator:
        tune_allocator()
    device = torch.device(device)
    if distributed.enabled:
        check_global_batch(config.train.batch_size, distributed)
    data = build_data(config.data, config.train.seed, config.train.batch_size, device, shard=distributed.shard())
    num_classes = config.model.num_classes or len(data.classes)
    model = create_model(config.model.name, num_classes=num_classes, **model_options(config.model)).to(device)
    gate_generator = torch.Generator()  # CPU: the gates are decided on the host, no device sync
    set_gate_generator(model, gate_generator)
    total = config.train.iterations or config.train.epochs * data.train.num_batches
    # The memory format is set before DDP wraps the model: DDP's gradient buckets follow the parameters' strides.
    model.to(memory_format=memory_format(config.train.channels_last))
    trained = wrap_for_training(model, distributed, device, config.model.sync_bn)
    model = getattr(trained, "module", trained)  # sync_bn replaced the BN layers inside it
    forward = prepare_forward(trained, channels_last=config.train.channels_last,
                              compile=should_compile(config.train.compile, total, model), log=log)
    # foreach: one kernel per operation over all parameters instead of one per parameter (fewer launches).
    optimizer = torch.optim.SGD(model.parameters(), lr=config.train.lr, momentum=config.train.momentum,
                                nesterov=config.train.nesterov, weight_decay=config.train.weight_decay, foreach=True)
    schedule = make_schedule(config, data.train.num_batches, total)
    return Run(config, data, model, optimizer, schedule, total, device, gate_generator, forward,
               memory_format(config.train.channels_last), distributed=distributed)


def top_k_errors(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...]) -> list[int]:
    """Number of samples whose label is not among the top-k logits, for each k."""
    top = logits.topk(max(ks), dim=1).indices
    hits = top == labels[:, None]
    return [int((~hits[:, :k].any(1)).sum()) for k in ks]


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches, num_classes: int,
             memory_format: torch.memory_format = torch.contiguous_format,
             distributed: Distributed = SINGLE) -> dict | None:
    """Loss, top-1 and (for more than 10 classes) top-5 error over a split; None for an empty split.

    ``distributed``: ``batches`` are this rank's shard of the split; the counts are summed over the ranks."""
    model.eval()
    ks = (1, 5) if num_classes > 10 else (1,)
    total, loss_sum, errors = 0, 0.0, [0] * len(ks)
    for images, labels in batches:
        if images.ndim == 4:
            images = images.contiguous(memory_format=memory_format)
        if images.ndim == 5:  # multi-crop testing: average the scores of the crops (He et al. 2015, 10-crop)
            logits = model(images.flatten(0, 1)).view(images.shape[0], images.shape[1], -1).mean(1)
        else:
            logits = model(images)
        loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
        errors = [e + n for e, n in zip(errors, top_k_errors(logits, labels, ks))]
        total += len(labels)
    total, loss_sum, *errors = distributed.sum([total, loss_sum, *errors])
    if total == 0:
        return None
    result = {"loss": loss_sum / total, "error": errors[0] / total}
    if len(ks) > 1:
        result["top5_error"] = errors[1] / total
    return result


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


def train_one_epoch(run: Run, stop: StopFlag, on_step=None, stop_at_iteration: int | None = None) -> dict:
    """Train from the state's (epoch, batch) to the epoch's end, the run's last iteration, or a stop request."""
    model, optimizer, state, config = run.model, run.optimizer, run.state, run.config
    model.train()
    warmup = run.schedule.make_error_warmup()
    if warmup is not None:
        warmup.warmup_done_at = state.warmup_done_at
    started = time.perf_counter()
    for images, labels in run.data.train.batches(state.epoch, state.batch):
        lr = run.schedule.lr(state.iteration, state.warmup_done_at if warmup is not None else None)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # The same gates on every rank: a pure function of (seed, iteration).
        run.gate_generator.manual_seed(torch_seed(config.train.seed, state.iteration, GATE_STREAM))
        with run.autocast:
            logits = run.forward(images.contiguous(memory_format=run.memory_format))
        loss = F.cross_entropy(logits.float(), labels)
        wrong = int((logits.detach().argmax(1) != labels).sum())
        # Summed over ranks (one small all-reduce), so that the NaN check, the warm-up rule and a stop request
        # act at the same step on every rank; in one process these are the batch's own numbers.
        loss_sum, batch_wrong, batch_images, stop_votes = run.distributed.sum(
            [loss.item() * len(labels), wrong, len(labels), float(stop.raised is not None)])
        batch_wrong, batch_images = int(batch_wrong), int(batch_images)
        loss_value = loss_sum / batch_images
        if not math.isfinite(loss_value):
            raise TrainingDiverged(f"loss became {loss_value} at iteration {state.iteration} (epoch {state.epoch + 1}, "
                                   f"lr {lr:g}); the last good checkpoint is kept: lower train.lr or add a warm-up")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        state.epoch_seen += batch_images
        state.epoch_loss_sum += loss_sum
        state.epoch_wrong += batch_wrong
        state.recent_errors = (state.recent_errors + [batch_wrong / batch_images])[-WARMUP_ERROR_WINDOW:]
        if warmup is not None and state.warmup_done_at is None:
            state.warmup_done_at = warmup.update(state.iteration, sum(state.recent_errors) / len(state.recent_errors))
        state.iteration += 1
        state.batch += 1
        if on_step is not None:
            on_step(state, loss_value, batch_wrong / batch_images)
        if state.iteration >= run.total_iterations:
            break
        if stop_votes or (stop_at_iteration is not None and state.iteration >= stop_at_iteration):
            state.epoch_seconds += time.perf_counter() - started
            raise TrainingInterrupted(stop.raised or ("stopped on another rank" if stop_votes else
                                                      f"stop_at_iteration={stop_at_iteration}"))
    state.epoch_seconds += time.perf_counter() - started
    seen = max(state.epoch_seen, 1)
    return {"train_loss": state.epoch_loss_sum / seen, "train_error": state.epoch_wrong / seen,
            "images_per_second": state.epoch_seen / state.epoch_seconds if state.epoch_seconds > 0 else None,
            "epoch_seconds": state.epoch_seconds, "lr": optimizer.param_groups[0]["lr"]}


def start_next_epoch(state: TrainState) -> None:
    state.epoch, state.batch = state.epoch + 1, 0
    state.epoch_seen, state.epoch_loss_sum, state.epoch_wrong, state.epoch_seconds = 0, 0.0, 0, 0.0


def checkpoint_state(run: Run) -> dict:
    """Everything a bitwise resume needs, as tensors and plain data only."""
    return {
        "format": 1,
        "config": to_dict(run.config),
        "world_size": run.distributed.world_size,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "train_state": dict(vars(run.state)),
        "rng": capture_rng_state(),
        "normalizer": run.data.normalizer.state_dict(),
        "classes": list(run.data.classes),
        "image_size": run.data.image_size,
        "eval_resize": run.data.eval_resize,
    }


def restore(run: Run, checkpoint: dict) -> None:
    run.model.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.state = TrainState(**checkpoint["train_state"])
    restore_rng_state(checkpoint["rng"])
