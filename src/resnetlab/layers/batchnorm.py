"""Reference batch normalization (Ioffe & Szegedy, 2015), written from the paper.

"Batch Normalization: Accelerating Deep Network Training by Reducing Internal
Covariate Shift", ICML 2015, arXiv:1502.03167. The forward pass is Algorithm 1;
the backward pass is the chain rule of Section 3, simplified by hand.
"""

from typing import Optional

import torch
from torch import nn
from torch.autograd.function import once_differentiable

# Statistics are per channel, so an NCHW tensor is reduced over N, H and W
# (Section 3.2: for convolutions, all locations of a feature map share one
# mean/variance pair, so the effective mini-batch is m = N * H * W).
_REDUCE_DIMS = (0, 2, 3)


def _per_channel(t: torch.Tensor) -> torch.Tensor:
    """Reshape a (C,) tensor so it broadcasts against NCHW."""
    return t.view(1, -1, 1, 1)


class BatchNorm2dFunction(torch.autograd.Function):
    """Training-mode batch normalization of an NCHW tensor (Algorithm 1).

    Forward: mu and sigma^2 are the batch mean and *biased* variance per
    channel, x_hat = (x - mu) / sqrt(sigma^2 + eps), y = gamma * x_hat + beta.
    Backward: the gradients of Section 3, reduced to
    dbeta = sum(dy), dgamma = sum(dy * x_hat) and
    dx = gamma * inv_std / m * (m * dy - dbeta - x_hat * dgamma).
    ``weight`` (gamma) and ``bias`` (beta) may be None (affine=False).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        mean = x.mean(dim=_REDUCE_DIMS)
        # Biased (divide by m) variance: Algorithm 1 normalizes with the
        # statistics of this very batch, not an estimate of the population.
        var = x.var(dim=_REDUCE_DIMS, unbiased=False)
        inv_std = torch.rsqrt(var + eps)
        x_hat = (x - _per_channel(mean)) * _per_channel(inv_std)
        y = x_hat
        if weight is not None:
            y = y * _per_channel(weight)
        if bias is not None:
            y = y + _per_channel(bias)
        # x_hat and inv_std are all the backward needs; x itself is not kept.
        ctx.save_for_backward(x_hat, inv_std, weight)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x_hat, inv_std, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        m = x_hat.numel() // x_hat.shape[1]
        # Both sums are needed by dx even when gamma/beta need no gradient.
        dbias = grad_out.sum(dim=_REDUCE_DIMS)
        dweight = (grad_out * x_hat).sum(dim=_REDUCE_DIMS)
        grad_x = grad_w = grad_b = None
        if need_x:
            scale = inv_std / m if weight is None else weight * inv_std / m
            grad_x = _per_channel(scale) * (
                m * grad_out
                - _per_channel(dbias)
                - x_hat * _per_channel(dweight)
            )
        # needs_input_grad is False for a None weight/bias, so no extra check.
        if need_w:
            grad_w = dweight
        if need_b:
            grad_b = dbias
        return grad_x, grad_w, grad_b, None


class ReferenceBatchNorm2d(nn.Module):
    """Drop-in replacement for ``torch.nn.BatchNorm2d`` (Ioffe & Szegedy 2015).

    Training uses :class:`BatchNorm2dFunction` (Algorithm 1) and, when
    ``track_running_stats`` is set, keeps moving averages of the batch mean and
    the *unbiased* batch variance, which Section 3.1 uses at inference
    (Var[x] = m/(m-1) * E_B[sigma_B^2]). ``momentum=None`` gives a cumulative
    average. Parameter and buffer names match torch's, so state dicts are
    interchangeable with ``strict=True``.
    """

    def __init__(self, num_features: int, eps: float = 1e-5,
                 momentum: Optional[float] = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None,
                 *, bias: bool = True):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = nn.Parameter(torch.empty(num_features, **factory))
            if bias:
                self.bias = nn.Parameter(torch.empty(num_features, **factory))
            else:  # torch >= 2.x keyword: scale without shift
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory))
            self.register_buffer("running_var", torch.ones(num_features, **factory))
            self.register_buffer("num_batches_tracked",
                                 torch.tensor(0, dtype=torch.long, device=device))
        else:
            # Registered as None, as torch does, so they stay out of state_dict.
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            # gamma = 1, beta = 0 starts as the identity on x_hat (Section 3).
            nn.init.ones_(self.weight)
            if self.bias is not None:
                nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        return ("{num_features}, eps={eps}, momentum={momentum}, affine={affine}, "
                "bias={use_bias}, track_running_stats={track_running_stats}".format(
                    **self.__dict__, use_bias=self.bias is not None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"expected 4D input (got {x.dim()}D input)")
        # Without running statistics there is nothing else to normalize with,
        # so batch statistics are used in eval mode too (as torch does).
        use_batch_stats = self.training or self.running_mean is None
        if not use_batch_stats:
            # Section 3.1 inference: a fixed affine map, so plain torch ops
            # suffice and autograd differentiates it correctly.
            y = (x - _per_channel(self.running_mean)) * _per_channel(
                torch.rsqrt(self.running_var + self.eps))
            if self.weight is not None:
                y = y * _per_channel(self.weight)
            if self.bias is not None:
                y = y + _per_channel(self.bias)
            return y
        if x.numel() // x.shape[1] == 1:
            # One value per channel has zero variance; x_hat would be all zeros.
            raise ValueError(
                f"Expected more than 1 value per channel when training, got input size {tuple(x.shape)}")
        if self.training and self.track_running_stats:
            self._update_running_stats(x)
        return BatchNorm2dFunction.apply(x, self.weight, self.bias, self.eps)

    @torch.no_grad()
    def _update_running_stats(self, x: torch.Tensor) -> None:
        self.num_batches_tracked += 1
        if self.momentum is None:
            factor = 1.0 / float(self.num_batches_tracked)  # cumulative average
        else:
            factor = self.momentum
        # Unbiased (m - 1) variance: the running value estimates the
        # population variance used at inference (Section 3.1).
        var, mean = torch.var_mean(x, dim=_REDUCE_DIMS, correction=1)
        self.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
        self.running_var.mul_(1 - factor).add_(var, alpha=factor)
