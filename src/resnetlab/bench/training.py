"""Training-step speed and memory of any registered model, side by side with the plain eager reference.

A *setup* is one way of running the same training step (model, batch, SGD with momentum and weight decay):

- the reference, "the usual way": eager PyTorch, NCHW, float32, `torch.optim.SGD` with its defaults, the C
  library's allocator as it comes;
- resnetlab's way: the switches of the config's ``train`` section (channels_last, compile, the tuned allocator,
  the foreach optimizer step), or any other combination, and model options such as stochastic depth or
  activation checkpointing.

Every measurement runs in a fresh process (`run_isolated`), so that the allocator setting, torch.compile's
state and the peak memory belong to one setup only, and the setups are interleaved in rounds (reference,
ours, reference, ours, ...) so that a slow spell of a shared machine hits all of them alike. Throughput in
GFLOP/s counts a training step as 3 forward passes of 2 FLOPs per multiply-add (6 x multiply-adds per image).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

TRAIN_FLOPS_PER_MULTIPLY_ADD = 6  # forward (2 FLOPs per multiply-add) + backward (about twice the forward)
MATMUL_SIZE = 2048  # the peak reference: a square float32 torch.mm of this size


class BenchError(RuntimeError):
    """A measurement process failed; the message is its last error line."""


@dataclass(frozen=True)
class TrainSetup:
    """One way of running training steps; ``label`` names it in tables."""

    label: str
    channels_last: bool = False
    compile: bool = False
    tune_allocator: bool = False
    foreach: bool | None = None  # None: torch's default (a per-parameter loop on the CPU)
    model_options: dict = field(default_factory=dict)  # create_model options: stochastic_depth, ...


REFERENCE = TrainSetup("reference (eager NCHW fp32)")


def resnetlab_setup(channels_last: bool = True, compile: bool = False, label: str | None = None,
                    **model_options) -> TrainSetup:
    """The trainer's way (`resnetlab.training.trainer.build_run`) with the given switches."""
    if label is None:
        label = "resnetlab (" + ", ".join(["channels_last" if channels_last else "NCHW"]
                                          + (["compile"] if compile else []) + ["tuned malloc"]) + ")"
    return TrainSetup(label, channels_last=channels_last, compile=compile, tune_allocator=True, foreach=True,
                      model_options=model_options)


# ---- one process: the measurements -------------------------------------------------------------------------
def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_resident_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def matmul_gflops(size: int = MATMUL_SIZE, repeats: int = 10) -> dict:
    """The float32 matmul rate of this machine with torch's threads: median, min and max GFLOP/s."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(2):
        torch.mm(a, b)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        seconds.append(time.perf_counter() - start)
    flops = 2 * size**3
    return {"median": flops / statistics.median(seconds) / 1e9, "min": flops / max(seconds) / 1e9,
            "max": flops / min(seconds) / 1e9, "seconds": seconds}


def build_training_step(model: str, setup: TrainSetup, batch_size: int, image_size: int, num_classes: int = 10,
                        seed: int = 0, compile_failures: list[str] | None = None) -> Callable[[int], None]:
    """One setup's training step on a fixed random batch, as a function of the step index (the index seeds
    the stochastic-depth gates, a fresh draw per step as in training). Compile failures go to
    ``compile_failures``; the step then runs eagerly."""
    from resnetlab.layers.stochastic_depth import set_gate_generator
    from resnetlab.models import create_model
    from resnetlab.training.performance import memory_format, prepare_forward, tune_allocator

    torch.manual_seed(seed)
    if setup.tune_allocator:
        tune_allocator()
    net = create_model(model, num_classes=num_classes, **setup.model_options).train()
    gates = torch.Generator()
    set_gate_generator(net, gates)
    log = compile_failures.append if compile_failures is not None else print
    forward = prepare_forward(net, channels_last=setup.channels_last, compile=setup.compile, log=log)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, foreach=setup.foreach)
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, 3, image_size, image_size, generator=generator)
    images = images.contiguous(memory_format=memory_format(setup.channels_last))
    labels = torch.randint(0, num_classes, (batch_size,), generator=generator)

    def step(index: int) -> None:
        gates.manual_seed(seed * 1_000_003 + index)
        loss = F.cross_entropy(forward(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


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
            "threads": torch.get_num_threads()}


def measure_augmentation(batch_size: int, image_size: int = 32, batches: int = 20, seed: int = 0) -> dict:
    """Seconds to make one training batch with the CIFAR pipeline (index, normalize, pad-crop-flip)."""
    import numpy as np

    from resnetlab.data.augment import Normalizer
    from resnetlab.data.batches import ArrayBatches

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
    from torch.profiler import ProfilerActivity, profile

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


# ---- many processes: side by side ----------------------------------------------------------------------------
def run_isolated(function: str, timeout: float | None = None, **kwargs) -> dict:
    """Run one of ``WORKER_FUNCTIONS`` in a fresh Python process and return its result."""
    command = [sys.executable, "-m", "resnetlab.bench.worker", function, json.dumps(kwargs)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{function} measurement ran past {timeout:.0f} s") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        killed = done.returncode < 0 or done.returncode == 137
        reason = "killed (out of memory?)" if killed else (lines[-1] if lines else f"exit {done.returncode}")
        raise BenchError(f"{function} measurement failed: {reason}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@dataclass
class SetupSummary:
    """One setup's numbers over all rounds (times in seconds, memory in bytes)."""

    label: str
    setup: dict
    step_seconds: list[float]
    warmup_seconds: list[float]
    peak_resident_bytes: int
    step_peak_bytes: int  # peak resident set minus the resident set before the first step
    compile_failure: str | None = None

    @property
    def median_step(self) -> float:
        return statistics.median(self.step_seconds)

    @property
    def mean_step(self) -> float:
        return statistics.fmean(self.step_seconds)


