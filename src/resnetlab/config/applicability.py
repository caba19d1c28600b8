"""When each config key has an effect: no setting is silently ignored.

Every leaf key of the config is in exactly one of two tables. `ALWAYS` keys act in every set-up. `INERT_WHEN`
keys act only in some: each maps to a rule that returns why the key has no effect in a given config (None when
it has one). A key given a value other than its default where its rule finds it inert is refused in one line
that names it, says why, and says what to do (`check_applicable`). A value equal to the default counts as not
given: the defaults are what every config carries.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from resnetlab.config.schema import Config, ConfigError

Rule = Callable[[Config], "str | None"]

ALWAYS = frozenset({
    "model.name", "model.num_classes", "model.options", "model.checkpoint_segments", "model.weights",
    "data.name", "data.validation_size", "data.augment", "data.normalization",
    "train.iterations", "train.epochs", "train.batch_size", "train.lr", "train.momentum", "train.weight_decay",
    "train.label_smoothing", "train.freeze", "train.backbone_lr_scale", "train.schedule.name",
    "train.schedule.unit", "train.schedule.warmup.kind", "train.seed", "train.deterministic", "train.eval_every",
    "train.checkpoint_every", "train.checkpoint_every_minutes", "train.checkpoint_every_iterations",
    "train.keep_checkpoints", "train.channels_last", "train.compile", "train.precision", "train.tune_allocator",
    "run.out_dir", "run.name", "paper",
    # sync_bn acts under torchrun only, which a config cannot know; split_seed seeds the hold-out, a folder's
    # test split and the synthetic images alike.
    "model.sync_bn", "data.split_seed",
})


def _unless_data(*names: str) -> Rule:
    def rule(config: Config) -> str | None:
        return None if config.data.name in names else f"data.name={config.data.name} does not read it"
    return rule


def _streamed_only(config: Config) -> str | None:
    if config.data.name != "folder":
        return f"it applies to streamed image folders, not data.name={config.data.name}"
    return "data.loader=memory decodes the images once and never streams them" if config.data.loader == "memory" \
        else None


def _in_memory_folder_only(config: Config) -> str | None:
    if config.data.name != "folder":
        return f"it applies to image folders, not data.name={config.data.name}"
    return "streamed images are cropped to data.crop instead" if config.data.loader == "stream" else None


def _step_schedule_only(config: Config) -> str | None:
    name = config.train.schedule.name
    return None if name == "step" else f"train.schedule.name={name} has no steps (set train.schedule.milestones=[])"


def _warmup(*kinds: str) -> Rule:
    def rule(config: Config) -> str | None:
        kind = config.train.schedule.warmup.kind
        return None if kind in kinds else f"train.schedule.warmup.kind={kind} does not use it"
    return rule


def _with_momentum(config: Config) -> str | None:
    return "Nesterov momentum needs train.momentum > 0" if config.train.momentum == 0 else None


INERT_WHEN: dict[str, Rule] = {
    "data.root": _unless_data("cifar10", "cifar100", "folder"),
    "data.download": _unless_data("cifar10", "cifar100"),
    "data.skip_bad": _unless_data("folder"),
    "data.loader": _unless_data("folder"),
    "data.image_size": _in_memory_folder_only,
    "data.crop": _streamed_only,
    "data.scale": _streamed_only,
    "data.eval_resize": _streamed_only,
    "data.ten_crop": _streamed_only,
    "data.lighting": _streamed_only,
    "data.eval_crop": _streamed_only,
    "data.num_workers": _streamed_only,
    "data.synthetic_train_size": _unless_data("synthetic"),
    "data.synthetic_test_size": _unless_data("synthetic"),
    "train.schedule.milestones": _step_schedule_only,
    "train.schedule.gamma": _step_schedule_only,
    "train.schedule.warmup.steps": _warmup("linear", "constant", "error_threshold"),
    "train.schedule.warmup.lr": _warmup("linear", "constant", "error_threshold"),
    "train.schedule.warmup.threshold": _warmup("error_threshold"),
    "train.schedule.warmup.min_steps": _warmup("error_threshold"),
    "train.nesterov": _with_momentum,
}


def leaf_values(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> value for every leaf of a config (a model's options and the paper section are leaves)."""
    if not dataclasses.is_dataclass(value):
        return {prefix: value}
    leaves = {}
    for field in dataclasses.fields(value):
        key = f"{prefix}.{field.name}" if prefix else field.name
        leaves.update(leaf_values(getattr(value, field.name), key))
    return leaves


def check_applicable(config: Config) -> None:
    """`ConfigError` for the first key given a non-default value where it has no effect."""
    given, defaults = leaf_values(config), leaf_values(Config())
    for key, rule in INERT_WHEN.items():
        if given[key] == defaults[key] or given[key] in (None, (), []):  # not given (an empty list sets nothing)
            continue
        reason = rule(config)
        if reason is not None:
            raise ConfigError(f"{key}={given[key]!r} has no effect here: {reason}; remove it")
