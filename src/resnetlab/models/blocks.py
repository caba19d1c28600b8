"""Residual units of the ResNet papers, one class per unit type.

Post-activation units (He et al. 2015) take an activation ``placement`` from He et al. 2016, Table 2
(`resnetlab.models.placements`); full pre-activation (e) is its own classes, `PreActBasicBlock` and
`PreActBottleneck` in ``preact_blocks``.

Every unit type says itself how it is built from `ResNetOptions` (`build`), which options it refuses
(`check_options`), its default shortcut and which of its BNs fold into a convolution (`conv_norm_pairs`), so
`ResNet` and `fuse_for_inference` never ask which type a unit is. Attribute names (conv1, bn1, ...,
downsample) are torchvision's, so ImageNet state_dicts load unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from resnetlab.layers.shortcut_variants import make_merge
from resnetlab.layers.shortcuts import conv1x1, conv3x3, make_shortcut
from resnetlab.layers.stochastic_depth import DropPath
from resnetlab.models.options import ResNetOptions
from resnetlab.models.placements import POST_ACTIVATION_PLACEMENTS

NormLayer = Callable[[int], nn.Module]


class NetworkUnit(nn.Module):
    """What `ResNet` asks of a unit type: its size facts, its rules, and how to build one."""

    expansion = 1  # output channels per unit width
    preactivation = False  # pre-activation nets end with an extra BN-ReLU after the last addition
    weighted_layers = 2  # convolutions on the main path, for the depth of the network
    _conv_norm_pairs: tuple[tuple[str, str], ...] = ()

    @classmethod
    def check_options(cls, options: ResNetOptions) -> None:
        """ValueError for an option this unit type cannot honour (the rest is checked by `ResNetOptions`)."""

    @classmethod
    def default_shortcut(cls, stem: str) -> str | None:
        """The shortcut option when none is given: A for basic units on CIFAR (the ResNet paper), else B."""
        return "A" if stem == "cifar" and cls.expansion == 1 else "B"

    @classmethod
    def build(cls, in_channels: int, width: int, stride: int, *, options: ResNetOptions, shortcut: str | None,
              drop_path: DropPath | None, first_unit: bool) -> NetworkUnit:
        raise NotImplementedError

    def conv_norm_pairs(self) -> list[tuple[str, str]]:
        """(convolution, BN) attribute names of every BN that directly follows a convolution (foldable)."""
        return list(self._conv_norm_pairs)


class ResidualUnit(NetworkUnit):
    """What every residual unit shares: a shortcut, an optional merge variant and a stochastic-depth gate.

    Subclasses compute their branch in `branch(x)`; `residual(x)` runs it through the gate and returns
    None when stochastic depth drops the unit, in which case the branch is never computed.
    """

    placements: tuple[str, ...] = ()  # the activation placements this unit type implements

    @classmethod
    def check_options(cls, options: ResNetOptions) -> None:
        if options.placement not in cls.placements:
            raise ValueError(f"placement={options.placement!r} does not apply to {cls.__name__}; choose one of "
                             f"{cls.placements}")
        if options.stride_in_1x1 and cls.expansion == 1:
            raise ValueError("stride_in_1x1 applies to bottleneck units; basic units have no 1x1 convolution")

    @classmethod
    def _unit_settings(cls, options: ResNetOptions) -> dict:
        """Keyword arguments of this unit type's own options (the bottlenecks' stride_in_1x1)."""
        return {}

    @staticmethod
    def _make_merge(options: ResNetOptions, in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
        settings = options.merge_settings
        return make_merge(in_channels=in_channels, out_channels=out_channels, stride=stride, **settings) \
            if settings else None

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

    placements = tuple(POST_ACTIVATION_PLACEMENTS)

    @classmethod
    def build(cls, in_channels: int, width: int, stride: int, *, options: ResNetOptions, shortcut: str | None,
              drop_path: DropPath | None, first_unit: bool) -> NetworkUnit:
        out_channels = width * cls.expansion
        merge = cls._make_merge(options, in_channels, out_channels, stride)
        downsample = make_shortcut(shortcut, in_channels, out_channels, stride, options.norm_layer,
                                   options.shortcut_pool)
        return cls(in_channels, width, stride, downsample=downsample, placement=options.placement, merge=merge,
                   drop_path=drop_path, norm_layer=options.norm_layer, **cls._unit_settings(options))

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

    def conv_norm_pairs(self) -> list[tuple[str, str]]:
        pairs = list(self._conv_norm_pairs)
        return pairs[:-1] if self._placement.bn_after_add else pairs  # then the last BN acts on the sum

    def extra_repr(self) -> str:
        return "" if self.placement == "original" else f"placement={self.placement}"


class BasicBlock(_PostActivationUnit):
    """Two 3x3 convolutions (He et al. 2015, Fig. 2 / Fig. 5 left)."""

    expansion = 1
    weighted_layers = 2
    _conv_norm_pairs = (("conv1", "bn1"), ("conv2", "bn2"))

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
    _conv_norm_pairs = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))

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


class PlainBlock(NetworkUnit):
    """The plain baseline: two 3x3 convolutions with no shortcut (He et al. 2015, Fig. 3 middle)."""

    expansion = 1
    weighted_layers = 2
    _conv_norm_pairs = (("conv1", "bn1"), ("conv2", "bn2"))

    @classmethod
    def check_options(cls, options: ResNetOptions) -> None:
        if options.shortcut is not None or options.shortcut_variant != "identity":
            raise ValueError("plain nets have no shortcut; drop the shortcut options")
        if options.stochastic_depth is not None or options.placement != "original":
            raise ValueError("plain nets have no shortcut: stochastic depth, shortcut variants and "
                             "activation placements apply to residual nets only")

    @classmethod
    def default_shortcut(cls, stem: str) -> str | None:
        return None

    @classmethod
    def build(cls, in_channels: int, width: int, stride: int, *, options: ResNetOptions, shortcut: str | None,
              drop_path: DropPath | None, first_unit: bool) -> NetworkUnit:
        return cls(in_channels, width, stride, norm_layer=options.norm_layer)

    def __init__(self, in_channels: int, channels: int, stride: int = 1, *,
                 norm_layer: NormLayer = nn.BatchNorm2d) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = norm_layer(channels)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = norm_layer(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(out)), inplace=True)
