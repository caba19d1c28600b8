"""Fold batch normalization into the convolution before it, for inference (a network in eval mode).

In eval mode BN is a fixed per-channel affine map y = gamma (x - mean) / sqrt(var + eps) + beta, so after a
convolution it folds into the conv's weights and a bias: W' = W * s, b' = (b - mean) * s + beta with
s = gamma / sqrt(var + eps). The BN module becomes `nn.Identity`. Only BNs that directly follow a convolution
fold: a pre-activation unit's first BN acts before its conv (with a ReLU between) and stays as it is, and
so does a BN after the addition (Identity Mappings placement b).
"""

from __future__ import annotations

import torch
from torch import nn

from resnetlab.layers.batchnorm import ReferenceBatchNorm2d

BATCH_NORMS = (nn.BatchNorm2d, ReferenceBatchNorm2d)


@torch.no_grad()
def fold_batchnorm(conv: nn.Conv2d, norm: nn.Module) -> nn.Conv2d:
    """A new convolution computing norm(conv(x)) with ``norm`` in eval mode (its running statistics)."""
    if not isinstance(norm, BATCH_NORMS) or norm.running_mean is None:
        raise ValueError(f"can only fold a BatchNorm2d with running statistics, got {type(norm).__name__}")
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode,
                      device=conv.weight.device, dtype=conv.weight.dtype)
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    fused.bias.copy_(shift if conv.bias is None else conv.bias * scale + shift)
    return fused


def conv_norm_pairs(model: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """(parent module, conv attribute, BN attribute) of every BN that directly follows a convolution: the
    pairs each network part reports itself (`conv_norm_pairs()` of the stem and the units) and every
    projection shortcut (a Sequential of a convolution and a BN)."""
    pairs = []
    for module in model.modules():
        reported = getattr(module, "conv_norm_pairs", None)
        if callable(reported):
            pairs += [(module, conv, norm) for conv, norm in reported()]
        if isinstance(module, nn.Sequential) and len(module) == 2 and isinstance(module[0], nn.Conv2d) \
                and isinstance(module[1], BATCH_NORMS):
            pairs.append((module, "0", "1"))  # a projection shortcut
    return pairs


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """Fold every foldable BN of a resnetlab network into its convolution, in place; returns the model in eval
    mode. The result is for inference only: the folded BNs no longer learn or track statistics."""
    model.eval()
    for parent, conv_name, norm_name in conv_norm_pairs(model):
        conv, norm = getattr(parent, conv_name), getattr(parent, norm_name)
        if isinstance(norm, nn.Identity):
            continue  # already folded
        setattr(parent, conv_name, fold_batchnorm(conv, norm))
        setattr(parent, norm_name, nn.Identity())
    return model
