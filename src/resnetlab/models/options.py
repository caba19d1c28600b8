"""The options of every residual network, as one frozen value: what `create_model` takes besides the name and
the number of classes, and what a config's model section, a checkpoint and a model card carry.

`ResNetOptions` validates everything that does not depend on the unit type when it is made; the unit classes
check the rest (`NetworkUnit.check_options`: plain units take no shortcut options, basic units no
``stride_in_1x1``, ...), so a new unit type brings its own rules.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import nn

from resnetlab.layers.batchnorm import ReferenceBatchNorm2d
from resnetlab.layers.shortcut_variants import check_merge_settings
from resnetlab.layers.shortcuts import SHORTCUT_OPTIONS, SHORTCUT_POOLS
from resnetlab.layers.stochastic_depth import StochasticDepth
from resnetlab.models.checkpointing import check_segments
from resnetlab.models.placements import ACTIVATION_PLACEMENTS

NORM_LAYERS = {"batch": nn.BatchNorm2d, "reference": ReferenceBatchNorm2d}
MERGE_FREE_VARIANTS = ("identity", "conv1x1")  # shortcut variants that keep the plain sum


@dataclass(frozen=True)
class ResNetOptions:
    """Options of a residual (or plain) network; every field is a keyword of `resnetlab.create_model`.

    Args:
        placement: activation placement (He et al. 2016, Table 2): ``original`` (a), ``bn_after_add`` (b),
            ``relu_before_add`` (c), ``relu_only_preact`` (d) or ``full_preact`` (e, pre-activation units).
        shortcut: option ``"A"``, ``"B"`` or ``"C"`` (He et al. 2015); None: A for basic units on CIFAR (the
            ResNet paper), B otherwise (bottlenecks as in the authors' code, and ImageNet).
        shortcut_pool: how option A subsamples: ``"subsample"`` (the ResNet paper) or ``"avg"`` (the
            stochastic-depth paper).
        stride_in_1x1: bottleneck stride on the first 1x1 (the ResNet paper's v1) instead of the 3x3 (v1.5).
        shortcut_variant: He et al. 2016, Table 1: ``identity``, ``constant_scaling``, ``exclusive_gating``,
            ``shortcut_only_gating``, ``conv1x1`` (option C) or ``dropout``; the next four numbers are its
            settings, each given exactly when the variant uses it.
        stochastic_depth: `StochasticDepth` settings (or a dict of them, or a bare p_L), None: constant depth.
        norm: ``"batch"`` (`torch.nn.BatchNorm2d`) or ``"reference"`` (our `ReferenceBatchNorm2d`).
        zero_init_residual: start the last BN of every branch at 0, so each unit starts as the identity.
        in_channels: channels of the input image.
        checkpoint_segments: activation checkpointing in training (0: off); see `ResNet`.
    """

    placement: str = "original"
    shortcut: str | None = None
    shortcut_pool: str = "subsample"
    stride_in_1x1: bool = False
    shortcut_variant: str = "identity"
    shortcut_scale: float | None = None
    branch_scale: float | None = None
    gate_bias: float | None = None
    shortcut_dropout: float | None = None
    stochastic_depth: StochasticDepth | None = None
    norm: str = "batch"
    zero_init_residual: bool = False
    in_channels: int = 3
    checkpoint_segments: int = 0

    def __post_init__(self) -> None:
        _check_choice("placement", self.placement, ACTIVATION_PLACEMENTS)
        _check_choice("shortcut", self.shortcut, (None, *SHORTCUT_OPTIONS))
        _check_choice("shortcut_pool", self.shortcut_pool, SHORTCUT_POOLS)
        _check_choice("norm", self.norm, tuple(NORM_LAYERS))
        check_merge_settings(self.shortcut_variant, self.shortcut_scale, self.branch_scale, self.gate_bias,
                             self.shortcut_dropout)
        if self.shortcut_variant == "conv1x1":
            # Table 1's "1x1 conv shortcut" is option C: a projection on every unit.
            if self.shortcut not in (None, "C"):
                raise ValueError(f"shortcut_variant='conv1x1' is shortcut option C, not {self.shortcut!r}")
        object.__setattr__(self, "stochastic_depth", StochasticDepth.coerce(self.stochastic_depth))
        if self.stochastic_depth is not None and self.merge_settings is not None:
            raise ValueError("stochastic depth with a shortcut variant is not supported: a dropped unit's "
                             "output under a gated or scaled shortcut is not defined by either paper")
        object.__setattr__(self, "checkpoint_segments", check_segments(self.checkpoint_segments))
        if isinstance(self.in_channels, bool) or not isinstance(self.in_channels, int) or self.in_channels < 1:
            raise ValueError(f"in_channels must be an int >= 1, got {self.in_channels!r}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, in the order of the fields (what `resnetlab info` lists)."""
        return tuple(field.name for field in dataclasses.fields(cls))

    @property
    def norm_layer(self) -> type[nn.Module]:
        return NORM_LAYERS[self.norm]

    @property
    def merge_settings(self) -> dict | None:
        """`resnetlab.layers.shortcut_variants.make_merge` arguments of the variant, None for the plain sum."""
        if self.shortcut_variant in MERGE_FREE_VARIANTS:
            return None
        return dict(variant=self.shortcut_variant, shortcut_scale=self.shortcut_scale, branch_scale=self.branch_scale,
                    gate_bias=self.gate_bias, dropout=self.shortcut_dropout)

    def resolved_shortcut(self, default: str | None) -> str | None:
        """The shortcut option the units use: C for the conv1x1 variant, else the one given or ``default``."""
        if self.shortcut_variant == "conv1x1":
            return "C"
        return self.shortcut or default


def _check_choice(name: str, value: object, allowed: tuple) -> None:
    if value not in allowed:
        shown = tuple(a for a in allowed if a is not None)
        raise ValueError(f"{name} must be one of {shown}, got {value!r}")
