"""The speed levers of a training run: memory layout, torch.compile with a clean fallback, the allocator.

Each lever is a switch of the config's ``train`` section and is measured by ``benchmarks/train_speed.py``
against the plain eager NCHW float32 reference (see the README's results table for what each one buys).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable

import torch
from torch import nn

from resnetlab.layers.stochastic_depth import has_batch_gates

# glibc mallopt parameters (malloc.h) and the values we set.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
# The largest mmap threshold glibc accepts on 64-bit (HEAP_MAX_SIZE / 2): blocks up to 32 MiB, e.g. a CIFAR
# activation of 128 x 64 x 16 x 16 float32 (8 MiB), come from the heap and are reused from step to step.
MMAP_THRESHOLD_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 1 << 30  # keep up to 1 GiB of freed heap instead of handing it back after each step
TOP_PAD_BYTES = 64 << 20  # grow the heap 64 MiB at a time: fewer brk calls while a step's activations grow

_allocator_tuned = False


def tune_allocator() -> bool:
    """Stop glibc from returning freed activation buffers to the OS (and page-faulting them back every step).

    By default glibc serves large blocks with mmap and trims the heap as soon as they are freed, so every
    training step pays page faults for its activations again. Raising the mmap and trim thresholds keeps
    them in the heap. Process-wide and idempotent; returns False where the C library is not glibc (macOS,
    musl), which leaves the allocator as it is.
    """
    global _allocator_tuned
    if _allocator_tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    applied = all(mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
        (_M_TOP_PAD, TOP_PAD_BYTES),
    ))
    _allocator_tuned = applied
    return applied


# With `train.compile: null` a run compiles when it is at least this long: compiling costs 20-60 s on 2 CPU cores
# (seconds once inductor's cache is warm) and saves 10-25% of a ResNet-20..110 step of 0.2-1.3 s
# (benchmarks/train_speed.py), so it pays for itself after roughly a thousand steps.
AUTO_COMPILE_MIN_ITERATIONS = 1000


def compiles_well(model: nn.Module) -> bool:
    """False for models that gain nothing from compiling: batch-mode stochastic depth (a Python decision per unit
    per step; compiled whole, ResNet-110 with p_L = 0.5 took 32-38% longer per step than compiled constant depth
    in issue 5's runs, and compiled unit by unit (`CompiledBranches`) it ran at 295 images/s against 293 eager in
    bf16 on a Xeon with AMX, benchmarks/stochastic_depth_time.py) and activation checkpointing."""
    return not has_batch_gates(model) and not getattr(model, "checkpoint_segments", 0)


def should_compile(setting: bool | None, iterations: int, model: nn.Module | None = None) -> bool:
    """The config's ``train.compile``: true, false, or None for "when it pays off": a run of at least
    ``AUTO_COMPILE_MIN_ITERATIONS`` iterations of a model that compiles well."""
    if setting is not None:
        return setting
    return iterations >= AUTO_COMPILE_MIN_ITERATIONS and (model is None or compiles_well(model))


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


class CompiledForward:
    """``torch.compile(model)`` that falls back to the eager model, once and for good, if compiling fails.

    Compilation happens at the first call (and again when a guard changes, e.g. train -> eval); a missing
    C++ compiler or an unsupported operator then raises. The wrapper reports the failure in one line through
    ``log`` and runs the eager model from then on, so a run never dies of an optimisation. The model's own
    state_dict is untouched (no ``_orig_mod.`` prefix in checkpoints).
    """

    def __init__(self, model: nn.Module, log: Callable[[str], None] = print, **compile_options) -> None:
        self.model = model
        self.compiled = torch.compile(model, **compile_options)
        self.log = log
        self.failure: str | None = None

    def __call__(self, *args, **kwargs):
        if self.failure is None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - any compiler failure means: run eagerly
                self.failure = describe_error(error)
                self.log(f"torch.compile failed ({self.failure[:200]}); continuing in eager mode")
        return self.model(*args, **kwargs)


def describe_error(error: BaseException) -> str:
    """``Type: first line`` of the innermost cause (dynamo and the exporters wrap the real error in their own)."""
    while (inner := getattr(error, "inner_exception", None) or error.__cause__) is not None:
        error = inner
    first_line = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first_line}"


class CompiledBranches:
    """Each residual unit's branch compiled on its own, for nets whose whole-model graph would break at every unit.

    Batch-mode stochastic depth decides in Python, per unit and step, whether a branch runs at all; compiled as
    one graph, the model breaks at every decision. Here the decision stays in the unit's eager forward and only
    the branch (convolutions, BN, ReLU) is compiled; units of the same shape and mode share one compiled graph
    (torch.compile caches by code and guards on shapes, not on the module), so ResNet-110 compiles about five
    graphs, not 54. Eval mode and ``torch.no_grad()`` run the eager branch. A failure to compile is reported once
    and every unit runs eagerly from then on, as with `CompiledForward`.
    """

    def __init__(self, model: nn.Module, log: Callable[[str], None] = print) -> None:
        self.model, self.log = model, log
        self.failure: str | None = None
        self.units = [unit for unit in model.modules() if callable(getattr(unit, "branch", None))]
        for unit in self.units:
            unit.branch = self._branch(unit, unit.branch)  # an instance attribute: the class keeps its method

    def _branch(self, unit: nn.Module, eager: Callable) -> Callable:
        compiled = torch.compile(eager)

        def branch(x):
            if self.failure is None and unit.training and torch.is_grad_enabled():
                try:
                    return compiled(x)
                except Exception as error:  # noqa: BLE001 - any compiler failure means: run eagerly
                    self.failure = describe_error(error)
                    self.log(f"torch.compile of the units failed ({self.failure[:200]}); continuing in eager mode")
            return eager(x)

        return branch

    def __call__(self, *args, **kwargs):
        return self.model(*args, **kwargs)


def prepare_forward(model: nn.Module, *, channels_last: bool, compile: bool,
                    log: Callable[[str], None] = print) -> Callable:
    """Put ``model`` in the chosen memory format (in place) and return the callable that trains it: the model,
    the model compiled whole (`CompiledForward`), or, for a net with batch-mode stochastic depth, the model with
    its units' branches compiled one by one (`CompiledBranches`; with activation checkpointing too, the whole
    model is compiled, as the checkpointed rerun of a unit would run its compiled branch again)."""
    model.to(memory_format=memory_format(channels_last))
    if not compile:
        return model
    checkpointed = getattr(getattr(model, "module", model), "checkpoint_segments", 0)
    return CompiledBranches(model, log) if has_batch_gates(model) and not checkpointed else CompiledForward(model, log)