@dataclass
class TrainingComparison:
    model: str
    batch_size: int
    image_size: int
    multiply_adds_per_image: int
    matmul: dict
    setups: list[SetupSummary]
    augment_batch_seconds: list[float] | None = None

    def images_per_second(self, summary: SetupSummary, statistic: str = "median") -> float:
        seconds = {"median": summary.median_step, "mean": summary.mean_step,
                   "min": min(summary.step_seconds), "max": max(summary.step_seconds)}[statistic]
        return self.batch_size / seconds

    def gflops(self, summary: SetupSummary) -> float:
        flops = TRAIN_FLOPS_PER_MULTIPLY_ADD * self.multiply_adds_per_image * self.batch_size
        return flops / summary.median_step / 1e9

    def to_dict(self) -> dict:
        rows = []
        for summary in self.setups:
            row = asdict(summary)
            row.update(images_per_second=self.images_per_second(summary),
                       images_per_second_min=self.images_per_second(summary, "max"),
                       images_per_second_max=self.images_per_second(summary, "min"),
                       mean_step_seconds=summary.mean_step, median_step_seconds=summary.median_step,
                       gflops=self.gflops(summary), fraction_of_matmul_peak=self.gflops(summary) / self.matmul["median"],
                       speedup_vs_first=self.setups[0].median_step / summary.median_step)
            rows.append(row)
        result = {k: v for k, v in asdict(self).items() if k != "setups"}
        result["setups"] = rows
        return result


