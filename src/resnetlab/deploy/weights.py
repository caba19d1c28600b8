"""Weights from other tools into resnetlab's nets: torchvision files, DataParallel/DDP and compiled models.

resnetlab's ImageNet nets use torchvision's parameter names and shapes (tests/test_torchvision_compat.py), so a
torchvision ``resnet50-*.pth`` loads as it is. A model saved while wrapped in `nn.DataParallel` or
`DistributedDataParallel` prefixes every key with ``module.``, and a `torch.compile`d one with ``_orig_mod.``;
both prefixes are removed. Files are read without running code: safetensors, or `torch.load(weights_only=True)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from resnetlab.errors import ResnetlabError
from resnetlab.training.checkpoint import CheckpointError, load_checkpoint

WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP, torch.compile
NESTED_KEYS = ("model", "state_dict", "model_state_dict", "weights")  # where training scripts keep the weights
SHOWN_KEYS = 3  # keys named in a mismatch message


class WeightsMismatchError(ResnetlabError, ValueError):
    """A state dict that does not fit the model; the message names the first differing keys."""


def strip_wrapper_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys without the ``module.``/``_orig_mod.`` prefixes that wrappers add (repeatedly: DDP of a compiled net)."""
    cleaned = {}
    for key, value in state.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix):], True
        cleaned[key] = value
    return cleaned


def find_state_dict(loaded: Mapping) -> Mapping[str, torch.Tensor]:
    """The parameter mapping inside what a file held: the file itself, or a resnetlab/Lightning-style
    checkpoint's ``model``/``state_dict`` entry."""
    if loaded and all(isinstance(value, torch.Tensor) for value in loaded.values()):
        return loaded
    for key in NESTED_KEYS:
        if isinstance(loaded.get(key), Mapping):
            return find_state_dict(loaded[key])
    raise WeightsMismatchError(f"no tensors found: expected a state dict or a checkpoint with one of the keys "
                               f"{', '.join(NESTED_KEYS)}; got keys {', '.join(map(str, list(loaded)[:SHOWN_KEYS]))}")


def read_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a torch file (``.pt``/``.pth``/``.bin``), no code run."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} not found")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except (SafetensorError, OSError, ValueError) as error:
            raise CheckpointError(f"{path} is not a readable safetensors file ({error}); re-export it") from None
    return dict(find_state_dict(load_checkpoint(path)))


@dataclass(frozen=True)
class Mismatch:
    """How a state dict differs from a model's: keys it lacks, keys the model lacks, keys of another shape."""

    missing: list[str]
    unexpected: list[str]
    reshaped: list[str]  # "key (file shape) vs (model shape)"

    @classmethod
    def between(cls, model: nn.Module, state: Mapping[str, torch.Tensor]) -> Mismatch:
        expected = model.state_dict()
        return cls([key for key in expected if key not in state], [key for key in state if key not in expected],
                   [f"{key} {tuple(state[key].shape)} vs {tuple(value.shape)}" for key, value in expected.items()
                    if key in state and tuple(state[key].shape) != tuple(value.shape)])

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.reshaped)

    def __str__(self) -> str:
        parts = []
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected),
                            ("of another shape (file vs model)", self.reshaped)):
            if keys:
                more = f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else ""
                parts.append(f"{len(keys)} {label}: {', '.join(keys[:SHOWN_KEYS])}{more}")
        return "; ".join(parts) or "none"


def load_weights(model: nn.Module, source: str | Path | Mapping[str, torch.Tensor], strict: bool = True) -> Mismatch:
    """Load a state dict, or a weights file, into ``model`` after removing wrapper prefixes; returns what did
    not match (empty when strict).

    ``strict``: every key must match in name and shape, else `WeightsMismatchError` names the first
    differences. ``strict=False`` loads every key that matches in name and shape and leaves the rest of the
    model as it is: ImageNet weights under a new classifier for fine-tuning, say.
    """
    origin = str(source) if isinstance(source, (str, Path)) else "the state dict"
    state = read_weights_file(source) if isinstance(source, (str, Path)) else find_state_dict(source)
    state = strip_wrapper_prefixes(state)
    mismatch = Mismatch.between(model, state)
    if mismatch and strict:
        raise WeightsMismatchError(f"{origin} does not fit {type(model).__name__}: {mismatch}; "
                                   "check the model name and options (or load with strict=False)")
    expected = model.state_dict()
    fitting = {key: value for key, value in state.items()
               if key in expected and tuple(value.shape) == tuple(expected[key].shape)}
    model.load_state_dict(fitting, strict=strict)
    return mismatch
