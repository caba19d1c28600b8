"""One validated configuration per run: YAML recipe files, ``key=value`` overrides, saved with every run.

A config is a tree of frozen dataclasses. `load_config` reads a recipe, applies overrides and validates the
whole tree; every problem is one `ConfigError` line naming the key and what is allowed. The model section
is open: besides ``name`` it takes the options of that model (`resnetlab.create_model`), checked by
building the model on the ``meta`` device, which costs no memory.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A bad key or value in a config; the message names it and what is allowed."""


@dataclass(frozen=True)
class ModelConfig:
    name: str = "resnet20"  # a name from `resnetlab models`
    num_classes: int | None = None  # None: the data set's number of classes
    options: dict = field(default_factory=dict)  # create_model options: shortcut, stochastic_depth, ...
    checkpoint_segments: int = 0  # activation checkpointing: recompute the units in this many segments (0: off)
    # Under torchrun: BN statistics over the global batch (torch's SyncBatchNorm on GPUs, AllReduceBatchNorm on CPU).
    sync_bn: bool = False


@dataclass(frozen=True)
class DataConfig:
    name: str = "synthetic"  # synthetic | cifar10 | cifar100 | folder
    root: str = "data"  # where cifar10/cifar100 live or are downloaded; the image folder for `folder`
    download: bool = False  # fetch CIFAR from its official address when missing (checksum verified)
    validation_size: int = 5000  # held out from the training split (the papers' 45k/5k), seeded
    split_seed: int = 0
    normalization: str = "per_pixel_mean"  # per_pixel_mean (the ResNet paper) | per_channel
    augment: bool = True  # pad 4 px, random 32x32 crop, horizontal flip
    skip_bad: bool = False  # skip unreadable images (counted and reported) instead of stopping
    image_size: int | None = None  # resize small image folders to this side (px); None keeps the files' size
    loader: str = "auto"  # memory (decode once, cache; <= 64 px) | stream (workers, ImageNet recipe) | auto
    crop: int = 224  # streamed images: the square crop fed to the model (px)
    scale: tuple[int, ...] = (256, 480)  # streamed training images: shorter side drawn in this range (px)
    eval_resize: int = 256  # streamed evaluation: shorter side before the centre crop (px)
    ten_crop: bool = False  # streamed evaluation: average the 10 crops (He et al. 2015, Table 3)
    num_workers: int = 2  # decoding processes for streamed images
    synthetic_train_size: int = 10000
    synthetic_test_size: int = 2000


@dataclass(frozen=True)
class WarmupConfig:
    kind: str = "none"  # none | linear | constant | error_threshold (the paper's rule for ResNet-110/1202)
    steps: int = 0  # iterations of a linear/constant warm-up; a cap for error_threshold (0: no cap)
    lr: float = 0.01  # the warm-up learning rate (start of a linear ramp)
    threshold: float = 0.8  # error_threshold: warm up until the training error falls below this


@dataclass(frozen=True)
class ScheduleConfig:
    name: str = "step"  # step | cosine | constant
    milestones: tuple[int, ...] = (32000, 48000)  # in `unit`s; the ResNet paper's CIFAR recipe
    unit: str = "iterations"  # iterations | epochs (milestones and TrainConfig.epochs/iterations)
    gamma: float = 0.1
    warmup: WarmupConfig = field(default_factory=WarmupConfig)


@dataclass(frozen=True)
class TrainConfig:
    iterations: int | None = 64000  # stop after this many iterations (the ResNet paper), or
    epochs: int | None = None  # after this many epochs (set one of the two)
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    seed: int = 0
    deterministic: bool = False  # bitwise reproducible on CPU (slower kernels), needed for exact resume
    eval_every: int = 1  # epochs between validation/test evaluations
    checkpoint_every: int = 1  # epochs between checkpoints (also written at the end and on interruption)
    channels_last: bool = True  # NHWC activations: oneDNN's fast convolution layout on CPU, tensor cores' on GPU
    compile: bool | None = None  # torch.compile the training step (eager on failure); null: when iterations >= 1000
    precision: str = "fp32"  # fp32 | bf16 (autocast; for GPUs: CPUs without bf16 units run it far slower)
    tune_allocator: bool = True  # keep freed activation buffers in glibc's heap instead of returning them to the OS


@dataclass(frozen=True)
class RunConfig:
    out_dir: str = "runs"  # run folders go below this
    name: str | None = None  # the run folder's name; None: model-data-timestamp


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
    paper: dict = field(default_factory=dict)  # provenance of a recipe: source, table row, reported error


CHOICES = {
    "data.name": ("synthetic", "cifar10", "cifar100", "folder"),
    "data.normalization": ("per_pixel_mean", "per_channel"),
    "data.loader": ("auto", "memory", "stream"),
    "train.schedule.name": ("step", "cosine", "constant"),
    "train.schedule.unit": ("iterations", "epochs"),
    "train.schedule.warmup.kind": ("none", "linear", "constant", "error_threshold"),
    "train.precision": ("fp32", "bf16"),
}
POSITIVE = ("train.batch_size", "train.lr", "train.eval_every", "train.checkpoint_every", "train.iterations",
            "train.epochs", "data.image_size", "data.synthetic_train_size", "data.synthetic_test_size", "data.crop",
            "data.eval_resize")
