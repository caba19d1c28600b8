"""Batch normalization over the global batch of a process group, on any device (CPU processes with gloo too).

torch's ``nn.SyncBatchNorm`` runs only on GPUs. This layer computes the same thing with collectives that
autograd differentiates (``torch.distributed._functional_collectives.all_reduce``, whose backward is an
all-reduce of the gradients), so no backward pass is written by hand: the per-channel sums and the sums of
squared deviations are all-reduced, and the batch mean and biased variance are those of every rank's images
together, exactly as one process would compute them on the whole batch (Ioffe & Szegedy 2015, Algorithm 1,
with m = the global N x H x W). The variance is taken in two passes, around the global mean, so float32 keeps
its precision where E[x^2] - E[x]^2 would cancel.

Each BN layer costs two all-reduces forward and two backward; on GPUs `convert_sync_batchnorm` keeps torch's
fused CUDA kernels instead.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed import _functional_collectives as collectives


def _group_sum(tensor: torch.Tensor, group) -> torch.Tensor:
    return collectives.all_reduce(tensor, "sum", group)


class AllReduceBatchNorm(nn.modules.batchnorm._BatchNorm):
    """A BatchNorm1d/2d/3d whose training-mode statistics are those of the whole process group's batch.

    Outside training, or without an initialized group of more than one process, it is plain BN. The state
    dict is BatchNorm's, so checkpoints load into the unconverted model."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, process_group=None, device=None, dtype=None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        self.process_group = process_group

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def _group(self):
        return self.process_group if self.process_group is not None else dist.group.WORLD

    def _synchronized(self) -> bool:
        return (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size(self._group()) > 1)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        if not self._synchronized():
            return super().forward(input)
        group = self._group()
        reduce_dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        local_count = input.numel() // input.shape[1]
        # One all-reduce for the sums and the element count (ranks may hold different batch sizes).
        count_column = input.new_full((1,), float(local_count))
        sums = _group_sum(torch.cat([input.sum(reduce_dims), count_column]), group)
        count = sums[-1].detach()
        mean = sums[:-1] / count
        centered = input - mean.view(shape)
        variance = _group_sum(centered.square().sum(reduce_dims), group) / count  # biased, as Algorithm 1
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), variance.detach(), count.item())
        inverse_std = torch.rsqrt(variance + self.eps)
        if self.affine:
            return centered * (inverse_std * self.weight).view(shape) + self.bias.view(shape)
        return centered * inverse_std.view(shape)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, variance: torch.Tensor, count: float) -> None:
        """As F.batch_norm: an exponential (or, with momentum=None, cumulative) average, the variance unbiased."""
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = variance * (count / max(count - 1.0, 1.0))
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)


def convert_to_all_reduce_bn(module: nn.Module, process_group=None) -> nn.Module:
    """Every BatchNorm1d/2d/3d in ``module`` replaced by `AllReduceBatchNorm` with the same parameters and
    buffers (shared, not copied); other modules, including our reference BN of the batch-norm study, stay."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, AllReduceBatchNorm):
        converted = AllReduceBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                       module.track_running_stats, process_group)
        if module.affine:
            converted.weight, converted.bias = module.weight, module.bias
        if module.track_running_stats:
            converted.running_mean, converted.running_var = module.running_mean, module.running_var
            converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        replacement = convert_to_all_reduce_bn(child, process_group)
        if replacement is not child:
            setattr(module, name, replacement)
    return module
