"""The two builders (CIFAR and ImageNet layouts) and the table of every named network of the papers."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from resnetlab.layers.batchnorm import ReferenceBatchNorm2d
from resnetlab.layers.shortcut_variants import SHORTCUT_VARIANTS
from resnetlab.layers.stochastic_depth import StochasticDepth
from resnetlab.models.blocks import ACTIVATION_PLACEMENTS, BasicBlock, Bottleneck, PlainBlock
from resnetlab.models.preact_blocks import PreActBasicBlock, PreActBottleneck
from resnetlab.models.registry import ModelSpec, register_model
from resnetlab.models.resnet import ResNet

NORM_LAYERS = {"batch": nn.BatchNorm2d, "reference": ReferenceBatchNorm2d}
UNIT_KINDS = ("basic", "bottleneck", "plain")
CIFAR_WIDTHS = (16, 32, 64)
IMAGENET_WIDTHS = (64, 128, 256, 512)

HE2015 = "He et al. 2015, Deep Residual Learning"
HE2016 = "He et al. 2016, Identity Mappings"


def _unit_class(block: str, placement: str) -> type[nn.Module]:
    if block not in UNIT_KINDS:
        raise ValueError(f"block must be one of {UNIT_KINDS}, got {block!r}")
    if placement not in ACTIVATION_PLACEMENTS:
        raise ValueError(f"placement must be one of {ACTIVATION_PLACEMENTS}, got {placement!r}")
    if placement == "full_preact":
        if block == "plain":
            raise ValueError("plain nets have no residual units to pre-activate")
        return PreActBasicBlock if block == "basic" else PreActBottleneck
    return {"basic": BasicBlock, "bottleneck": Bottleneck, "plain": PlainBlock}[block]


def _build(
    block: str,
    layers: Sequence[int],
    widths: Sequence[int],
    stem: str,
    default_shortcut: str,
    *,
    num_classes: int,
    placement: str,
    shortcut: str | None,
    shortcut_pool: str,
    shortcut_variant: str,
    shortcut_scale: float | None,
    branch_scale: float | None,
    gate_bias: float | None,
    shortcut_dropout: float | None,
    stochastic_depth: StochasticDepth | dict | float | None,
    norm: str,
    zero_init_residual: bool,
    in_channels: int,
    stride_in_1x1: bool = False,
    checkpoint_segments: int = 0,
) -> ResNet:
    """Turn the user-facing options into `ResNet` arguments (names to classes, variants to merges)."""
    unit = _unit_class(block, placement)
    if norm not in NORM_LAYERS:
        raise ValueError(f"norm must be one of {tuple(NORM_LAYERS)}, got {norm!r}")
    if shortcut_variant not in SHORTCUT_VARIANTS:
        raise ValueError(f"shortcut_variant must be one of {SHORTCUT_VARIANTS}, got {shortcut_variant!r}")
    if unit is PlainBlock and (shortcut is not None or shortcut_variant != "identity"):
        raise ValueError("plain nets have no shortcut; drop the shortcut options")
    if shortcut_variant == "conv1x1":
        # Table 1's "1x1 conv shortcut" is option C: a projection on every unit.
        if shortcut not in (None, "C"):
            raise ValueError(f"shortcut_variant='conv1x1' is shortcut option C, not {shortcut!r}")
        shortcut = "C"
    merge_options = None
    if shortcut_variant not in ("identity", "conv1x1"):
        merge_options = dict(variant=shortcut_variant, shortcut_scale=shortcut_scale, branch_scale=branch_scale,
                             gate_bias=gate_bias, dropout=shortcut_dropout)
    elif any(value is not None for value in (shortcut_scale, branch_scale, gate_bias, shortcut_dropout)):
        raise ValueError(f"shortcut_scale, branch_scale, gate_bias and shortcut_dropout need a shortcut_variant "
                         f"that uses them, not {shortcut_variant!r}")
    return ResNet(
        unit, layers, widths, num_classes=num_classes, stem=stem, stem_width=widths[0], in_channels=in_channels,
        norm_layer=NORM_LAYERS[norm], shortcut=shortcut or default_shortcut, shortcut_pool=shortcut_pool,
        stride_in_1x1=stride_in_1x1, placement="original" if placement == "full_preact" else placement,
        merge_options=merge_options, stochastic_depth=StochasticDepth.coerce(stochastic_depth),
        zero_init_residual=zero_init_residual, checkpoint_segments=checkpoint_segments,
    )


def cifar_resnet(
    depth: int,
    block: str = "basic",
    *,
    num_classes: int = 10,
    placement: str = "original",
    shortcut: str | None = None,
    shortcut_pool: str = "subsample",
    shortcut_variant: str = "identity",
    shortcut_scale: float | None = None,
    branch_scale: float | None = None,
    gate_bias: float | None = None,
    shortcut_dropout: float | None = None,
    stochastic_depth: StochasticDepth | dict | float | None = None,
    norm: str = "batch",
    zero_init_residual: bool = False,
    in_channels: int = 3,
    checkpoint_segments: int = 0,
) -> ResNet:
    """A CIFAR network of He et al. 2015 (Sec. 4.2): a 3x3 conv, three stages of n units at 32/16/8 px.

    Depth is 6n+2 for basic and plain units and 9n+2 for bottleneck units (He et al. 2016). The default
    shortcut is option A for basic units (the ResNet paper) and B for bottlenecks (the authors' code).
    ``checkpoint_segments`` trades compute for activation memory in training (`ResNet`).
    """
    layers_per_unit = 3 if block == "bottleneck" else 2
    if depth < 2 or (depth - 2) % (3 * layers_per_unit):
        raise ValueError(f"CIFAR {block} nets have depth {3 * layers_per_unit}n+2, got {depth}")
    units_per_stage = (depth - 2) // (3 * layers_per_unit)
    return _build(
        block, [units_per_stage] * 3, CIFAR_WIDTHS, "cifar", "B" if block == "bottleneck" else "A",
        num_classes=num_classes, placement=placement, shortcut=shortcut, shortcut_pool=shortcut_pool,
        shortcut_variant=shortcut_variant, shortcut_scale=shortcut_scale, branch_scale=branch_scale,
        gate_bias=gate_bias, shortcut_dropout=shortcut_dropout, stochastic_depth=stochastic_depth, norm=norm,
        zero_init_residual=zero_init_residual, in_channels=in_channels, checkpoint_segments=checkpoint_segments,
    )


def imagenet_resnet(
    layers: Sequence[int],
    block: str = "bottleneck",
    *,
    num_classes: int = 1000,
    placement: str = "original",
    shortcut: str | None = None,
    shortcut_pool: str = "subsample",
    stride_in_1x1: bool = False,
    shortcut_variant: str = "identity",
    shortcut_scale: float | None = None,
    branch_scale: float | None = None,
    gate_bias: float | None = None,
    shortcut_dropout: float | None = None,
    stochastic_depth: StochasticDepth | dict | float | None = None,
    norm: str = "batch",
    zero_init_residual: bool = False,
    in_channels: int = 3,
    checkpoint_segments: int = 0,
) -> ResNet:
    """An ImageNet network of He et al. 2015 (Table 1): 7x7/2 conv, max pool, four stages at 56/28/14/7 px.

    ``stride_in_1x1=True`` is the paper's v1 bottleneck; the default False is torchvision's v1.5.
    The default shortcut is option B. ``checkpoint_segments`` trades compute for activation memory in
    training (`ResNet`).
    """
    return _build(
        block, layers, IMAGENET_WIDTHS, "imagenet", "B",
        num_classes=num_classes, placement=placement, shortcut=shortcut, shortcut_pool=shortcut_pool,
        shortcut_variant=shortcut_variant, shortcut_scale=shortcut_scale, branch_scale=branch_scale,
        gate_bias=gate_bias, shortcut_dropout=shortcut_dropout, stochastic_depth=stochastic_depth, norm=norm,
        zero_init_residual=zero_init_residual, in_channels=in_channels, stride_in_1x1=stride_in_1x1,
        checkpoint_segments=checkpoint_segments,
    )


# ---- the named networks ------------------------------------------------------------------------------
IMAGENET_LAYOUTS = {  # depth: (unit, units per stage); ResNet-200 is fb.resnet.torch's layout (He et al. 2016)
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}
CIFAR_RESNET_DEPTHS = (20, 32, 44, 56, 110, 1202)  # He et al. 2015, Table 6
CIFAR_PLAIN_DEPTHS = (20, 32, 44, 56, 110)  # He et al. 2015, Fig. 6
CIFAR_BOTTLENECK_DEPTHS = (164, 1001)  # He et al. 2016, Tables 2-3
IMAGENET_PLAIN_DEPTHS = (18, 34)  # He et al. 2015, Table 2


def _register_all() -> None:
    for depth in CIFAR_RESNET_DEPTHS:
        register_model(ModelSpec(f"resnet{depth}", cifar_resnet, {"depth": depth, "block": "basic"}, "cifar", depth,
                                 HE2015, f"CIFAR ResNet-{depth}, basic units, shortcut A"))
    for depth in CIFAR_BOTTLENECK_DEPTHS:
        register_model(ModelSpec(f"resnet{depth}", cifar_resnet, {"depth": depth, "block": "bottleneck"}, "cifar",
                                 depth, HE2016, f"CIFAR ResNet-{depth}, original bottleneck units, shortcut B"))
    for depth in CIFAR_PLAIN_DEPTHS:
        register_model(ModelSpec(f"plain{depth}", cifar_resnet, {"depth": depth, "block": "plain"}, "cifar", depth,
                                 HE2015, f"CIFAR plain-{depth}, no shortcuts"))
    for depth, block in ((110, "basic"), *((d, "bottleneck") for d in CIFAR_BOTTLENECK_DEPTHS)):
        register_model(ModelSpec(
            f"preact_resnet{depth}", cifar_resnet, {"depth": depth, "block": block, "placement": "full_preact"},
            "cifar", depth, HE2016, f"CIFAR pre-activation ResNet-{depth}, {block} units"))
    for depth, (block, layers) in IMAGENET_LAYOUTS.items():
        register_model(ModelSpec(f"resnet{depth}", imagenet_resnet, {"layers": layers, "block": block},
                                 "imagenet", depth, HE2015, f"ImageNet ResNet-{depth}, {block} units"))
    for depth in IMAGENET_PLAIN_DEPTHS:
        register_model(ModelSpec(f"plain{depth}", imagenet_resnet, {"layers": IMAGENET_LAYOUTS[depth][1],
                                 "block": "plain"}, "imagenet", depth, HE2015, f"ImageNet plain-{depth}"))
    for depth, (block, layers) in IMAGENET_LAYOUTS.items():
        register_model(ModelSpec(
            f"preact_resnet{depth}", imagenet_resnet, {"layers": layers, "block": block, "placement": "full_preact"},
            "imagenet", depth, HE2016, f"ImageNet pre-activation ResNet-{depth}, {block} units"))


_register_all()
