"""Checks of a config beyond the types of its values: choices, signs, combinations, the schedule's and the
model's own rules (each asked of the module that owns it, so a value is accepted or refused in one place)."""

from __future__ import annotations

import math
from typing import Any

import torch

from resnetlab.config.applicability import check_applicable
from resnetlab.config.schema import FREEZE_CHOICES, Config, ConfigError, ModelConfig, ScheduleConfig
from resnetlab.models import get_model_spec
from resnetlab.schedules import check_main_settings, check_warmup_floor, check_warmup_settings

CHOICES = {
    "data.name": ("synthetic", "cifar10", "cifar100", "folder"),
    "data.normalization": ("auto", "per_pixel_mean", "per_channel"),
    "train.freeze": FREEZE_CHOICES,
    "data.loader": ("auto", "memory", "stream"),
    "train.schedule.unit": ("iterations", "epochs"),
    "train.precision": ("auto", "fp32", "bf16"),
}
POSITIVE = ("train.batch_size", "train.lr", "train.eval_every", "train.checkpoint_every", "train.keep_checkpoints",
            "train.iterations",
            "train.epochs", "data.image_size", "data.synthetic_train_size", "data.synthetic_test_size", "data.crop",
            "data.eval_resize", "data.eval_crop")
NON_NEGATIVE = ("train.momentum", "train.weight_decay", "data.validation_size", "data.num_workers", "data.lighting",
                "model.checkpoint_segments", "train.checkpoint_every_minutes", "train.checkpoint_every_iterations")


def _get(config: Config, key: str) -> Any:
    value = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def validate(config: Config) -> Config:
    """Check values beyond their types: choices, signs, combinations, and the model's own options."""
    for key, allowed in CHOICES.items():
        if _get(config, key) not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got {_get(config, key)!r}")
    for key in POSITIVE:
        value = _get(config, key)
        if value is not None and value <= 0:
            raise ConfigError(f"{key} must be positive, got {value}")
    for key in NON_NEGATIVE:
        if _get(config, key) < 0:
            raise ConfigError(f"{key} must be >= 0, got {_get(config, key)}")
    train = config.train
    if (train.iterations is None) == (train.epochs is None):
        raise ConfigError("set exactly one of train.iterations and train.epochs (the other to null)")
    _validate_schedule(train.schedule)
    if not 0.0 <= train.label_smoothing < 1.0:
        raise ConfigError(f"train.label_smoothing must be in [0, 1), got {train.label_smoothing}")
    if not (math.isfinite(train.backbone_lr_scale) and 0.0 < train.backbone_lr_scale):
        raise ConfigError(f"train.backbone_lr_scale must be a fraction of train.lr > 0, got {train.backbone_lr_scale} "
                          "(freeze the backbone with train.freeze=all-but-head instead of a scale of 0)")
    if train.freeze == "all-but-head" and train.backbone_lr_scale != 1.0:
        raise ConfigError("train.backbone_lr_scale has no effect with train.freeze=all-but-head (only the classifier "
                          "trains); remove one of them")
    data = config.data
    if len(data.scale) != 2 or not data.crop <= data.scale[0] <= data.scale[1]:
        raise ConfigError(f"data.scale must be [min, max] with data.crop <= min <= max, got {list(data.scale)}")
    eval_crop = data.eval_crop or data.crop
    if eval_crop > data.eval_resize:
        raise ConfigError(f"the evaluation crop ({eval_crop} px, data.eval_crop or data.crop) must not exceed "
                          f"data.eval_resize ({data.eval_resize})")
    if data.loader == "stream" and data.name != "folder":
        raise ConfigError("data.loader=stream applies to image folders (data.name=folder)")
    if data.loader == "stream" and data.normalization == "per_pixel_mean":
        raise ConfigError("data.normalization=per_pixel_mean needs images of one size in memory; streamed images are "
                          "normalized per channel: set data.normalization=per_channel (or auto)")
    check_applicable(config)
    _validate_model(config.model)
    return config


def _validate_schedule(schedule: ScheduleConfig) -> None:
    """The schedule module's own rules (`LRSchedule` applies the same ones), named by their config keys."""
    warmup, key = schedule.warmup, "train.schedule"
    try:
        check_main_settings(schedule.name, schedule.milestones, schedule.gamma,
                            names=(f"{key}.name", f"{key}.milestones", f"{key}.gamma"))
        check_warmup_settings(warmup.kind, warmup.steps, warmup.lr, warmup.threshold,
                              names=tuple(f"{key}.warmup.{field}" for field in ("kind", "steps", "lr", "threshold")))
        check_warmup_floor(warmup.kind, warmup.min_steps, warmup.steps, f"{key}.warmup.min_steps",
                           f"{key}.warmup.steps")
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _validate_model(model: ModelConfig) -> None:
    """Build the network on the ``meta`` device (shapes only, no memory): the model's own checks."""
    try:
        get_model_spec(model.name)
        with torch.device("meta"):
            model.build()
    except ConfigError:
        raise
    except (ValueError, TypeError) as error:
        raise ConfigError(f"model: {error}") from None