def compare_training(model: str, setups: list[TrainSetup], batch_size: int = 128, image_size: int | None = None,
                     rounds: int = 3, steps: int = 10, warmup_steps: int = 2, augmentation: bool = False,
                     timeout: float | None = None, progress=None) -> TrainingComparison:
    """Measure every setup in ``rounds`` interleaved rounds of ``steps`` timed steps each, one process per
    (round, setup); the matmul peak is measured in every round too. The first setup is the baseline of the
    speed-up column (put the reference first)."""
    from resnetlab.models import get_model_spec
    from resnetlab.models.complexity import build_on_meta, count_multiply_adds

    spec = get_model_spec(model)
    image_size = image_size or spec.input_size
    num_classes = 10 if spec.input_size <= 64 else 1000
    multiply_adds = count_multiply_adds(build_on_meta(model, num_classes=num_classes), image_size)
    results: dict[str, list[dict]] = {s.label: [] for s in setups}
    matmul_seconds: list[float] = []
    augment_seconds: list[float] = []
    for round_index in range(rounds):
        matmul_seconds += run_isolated("matmul", timeout)["seconds"]
        if augmentation:
            augment_seconds += run_isolated("augment", timeout, batch_size=batch_size, image_size=image_size,
                                            seed=round_index)["batch_seconds"]
        for setup in setups:
            if progress is not None:
                progress(f"round {round_index + 1}/{rounds}: {setup.label}")
            results[setup.label].append(run_isolated(
                "train", timeout, model=model, setup=asdict(setup), batch_size=batch_size, image_size=image_size,
                steps=steps, warmup_steps=warmup_steps, num_classes=num_classes, seed=round_index))
    flops = 2 * MATMUL_SIZE**3
    matmul = {"median": flops / statistics.median(matmul_seconds) / 1e9, "min": flops / max(matmul_seconds) / 1e9,
              "max": flops / min(matmul_seconds) / 1e9, "size": MATMUL_SIZE}
    summaries = []
    for setup in setups:
        runs = results[setup.label]
        summaries.append(SetupSummary(
            label=setup.label, setup=asdict(setup),
            step_seconds=[s for run in runs for s in run["step_seconds"]],
            warmup_seconds=[run["warmup_seconds"] for run in runs],
            peak_resident_bytes=max(run["peak_resident_bytes"] for run in runs),
            step_peak_bytes=max(run["peak_resident_bytes"] - run["resident_before_bytes"] for run in runs),
            compile_failure=next((run["compile_failure"] for run in runs if run["compile_failure"]), None)))
    return TrainingComparison(model, batch_size, image_size, multiply_adds, matmul, summaries,
                              augment_seconds or None)


def format_comparison(comparison: TrainingComparison) -> str:
    """A fixed-width table: images/s (median, min-max), GFLOP/s, % of the matmul peak, speed-up, memory."""
    c = comparison
    lines = [f"{c.model}, batch {c.batch_size}, {c.image_size}x{c.image_size} px, "
             f"{c.multiply_adds_per_image / 1e6:.1f} M multiply-adds per image; "
             f"matmul peak {c.matmul['median']:.0f} GFLOP/s (min {c.matmul['min']:.0f}, max {c.matmul['max']:.0f}, "
             f"{c.matmul['size']}x{c.matmul['size']} float32 torch.mm)",
             f"{'setup':<50} {'img/s':>7} {'(min-max)':>13} {'GFLOP/s':>8} {'%peak':>6} {'speed-up':>8} "
             f"{'warm-up s':>9} {'peak MiB':>9}"]
    for s in c.setups:
        lines.append(
            f"{s.label[:50]:<50} {c.images_per_second(s):>7.0f} "
            f"{c.images_per_second(s, 'max'):>6.0f}-{c.images_per_second(s, 'min'):<6.0f} {c.gflops(s):>8.1f} "
            f"{100 * c.gflops(s) / c.matmul['median']:>5.0f}% {c.setups[0].median_step / s.median_step:>7.2f}x "
            f"{statistics.median(s.warmup_seconds):>9.1f} {s.peak_resident_bytes / 2**20:>9.0f}")
        if s.compile_failure:
            lines.append(f"    compile failed, ran eagerly: {s.compile_failure}")
    if c.augment_batch_seconds:
        augment = statistics.median(c.augment_batch_seconds)
        fastest = min(s.median_step for s in c.setups)
        lines.append(f"data pipeline: {1e3 * augment:.2f} ms per batch (median), "
                     f"{100 * augment / fastest:.1f}% of the fastest step ({1e3 * fastest:.0f} ms)")
    lines.append(f"steps per setup: {len(c.setups[0].step_seconds)} (interleaved rounds, one process each)")
    return "\n".join(lines)


def write_results(path, data: dict) -> None:
    """Save a benchmark's figures as JSON (creating the folder) and say where."""
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {path}")


def describe_machine() -> str:
    from resnetlab.training.environment import cpu_name

    return (f"machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), {time.strftime('%Y-%m-%d')}")
