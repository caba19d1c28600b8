"""Full pre-activation units (He et al. 2016, Fig. 1b / Fig. 4e): x_{l+1} = x_l + F(x_l), nothing after the sum.

Where the pre-activation goes (the paper's appendix, and the authors' code):
- ``preact="branch"``: BN-ReLU starts the branch only; the shortcut carries x_l untouched (most units).
- ``preact="shared"``: BN-ReLU comes before the split, and the shortcut (a projection or a zero-padded
  identity) takes the activated input: the first unit of a stage where dimensions grow.
- ``preact="none"``: the input was already activated right after the stem conv (the first unit of the
  network), so the unit has no BN-ReLU of its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from resnetlab.layers.shortcuts import conv1x1, conv3x3, make_shortcut
from resnetlab.layers.stochastic_depth import DropPath
from resnetlab.models.blocks import NetworkUnit, NormLayer, ResidualUnit
from resnetlab.models.options import ResNetOptions
from resnetlab.models.placements import FULL_PREACTIVATION

PREACT_MODES = ("branch", "shared", "none")


class _PreActivationUnit(ResidualUnit):
    preactivation = True
    placements = ("original", FULL_PREACTIVATION)  # "original": the unit type itself is the placement

    @classmethod
    def build(cls, in_channels: int, width: int, stride: int, *, options: ResNetOptions, shortcut: str | None,
              drop_path: DropPath | None, first_unit: bool) -> NetworkUnit:
        out_channels = width * cls.expansion
        merge = cls._make_merge(options, in_channels, out_channels, stride)
        # The shortcut of a pre-activation unit adds into the unnormalised trunk: a projection has no BN.
        downsample = make_shortcut(shortcut, in_channels, out_channels, stride, None, options.shortcut_pool)
        grows = stride != 1 or in_channels != out_channels
        preact = "none" if first_unit else ("shared" if grows else "branch")
        return cls(in_channels, width, stride, downsample=downsample, preact=preact, merge=merge,
                   drop_path=drop_path, norm_layer=options.norm_layer, **cls._unit_settings(options))

    def __init__(self, preact: str, in_channels: int, norm_layer: NormLayer) -> None:
        super().__init__()
        if preact not in PREACT_MODES:
            raise ValueError(f"preact must be one of {PREACT_MODES}, got {preact!r}")
        self.preact = preact
        self.bn1 = None if preact == "none" else norm_layer(in_channels)

    def _preactivate(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn1(x), inplace=True)  # in place on the BN output; x itself is untouched

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preact == "shared":
            x = self._preactivate(x)
        return self.add(self.shortcut(x), self.residual(x), x)

    def _branch_input(self, x: torch.Tensor) -> torch.Tensor:
        return self._preactivate(x) if self.preact == "branch" else x

    def extra_repr(self) -> str:
        return f"preact={self.preact}"


class PreActBasicBlock(_PreActivationUnit):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3."""

    expansion = 1
    weighted_layers = 2
    _conv_norm_pairs = (("conv1", "bn2"),)  # bn1 acts before conv1 (with a ReLU between): it stays

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        *,
        norm_layer: NormLayer = nn.BatchNorm2d,
        downsample: nn.Module | None = None,
        preact: str = "branch",
        merge: nn.Module | None = None,
        drop_path: DropPath | None = None,
    ) -> None:
        super().__init__(preact, in_channels, norm_layer)
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn2 = norm_layer(channels)
        self.conv2 = conv3x3(channels, channels)
        self._attach_shortcut(downsample, merge, drop_path)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self._branch_input(x))
        return self.conv2(F.relu(self.bn2(out), inplace=True))

    def last_branch_norm(self) -> nn.Module:
        return self.bn2


class PreActBottleneck(_PreActivationUnit):
    """BN-ReLU-conv1x1-BN-ReLU-conv3x3-BN-ReLU-conv1x1 (x4). The stride sits on the 3x3 (fb.resnet.torch's
    pre-activation nets, the ImageNet default here) or, with ``stride_in_1x1``, on the first 1x1 as in the authors'
    CIFAR code (KaimingHe/resnet-1k-layers, which the CIFAR ResNet-164/1001 use)."""

    expansion = 4
    weighted_layers = 3
    _conv_norm_pairs = (("conv1", "bn2"), ("conv2", "bn3"))

    @classmethod
    def _unit_settings(cls, options: ResNetOptions) -> dict:
        return {"stride_in_1x1": options.stride_in_1x1}

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        *,
        norm_layer: NormLayer = nn.BatchNorm2d,
        downsample: nn.Module | None = None,
        preact: str = "branch",
        merge: nn.Module | None = None,
        drop_path: DropPath | None = None,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__(preact, in_channels, norm_layer)
        self.conv1 = conv1x1(in_channels, channels, stride if stride_in_1x1 else 1)
        self.bn2 = norm_layer(channels)
        self.conv2 = conv3x3(channels, channels, 1 if stride_in_1x1 else stride)
        self.bn3 = norm_layer(channels)
        self.conv3 = conv1x1(channels, channels * self.expansion)
        self._attach_shortcut(downsample, merge, drop_path)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self._branch_input(x))
        out = self.conv2(F.relu(self.bn2(out), inplace=True))
        return self.conv3(F.relu(self.bn3(out), inplace=True))

    def last_branch_norm(self) -> nn.Module:
        return self.bn3
