"""Residual units of the ResNet papers, one class per unit type.

Post-activation units (He et al. 2015) take an activation ``placement`` from He et al. 2016, Table 2:
(a) ``original``: relu(x + BN(conv(...)))          (b) ``bn_after_add``: relu(BN(x + conv(...)))
(c) ``relu_before_add``: x + relu(BN(conv(...)))   (d) ``relu_only_preact``: x + BN(conv(relu(...)))
(e) ``full_preact`` is its own classes, `PreActBasicBlock` and `PreActBottleneck` in ``preact_blocks``.

Attribute names (conv1, bn1, ..., downsample) are torchvision's, so ImageNet state_dicts load unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from resnetlab.layers.shortcuts import conv1x1, conv3x3
from resnetlab.layers.stochastic_depth import DropPath

NormLayer = Callable[[int], nn.Module]


@dataclass(frozen=True)
class Placement:
    """Where the last BN and the ReLUs of a post-activation unit sit (He et al. 2016, Fig. 4 a-d)."""

    relu_on_input: bool  # (d): the branch starts with a ReLU of the unit input
    bn_after_add: bool  # (b): the branch's last BN moves after the addition
    relu_ends_branch: bool  # (c): the last ReLU closes the branch, before the addition
    relu_after_add: bool  # (a), (b): the ReLU after the addition of the ResNet paper


POST_ACTIVATION_PLACEMENTS = {
    "original": Placement(relu_on_input=False, bn_after_add=False, relu_ends_branch=False, relu_after_add=True),
    "bn_after_add": Placement(relu_on_input=False, bn_after_add=True, relu_ends_branch=False, relu_after_add=True),
    "relu_before_add": Placement(relu_on_input=False, bn_after_add=False, relu_ends_branch=True, relu_after_add=False),
    "relu_only_preact": Placement(relu_on_input=True, bn_after_add=False, relu_ends_branch=False, relu_after_add=False),
}
ACTIVATION_PLACEMENTS = (*POST_ACTIVATION_PLACEMENTS, "full_preact")


class ResidualUnit(nn.Module):
    """What every residual unit shares: a shortcut, an optional merge variant and a stochastic-depth gate.

    Subclasses compute their branch in `branch(x)`; `residual(x)` runs it through the gate and returns
    None when stochastic depth drops the unit, in which case the branch is never computed.
    """

    expansion = 1
    preactivation = False
    weighted_layers = 2  # convolutions on the main path, for the depth of the network

    def _attach_shortcut(self, downsample: nn.Module | None, merge: nn.Module | None,
                         drop_path: DropPath | None) -> None:
        """Called by subclasses after their branch layers, so state_dict keys follow torchvision's order."""
        self.downsample = downsample  # torchvision's name for the shortcut; None is the identity
        self.merge = merge  # None is the plain sum shortcut + branch
        self.drop_path = drop_path  # None: stochastic depth off

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.downsample is None else self.downsample(x)

    def residual(self, x: torch.Tensor) -> torch.Tensor | None:
        if self.drop_path is None:
            return self.branch(x)
        if self.drop_path.skip_branch():
            return None
        return self.drop_path(self.branch(x))

    def add(self, shortcut: torch.Tensor, branch: torch.Tensor | None, unit_input: torch.Tensor) -> torch.Tensor:
        if branch is None:
            return shortcut
        if self.merge is not None:
            return self.merge(shortcut, branch, unit_input)
        return shortcut + branch

    def last_branch_norm(self) -> nn.Module | None:
        """The BN whose zero initialisation makes the branch output zero (zero_init_residual)."""
        raise NotImplementedError


class _PostActivationUnit(ResidualUnit):
    """A unit of the ResNet paper: the ReLU (and BN) positions follow ``placement``."""

    def __init__(self, placement: str) -> None:
        super().__init__()
        if placement not in POST_ACTIVATION_PLACEMENTS:
            raise ValueError(f"placement must be one of {tuple(POST_ACTIVATION_PLACEMENTS)}, got {placement!r}")
        self.placement = placement
        self._placement = POST_ACTIVATION_PLACEMENTS[placement]

    def _branch_input(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x) if self._placement.relu_on_input else x  # not in place: x is also the shortcut

    def _branch_output(self, out: torch.Tensor, last_bn: nn.Module) -> torch.Tensor:
        if not self._placement.bn_after_add:
            out = last_bn(out)
        return F.relu(out) if self._placement.relu_ends_branch else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.residual(x)
        out = self.add(self.shortcut(x), branch, x)
        if self._placement.bn_after_add:
            out = self.last_bn(out)
        if not self._placement.relu_after_add:
            return out
        # A dropped unit with an identity shortcut returns x itself, which must not be changed in place.
        return F.relu(out, inplace=branch is not None)

    def last_branch_norm(self) -> nn.Module | None:
        return None if self._placement.bn_after_add else self.last_bn

    def extra_repr(self) -> str:
        return "" if self.placement == "original" else f"placement={self.placement}"


class BasicBlock(_PostActivationUnit):
    """Two 3x3 convolutions (He et al. 2015, Fig. 2 / Fig. 5 left)."""

    expansion = 1
    weighted_layers = 2

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        *,
        norm_layer: NormLayer = nn.BatchNorm2d,
        downsample: nn.Module | None = None,
        placement: str = "original",
        merge: nn.Module | None = None,
        drop_path: DropPath | None = None,
    ) -> None:
        super().__init__(placement)
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = norm_layer(channels)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = norm_layer(channels)
        self._attach_shortcut(downsample, merge, drop_path)

    @property
    def last_bn(self) -> nn.Module:
        return self.bn2

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(self._branch_input(x))), inplace=True)
        return self._branch_output(self.conv2(out), self.bn2)


class Bottleneck(_PostActivationUnit):
    """1x1 reduce, 3x3, 1x1 expand by 4 (He et al. 2015, Fig. 5 right).

    ``stride_in_1x1=True`` puts the stride on the first 1x1 as the paper's v1 (and Caffe) did;
    False puts it on the 3x3 as torchvision's v1.5 does (more multiply-adds, better accuracy).
    """

    expansion = 4
    weighted_layers = 3

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        *,
        norm_layer: NormLayer = nn.BatchNorm2d,
        downsample: nn.Module | None = None,
        placement: str = "original",
        merge: nn.Module | None = None,
        drop_path: DropPath | None = None,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__(placement)
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(in_channels, channels, stride_1x1)
        self.bn1 = norm_layer(channels)
        self.conv2 = conv3x3(channels, channels, stride_3x3)
        self.bn2 = norm_layer(channels)
        self.conv3 = conv1x1(channels, channels * self.expansion)
        self.bn3 = norm_layer(channels * self.expansion)
        self._attach_shortcut(downsample, merge, drop_path)

    @property
    def last_bn(self) -> nn.Module:
        return self.bn3

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(self._branch_input(x))), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        return self._branch_output(self.conv3(out), self.bn3)


class PlainBlock(nn.Module):
    """The plain baseline: two 3x3 convolutions with no shortcut (He et al. 2015, Fig. 3 middle)."""

    expansion = 1
    preactivation = False
    weighted_layers = 2

    def __init__(self, in_channels: int, channels: int, stride: int = 1, *, norm_layer: NormLayer = nn.BatchNorm2d) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = norm_layer(channels)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = norm_layer(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(out)), inplace=True)
