"""Measurements that run in one process: the matmul peak, training steps of one setup, the augmentation
pipeline and a profile by operator. `resnetlab.bench.training` runs each in a fresh process
(`python -m resnetlab.bench.worker`) and puts the setups side by side."""

from __future__ import annotations

import os
import resource
import statistics
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from resnetlab.config import ModelConfig, TrainConfig
from resnetlab.data.augment import Normalizer
from resnetlab.data.batches import ArrayBatches
from resnetlab.layers.stochastic_depth import set_gate_generator
from resnetlab.training.performance import memory_format, prepare_forward, tune_allocator
from resnetlab.training.precision import resolve_precision
from resnetlab.training.step import TrainStep, make_optimizer

MATMUL_SIZE = 2048  # the peak reference: a square torch.mm of this size, or smaller where one would be slow
MATMUL_SMALLEST = 256
# Longest single torch.mm (s) the peak may take. bf16 without bf16 units (AMD EPYC Zen 3, 2 threads) runs at
# 1.3 GFLOP/s, 13 s for a 2048 matmul against 0.17 s in float32; there a smaller size gives the peak in seconds
# instead of minutes per bench round.
MATMUL_MAX_CALL_SECONDS = 0.5


@dataclass(frozen=True)
class TrainSetup:
    """One way of running training steps; ``label`` names it in tables."""

    label: str
    channels_last: bool = False
    compile: bool = False
    tune_allocator: bool = False
    foreach: bool | None = None  # None: torch's default (a per-parameter loop on the CPU)
    model_options: dict = field(default_factory=dict)  # create_model options: stochastic_depth, ...
    precision: str = "fp32"  # fp32 | bf16 | auto (`resnetlab.training.precision`, resolved in the measuring process)



# ---- one process: the measurements -------------------------------------------------------------------------
def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_resident_bytes() -> int:
    # Linux reports KiB, and updates the high-water mark lazily: the resident set now can be above it.
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, _resident_bytes())


def _time_matmul(size: int, dtype: str) -> float:
    a, b = (torch.randn(size, size).to(getattr(torch, dtype)) for _ in range(2))
    start = time.perf_counter()
    torch.mm(a, b)
    return time.perf_counter() - start


def matmul_size(dtype: str = "float32", largest: int = MATMUL_SIZE,
                max_call_seconds: float = MATMUL_MAX_CALL_SECONDS) -> int:
    """The size of the peak's square matmul: doubling from ``MATMUL_SMALLEST`` up to ``largest`` while the next
    size's call (8x the work) is predicted to take under ``max_call_seconds``."""
    size = min(MATMUL_SMALLEST, largest)
    _time_matmul(size, dtype)  # the first call of a dtype pays its kernels' setup
    while size * 2 <= largest and 8 * _time_matmul(size, dtype) < max_call_seconds:
        size *= 2
    return size


def matmul_gflops(size: int | None = None, repeats: int = 10, dtype: str = "float32") -> dict:
    """The matmul rate of this machine with torch's threads in ``dtype`` (float32 or bfloat16): median, min and
    max GFLOP/s of a square ``torch.mm``, each call's rate (``gflops``) and the ``size`` (``matmul_size`` when
    None)."""
    size = size or matmul_size(dtype)
    a, b = (torch.randn(size, size).to(getattr(torch, dtype)) for _ in range(2))
    for _ in range(2):
        torch.mm(a, b)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        rates.append(2 * size**3 / (time.perf_counter() - start) / 1e9)
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates), "gflops": rates, "size": size}


@dataclass
class TimedStep:
    """A setup's training step on a fixed batch, called with the step index: the trainer's own `TrainStep`."""

    train_step: TrainStep
    model: torch.nn.Module
    images: torch.Tensor
    labels: torch.Tensor

    def __call__(self, index: int) -> None:
        self.train_step(index, self.images, self.labels)


