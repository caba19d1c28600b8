"""The two builders (CIFAR and ImageNet layouts) and the table of every named network of the papers."""

from __future__ import annotations

from collections.abc import Sequence

from resnetlab.models.blocks import BasicBlock, Bottleneck, NetworkUnit, PlainBlock
from resnetlab.models.options import ResNetOptions
from resnetlab.models.placements import FULL_PREACTIVATION
from resnetlab.models.preact_blocks import PreActBasicBlock, PreActBottleneck
from resnetlab.models.registry import ModelSpec, register_model
from resnetlab.models.resnet import ResNet

# The unit class of each unit kind, and of its full pre-activation form (He et al. 2016).
UNIT_CLASSES: dict[str, type[NetworkUnit]] = {"basic": BasicBlock, "bottleneck": Bottleneck, "plain": PlainBlock}
PREACTIVATION_UNIT_CLASSES: dict[str, type[NetworkUnit]] = {"basic": PreActBasicBlock,
                                                             "bottleneck": PreActBottleneck}
UNIT_KINDS = tuple(UNIT_CLASSES)
CIFAR_WIDTHS = (16, 32, 64)
IMAGENET_WIDTHS = (64, 128, 256, 512)

HE2015 = "He et al. 2015, Deep Residual Learning"
HE2016 = "He et al. 2016, Identity Mappings"


def unit_class(block: str, placement: str) -> type[NetworkUnit]:
    """The unit class of a unit kind (basic, bottleneck, plain) under an activation placement."""
    if block not in UNIT_KINDS:
        raise ValueError(f"block must be one of {UNIT_KINDS}, got {block!r}")
    if placement != FULL_PREACTIVATION:
        return UNIT_CLASSES[block]
    if block not in PREACTIVATION_UNIT_CLASSES:
        raise ValueError("plain nets have no residual units to pre-activate")
    return PREACTIVATION_UNIT_CLASSES[block]


def cifar_resnet(depth: int, block: str = "basic", *, num_classes: int = 10, **options) -> ResNet:
    """A CIFAR network of He et al. 2015 (Sec. 4.2): a 3x3 conv, three stages of n units at 32/16/8 px.

    Depth is 6n+2 for basic and plain units and 9n+2 for bottleneck units (He et al. 2016). ``options`` are
    the fields of `ResNetOptions` (the default shortcut is option A for basic units, as in the ResNet paper,
    and B for bottlenecks, as in the authors' code).
    """
    layers_per_unit = 3 if block == "bottleneck" else 2
    if depth < 2 or (depth - 2) % (3 * layers_per_unit):
        raise ValueError(f"CIFAR {block} nets have depth {3 * layers_per_unit}n+2, got {depth}")
    units_per_stage = (depth - 2) // (3 * layers_per_unit)
    return _build(block, [units_per_stage] * 3, CIFAR_WIDTHS, "cifar", num_classes, options)


def imagenet_resnet(layers: Sequence[int], block: str = "bottleneck", *, num_classes: int = 1000,
                    **options) -> ResNet:
    """An ImageNet network of He et al. 2015 (Table 1): 7x7/2 conv, max pool, four stages at 56/28/14/7 px.

    ``options`` are the fields of `ResNetOptions`; ``stride_in_1x1=True`` is the paper's v1 bottleneck, the
    default False torchvision's v1.5. The default shortcut is option B.
    """
    return _build(block, layers, IMAGENET_WIDTHS, "imagenet", num_classes, options)


def _build(block: str, layers: Sequence[int], widths: Sequence[int], stem: str, num_classes: int,
           options: dict | ResNetOptions) -> ResNet:
    if not isinstance(options, ResNetOptions):
        options = ResNetOptions(**options)
    return ResNet(unit_class(block, options.placement), layers, widths, num_classes=num_classes, stem=stem,
                  options=options)


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


def _resnet_spec(name: str, builder, architecture: dict, dataset: str, depth: int, paper: str,
                 description: str) -> ModelSpec:
    return ModelSpec(name, builder, architecture, dataset, depth, paper, description, option_type=ResNetOptions)


def _register_all() -> None:
    for depth in CIFAR_RESNET_DEPTHS:
        register_model(_resnet_spec(f"resnet{depth}", cifar_resnet, {"depth": depth, "block": "basic"}, "cifar", depth,
                                 HE2015, f"CIFAR ResNet-{depth}, basic units, shortcut A"))
    for depth in CIFAR_BOTTLENECK_DEPTHS:
        register_model(_resnet_spec(f"resnet{depth}", cifar_resnet, {"depth": depth, "block": "bottleneck"}, "cifar",
                                 depth, HE2016, f"CIFAR ResNet-{depth}, original bottleneck units, shortcut B"))
    for depth in CIFAR_PLAIN_DEPTHS:
        register_model(_resnet_spec(f"plain{depth}", cifar_resnet, {"depth": depth, "block": "plain"}, "cifar", depth,
                                 HE2015, f"CIFAR plain-{depth}, no shortcuts"))
    register_model(_resnet_spec("preact_resnet110", cifar_resnet, {"depth": 110, "block": "basic",
                                "placement": "full_preact"}, "cifar", 110, HE2016,
                                "CIFAR pre-activation ResNet-110, basic units"))
    for depth in CIFAR_BOTTLENECK_DEPTHS:  # as the authors' code (resnet-1k-layers): the stride on the first 1x1
        register_model(_resnet_spec(
            f"preact_resnet{depth}", cifar_resnet, {"depth": depth, "block": "bottleneck", "placement": "full_preact",
                                                    "stride_in_1x1": True},
            "cifar", depth, HE2016, f"CIFAR pre-activation ResNet-{depth}, bottleneck units (stride in the first "
            "1x1, as the authors' code)"))
    for depth, (block, layers) in IMAGENET_LAYOUTS.items():
        register_model(_resnet_spec(f"resnet{depth}", imagenet_resnet, {"layers": layers, "block": block},
                                 "imagenet", depth, HE2015, f"ImageNet ResNet-{depth}, {block} units"))
    for depth in IMAGENET_PLAIN_DEPTHS:
        register_model(_resnet_spec(f"plain{depth}", imagenet_resnet, {"layers": IMAGENET_LAYOUTS[depth][1],
                                 "block": "plain"}, "imagenet", depth, HE2015, f"ImageNet plain-{depth}"))
    for depth, (block, layers) in IMAGENET_LAYOUTS.items():
        register_model(_resnet_spec(
            f"preact_resnet{depth}", imagenet_resnet, {"layers": layers, "block": block, "placement": "full_preact"},
            "imagenet", depth, HE2016, f"ImageNet pre-activation ResNet-{depth}, {block} units"))


_register_all()
