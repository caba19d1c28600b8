"""One generic residual network: a stem, stages of units, and a head (torchvision's layout and names)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from resnetlab.layers.memory_format import keep_gradient_layout
from resnetlab.layers.shortcuts import conv3x3
from resnetlab.layers.stochastic_depth import DropPath, survival_probabilities
from resnetlab.models.blocks import NetworkUnit, ResidualUnit
from resnetlab.models.checkpointing import check_segments, run_checkpointed
from resnetlab.models.fusion import fuse_for_inference
from resnetlab.models.options import ResNetOptions

STEMS = ("imagenet", "cifar")


class ResNet(nn.Module):
    """A residual (or plain) network.

    Args:
        block: the unit class, a `NetworkUnit` (``BasicBlock``, ``Bottleneck``, ``PlainBlock``,
            ``PreActBasicBlock``, ``PreActBottleneck``).
        layers: units per stage, e.g. ``(3, 4, 6, 3)`` for ResNet-50 or ``(18, 18, 18)`` for ResNet-110.
        widths: base channels per stage (the output has ``width * block.expansion`` channels); the stem conv
            has ``widths[0]`` channels (64 ImageNet, 16 CIFAR).
        num_classes: outputs of the final fully-connected layer.
        stem: ``"imagenet"`` (7x7/2 conv, 3x3/2 max pool) or ``"cifar"`` (3x3 conv, no pool).
        options: everything else (`ResNetOptions`: shortcut, placement, norm, stochastic depth, ...).

    ``options.checkpoint_segments`` turns on activation checkpointing: with k > 0, in training mode with grad
    enabled, the residual units (all stages, in order) run in k contiguous chunks of nearly equal size (one unit
    per chunk when k exceeds the number of units), each under `torch.utils.checkpoint.checkpoint`: only the
    chunks' inputs are kept for backward and every chunk's forward runs again during backward, about one extra
    forward pass of compute. Between sqrt(units) and 2 sqrt(units) segments keep the least (a bottleneck unit
    stores several times its input, which favours more segments; measured by ``benchmarks/memory_deep_nets.py``).
    Results, stochastic-depth decisions and BN running statistics are the same as without it
    (`resnetlab.models.checkpointing`). Eval mode and ``torch.no_grad()`` run as usual. Also settable later:
    ``model.checkpoint_segments = 8``.
    """

    def __init__(self, block: type[NetworkUnit], layers: Sequence[int], widths: Sequence[int], *,
                 num_classes: int = 1000, stem: str = "imagenet", options: ResNetOptions | None = None) -> None:
        super().__init__()
        options = options if options is not None else ResNetOptions()
        self._check_arguments(block, layers, widths, num_classes, stem, options)
        self.checkpoint_segments = options.checkpoint_segments
        self.block, self.stem_type, self.options = block, stem, options
        stem_width = widths[0]
        self.conv1, self.maxpool = self._make_stem(stem, options.in_channels, stem_width)
        self.bn1 = options.norm_layer(stem_width)  # the pre-activation nets' first activation sits here too
        shortcut = options.resolved_shortcut(block.default_shortcut(stem))
        drop_paths = self._make_drop_paths(sum(layers), options)
        channels = stem_width
        self.stage_names: list[str] = []
        for stage, (num_blocks, width) in enumerate(zip(layers, widths)):
            units = []
            for index in range(num_blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                units.append(block.build(channels, width, stride, options=options, shortcut=shortcut,
                                         drop_path=drop_paths.pop(0), first_unit=stage == 0 and index == 0))
                channels = width * block.expansion
            self.add_module(f"layer{stage + 1}", nn.Sequential(*units))
            self.stage_names.append(f"layer{stage + 1}")
        self.num_features = channels
        # Pre-activation nets end with an extra BN-ReLU after the last addition (He et al. 2016, appendix).
        self.final_bn = options.norm_layer(channels) if block.preactivation else None
        # ReLU-only pre-activation (d) keeps the ReLU its last unit's addition had in (a): moving each unit's
        # after-addition ReLU into the next unit's branch leaves the last one where it was (He et al. 2016, Sec. 4.1:
        # "an extra activation right after its element-wise addition", the natural outcome of Fig. 5).
        self.final_relu = not block.preactivation and options.placement == "relu_only_preact"
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        if not self.fc.weight.is_meta:  # a net on the meta device (config checks, counting) has no values to draw
            self._initialise(options.zero_init_residual)

    @staticmethod
    def _check_arguments(block, layers, widths, num_classes, stem, options) -> None:
        if not (isinstance(block, type) and issubclass(block, NetworkUnit)):
            raise ValueError(f"block must be a NetworkUnit class (BasicBlock, Bottleneck, ...), got {block!r}")
        if len(layers) != len(widths) or not layers or min(layers) < 1:
            raise ValueError(f"layers {tuple(layers)} and widths {tuple(widths)} must be non-empty, equal length, >= 1")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
        block.check_options(options)

    @staticmethod
    def _make_drop_paths(num_units: int, options: ResNetOptions) -> list[DropPath | None]:
        settings = options.stochastic_depth
        if settings is None:
            return [None] * num_units
        return [DropPath(p, settings.mode, settings.scaling)
                for p in survival_probabilities(num_units, settings.p_last, settings.rule)]

    @staticmethod
    def _make_stem(stem: str, in_channels: int, width: int) -> tuple[nn.Conv2d, nn.Module]:
        if stem == "imagenet":
            conv = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
            return conv, nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        return conv3x3(in_channels, width), nn.Identity()

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
        return fuse_for_inference(self)

    def conv_norm_pairs(self) -> list[tuple[str, str]]:
        """The stem's BN follows its convolution (the units report their own pairs)."""
        return [("conv1", "bn1")]

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
        elif self.final_relu:
            x = F.relu(x)
        return x

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        # The pool's backward builds an NCHW gradient; a channels_last net wants its own layout back.
        return self.fc(torch.flatten(self.avgpool(keep_gradient_layout(x)), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
