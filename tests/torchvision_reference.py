"""Deterministic weights and input shared by the torchvision-parity fixture and tests.

``tests/data/make_torchvision_fixture.py`` loads torchvision's real ResNet code,
fills it with :func:`deterministic_state_dict` and records the logits on
:func:`reference_input` in ``tests/data/torchvision_resnet_layout.json``.
Tests rebuild the same tensors from the recorded layout and compare resnetlab's
models against those logits, so torchvision itself is never needed at test time.

Changing anything here (seeds, distributions, the order of draws) invalidates the
committed fixture: re-run the generator afterwards.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

import torch

STATE_DICT_SEED = 20240607
INPUT_SEED = 7
INPUT_SHAPE = (2, 3, 64, 64)
# In eval mode batch norm does not renormalise, so with the distributions below every
# residual block multiplies the activation variance by roughly 1 + (branch gain) and the
# logits of resnet50 reach ~1e4. Scaling the weight of the last ``bnN`` of each block
# (bn2 in BasicBlock, bn3 in Bottleneck) keeps both resnet18 and resnet50 logits O(1-100)
# while leaving every residual branch clearly visible in the output.
RESIDUAL_BN_WEIGHT_SCALE = 0.4

LayoutEntry = tuple[str, Sequence[int], str]


def _parse_dtype(name: str) -> torch.dtype:
    short = name.removeprefix("torch.")
    dtype = getattr(torch, short, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype string {name!r}")
    return dtype


def _kind(key: str, ndim: int, weight_ndims: dict[str, int]) -> str:
    if key.endswith(".weight"):
        if ndim == 4:
            return "conv_weight"
        if ndim == 2:
            return "linear_weight"
        if ndim == 1:
            return "bn_weight"
    elif key.endswith(".bias") and ndim == 1:
        owner = key[: -len(".bias")]
        return "linear_bias" if weight_ndims.get(owner) == 2 else "bn_bias"
    elif key.endswith(".running_mean") and ndim == 1:
        return "running_mean"
    elif key.endswith(".running_var") and ndim == 1:
        return "running_var"
    elif key.endswith(".num_batches_tracked") and ndim == 0:
        return "num_batches_tracked"
    raise ValueError(f"cannot classify state_dict entry {key!r} with {ndim} dims")


_BLOCK_BN = re.compile(r"^(?P<block>.+)\.bn(?P<idx>\d+)\.weight$")


def _last_block_bn_weights(keys: Iterable[str]) -> set[str]:
    """Keys ``<block>.bnN.weight`` with the largest N of a block that has at least two ``bnN``.

    Only nested blocks count: the stem's top-level ``bn1.weight`` has no ``<block>`` prefix.
    """
    by_block: dict[str, list[tuple[int, str]]] = {}
    for key in keys:
        m = _BLOCK_BN.match(key)
        if m:
            by_block.setdefault(m["block"], []).append((int(m["idx"]), key))
    return {max(bns)[1] for bns in by_block.values() if len(bns) >= 2}


def deterministic_state_dict(layout: Iterable[LayoutEntry]) -> dict[str, torch.Tensor]:
    """Fill every entry of ``layout`` (ordered ``(key, shape, dtype)``) deterministically.

    All random draws come from one CPU ``torch.Generator`` seeded with
    :data:`STATE_DICT_SEED`, taken in the order of ``layout``:

    * 4-D ``.weight`` (conv): ``normal * sqrt(2 / fan_in)``, fan_in = in_ch * kh * kw
    * 2-D ``.weight`` (linear): ``normal * sqrt(1 / fan_in)``
    * 1-D ``.weight`` (batch norm): uniform in [0.5, 1.5]; for the last ``bnN`` of each
      residual block (``layerI.J.bn2`` of BasicBlock, ``layerI.J.bn3`` of Bottleneck) that
      draw is multiplied by :data:`RESIDUAL_BN_WEIGHT_SCALE`
    * ``.bias`` (batch norm or linear): ``normal * 0.1``
    * ``.running_mean``: ``normal * 0.1``; ``.running_var``: uniform in [0.5, 1.5]
    * ``.num_batches_tracked``: 0 (no draw)
    """
    entries = [(str(k), tuple(int(s) for s in shape), str(dt)) for k, shape, dt in layout]
    residual_bns = _last_block_bn_weights(k for k, s, _ in entries if len(s) == 1)
    weight_ndims = {k[: -len(".weight")]: len(s) for k, s, _ in entries if k.endswith(".weight")}
    gen = torch.Generator(device="cpu")
    gen.manual_seed(STATE_DICT_SEED)

    def normal(shape: tuple[int, ...], std: float) -> torch.Tensor:
        return torch.randn(shape, generator=gen, dtype=torch.float64) * std

    def uniform(shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float64)

    out: dict[str, torch.Tensor] = {}
    for key, shape, dtype_name in entries:
        dtype = _parse_dtype(dtype_name)
        kind = _kind(key, len(shape), weight_ndims)
        if kind == "conv_weight":
            value = normal(shape, math.sqrt(2.0 / (shape[1] * shape[2] * shape[3])))
        elif kind == "linear_weight":
            value = normal(shape, math.sqrt(1.0 / shape[1]))
        elif kind == "bn_weight":
            value = uniform(shape, 0.5, 1.5)
            if key in residual_bns:
                value = value * RESIDUAL_BN_WEIGHT_SCALE
        elif kind == "running_var":
            value = uniform(shape, 0.5, 1.5)
        elif kind in ("bn_bias", "linear_bias", "running_mean"):
            value = normal(shape, 0.1)
        else:  # num_batches_tracked
            value = torch.zeros(shape, dtype=torch.int64)
        out[key] = value.to(dtype)
    return out


def reference_input() -> torch.Tensor:
    """Fixed float32 batch of shape (2, 3, 64, 64), standard normal, seed :data:`INPUT_SEED`."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(INPUT_SEED)
    return torch.randn(INPUT_SHAPE, generator=gen, dtype=torch.float32)
