"""One generic residual network: a stem, stages of units, and a head (torchvision's layout and names)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from resnetlab.layers.memory_format import keep_gradient_layout
from resnetlab.layers.shortcut_variants import make_merge
from resnetlab.layers.shortcuts import SHORTCUT_POOLS, conv3x3, make_shortcut
from resnetlab.layers.stochastic_depth import DropPath, StochasticDepth, survival_probabilities
from resnetlab.models.blocks import (
    POST_ACTIVATION_PLACEMENTS,
    BasicBlock,
    Bottleneck,
    NormLayer,
    PlainBlock,
    ResidualUnit,
)
from resnetlab.models.checkpointing import check_segments, run_checkpointed
from resnetlab.models.preact_blocks import PreActBasicBlock, PreActBottleneck

STEMS = ("imagenet", "cifar")
UNIT_TYPES = (BasicBlock, Bottleneck, PlainBlock, PreActBasicBlock, PreActBottleneck)


class ResNet(nn.Module):
    """A residual (or plain) network.

    Args:
        block: the unit class, one of ``UNIT_TYPES``.
        layers: units per stage, e.g. ``(3, 4, 6, 3)`` for ResNet-50 or ``(18, 18, 18)`` for ResNet-110.
        widths: base channels per stage (the output has ``width * block.expansion`` channels).
        num_classes: outputs of the final fully-connected layer.
        stem: ``"imagenet"`` (7x7/2 conv, 3x3/2 max pool) or ``"cifar"`` (3x3 conv, no pool).
        stem_width: channels of the stem conv (64 ImageNet, 16 CIFAR).
        in_channels: channels of the input image.
        norm_layer: the normalisation layer constructor (``nn.BatchNorm2d`` by default).
        shortcut: option ``"A"``, ``"B"`` or ``"C"`` (He et al. 2015); ignored by plain units.
        shortcut_pool: how option A subsamples: ``"subsample"`` (the ResNet paper) or ``"avg"``
            (the stochastic-depth paper).
        stride_in_1x1: bottleneck stride on the first 1x1 (v1, the paper) instead of the 3x3 (v1.5).
        placement: activation placement of post-activation units (He et al. 2016, Table 2 a-d).
        merge_options: the shortcut variant of He et al. 2016, Table 1, as keyword arguments of
            `resnetlab.layers.shortcut_variants.make_merge`, or None for the plain sum.
        stochastic_depth: `StochasticDepth` settings, or None for a constant-depth network.
        zero_init_residual: start the last BN of every branch at 0, so each unit starts as the identity.
        checkpoint_segments: activation checkpointing (0, the default, turns it off). With k > 0, in training
            mode with grad enabled, the residual units (all stages, in order) run in k contiguous chunks of
            nearly equal size (one unit per chunk when k exceeds the number of units), each under
            `torch.utils.checkpoint.checkpoint`: only the chunks' inputs are kept for backward and every
            chunk's forward runs again during backward, about one extra forward pass of compute. Between
            sqrt(units) and 2 sqrt(units) segments keep the least (a bottleneck unit stores several times its
            input, which favours more segments; measured by ``benchmarks/memory_deep_nets.py``). Results, stochastic-depth
            decisions and BN running statistics are the same as without it (`resnetlab.models.checkpointing`).
            Eval mode and ``torch.no_grad()`` run as usual. Also settable later: ``model.checkpoint_segments = 8``.
    """

    def __init__(
        self,
        block: type[nn.Module],
        layers: Sequence[int],
        widths: Sequence[int],
        *,
        num_classes: int = 1000,
        stem: str = "imagenet",
        stem_width: int = 64,
        in_channels: int = 3,
        norm_layer: NormLayer = nn.BatchNorm2d,
        shortcut: str = "B",
        shortcut_pool: str = "subsample",
        stride_in_1x1: bool = False,
        placement: str = "original",
        merge_options: dict | None = None,
        stochastic_depth: StochasticDepth | None = None,
        zero_init_residual: bool = False,
        checkpoint_segments: int = 0,
    ) -> None:
        super().__init__()
        self.checkpoint_segments = checkpoint_segments
        self._check_arguments(block, layers, widths, num_classes, stem, shortcut_pool, placement,
                              merge_options, stochastic_depth, stride_in_1x1)
        self.block = block
        self.stem_type = stem
        self.shortcut_option = None if block is PlainBlock else shortcut
        self.conv1, self.maxpool = self._make_stem(stem, in_channels, stem_width)
        self.bn1 = norm_layer(stem_width)  # the pre-activation nets' first activation sits here too

        num_units = sum(layers)
        survival = (survival_probabilities(num_units, stochastic_depth.p_last, stochastic_depth.rule)
                    if stochastic_depth is not None else [1.0] * num_units)
        channels = stem_width
        unit_index = 0
        self.stage_names: list[str] = []
        for stage, (num_blocks, width) in enumerate(zip(layers, widths)):
            units = []
            for index in range(num_blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                drop_path = (DropPath(survival[unit_index], stochastic_depth.mode, stochastic_depth.scaling)
                             if stochastic_depth is not None else None)
                units.append(self._make_unit(
                    block, channels, width, stride, norm_layer=norm_layer, shortcut=shortcut,
                    shortcut_pool=shortcut_pool, stride_in_1x1=stride_in_1x1, placement=placement,
                    merge_options=merge_options, drop_path=drop_path, first_unit=unit_index == 0,
                ))
                channels = width * block.expansion
                unit_index += 1
            name = f"layer{stage + 1}"
            self.add_module(name, nn.Sequential(*units))
            self.stage_names.append(name)
        self.num_features = channels
        # Pre-activation nets end with an extra BN-ReLU after the last addition (He et al. 2016, appendix).
        self.final_bn = norm_layer(channels) if block.preactivation else None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self._initialise(zero_init_residual)

    @staticmethod
    def _check_arguments(block, layers, widths, num_classes, stem, shortcut_pool, placement, merge_options,
                         stochastic_depth, stride_in_1x1) -> None:
        if block not in UNIT_TYPES:
            raise ValueError(f"block must be one of {[b.__name__ for b in UNIT_TYPES]}, got {block!r}")
        if len(layers) != len(widths) or not layers or min(layers) < 1:
            raise ValueError(f"layers {tuple(layers)} and widths {tuple(widths)} must be non-empty, equal length, >= 1")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
        if shortcut_pool not in SHORTCUT_POOLS:
            raise ValueError(f"shortcut_pool must be one of {SHORTCUT_POOLS}, got {shortcut_pool!r}")
        if block.preactivation and placement not in ("original", "full_preact"):
            raise ValueError(f"placement={placement!r} applies to post-activation units, not {block.__name__}")
        if not block.preactivation and block is not PlainBlock and placement not in POST_ACTIVATION_PLACEMENTS:
            raise ValueError(f"placement must be one of {tuple(POST_ACTIVATION_PLACEMENTS)}, got {placement!r}")
        if block is PlainBlock and (stochastic_depth is not None or merge_options or placement != "original"):
            raise ValueError("plain nets have no shortcut: stochastic depth, shortcut variants and "
                             "activation placements apply to residual nets only")
        if stochastic_depth is not None and merge_options:
            raise ValueError("stochastic depth with a shortcut variant is not supported: a dropped unit's "
                             "output under a gated or scaled shortcut is not defined by either paper")
        # Basic units have no 1x1, so v1 and v1.5 coincide for them and the flag is harmless there.
        if stride_in_1x1 and block is PreActBottleneck:
            raise ValueError("stride_in_1x1 applies to the original bottleneck; pre-activation units "
                             "put the stride on the 3x3 as the authors' code does")

    @staticmethod
    def _make_stem(stem: str, in_channels: int, width: int) -> tuple[nn.Conv2d, nn.Module]:
        if stem == "imagenet":
            conv = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
            return conv, nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        return conv3x3(in_channels, width), nn.Identity()

    @staticmethod
    def _make_unit(block, in_channels, width, stride, *, norm_layer, shortcut, shortcut_pool, stride_in_1x1,
                   placement, merge_options, drop_path, first_unit) -> nn.Module:
        if block is PlainBlock:
            return PlainBlock(in_channels, width, stride, norm_layer=norm_layer)
        out_channels = width * block.expansion
        merge = make_merge(in_channels=in_channels, out_channels=out_channels, stride=stride,
                           **merge_options) if merge_options else None
        common = dict(merge=merge, drop_path=drop_path, norm_layer=norm_layer)
        if block.preactivation:
            # The shortcut of a pre-activation unit adds into the unnormalised trunk: a projection has no BN.
            downsample = make_shortcut(shortcut, in_channels, out_channels, stride, None, shortcut_pool)
            grows = stride != 1 or in_channels != out_channels
            preact = "none" if first_unit else ("shared" if grows else "branch")
            return block(in_channels, width, stride, downsample=downsample, preact=preact, **common)
        downsample = make_shortcut(shortcut, in_channels, out_channels, stride, norm_layer, shortcut_pool)
        extra = {"stride_in_1x1": stride_in_1x1} if block is Bottleneck else {}
        return block(in_channels, width, stride, downsample=downsample, placement=placement, **common, **extra)

    def _initialise(self, zero_init_residual: bool) -> None:
        # He et al. 2015 ("Delving deep", fan-out as the authors' Torch code and torchvision); norm layers
        # start at weight 1, bias 0 by their own reset; gate biases keep the value their merge set.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual:
            for unit in self.residual_units():
                norm = unit.last_branch_norm()
                if norm is not None and getattr(norm, "weight", None) is not None:
                    nn.init.zeros_(norm.weight)

    @property
    def checkpoint_segments(self) -> int:
        """Chunks of residual units run under activation checkpointing in training (0: off)."""
        return self.__dict__.get("_checkpoint_segments", 0)  # 0 for a model pickled before the option

    @checkpoint_segments.setter
    def checkpoint_segments(self, value: int) -> None:
        self._checkpoint_segments = check_segments(value)

    def extra_repr(self) -> str:
        return f"checkpoint_segments={self.checkpoint_segments}" if self.checkpoint_segments else ""

    # ---- structure -------------------------------------------------------------------------------------
    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, name) for name in self.stage_names]

    def units(self) -> Iterator[nn.Module]:
        for stage in self.stages():
            yield from stage

    def residual_units(self) -> Iterator[ResidualUnit]:
        return (unit for unit in self.units() if isinstance(unit, ResidualUnit))

    @property
    def depth(self) -> int:
        """Weighted layers on the main path: the stem conv, every unit's convolutions, and the fc."""
        return 1 + sum(unit.weighted_layers for unit in self.units()) + 1

    def survival_probabilities(self) -> list[float]:
        """p_l of every residual unit, in order (1.0 everywhere without stochastic depth)."""
        return [unit.drop_path.survival_prob if unit.drop_path is not None else 1.0 for unit in self.residual_units()]

    def expected_depth(self, unit: str = "blocks") -> float:
        """Expected depth during training under stochastic depth (Huang et al. 2016, Eq. 5).

        ``unit="blocks"``: E[L~] = sum_l p_l, the expected number of active residual units.
        ``unit="layers"``: the expected number of weighted layers on the main path.
        """
        if unit == "blocks":
            return float(sum(self.survival_probabilities()))
        if unit == "layers":
            fixed = self.depth - sum(u.weighted_layers for u in self.residual_units())
            return float(fixed + sum(u.weighted_layers * p for u, p in zip(self.residual_units(),
                                                                          self.survival_probabilities())))
        raise ValueError(f"unit must be 'blocks' or 'layers', got {unit!r}")

    def fuse_for_inference(self) -> ResNet:
        """Fold BN into the preceding convolutions (in place) for faster inference; returns self, in eval mode."""
        from resnetlab.models.fusion import fuse_for_inference

        return fuse_for_inference(self)

    # ---- forward ---------------------------------------------------------------------------------------
    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(F.relu(self.bn1(self.conv1(x)), inplace=True))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_stem(x)
        if self.checkpoint_segments and self.training and torch.is_grad_enabled():
            x = run_checkpointed(list(self.units()), x, self.checkpoint_segments)
        else:
            for stage in self.stages():
                x = stage(x)
        if self.final_bn is not None:
            x = F.relu(self.final_bn(x), inplace=True)
        return x

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        # The pool's backward builds an NCHW gradient; a channels_last net wants its own layout back.
        return self.fc(torch.flatten(self.avgpool(keep_gradient_layout(x)), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
