"""Keeping gradients in the activations' memory layout.

Some backward formulas build their gradient in torch's default NCHW layout whatever the layout of the forward
tensor: the strided subsampling of the option-A shortcut (a zero tensor with the slice scattered in) and the
global average pool. In a channels_last network such a gradient meets channels_last ones at the next addition
and makes the batch-norm, ReLU and convolution backward passes that follow run on mixed layouts (slower
kernels, reorders inside oneDNN). `keep_gradient_layout` marks a tensor whose gradient must come back in the
tensor's own layout: one copy of that gradient instead of several slow passes.
"""

from __future__ import annotations

import torch


def suggested_format(tensor: torch.Tensor) -> torch.memory_format:
    if tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


class _KeepGradientLayout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        ctx.layout = suggested_format(tensor)
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous(memory_format=ctx.layout)


def keep_gradient_layout(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` itself in the forward pass; its gradient in ``tensor``'s memory layout in the backward pass.

    A no-op outside autograd (inference, export) and for NCHW tensors, whose gradients are NCHW already.
    """
    if not (tensor.requires_grad and torch.is_grad_enabled()) or suggested_format(tensor) is torch.contiguous_format:
        return tensor
    return _KeepGradientLayout.apply(tensor)