NON_NEGATIVE = ("train.momentum", "train.weight_decay", "data.validation_size", "train.schedule.gamma",
                "train.schedule.warmup.steps", "train.schedule.warmup.lr", "data.num_workers",
                "model.checkpoint_segments")


# ---- building the tree from plain data --------------------------------------------------------------
def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check one value against a field's annotation; YAML already gives ints, floats, bools and lists."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        (inner,) = [a for a in options if a is not type(None)]
        return _coerce(value, inner, key)
    if dataclasses.is_dataclass(annotation):
        return _from_dict(annotation, value, key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        (item_type, _ellipsis) = typing.get_args(annotation)
        return tuple(_coerce(item, item_type, f"{key}[{i}]") for i, item in enumerate(value))
    if annotation is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string; people write it so
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {annotation!r} for {key}")


def _from_dict(cls: type, data: Any, prefix: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'the config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    data = dict(data)
    if cls is ModelConfig:  # the model section is open: unknown keys are the model's options
        options = {**data.pop("options", {}), **{k: data.pop(k) for k in list(data) if k not in names}}
        data["options"] = options
    unknown = sorted(set(data) - set(names))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown key {where}{unknown[0]}; allowed in {prefix or 'the config'}: {', '.join(names)}")
    values = {name: _coerce(data[name], hints[name], f"{prefix}.{name}" if prefix else name)
              for name in names if name in data}
    return cls(**values)


def to_dict(config: Any) -> dict:
    """Plain data (lists for tuples, the model's options flattened into its section), for YAML and JSON."""
    def plain(value):
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value
    data = plain(config)
    if isinstance(config, Config):
        model = data["model"]
        model.update(model.pop("options"))
    return data


# ---- overrides -----------------------------------------------------------------------------------------
def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` strings (values parsed as YAML: 0.1, true, [1, 2], null) to nested plain data."""
    data = _deep_copy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value, e.g. train.lr=0.05")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {key}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return data


def _length_overrides_replace_each_other(overrides: list[str]) -> list[str]:
    """``train.iterations=N`` after a recipe in epochs (or the reverse) replaces it: the last one given wins."""
    keys = [item.split("=", 1)[0].strip() for item in overrides]
    lengths = [key for key in keys if key in ("train.iterations", "train.epochs")]
    if not lengths:
        return overrides
    other = "train.epochs" if lengths[-1] == "train.iterations" else "train.iterations"
    return [item for item, key in zip(overrides, keys) if key != other] + [f"{other}=null"]


def _deep_copy(data: dict) -> dict:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in data.items()}


# ---- validation ----------------------------------------------------------------------------------------
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
    if list(train.schedule.milestones) != sorted(train.schedule.milestones):
        raise ConfigError(f"train.schedule.milestones must increase, got {list(train.schedule.milestones)}")
    if not 0 < train.schedule.warmup.threshold <= 1:
        raise ConfigError(f"train.schedule.warmup.threshold must be in (0, 1], got {train.schedule.warmup.threshold}")
    if train.schedule.warmup.kind in ("linear", "constant") and train.schedule.warmup.steps == 0:
        raise ConfigError(f"train.schedule.warmup.kind={train.schedule.warmup.kind} needs "
                          "train.schedule.warmup.steps > 0")
    data = config.data
    if len(data.scale) != 2 or not data.crop <= data.scale[0] <= data.scale[1]:
        raise ConfigError(f"data.scale must be [min, max] with data.crop <= min <= max, got {list(data.scale)}")
    if data.crop > data.eval_resize:
        raise ConfigError(f"data.crop ({data.crop}) must not exceed data.eval_resize ({data.eval_resize})")
    if data.loader == "stream" and data.name != "folder":
        raise ConfigError("data.loader=stream applies to image folders (data.name=folder)")
    _validate_model(config.model)
    return config


def model_options(model: ModelConfig) -> dict:
    """The keyword arguments of `create_model` that a model section asks for, besides name and classes."""
    if model.checkpoint_segments and "checkpoint_segments" in model.options:
        raise ConfigError("set model.checkpoint_segments or model.options.checkpoint_segments, not both")
    extra = {"checkpoint_segments": model.checkpoint_segments} if model.checkpoint_segments else {}
    return {**model.options, **extra}


def _validate_model(model: ModelConfig) -> None:
    import torch

    from resnetlab.models import create_model, get_model_spec

    try:
        get_model_spec(model.name)
        with torch.device("meta"):
            create_model(model.name, num_classes=model.num_classes, **model_options(model))
    except (ValueError, TypeError) as error:
        raise ConfigError(f"model: {error}") from None


# ---- files ---------------------------------------------------------------------------------------------
def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; see configs/ for the recipes")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path}{where} is not valid YAML: {getattr(error, 'problem', error)}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections (model:, data:, train:, run:)")
    return data or {}


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """The validated config of a recipe file (or the defaults when None) with ``key=value`` overrides."""
    data = read_yaml(path) if path is not None else {}
    overrides = list(overrides or [])
    data = apply_overrides(data, _length_overrides_replace_each_other(overrides))
    return validate(_from_dict(Config, data, ""))


def config_from_dict(data: dict) -> Config:
    """A validated config from plain data (a saved run's config, a checkpoint's)."""
    return validate(_from_dict(Config, data, ""))


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (what the run really used, every default spelled out)."""
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
