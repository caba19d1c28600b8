"""Render the issue-5 benchmark results (the JSON files of runs/benchmarks/) as docs/performance.md.

Every number in that page comes from these files, which the benchmark scripts wrote; the goals are checked
here against the measured figures, and a goal that is not met is shown with its gap.

    .venv/bin/python benchmarks/report.py            # after the four benchmarks: see docs/performance.md
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "runs" / "benchmarks"
TRAIN_SPEEDUP_GOAL = 1.5  # x the plain eager reference (issue 5)
PEAK_FRACTION_GOAL = 0.65  # of the 2048x2048 float32 matmul rate
AUGMENT_GOAL = 0.03  # of the step
SD_SAVING_GOAL = 0.22  # ResNet-110, p_L = 0.5, batch mode
MEMORY_GOAL_GIB = 6.0  # preact_resnet1001, batch 128


def machine(data: dict) -> str:
    return data["machine"].removeprefix("machine: ")


def rounds_and_steps(setup_row: dict) -> tuple[int, int]:
    """The --rounds and --steps a comparison ran with: one warm-up per round, the same steps in each."""
    rounds = len(setup_row["warmup_seconds"])
    return rounds, len(setup_row["step_seconds"]) // rounds


def verdict(met: bool, gap: str = "") -> str:
    return "**met**" if met else f"**not met** ({gap})"


def train_section(data: dict) -> list[str]:
    rounds, steps = rounds_and_steps(data["results"][0]["setups"][0])
    lines = ["## Training speed (batch 128, float32, CPU)", "",
             f"`.venv/bin/python benchmarks/train_speed.py --rounds {rounds} --steps {steps}` on {machine(data)}. "
             f"Each setup ran in its own process, {rounds} interleaved rounds of {steps} timed steps; images/s is the median over all timed steps (min-max in brackets); GFLOP/s counts "
             "6 x multiply-adds per image; % peak is against the 2048x2048 float32 `torch.mm` rate measured in the "
             "same run.", "",
             "| model | setup | images/s (min-max) | GFLOP/s | % of matmul peak | vs reference | warm-up s | peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|"]
    goals = []
    for result in data["results"]:
        for row in result["setups"]:
            lines.append(
                f"| {result['model']} | {row['label']} | {row['images_per_second']:.0f} "
                f"({row['images_per_second_min']:.0f}-{row['images_per_second_max']:.0f}) | {row['gflops']:.0f} | "
                f"{100 * row['fraction_of_matmul_peak']:.0f}% | {row['speedup_vs_first']:.2f}x | "
                f"{statistics.median(row['warmup_seconds']):.1f} | {row['peak_resident_bytes'] / 2**20:.0f} |")
        ours = max((r for r in result["setups"] if r["label"].startswith("resnetlab")),
                   key=lambda r: r["speedup_vs_first"])
        goals.append(f"- {result['model']}: best resnetlab setup ({ours['label']}) "
                     f"{ours['speedup_vs_first']:.2f}x the reference: "
                     + verdict(ours["speedup_vs_first"] >= TRAIN_SPEEDUP_GOAL,
                               f"goal {TRAIN_SPEEDUP_GOAL}x, short by {TRAIN_SPEEDUP_GOAL - ours['speedup_vs_first']:.2f}x")
                     + f"; {100 * ours['fraction_of_matmul_peak']:.0f}% of the matmul peak "
                     f"({result['matmul']['median']:.0f} GFLOP/s): "
                     + verdict(ours["fraction_of_matmul_peak"] >= PEAK_FRACTION_GOAL,
                               f"goal {100 * PEAK_FRACTION_GOAL:.0f}%, short by "
                               f"{100 * (PEAK_FRACTION_GOAL - ours['fraction_of_matmul_peak']):.0f} points"))
        if result.get("augment_batch_seconds"):
            augment = statistics.median(result["augment_batch_seconds"])
            step = min(r["median_step_seconds"] for r in result["setups"])
            goals.append(f"- {result['model']}: data pipeline {1e3 * augment:.1f} ms per batch = "
                         f"{100 * augment / step:.1f}% of the fastest step: "
                         + verdict(augment / step < AUGMENT_GOAL, f"goal < {100 * AUGMENT_GOAL:.0f}%"))
    return lines + ["", "Goals:", ""] + goals + [""]


def step_profile_section(data: dict) -> list[str]:
    lines = ["### Where the step's time goes (eager, batch 128)", "",
             f"`.venv/bin/python benchmarks/step_profile.py` on {machine(data)}: self time per operator group from "
             "`torch.profiler` (median of 2 processes). A step cannot beat its convolutions: their rate against the "
             "matmul peak is the ceiling of every lever that leaves the convolution kernels alone.", "",
             "| model | setup | convolution ms | batch norm ms | ReLU ms | other ms | convolution share | convolution GFLOP/s (% of matmul peak) |",
             "|---|---|---|---|---|---|---|---|"]
    for row in data["rows"]:
        groups = row["seconds_per_step"]
        step = sum(groups.values())
        lines.append(f"| {row['model']} | {row['setup']} | {1e3 * groups['convolution']:.0f} | "
                     f"{1e3 * groups['batch norm']:.0f} | {1e3 * groups['relu']:.0f} | {1e3 * groups['other']:.0f} | "
                     f"{100 * groups['convolution'] / step:.0f}% | {row['conv_gflops']:.0f} "
                     f"({100 * row['conv_gflops'] / row['matmul_peak_gflops']:.0f}%) |")
    return lines + [""]


def stochastic_depth_section(data: dict) -> list[str]:
    rounds, steps = rounds_and_steps(data["comparison"]["setups"][0])
    lines = ["## Stochastic depth that saves time (ResNet-110, batch 128)", "",
             f"`.venv/bin/python benchmarks/stochastic_depth_time.py --rounds {rounds} --steps {steps}` on "
             f"{machine(data)}, each setup in its own process, interleaved rounds. The gates are drawn afresh "
             "every step; epoch time = mean step time x 352 steps (45k images). 'Ideal' assumes time proportional to "
             "the blocks run (the paper's 25% for p_L = 0.5).", "",
             "| setup | expected blocks run | mean step s | epoch s | saving | ideal saving |", "|---|---|---|---|---|---|"]
    for row in data["rows"]:
        lines.append(f"| {row['label']} | {row['expected_blocks']:.2f} of {row['blocks']} | "
                     f"{row['mean_step_seconds']:.3f} | {row['epoch_seconds']:.0f} | {100 * row['saving']:.1f}% | "
                     f"{100 * row['expected_saving']:.1f}% |")
    saving = next(r["saving"] for r in data["rows"] if r["label"] == "stochastic depth p_L=0.5 batch")
    lines.append("")
    lines.append("Savings of compiled setups are against the compiled constant-depth net.")
    return lines + ["", "Goal: p_L = 0.5 batch mode saves " + f"{100 * saving:.1f}%: "
                    + verdict(saving >= SD_SAVING_GOAL, f"goal >= {100 * SD_SAVING_GOAL:.0f}%"), ""]


def memory_section(data: dict) -> list[str]:
    lines = ["## Memory of the deepest nets (one training step, CPU)", "",
             f"`.venv/bin/python benchmarks/memory_deep_nets.py` on {machine(data)}. Peak RSS is the process's "
             "peak resident memory (torch itself included); growth is over the memory before the first step; "
             "'saved activations' is what autograd keeps without checkpointing (measured at batch 2, scaled).", "",
             "| model | batch | checkpoint segments | peak RSS GiB | growth GiB | step s | saved activations, plain, GiB | note |",
             "|---|---|---|---|---|---|---|---|"]
    goal = None
    for row in data["rows"]:
        measured = "peak_bytes" in row
        lines.append(f"| {row['model']} | {row['batch']} | {row['segments'] or 'off'} | "
                     + (f"{row['peak_bytes'] / 2**30:.2f} | {row['growth_bytes'] / 2**30:.2f} | {row['step_seconds']:.1f}"
                        if measured else "- | - | -")
                     + f" | {row['saved_activation_bytes_plain'] / 2**30:.2f} | {row.get('note', '')} |")
        if (row["model"], row["batch"]) == ("preact_resnet1001", 128) and row["segments"] and measured:
            goal = min(goal or math.inf, row["peak_bytes"] / 2**30)
    text = (f"Goal: preact_resnet1001 at batch 128 within {MEMORY_GOAL_GIB:.0f} GiB peak: {goal:.2f} GiB with "
            "the best segment count, " + verdict(goal <= MEMORY_GOAL_GIB, f"over by {goal - MEMORY_GOAL_GIB:.2f} GiB")
            if goal is not None else "Goal: not measured")
    return lines + ["", text, ""]


def inference_section(data: dict) -> list[str]:
    env = data["environment"]
    lines = ["## Inference (ResNet-50, 224x224, float32, CPU)", "",
             f"`.venv/bin/python benchmarks/inference_resnet50.py --rounds {data['latency']['rounds']} --calls "
             f"{data['latency']['calls_per_round']}` on {env['cpu']}, "
             f"{env['cpu_count']} cores, torch {env['torch']}, onnxruntime {env['onnxruntime']}, {env['date']}; "
             "variants interleaved in rounds; every variant's logits checked against eager.", "",
             "| batch | variant | median ms (min-max) | images/s | vs eager | vs onnxruntime | max rel. diff | setup s |",
             "|---|---|---|---|---|---|---|---|"]
    goals = []
    for key in ("latency", "throughput"):
        bench = data[key]
        results = bench["results"]
        ort = results.get("onnxruntime", {}).get("median_ms")
        for name, r in results.items():
            if r["median_ms"] is None:
                lines.append(f"| {bench['batch_size']} | {name} | {r['status']}: {r['reason']} | | | | | |")
                continue
            versus_ort = f"{ort / r['median_ms']:.2f}x" if ort else "-"
            lines.append(f"| {bench['batch_size']} | {name} | {r['median_ms']:.1f} ({r['min_ms']:.1f}-{r['max_ms']:.1f}) | "
                         f"{r['images_per_second']:.1f} | {results['eager']['median_ms'] / r['median_ms']:.2f}x | "
                         f"{versus_ort} | {r['rel_diff']:.1e} | {r['setup_seconds']:.1f} |")
        ours = min((r for n, r in results.items() if n != "onnxruntime" and r["median_ms"]),
                   key=lambda r: r["median_ms"])
        if ort:
            goals.append(f"- batch {bench['batch_size']}: resnetlab's fastest ({ours['name']}, {ours['median_ms']:.1f} ms) "
                         f"vs onnxruntime ({ort:.1f} ms): "
                         + verdict(ours["median_ms"] <= ort, f"{ours['median_ms'] / ort:.2f}x onnxruntime's time"))
    return lines + ["", "Goal: resnetlab's own path at least as fast as onnxruntime:", ""] + goals + [""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "performance.md")
    args = parser.parse_args()
    sections = [("train_speed.json", train_section), ("step_profile.json", step_profile_section),
                ("stochastic_depth_time.json", stochastic_depth_section),
                ("memory_deep_nets.json", memory_section), ("inference_resnet50.json", inference_section)]
    lines = ["# Speed and memory, measured", "",
             "Generated by `benchmarks/report.py` from the JSON files the benchmark scripts wrote; "
             "see the README's performance section for what the levers are and how to switch them.", ""]
    for name, render in sections:
        path = args.results / name
        if path.exists():
            lines += render(json.loads(path.read_text()))
        else:
            lines += [f"({name} not found: run its benchmark)", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
