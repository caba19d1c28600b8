"""Activation checkpointing of the residual units, in segments (`ResNet(checkpoint_segments=k)`).

Each of k contiguous chunks of units runs under `torch.utils.checkpoint.checkpoint` (non-reentrant): only
the chunk's input is kept for backward, and the chunk's forward runs again during backward to rebuild the
rest. The rerun must compute exactly what the first run did, and must not change any state twice:

- stochastic depth: a batch-mode gate draws from its own generator (`DropPath.generator`), which
  checkpointing does not restore, so the first run records every decision and the rerun replays them
  (`record_gates` / `replay_gates`). Row-mode masks and dropout draw from torch's default generators, whose
  states checkpointing restores (``preserve_rng_state``), so they repeat by themselves.
- batch norm: a training-mode BN updates its running statistics on every call. During the rerun each BN of
  the chunk updates scratch copies of its buffers, which are dropped afterwards. (Turning
  ``track_running_stats`` off instead would also stop the updates, but torch's BN then saves two tensors
  fewer for backward, and non-reentrant checkpointing refuses a rerun that saves a different number.)
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from resnetlab.layers.batchnorm import ReferenceBatchNorm2d
from resnetlab.layers.stochastic_depth import GateTape, record_gates, replay_gates

T = TypeVar("T")

BATCH_NORMS = (nn.modules.batchnorm._BatchNorm, ReferenceBatchNorm2d)
_RUNNING_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def check_segments(value: object) -> int:
    """``value`` as a number of checkpoint segments (0 = off), or ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"checkpoint_segments must be an int >= 0 (0 turns activation checkpointing off), "
                         f"got {value!r}")
    return int(value)


def split_evenly(items: Sequence[T], segments: int) -> list[list[T]]:
    """``items`` in ``min(segments, len(items))`` contiguous chunks whose sizes differ by at most one
    (the longer ones first)."""
    if segments < 1:
        raise ValueError(f"segments must be >= 1, got {segments}")
    count = min(segments, len(items))
    if count == 0:
        return []
    size, extra = divmod(len(items), count)
    chunks, start = [], 0
    for index in range(count):
        end = start + size + (index < extra)
        chunks.append(list(items[start:end]))
        start = end
    return chunks


@contextlib.contextmanager
def scratch_running_stats(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Inside, every BN of ``modules`` updates copies of its running statistics; the originals come back
    untouched on exit, exception or not. Normalisation is unchanged (batch statistics in training mode)."""
    swapped: list[tuple[nn.Module, str, torch.Tensor]] = []
    try:
        for module in modules:
            for norm in module.modules():
                if not isinstance(norm, BATCH_NORMS):
                    continue
                for name in _RUNNING_BUFFERS:
                    buffer = getattr(norm, name, None)
                    if isinstance(buffer, torch.Tensor):
                        swapped.append((norm, name, buffer))
                        setattr(norm, name, buffer.clone())
        yield
    finally:
        for norm, name, buffer in reversed(swapped):
            setattr(norm, name, buffer)


class _FreshEachTime:
    """A context manager that makes a new inner one each time it is entered: checkpointing enters its
    recompute context once per backward pass that needs the chunk (twice with ``retain_graph=True``)."""

    def __init__(self, factory: Callable[[], contextlib.AbstractContextManager]) -> None:
        self._factory = factory
        self._active: list[contextlib.AbstractContextManager] = []

    def __enter__(self) -> None:
        inner = self._factory()
        inner.__enter__()
        self._active.append(inner)

    def __exit__(self, *exc_info) -> bool | None:
        return self._active.pop().__exit__(*exc_info)


@contextlib.contextmanager
def _rerun(modules: Sequence[nn.Module], tape: GateTape) -> Iterator[None]:
    with replay_gates(tape), scratch_running_stats(modules):
        yield


def checkpoint_contexts(modules: Sequence[nn.Module]) -> tuple[_FreshEachTime, _FreshEachTime]:
    """``context_fn`` for `checkpoint` of a chunk: the first run records the stochastic-depth decisions,
    the rerun replays them and keeps the chunk's BN running statistics as they are."""
    tape = GateTape()
    return _FreshEachTime(lambda: record_gates(tape)), _FreshEachTime(lambda: _rerun(modules, tape))


def _run_chunk(units: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    for unit in units:
        x = unit(x)
    return x


def run_checkpointed(units: Sequence[nn.Module], x: torch.Tensor, segments: int) -> torch.Tensor:
    """``units`` applied in order to ``x``, in ``segments`` checkpointed chunks of nearly equal size."""
    for chunk in split_evenly(units, segments):
        x = checkpoint(functools.partial(_run_chunk, chunk), x, use_reentrant=False,
                       context_fn=functools.partial(checkpoint_contexts, chunk))
    return x
