"""Tests of the reference batch normalization against torch.nn.BatchNorm2d."""

import pytest
import torch
from torch import nn

from resnetlab.layers.batchnorm import BatchNorm2dFunction, ReferenceBatchNorm2d

FLOAT32_TOLERANCE = 1e-5
GRADCHECK_EPS = 1e-6
GRADCHECK_ATOL = 1e-5
SHAPE = (8, 5, 6, 7)
NUM_STEPS = 5


def _input(seed=0, shape=SHAPE, dtype=torch.float32):
    """Non-trivial input: per-channel offsets and scales far from (0, 1)."""
    g = torch.Generator().manual_seed(seed)
    c = shape[1]
    offset = torch.randn(1, c, 1, 1, generator=g, dtype=dtype) * 3.0
    scale = torch.rand(1, c, 1, 1, generator=g, dtype=dtype) * 4.0 + 0.5
    return torch.randn(*shape, generator=g, dtype=dtype) * scale + offset


def _pair(momentum=0.1, affine=True, seed=1):
    """A torch BatchNorm2d and a reference one with identical random affine weights."""
    ref = ReferenceBatchNorm2d(SHAPE[1], momentum=momentum, affine=affine)
    theirs = nn.BatchNorm2d(SHAPE[1], momentum=momentum, affine=affine)
    if affine:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            theirs.weight.copy_(torch.rand(SHAPE[1], generator=g) * 2 + 0.5)
            theirs.bias.copy_(torch.randn(SHAPE[1], generator=g))
    ref.load_state_dict(theirs.state_dict(), strict=True)
    return ref, theirs


def _close(a, b, tol=FLOAT32_TOLERANCE):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("affine", [True, False])
def test_training_forward_matches_torch(affine):
    ref, theirs = _pair(affine=affine)
    x = _input()
    _close(ref(x), theirs(x))


def test_training_gradients_match_torch():
    ref, theirs = _pair()
    x = _input()
    upstream = torch.randn(SHAPE, generator=torch.Generator().manual_seed(7)) * 2 + 0.3
    x_ref = x.clone().requires_grad_(True)
    x_theirs = x.clone().requires_grad_(True)
    ref(x_ref).backward(upstream)
    theirs(x_theirs).backward(upstream)
    _close(x_ref.grad, x_theirs.grad)
    _close(ref.weight.grad, theirs.weight.grad)
    _close(ref.bias.grad, theirs.bias.grad)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_running_stats_and_eval_match_torch(momentum):
    ref, theirs = _pair(momentum=momentum)
    for step in range(NUM_STEPS):
        x = _input(seed=100 + step)
        ref(x)
        theirs(x)
    _close(ref.running_mean, theirs.running_mean)
    _close(ref.running_var, theirs.running_var)
    assert ref.num_batches_tracked.dtype == torch.int64
    assert ref.num_batches_tracked.item() == theirs.num_batches_tracked.item() == NUM_STEPS
    # The stats must actually have moved away from their (0, 1) initial values.
    assert not torch.allclose(ref.running_mean, torch.zeros(SHAPE[1]))

    ref.eval()
    theirs.eval()
    x = _input(seed=999)
    _close(ref(x), theirs(x))


@pytest.mark.parametrize("affine", [True, False])
def test_gradcheck_float64(affine):
    x = _input(shape=(3, 2, 3, 4), dtype=torch.float64).requires_grad_(True)
    if affine:
        g = torch.Generator().manual_seed(3)
        weight = (torch.rand(2, generator=g, dtype=torch.float64) + 0.5).requires_grad_(True)
        bias = torch.randn(2, generator=g, dtype=torch.float64).requires_grad_(True)
    else:
        weight = bias = None
    assert torch.autograd.gradcheck(
        lambda x, w, b: BatchNorm2dFunction.apply(x, w, b, 1e-5),
        (x, weight, bias), eps=GRADCHECK_EPS, atol=GRADCHECK_ATOL)


def test_state_dict_round_trip_both_directions():
    ref, theirs = _pair()
    for step in range(2):
        x = _input(seed=200 + step)
        ref(x)
        theirs(x)
    fresh_torch = nn.BatchNorm2d(SHAPE[1])
    fresh_torch.load_state_dict(ref.state_dict(), strict=True)
    fresh_ref = ReferenceBatchNorm2d(SHAPE[1])
    fresh_ref.load_state_dict(theirs.state_dict(), strict=True)
    for a, b in ((fresh_torch, ref), (fresh_ref, theirs)):
        sa, sb = a.state_dict(), b.state_dict()
        assert list(sa) == list(sb)
        for name in sa:
            assert sa[name].dtype == sb[name].dtype and sa[name].shape == sb[name].shape
            torch.testing.assert_close(sa[name], sb[name], rtol=0, atol=0)


def test_rejects_non_4d_input():
    with pytest.raises(ValueError, match="4D"):
        ReferenceBatchNorm2d(3)(torch.randn(2, 3, 4))


def test_rejects_single_value_per_channel_in_training():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        ReferenceBatchNorm2d(3)(torch.randn(1, 3, 1, 1))


@pytest.mark.parametrize("kwargs", [{}, {"affine": False, "momentum": None},
                                    {"bias": False}, {"track_running_stats": False}])
def test_extra_repr_and_state_layout_match_torch(kwargs):
    ref, theirs = ReferenceBatchNorm2d(4, **kwargs), nn.BatchNorm2d(4, **kwargs)
    assert ref.extra_repr() == theirs.extra_repr()
    def layout(module):
        return [(k, v.shape, v.dtype) for k, v in module.state_dict().items()]
    assert layout(ref) == layout(theirs)
