"""Reading configs: YAML recipe files (or recipe names), ``key=value`` overrides, and the saved config of a run.

A config is a tree of frozen dataclasses (`resnetlab.config.schema`). `load_config` reads a recipe, applies
overrides and validates the whole tree; every problem is one `ConfigError` line naming the key and what is
allowed. The model section is open: besides ``name`` it takes the options of that model
(`resnetlab.create_model`), checked by building the model on the ``meta`` device, which costs no memory.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from resnetlab.config.recipes import recipe_file
from resnetlab.config.schema import Config, ConfigError, ModelConfig
from resnetlab.config.validation import validate


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


# ---- files ---------------------------------------------------------------------------------------------
def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; `resnetlab recipes` lists the recipes by name")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path}{where} is not valid YAML: {getattr(error, 'problem', error)}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections (model:, data:, train:, run:)")
    return data or {}


def load_config(recipe: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """The validated config of a recipe (a YAML file, or a name from `resnetlab recipes` such as
    ``table6_cifar10_resnet56`` or ``resnet/table6_cifar10_resnet56``; the defaults when None) with ``key=value``
    overrides."""
    data = read_yaml(recipe_file(recipe)) if recipe is not None else {}
    overrides = list(overrides or [])
    data = apply_overrides(data, _length_overrides_replace_each_other(overrides))
    return validate(_from_dict(Config, data, ""))


def config_from_dict(data: dict) -> Config:
    """A validated config from plain data (a saved run's config, a checkpoint's)."""
    return validate(_from_dict(Config, data, ""))


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (what the run really used, every default spelled out)."""
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
