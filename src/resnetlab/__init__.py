"""resnetlab: the deep residual networks of four papers, built exactly, on PyTorch.

The names below load their module on first use (PEP 562), so that ``import resnetlab`` and ``resnetlab --help``
do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from importlib import metadata

try:
    __version__ = metadata.version("resnetlab")
except metadata.PackageNotFoundError:  # a source tree on sys.path without an install
    __version__ = "0+unknown"

_PUBLIC = {
    "ModelSpec": "resnetlab.models",
    "ResNet": "resnetlab.models",
    "ResNetOptions": "resnetlab.models",
    "UnknownModelError": "resnetlab.models",
    "create_model": "resnetlab.models",
    "get_model_spec": "resnetlab.models",
    "list_models": "resnetlab.models",
    "register_model": "resnetlab.models",
    "ReferenceBatchNorm2d": "resnetlab.layers.batchnorm",
    "StochasticDepth": "resnetlab.layers.stochastic_depth",
    "load_predictor": "resnetlab.deploy",
    "load_pretrained": "resnetlab.deploy",
    "load_weights": "resnetlab.deploy",
    "published_weights": "resnetlab.deploy",
    "ResnetlabError": "resnetlab.errors",
}

__all__ = [*sorted(_PUBLIC), "__version__"]


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value  # found once, then an ordinary attribute
        return value
    raise AttributeError(f"module 'resnetlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
