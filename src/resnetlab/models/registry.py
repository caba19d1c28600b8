"""The model registry: every named architecture is a `ModelSpec` (data), built by one generic builder."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from torch import nn

from resnetlab.errors import ResnetlabError
from resnetlab.registry import Registry


class UnknownModelError(ResnetlabError, ValueError):
    """An unregistered model name; the message lists the close matches."""


@dataclass(frozen=True)
class ModelSpec:
    """A named architecture: the builder, the arguments that define it, and its paper facts."""

    name: str
    builder: Callable[..., nn.Module]
    architecture: Mapping[str, Any]  # arguments fixed by the name (depth, unit type, placement...)
    dataset: str  # "cifar" or "imagenet": the input size and default classes below follow from it
    depth: int
    paper: str
    description: str
    option_type: type | None = None  # a dataclass whose fields are the options (`ResNetOptions`); None: the
    # builder's own keyword arguments
    input_size: int = field(init=False)
    num_classes: int = field(init=False)

    def __post_init__(self) -> None:
        if self.dataset not in ("cifar", "imagenet"):
            raise ValueError(f"dataset must be 'cifar' or 'imagenet', got {self.dataset!r}")
        object.__setattr__(self, "architecture", MappingProxyType(dict(self.architecture)))
        object.__setattr__(self, "input_size", 32 if self.dataset == "cifar" else 224)
        object.__setattr__(self, "num_classes", 10 if self.dataset == "cifar" else 1000)

    def options(self) -> list[str]:
        """The keyword options a user may pass to `create_model` for this model."""
        if self.option_type is not None:
            names = ["num_classes", *(f.name for f in fields(self.option_type))]
        else:
            names = list(inspect.signature(self.builder).parameters)
        return [name for name in names if name not in self.architecture]


MODELS: Registry[ModelSpec] = Registry("model", "resnetlab models", UnknownModelError)


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a model to the registry; registering a name twice is an error."""
    return MODELS.register(spec.name, spec)


def get_model_spec(name: str) -> ModelSpec:
    """The spec of a registered model, or `UnknownModelError` naming the close matches."""
    return MODELS.get(name)


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names in registry order, optionally filtered by a shell pattern like ``"preact*"``."""
    return MODELS.names(pattern)


def create_model(name: str, num_classes: int | None = None, weights: str | Path | None = None,
                 **options: Any) -> nn.Module:
    """Build a registered model.

    Args:
        name: a name from `list_models()`, e.g. ``"resnet110"``.
        num_classes: outputs of the classifier (default: 10 for CIFAR nets, 1000 for ImageNet nets).
        weights: start from these weights (a torchvision ``.pth``, a resnetlab checkpoint or run folder, a
            safetensors export, or published weights by name): every key must fit except the classifier,
            which stays as initialised (with a warning) when ``num_classes`` differs from the file's.
        **options: the model's options, e.g. ``shortcut="B"``, ``stochastic_depth={"p_last": 0.5}``,
            ``norm="reference"``, ``zero_init_residual=True``; `ModelSpec.options` lists them.
    """
    spec = get_model_spec(name)
    fixed = sorted(set(options) & set(spec.architecture))
    if fixed:
        raise ValueError(f"{fixed} are fixed by the name {name!r}; build another registered model instead")
    allowed = spec.options()
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        choices = ", ".join(option for option in allowed if option != "num_classes")
        raise ValueError(f"unknown option(s) {unknown} for {name!r}; allowed: {choices}")
    model = spec.builder(**spec.architecture, num_classes=spec.num_classes if num_classes is None else num_classes,
                         **options)
    if weights is not None:
        from resnetlab.deploy.initial_weights import load_initial_weights, open_initial_weights

        fresh = load_initial_weights(model, open_initial_weights(weights), log=lambda message: None)
        if fresh:
            warnings.warn(f"create_model({name!r}, weights={str(weights)!r}): the classifier ({', '.join(fresh)}) "
                          "does not fit this number of classes and starts afresh", stacklevel=2)
    return model
