"""A run's parts: `build_run` assembles data, model, optimizer, schedule and the training step from a config,
and `checkpoint_state`/`restore` save and load everything it is. `resnetlab.training.epoch` runs one epoch;
`resnetlab.training.session` drives a whole run (start or resume, epochs, evaluation, checkpoints, summary).

Everything that decides a run's numbers is a function of the config and the iteration: the data order and
augmentation (seed, epoch, batch), the stochastic-depth gates (seed, iteration), the learning rate (iteration
and the warm-up state). A checkpoint stores the rest (weights, optimizer, warm-up, global RNGs), so a resumed
run in deterministic mode ends with the same bits as an uninterrupted one.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from resnetlab.config import Config, ConfigError, to_dict
from resnetlab.data.augment import Normalizer
from resnetlab.data.datasets import DataBundle, build_data
from resnetlab.deploy.initial_weights import check_normalizer_fits, load_initial_weights, open_initial_weights
from resnetlab.errors import ResnetlabError
from resnetlab.layers.stochastic_depth import set_gate_generator
from resnetlab.schedules import LRSchedule, epochs_to_iterations
from resnetlab.training.checkpoint import capture_rng_state, restore_rng_state
from resnetlab.training.distributed import SINGLE, Distributed, check_global_batch, wrap_for_training
from resnetlab.training.finetune import freeze, frozen_modules
from resnetlab.training.performance import memory_format, prepare_forward, should_compile, tune_allocator
from resnetlab.training.precision import PRECISION_OPTION, PrecisionChoice, resolve_precision
from resnetlab.training.step import TrainStep, make_optimizer
from resnetlab.training.warmup import ErrorThresholdWarmup, make_error_warmup

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
    frozen: list = field(default_factory=list)  # modules train.freeze keeps fixed (eval mode while training)

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
                      warmup_lr=warmup.lr, warmup_threshold=warmup.threshold, warmup_min_steps=warmup.min_steps)


def build_run(config: Config, device: str | torch.device = "cpu", log: Callable[[str], None] = print,
              distributed: Distributed = SINGLE, resuming: Normalizer | None = None,
              precision: str | None = None) -> Run:
    """Data, model, optimizer, schedule and training step of a config; under torchrun (``distributed``) this
    rank's shard of the data and the model wrapped in DistributedDataParallel (with BN over the global batch if
    ``model.sync_bn``). A new run starts from ``model.weights`` when set; ``resuming``: the checkpoint's
    normalizer (its weights come from the checkpoint, so ``model.weights`` is not read again); ``precision``:
    the arithmetic of this process in place of ``train.precision`` (`PRECISION_OPTION`)."""
    seed_everything(config.train.seed, config.train.deterministic)  # the same on every rank: the same init
    if config.train.tune_allocator:
        tune_allocator()
    device = torch.device(device)
    if distributed.enabled:
        check_global_batch(config.train.batch_size, distributed)
    initial = open_initial_weights(config.model.weights) if config.model.weights and resuming is None else None
    normalizer = resuming or (initial.normalizer if initial is not None and config.data.normalization == "auto"
                              else None)
    data = build_data(config.data, config.train.seed, config.train.batch_size, device, normalizer,
                      shard=distributed.shard())
    check_normalizer_fits(data.normalizer, data.image_size)
    if config.model.num_classes is not None and config.model.num_classes < len(data.classes):
        raise ConfigError(f"model.num_classes={config.model.num_classes} is fewer than the {len(data.classes)} classes "
                          f"of {config.data.name}; remove it (the data set's count is the default) or raise it")
    model = config.model.build(len(data.classes))
    if initial is not None:
        load_initial_weights(model, initial, log, classes=list(data.classes))
    freeze(model, config.train.freeze)  # before DDP wraps it: DDP only tracks parameters that need gradients
    model.to(device)
    gates = torch.Generator()  # CPU: the gates are decided on the host, no device sync
    set_gate_generator(model, gates)
    total = config.train.iterations or config.train.epochs * data.train.num_batches
    # The memory format is set before DDP wraps the model: DDP's gradient buckets follow the parameters' strides.
    model.to(memory_format=memory_format(config.train.channels_last))
    trained = wrap_for_training(model, distributed, device, config.model.sync_bn)
    model = getattr(trained, "module", trained)  # sync_bn replaced the BN layers inside it
    frozen = frozen_modules(model, config.train.freeze)  # the modules as they are now (eval mode in training)
    forward = prepare_forward(trained, channels_last=config.train.channels_last,
                              compile=should_compile(config.train.compile, total, model), log=log)
    optimizer = make_optimizer(model, config.train)
    schedule = make_schedule(config, data.train.num_batches, total)
    chosen = (resolve_precision(config.train.precision, device) if precision is None
              else resolve_precision(precision, device, source=PRECISION_OPTION))
    step = TrainStep(forward, optimizer, memory_format(config.train.channels_last), device.type,
                     chosen.precision, gates, config.train.seed, config.train.label_smoothing)
    return Run(config, data, model, optimizer, schedule, total, device, step, chosen,
               make_error_warmup(schedule), distributed=distributed, frozen=frozen)


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
