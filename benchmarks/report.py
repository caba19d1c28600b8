"""Render the benchmark results (the JSON files the benchmark scripts wrote) as docs/performance.md.

Every number in that page comes from these files; the goals (issues 5 and 14) are checked here against the
measured figures, and a goal that is not met is shown with its gap. A result in runs/benchmarks/ (this
session's) is copied to docs/benchmarks/ (committed) and used; a benchmark not run this time keeps its committed
result; a section whose JSON was never committed keeps its text from the current page, marked as such.

    .venv/bin/python benchmarks/report.py            # after the benchmarks: see docs/performance.md
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
from pathlib import Path

from resnetlab.training.environment import bf16_units

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "runs" / "benchmarks"
COMMITTED = REPO / "docs" / "benchmarks"
TRAIN_SPEEDUP_GOAL = 1.5  # x the plain eager reference (issue 5; issue 14 on a CPU without bf16 units)
TRAIN_SPEEDUP_GOAL_AMX = 3.0  # x the reference on a CPU with AMX-BF16 (issue 14)
PARITY_POINTS = 0.5  # bf16's test errors within the fp32 seeds' range or this many points of their mean
PEAK_FRACTION_GOAL = 0.65  # of the 2048x2048 float32 matmul rate
AUGMENT_GOAL = 0.03  # of the step
SD_SAVING_GOAL = 0.22  # ResNet-110, p_L = 0.5, batch mode
MEMORY_GOAL_GIB = 6.0  # preact_resnet1001, batch 128
BF16_INFERENCE_GOAL = 2.0  # x onnxruntime float32, ResNet-50 at 224 px, batch 1 and 32 (issue 14)
BF16_LOGIT_GOAL = 0.02  # max |bf16 logits - float32 logits| / max |float32 logits|, per image
BF16_TOP1_GOAL = 0.99  # fraction of 1,000 images whose top-1 class bf16 and float32 agree on


def machine(data: dict) -> str:
    return data["machine"].removeprefix("machine: ")


def rounds_and_steps(setup_row: dict) -> tuple[int, int]:
    """The --rounds and --steps a comparison ran with: one warm-up per round, the same steps in each."""
    rounds = len(setup_row["warmup_seconds"])
    return rounds, len(setup_row["step_seconds"]) // rounds


def verdict(met: bool, gap: str = "") -> str:
    return "**met**" if met else f"**not met** ({gap})"


TRAIN_SPEED_FILES = {  # one train_speed.py result per kind of CPU (the goals differ with its bf16 units): heading
    "train_speed.json": "",  # the Xeon with AMX-BF16, the project's first result under the plain name
    "train_speed_avx512_bf16.json": " with AVX512-BF16, no AMX", "train_speed_no_bf16.json": " without bf16 units",
}


def train_section(data: dict, kind: str = "") -> list[str]:
    rounds, steps = rounds_and_steps(data["results"][0]["setups"][0])
    amx = "(AMX-BF16)" in machine(data)
    speedup_goal = TRAIN_SPEEDUP_GOAL_AMX if amx else TRAIN_SPEEDUP_GOAL
    first = data["results"][0]
    bf16_peak = f", bfloat16 {first['matmul_bf16']['median']:.0f}" if first.get("matmul_bf16") else ""
    lines = [f"## Training speed{kind} (batch 128, CPU)", "",
             f"`.venv/bin/python benchmarks/train_speed.py --rounds {rounds} --steps {steps}` on {machine(data)}. "
             f"Each setup ran in its own process, {rounds} interleaved rounds of {steps} timed steps; images/s is "
             "the median over all timed steps (min-max in brackets); GFLOP/s counts 6 x multiply-adds per image; "
             "% peak is against the 2048x2048 `torch.mm` rate of the setup's own precision measured in the same run "
             f"(float32 {first['matmul']['median']:.0f}{bf16_peak} GFLOP/s for {first['model']}).", "",
             "| model | setup | images/s (min-max) | GFLOP/s | % of matmul peak | vs reference | warm-up s "
             "| peak RSS MiB |",
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
        fp32 = max((r for r in result["setups"] if r["label"].startswith("resnetlab")
                    and r.get("precision", "fp32") == "fp32"), key=lambda r: r["speedup_vs_first"])
        goals.append(f"- {result['model']}: best resnetlab setup ({ours['label']}) "
                     f"{ours['speedup_vs_first']:.2f}x the reference: "
                     + verdict(ours["speedup_vs_first"] >= speedup_goal,
                               f"goal {speedup_goal}x{' with AMX-BF16' if amx else ''}, short by "
                               f"{speedup_goal - ours['speedup_vs_first']:.2f}x")
                     + f"; best float32 setup at {100 * fp32['fraction_of_matmul_peak']:.0f}% of the float32 matmul "
                     "peak (issue 5): "
                     + verdict(fp32["fraction_of_matmul_peak"] >= PEAK_FRACTION_GOAL,
                               f"goal {100 * PEAK_FRACTION_GOAL:.0f}%, short by "
                               f"{100 * (PEAK_FRACTION_GOAL - fp32['fraction_of_matmul_peak']):.0f} points")
                     + (f"; the bf16 setup reaches {100 * ours['fraction_of_matmul_peak']:.0f}% of the bfloat16 peak"
                        if ours.get("precision") == "bf16" else ""))
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
             "| model | setup | convolution ms | batch norm ms | ReLU ms | other ms | convolution share "
             "| convolution GFLOP/s (% of matmul peak) |",
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
             f"`.venv/bin/python benchmarks/stochastic_depth_time.py --rounds {rounds} --steps {steps}"
             f"{' --warmup-steps ' + str(data['warmup_steps']) if 'warmup_steps' in data else ''}` on "
             f"{machine(data)}, each setup in its own process, interleaved rounds. The gates are drawn afresh "
             "every step; epoch time = mean step time x 352 steps (45k images). 'Ideal' assumes time proportional to "
             "the blocks run (the paper's 25% for p_L = 0.5).", "",
             "| setup | expected blocks run | mean step s | epoch s | saving | ideal saving |",
             "|---|---|---|---|---|---|"]
    for row in data["rows"]:
        lines.append(f"| {row['label']} | {row['expected_blocks']:.2f} of {row['blocks']} | "
                     f"{row['mean_step_seconds']:.3f} | {row['epoch_seconds']:.0f} | {100 * row['saving']:.1f}% | "
                     f"{100 * row['expected_saving']:.1f}% |")
    lines += ["", "Savings of compiled setups are against the compiled constant-depth net (the gated net compiled unit "
              "by unit, the constant-depth one whole)."]
    fastest = data.get("fastest")
    if fastest is None:  # issue 5's run: p_L = 0.5 batch against constant depth, both eager
        saving = next(r["saving"] for r in data["rows"] if r["label"] == "stochastic depth p_L=0.5 batch")
        return lines + ["", "Goal: p_L = 0.5 batch mode saves " + f"{100 * saving:.1f}%: "
                        + verdict(saving >= SD_SAVING_GOAL, f"goal >= {100 * SD_SAVING_GOAL:.0f}%"), ""]
    saving = fastest["saving"]
    return lines + ["", f"Goal (each net in its fastest mode: {fastest['stochastic_depth']} against "
                    f"{fastest['constant_depth']}): {100 * saving:.1f}% less time per epoch: "
                    + verdict(saving >= SD_SAVING_GOAL, f"goal >= {100 * SD_SAVING_GOAL:.0f}%, short by "
                              f"{100 * (SD_SAVING_GOAL - saving):.1f} points"), ""]


def parity_section(data: dict) -> list[str]:
    verdict_data = data["parity"]
    lines = ["## bf16 against fp32: accuracy parity (ResNet-20, CIFAR-10 JPEG copy)", "",
             f"`.venv/bin/python benchmarks/precision_parity.py --iterations {data['iterations']}` on "
             f"{machine(data)}: the `{data['recipe']}` recipe compressed to {data['iterations']} iterations (lr steps "
             "at 50% and 75%), 45k/5k split, compiled, two seeds per precision, run interleaved. Test error at the "
             "last iteration. The images/s column is incidental, not a speed measurement (tests ran beside the "
             "first runs for about a minute); the training-speed section measures speed.", "",
             "| precision | seed | test error (%) | at best validation epoch (%) | final training error (%) | "
             "training minutes | images/s |", "|---|---|---|---|---|---|---|"]
    for row in data["rows"]:
        lines.append(f"| {row['precision']} | {row['seed']} | {100 * row['final_test_error']:.2f} | "
                     f"{100 * row['test_error_at_best_val']:.2f} | {100 * row['final_train_error']:.2f} | "
                     f"{row['train_seconds'] / 60:.1f} | {row['images_per_second']:.0f} |")
    fp32 = verdict_data["fp32_errors"]
    gap = max(min(abs(e - verdict_data["fp32_mean"]), abs(e - min(fp32)), abs(e - max(fp32)))
              for e in verdict_data["bf16_errors"])
    return lines + ["", f"Goal: every bf16 error within the fp32 seeds' range ({min(fp32):.2f}-{max(fp32):.2f}%) or "
                    f"{PARITY_POINTS} points of their mean ({verdict_data['fp32_mean']:.2f}%): "
                    + verdict(verdict_data["holds"], f"off by up to {gap:.2f} points")
                    + (". So `train.precision: auto` trains in bf16 on CPUs with AMX-BF16 units."
                        if verdict_data["holds"] else ". So bf16 is not the default anywhere."), ""]


def time_to_accuracy_section(data: dict) -> list[str]:
    minutes = data["minutes_to"]
    lines = ["## Time to accuracy (`fast/cifar10_resnet20`, CIFAR-10 JPEG copy)", "",
             f"`.venv/bin/python benchmarks/time_to_accuracy.py` on {machine(data)}, "
             f"{data['precision']['precision']}, compiled; the test split evaluated after every epoch (not counted "
             "as training time).", "",
             "| test accuracy | minutes of training |", "|---|---|"]
    for threshold, value in minutes.items():
        lines.append(f"| {threshold}% | {'not reached' if value is None else f'{value:.1f}'} |")
    last = data["curve"][-1]
    lines += ["", f"Final: {100 * data['final_test_accuracy']:.2f}% test accuracy after {last['train_minutes']:.1f} "
              f"minutes of training ({last['epoch']} epochs; training error {100 * last['train_error']:.2f}%)."]
    reached = minutes.get("90")
    gap = ("not reached" if reached is None else f"{reached:.1f} min") + f", goal {data['goal_90_within_minutes']} min"
    return lines + ["", "Goal: 90% within 20 minutes on 2 cores with AMX: "
                    + verdict(bool(data.get("goal_met")), gap), ""]


def memory_section(data: dict) -> list[str]:
    lines = ["## Memory of the deepest nets (one training step, CPU)", "",
             f"`.venv/bin/python benchmarks/memory_deep_nets.py` on {machine(data)}. Peak RSS is the process's "
             "peak resident memory (torch itself included); growth is over the memory before the first step; "
             "'saved activations' is what autograd keeps without checkpointing (measured at batch 2, scaled).", "",
             "| model | batch | checkpoint segments | peak RSS GiB | growth GiB | step s "
             "| saved activations, plain, GiB | note |",
             "|---|---|---|---|---|---|---|---|"]
    goal = None
    for row in data["rows"]:
        measured = "peak_bytes" in row
        lines.append(f"| {row['model']} | {row['batch']} | {row['segments'] or 'off'} | "
                     + (f"{row['peak_bytes'] / 2**30:.2f} | {row['growth_bytes'] / 2**30:.2f} | "
                        f"{row['step_seconds']:.1f}" if measured else "- | - | -")
                     + f" | {row['saved_activation_bytes_plain'] / 2**30:.2f} | {row.get('note', '')} |")
        if (row["model"], row["batch"]) == ("preact_resnet1001", 128) and row["segments"] and measured:
            goal = min(goal or math.inf, row["peak_bytes"] / 2**30)
    text = (f"Goal: preact_resnet1001 at batch 128 within {MEMORY_GOAL_GIB:.0f} GiB peak: {goal:.2f} GiB with "
            "the best segment count, " + verdict(goal <= MEMORY_GOAL_GIB, f"over by {goal - MEMORY_GOAL_GIB:.2f} GiB")
            if goal is not None else "Goal: not measured")
    return lines + ["", text, ""]


def inference_section(data: dict) -> list[str]:
    env = data["environment"]
    lines = ["## Inference (ResNet-50, 224x224, CPU)", "",
             f"`.venv/bin/python benchmarks/inference_resnet50.py --rounds {data['latency']['rounds']} --calls "
             f"{data['latency']['calls_per_round']}` on {env['cpu']}{bf16_units(env)}, {env['cpu_count']} cores, "
             f"torch {env['torch']}, "
             f"onnxruntime {env['onnxruntime']}, {env['date']}; variants interleaved in rounds; every variant's "
             "logits checked against float32 eager (random weights, randomized BN statistics).", "",
             "| batch | variant | median ms (min-max) | images/s | vs eager | vs onnxruntime | max rel. diff "
             "| setup s |",
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
            lines.append(f"| {bench['batch_size']} | {name} | {r['median_ms']:.1f} "
                         f"({r['min_ms']:.1f}-{r['max_ms']:.1f}) | "
                         f"{r['images_per_second']:.1f} | {results['eager']['median_ms'] / r['median_ms']:.2f}x | "
                         f"{versus_ort} | {r['rel_diff']:.1e} | {r['setup_seconds']:.1f} |")
        if ort:
            goals += _inference_goals(bench["batch_size"], results, ort)
    for agreement in data.get("agreement", []):
        goals.append(f"- {agreement['variant']} on {agreement['images']} random images: top-1 equal to float32 eager "
                     f"on {100 * agreement['top1_equal']:.1f}% (goal {100 * BF16_TOP1_GOAL:.0f}%: "
                     + verdict(agreement["top1_equal"] >= BF16_TOP1_GOAL, "below") + "), relative logit difference "
                     f"median {100 * agreement['median_rel_diff']:.2f}%, worst {100 * agreement['max_rel_diff']:.2f}% "
                     f"(goal {100 * BF16_LOGIT_GOAL:.0f}%: "
                     + verdict(agreement["max_rel_diff"] <= BF16_LOGIT_GOAL, "the worst image is over") + ")")
    return lines + ["", "Goals: resnetlab's float32 path at least as fast as onnxruntime float32; its bf16 path "
                    f"at least {BF16_INFERENCE_GOAL:.0f}x as fast, with logits within {100 * BF16_LOGIT_GOAL:.0f}% and "
                    f"the same top-1 on {100 * BF16_TOP1_GOAL:.0f}% of images:", ""] + goals + [""]


def _inference_goals(batch: int, results: dict, ort_ms: float) -> list[str]:
    """The float32 and the bf16 speed goals of one batch size, each against onnxruntime float32."""
    goals = []
    for dtype, goal in (("float32", 1.0), ("bf16", BF16_INFERENCE_GOAL)):
        candidates = [r for name, r in results.items() if name != "onnxruntime" and r["median_ms"]
                      and name.endswith("_bf16") == (dtype == "bf16")]
        if not candidates:
            continue
        ours = min(candidates, key=lambda r: r["median_ms"])
        speedup = ort_ms / ours["median_ms"]
        goals.append(f"- batch {batch}, {dtype}: resnetlab's fastest ({ours['name']}, {ours['median_ms']:.1f} ms) vs "
                     f"onnxruntime float32 ({ort_ms:.1f} ms): {speedup:.2f}x, "
                     + verdict(speedup >= goal, f"goal {goal:.1f}x"))
    return goals


def loader_section(data: dict) -> list[str]:
    names = {"train": "training: decode, shorter side 256-480, random 224 crop, flip, PCA lighting",
             "test": "test: decode, shorter side 256, centre 224 crop", "test10": "test: decode, shorter side 256, "
             "10 crops of 224"}
    lines = ["## Streaming loader (224-px JPEGs, CPU)", "",
             f"`.venv/bin/python benchmarks/loader_throughput.py` on {machine(data)}; images: "
             + ("512 generated 500x375 JPEGs at quality 90" if data["source"] == "generated" else data["source"])
             + "; median images/s over the rounds of each configuration.", "",
             "| pipeline | worker processes | images/s |", "|---|---|---|"]
    lines += [f"| {names[r['mode']]} | {r['workers']} | {r['images_per_second']:.0f} |" for r in data["results"]]
    return lines + ["", "A GPU that trains faster than the training row's rate would wait for this loader on this "
                    "machine; the loader scales with the cores a machine has.", ""]


def result(name: str, results: Path) -> dict | None:
    """This session's result (copied into docs/benchmarks/ to be committed), else the committed one."""
    fresh, committed = results / name, COMMITTED / name
    if fresh.exists():
        COMMITTED.mkdir(parents=True, exist_ok=True)
        committed.write_text(fresh.read_text())
    return json.loads(committed.read_text()) if committed.exists() else None