def build_training_step(model: str, setup: TrainSetup, batch_size: int, image_size: int, num_classes: int = 10,
                        seed: int = 0, compile_failures: list[str] | None = None) -> TimedStep:
    """One setup's training step on a fixed random batch, as a function of the step index: the trainer's own
    `TrainStep` (which draws the stochastic-depth gates of the index, a fresh draw per step as in training) with
    the trainer's optimizer. Compile failures go to ``compile_failures``; the step then runs eagerly."""
    torch.manual_seed(seed)
    if setup.tune_allocator:
        tune_allocator()
    net = ModelConfig(model, num_classes, dict(setup.model_options)).build().train()
    gates = torch.Generator()
    set_gate_generator(net, gates)
    log = compile_failures.append if compile_failures is not None else print
    forward = prepare_forward(net, channels_last=setup.channels_last, compile=setup.compile, log=log)
    optimizer = make_optimizer(net, TrainConfig(), foreach=setup.foreach)  # the recipes' lr 0.1, momentum, decay
    precision = resolve_precision(setup.precision).precision
    train_step = TrainStep(forward, optimizer, memory_format(setup.channels_last), precision=precision, gates=gates,
                           seed=seed)
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, 3, image_size, image_size, generator=generator)
    labels = torch.randint(0, num_classes, (batch_size,), generator=generator)
    return TimedStep(train_step, net, images, labels)


def measure_training_steps(model: str, setup: dict, batch_size: int, image_size: int, steps: int,
                           warmup_steps: int = 2, num_classes: int = 10, seed: int = 0) -> dict:
    """Time ``steps`` training steps of one setup (after ``warmup_steps``) in this process.

    Returns the seconds of every timed step, the warm-up seconds (the compile time when compiling), and the
    memory: the resident set before the first step and its peak over the whole process.
    """
    failures: list[str] = []
    step = build_training_step(model, TrainSetup(**setup), batch_size, image_size, num_classes, seed, failures)
    resident_before = _resident_bytes()
    start = time.perf_counter()
    for index in range(warmup_steps):
        step(index)
    warmup_seconds = time.perf_counter() - start
    seconds = []
    for index in range(warmup_steps, warmup_steps + steps):
        start = time.perf_counter()
        step(index)
        seconds.append(time.perf_counter() - start)
    return {"step_seconds": seconds, "warmup_seconds": warmup_seconds, "resident_before_bytes": resident_before,
            "peak_resident_bytes": _peak_resident_bytes(), "compile_failure": failures[0] if failures else None,
            "threads": torch.get_num_threads(), "precision": step.train_step.precision}


def measure_augmentation(batch_size: int, image_size: int = 32, batches: int = 20, seed: int = 0) -> dict:
    """Seconds to make one training batch with the CIFAR pipeline (index, normalize, pad-crop-flip)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (batch_size * batches, image_size, image_size, 3),
                                                  dtype=np.uint8)
    source = ArrayBatches(pixels, np.zeros(len(pixels), dtype=np.int64), batch_size,
                          Normalizer.from_training_images(pixels), augment=True, seed=seed)
    seconds, iterator = [], source.batches(0)
    while True:
        start = time.perf_counter()
        batch = next(iterator, None)
        if batch is None:
            break
        batch[0].contiguous(memory_format=torch.channels_last)  # the trainer's layout change, counted too
        seconds.append(time.perf_counter() - start)
    return {"batch_seconds": seconds}


# Where a training step's time goes, by ATen operator (self time): the convolutions' share bounds what any
# lever on the rest can buy.
OPERATOR_GROUPS = {
    "convolution": ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_convolution",
                    "aten::thnn_conv2d", "aten::slow_conv2d_forward", "aten::slow_conv2d_backward"),
    "batch norm": ("aten::native_batch_norm", "aten::native_batch_norm_backward", "aten::_native_batch_norm_legit",
                   "aten::_batch_norm_with_update"),
    "relu": ("aten::relu", "aten::relu_", "aten::clamp_min", "aten::clamp_min_", "aten::threshold_backward"),
}


def profile_training_step(model: str, setup: dict, batch_size: int, image_size: int, steps: int = 3,
                          num_classes: int = 10, seed: int = 0) -> dict:
    """Self time per operator group (seconds per step) of eager training steps, from `torch.profiler`.

    Compiled graphs show up as one opaque group ("other"), so the setup is run eagerly.
    """
    eager = TrainSetup(**{**setup, "compile": False})
    step = build_training_step(model, eager, batch_size, image_size, num_classes, seed)
    for index in range(2):
        step(index)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for index in range(2, 2 + steps):
            step(index)
    seconds = {group: 0.0 for group in (*OPERATOR_GROUPS, "other")}
    for event in profiler.key_averages():
        group = next((g for g, names in OPERATOR_GROUPS.items() if event.key in names), "other")
        seconds[group] += event.self_cpu_time_total / 1e6 / steps
    return {"seconds_per_step": seconds}


WORKER_FUNCTIONS = {"train": measure_training_steps, "matmul": matmul_gflops, "augment": measure_augmentation,
                    "profile": profile_training_step}
