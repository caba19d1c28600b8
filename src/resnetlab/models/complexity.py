"""Parameters, multiply-adds and the stage table of a model.

Multiply-adds come from `torch.utils.flop_counter.FlopCounterMode` (2 FLOPs per multiply-add) over one
forward pass of a single image; like the papers and torchvision, they count convolutions and the fc layer,
not BN, ReLU, pooling or additions. Models are built on the ``meta`` device so nothing is computed or stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from resnetlab.models.registry import create_model, get_model_spec
from resnetlab.models.resnet import ResNet


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (BN's gamma and beta included, running statistics not)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_weight_parameters(model: nn.Module) -> int:
    """Parameters of the convolutions and fully-connected layers only (some papers leave BN out)."""
    layers = (nn.Conv2d, nn.Linear)
    return sum(p.numel() for m in model.modules() if isinstance(m, layers) for p in m.parameters(recurse=False))


def count_multiply_adds(model: nn.Module, input_size: int, in_channels: int = 3) -> int:
    """Multiply-adds of one forward pass of one ``in_channels x input_size x input_size`` image (eval mode)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.empty(1, in_channels, input_size, input_size, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def build_on_meta(name: str, **options) -> nn.Module:
    """A registered model with its tensors on the ``meta`` device: shapes only, no memory, no init cost."""
    with torch.device("meta"):
        return create_model(name, **options)


@dataclass(frozen=True)
class ModelStats:
    name: str
    depth: int
    parameters: int
    multiply_adds: int
    input_size: int


def model_stats(name: str, input_size: int | None = None, **options) -> ModelStats:
    """Depth, parameters and multiply-adds of a registered model at its default (or a given) input size."""
    spec = get_model_spec(name)
    size = input_size or spec.input_size
    model = build_on_meta(name, **options)
    return ModelStats(name, spec.depth, count_parameters(model), count_multiply_adds(model, size), size)


@dataclass(frozen=True)
class StageRow:
    name: str
    output_shape: tuple[int, ...]  # C, H, W of the stage output for one image
    units: int
    layout: str
    parameters: int


def _unit_layout(unit: nn.Module) -> str:
    """The paper's bracket notation of one unit's main path, e.g. ``3x3, 16; 3x3, 16``."""
    convs = [m for name, m in unit.named_modules() if isinstance(m, nn.Conv2d) and name.startswith("conv")]
    return "; ".join(f"{c.kernel_size[0]}x{c.kernel_size[1]}, {c.out_channels}" for c in convs)


def stage_table(model: ResNet, input_size: int, in_channels: int = 3) -> list[StageRow]:
    """One row per stage (stem, each ``layerN``, head) with output shapes from a forward pass."""
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [getattr(model, n).register_forward_hook(
        lambda _m, _i, out, n=n: shapes.__setitem__(n, tuple(out.shape[1:])))
        for n in ("maxpool", *model.stage_names, "fc")]
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        model(torch.empty(1, in_channels, input_size, input_size, device=device))
    for hook in hooks:
        hook.remove()
    stem_params = count_parameters(model.conv1) + count_parameters(model.bn1)
    rows = [StageRow("stem", shapes["maxpool"], 0, _stem_layout(model), stem_params)]
    for name in model.stage_names:
        stage = getattr(model, name)
        rows.append(StageRow(name, shapes[name], len(stage), _unit_layout(stage[0]), count_parameters(stage)))
    head_params = count_parameters(model.fc) + (count_parameters(model.final_bn) if model.final_bn is not None else 0)
    head = ("BN-ReLU, " if model.final_bn is not None else "") + f"global avg pool, fc {model.fc.out_features}"
    rows.append(StageRow("head", shapes["fc"], 0, head, head_params))
    return rows


def _stem_layout(model: ResNet) -> str:
    conv = model.conv1
    text = f"{conv.kernel_size[0]}x{conv.kernel_size[1]}, {conv.out_channels}, stride {conv.stride[0]}"
    return text + (", 3x3 max pool, stride 2" if isinstance(model.maxpool, nn.MaxPool2d) else "")