SECTION_FILES = {**{f"## Training speed{kind} (": name for name, kind in TRAIN_SPEED_FILES.items()},
                 "### Where the step's time goes": "step_profile.json",
                 "## Stochastic depth that saves time": "stochastic_depth_time.json",
                 "## Memory of the deepest nets": "memory_deep_nets.json", "## Inference": "inference_resnet50.json",
                 "## Streaming loader": "loader_throughput.json"}


def earlier_sections(page: Path) -> dict[str, list[str]]:
    """The current page's sections whose JSON was never committed, by file name, marked as kept."""
    if not page.exists():
        return {}
    sections, current = {}, None
    for line in page.read_text().splitlines():
        name = next((file for heading, file in SECTION_FILES.items() if line.startswith(heading)), None)
        if line.startswith("#") and name != current:
            current = name
            if name is not None:
                sections[name] = [line, "", f"(Kept from the page before: {name} was not committed then; rerun "
                                            "its benchmark to regenerate this section.)"]
                continue
        kept = sections[current] if current is not None else None
        blank_again = not line.strip() and kept and not kept[-1].strip()  # else each rewrite adds a blank line
        if kept is not None and not line.startswith("(Kept from the page before") and not blank_again:
            kept.append(line)  # the marker is noted once, above
    return sections


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "performance.md")
    args = parser.parse_args()
    sections = [(name, functools.partial(train_section, kind=kind)) for name, kind in TRAIN_SPEED_FILES.items()
                if name == "train_speed.json" or (args.results / name).exists() or (COMMITTED / name).exists()]
    sections += [("step_profile.json", step_profile_section),
                ("precision_parity.json", parity_section), ("time_to_accuracy.json", time_to_accuracy_section),
                ("stochastic_depth_time.json", stochastic_depth_section),
                ("memory_deep_nets.json", memory_section), ("inference_resnet50.json", inference_section),
                ("loader_throughput.json", loader_section)]
    earlier = earlier_sections(args.out)
    lines = ["# Speed and memory, measured", "",
             "Generated by `benchmarks/report.py` from the JSON files the benchmark scripts wrote (committed in "
             "`docs/benchmarks/`); see the README's performance section for what the levers are and how to switch "
             "them. Each section names the machine it was measured on: a figure from one CPU is not a claim "
             "about the other.", ""]
    for name, render in sections:
        data = result(name, args.results)
        if data is not None:
            lines += render(data)
            continue
        kept = earlier.get(name)
        lines += kept if kept else [f"({name} not found: run its benchmark)", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
