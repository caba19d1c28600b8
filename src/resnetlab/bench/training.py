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
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from resnetlab.bench.measure import TrainSetup
from resnetlab.errors import ResnetlabError
from resnetlab.models import get_model_spec
from resnetlab.models.complexity import build_on_meta, count_multiply_adds
from resnetlab.training.precision import resolve_precision

TRAIN_FLOPS_PER_MULTIPLY_ADD = 6  # forward (2 FLOPs per multiply-add) + backward (about twice the forward)


class BenchError(ResnetlabError, RuntimeError):
    """A measurement process failed; the message is its last error line."""


REFERENCE = TrainSetup("reference (eager NCHW fp32)")


def resnetlab_setup(channels_last: bool = True, compile: bool = False, label: str | None = None,
                    precision: str = "fp32", **model_options) -> TrainSetup:
    """The trainer's way (`resnetlab.training.trainer.build_run`) with the given switches."""
    if label is None:
        shown = resolve_precision(precision).precision + (" (auto)" if precision == "auto" else "")
        label = "resnetlab (" + ", ".join(["channels_last" if channels_last else "NCHW"]
                                          + (["compile"] if compile else []) + ["tuned malloc", shown]) + ")"
    return TrainSetup(label, channels_last=channels_last, compile=compile, tune_allocator=True, foreach=True,
                      model_options=model_options, precision=precision)


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
    precision: str = "fp32"  # what the setup ran in (an "auto" setup resolved on the measuring machine)

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
    matmul: dict  # float32 torch.mm rate, GFLOP/s: median, min, max, size
    setups: list[SetupSummary]
    augment_batch_seconds: list[float] | None = None
    matmul_bf16: dict | None = None  # the same in bfloat16, measured in the same rounds

    def peak(self, summary: SetupSummary) -> float:
        """The median matmul rate of the precision the setup ran in (GFLOP/s)."""
        return (self.matmul_bf16 or self.matmul)["median"] if summary.precision == "bf16" else self.matmul["median"]

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
                       gflops=self.gflops(summary), fraction_of_matmul_peak=self.gflops(summary) / self.peak(summary),
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
    spec = get_model_spec(model)
    image_size = image_size or spec.input_size
    num_classes = 10 if spec.input_size <= 64 else 1000
    multiply_adds = count_multiply_adds(build_on_meta(model, num_classes=num_classes), image_size)
    results: dict[str, list[dict]] = {s.label: [] for s in setups}
    matmul_runs: dict[str, list[dict]] = {"float32": [], "bfloat16": []}
    augment_seconds: list[float] = []
    for round_index in range(rounds):
        for dtype, runs in matmul_runs.items():
            runs.append(run_isolated("matmul", timeout, dtype=dtype))
        if augmentation:
            augment_seconds += run_isolated("augment", timeout, batch_size=batch_size, image_size=image_size,
                                            seed=round_index)["batch_seconds"]
        for setup in setups:
            if progress is not None:
                progress(f"round {round_index + 1}/{rounds}: {setup.label}")
            results[setup.label].append(run_isolated(
                "train", timeout, model=model, setup=asdict(setup), batch_size=batch_size, image_size=image_size,
                steps=steps, warmup_steps=warmup_steps, num_classes=num_classes, seed=round_index))
    matmul, matmul_bf16 = (_rates(matmul_runs[dtype]) for dtype in ("float32", "bfloat16"))
    summaries = []
    for setup in setups:
        runs = results[setup.label]
        summaries.append(SetupSummary(
            label=setup.label, setup=asdict(setup),
            step_seconds=[s for run in runs for s in run["step_seconds"]],
            warmup_seconds=[run["warmup_seconds"] for run in runs],
            peak_resident_bytes=max(run["peak_resident_bytes"] for run in runs),
            step_peak_bytes=max(run["peak_resident_bytes"] - run["resident_before_bytes"] for run in runs),
            compile_failure=next((run["compile_failure"] for run in runs if run["compile_failure"]), None),
            precision=runs[0]["precision"]))
    return TrainingComparison(model, batch_size, image_size, multiply_adds, matmul, summaries,
                              augment_seconds or None, matmul_bf16)


def _rates(runs: list[dict]) -> dict:
    """One peak from the rounds' matmul measurements: the statistics over every call, at the largest size."""
    rates = [rate for run in runs for rate in run["gflops"]]
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates),
            "size": max(run["size"] for run in runs)}


def format_comparison(comparison: TrainingComparison) -> str:
    """A fixed-width table: images/s (median, min-max), GFLOP/s, % of the matmul peak, speed-up, memory."""
    c = comparison
    bf16 = c.matmul_bf16 or {"median": float("nan"), "min": float("nan"), "max": float("nan"), "size": 0}
    width = max(len("setup"), *(len(s.label) for s in c.setups))
    lines = [f"{c.model}, batch {c.batch_size}, {c.image_size}x{c.image_size} px, "
             f"{c.multiply_adds_per_image / 1e6:.1f} M multiply-adds per image",
             f"matmul peak (square torch.mm): float32 {c.matmul['median']:.0f} GFLOP/s (min {c.matmul['min']:.0f}, "
             f"max {c.matmul['max']:.0f}; size {c.matmul['size']}), bfloat16 {bf16['median']:.0f} GFLOP/s (min "
             f"{bf16['min']:.0f}, max {bf16['max']:.0f}; size {bf16['size']}); %peak is of the setup's own precision",
             f"{'setup':<{width}} {'img/s':>7} {'(min-max)':>13} {'GFLOP/s':>8} {'%peak':>6} {'speed-up':>8} "
             f"{'warm-up s':>9} {'peak MiB':>9}"]
    for s in c.setups:
        lines.append(
            f"{s.label:<{width}} {c.images_per_second(s):>7.0f} "
            f"{c.images_per_second(s, 'max'):>6.0f}-{c.images_per_second(s, 'min'):<6.0f} {c.gflops(s):>8.1f} "
            f"{100 * c.gflops(s) / c.peak(s):>5.0f}% {c.setups[0].median_step / s.median_step:>7.2f}x "
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {path}")
