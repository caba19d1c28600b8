"""Shortcut paths of a residual unit (He et al. 2015, Sec. 3.3) and their ablations (He et al. 2016, Table 1).

Options of the ResNet paper: A = identity, with zero-padded channels and subsampling where dimensions grow
(no parameters); B = 1x1 projection only where dimensions grow; C = projection on every unit.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from resnetlab.layers.memory_format import keep_gradient_layout

SHORTCUT_OPTIONS = ("A", "B", "C")
SHORTCUT_POOLS = ("subsample", "avg")


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (a BN follows it)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution with no bias (a BN follows it, or an addition)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A: identity with stride-s spatial subsampling and zero channels appended.

    A module rather than a lambda so that models pickle and deepcopy. ``pool="avg"`` averages each s x s
    window instead of keeping its top-left pixel: the transition of the stochastic-depth paper.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, pool: str = "subsample") -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"option A can only add channels, got {in_channels} -> {out_channels}")
        if pool not in SHORTCUT_POOLS:
            raise ValueError(f"shortcut pool must be one of {SHORTCUT_POOLS}, got {pool!r}")
        self.in_channels, self.out_channels, self.stride, self.pool = in_channels, out_channels, stride, pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = keep_gradient_layout(x)  # the subsampling's backward would hand an NCHW gradient to a channels_last net
        if self.stride > 1:
            if self.pool == "avg":
                x = F.avg_pool2d(x, self.stride)
            else:
                x = x[:, :, :: self.stride, :: self.stride]
        extra = self.out_channels - self.in_channels
        return F.pad(x, (0, 0, 0, 0, 0, extra)) if extra else x

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}, pool={self.pool}"


def make_shortcut(
    option: str,
    in_channels: int,
    out_channels: int,
    stride: int,
    norm_layer: Callable[[int], nn.Module] | None,
    pool: str = "subsample",
) -> nn.Module | None:
    """The shortcut module of one unit, or None for the plain identity.

    ``norm_layer=None`` gives a projection without BN, as in pre-activation units whose shortcut adds
    straight into the unnormalised trunk.
    """
    if option not in SHORTCUT_OPTIONS:
        raise ValueError(f"shortcut must be one of {SHORTCUT_OPTIONS}, got {option!r}")
    grows = stride != 1 or in_channels != out_channels
    if option == "A":
        return ZeroPadShortcut(in_channels, out_channels, stride, pool) if grows else None
    if option == "B" and not grows:
        return None
    layers: list[nn.Module] = [conv1x1(in_channels, out_channels, stride)]
    if norm_layer is not None:
        layers.append(norm_layer(out_channels))
    return nn.Sequential(*layers)
