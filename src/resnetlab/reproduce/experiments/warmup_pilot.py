"""The warm-up pilot: does He et al.'s warm-up (lr 0.01 for the first 400 iterations, then the recipe) remove the
early stall of ResNet-56, ResNet-110 and plain-56 at lr 0.1? Each net runs the first 1,000 iterations of its
recipe as they are (no compressed schedule) three ways: at lr 0.1 from the start, with the constant warm-up, and
with a linear one (0.01 rising to 0.1 over the same 400 iterations: a gradual start, as Goyal et al. 2017 use
for large batches), 3 seeds each. The training curve records the training error and the first convolution's
mean |gradient| every 25 iterations. Its verdicts set how the `cpu` budgets of the CIFAR experiments start
(`resnetlab.reproduce.budgets.WARM_START`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from resnetlab.reproduce import figures
from resnetlab.reproduce.budgets import AT_THE_END, SMOKE, WARM_START_ITERATIONS, WARM_START_LR, Plan
from resnetlab.reproduce.experiment import Analysis, Claim, Experiment, Figure, Row
from resnetlab.reproduce.experiments.common import budget_notes, run_stall

PAPER = "He et al. 2016, Identity Mappings in Deep Residual Networks (the warm-up); He et al. 2015 (the recipes)"
NETS = (("ResNet-56", "resnet/table6_cifar10_resnet56.yaml"), ("ResNet-110", "resnet/table6_cifar10_resnet110.yaml"),
        ("plain-56", "resnet/fig6_cifar10_plain56.yaml"))
NO_WARMUP = ("train.schedule.warmup.kind=none",)  # ResNet-110's recipe has the error-threshold rule: off
CONSTANT_WARMUP = ("train.schedule.warmup.kind=constant", f"train.schedule.warmup.steps={WARM_START_ITERATIONS}",
                   f"train.schedule.warmup.lr={WARM_START_LR}")
LINEAR_WARMUP = ("train.schedule.warmup.kind=linear", f"train.schedule.warmup.steps={WARM_START_ITERATIONS}",
                 f"train.schedule.warmup.lr={WARM_START_LR}")
ARMS = (("lr 0.1 from the start", NO_WARMUP, None),
        ("constant warm-up", CONSTANT_WARMUP, f"the constant warm-up ({WARM_START_LR} for {WARM_START_ITERATIONS} "
                                              "iterations, then 0.1)"),
        ("linear warm-up", LINEAR_WARMUP, f"the linear warm-up ({WARM_START_LR} rising to 0.1 over "
                                          f"{WARM_START_ITERATIONS} iterations)"))
ROWS = tuple(Row(f"{net}, {arm}", recipe, net, overrides) for net, recipe in NETS for arm, overrides, _ in ARMS)
PILOT = Plan(iterations=1000, seeds=3, curve_every=25, compress=False, metric="final_train_error",
             eval_every=AT_THE_END,
             note="Each run is the first 1,000 iterations of the recipe as it is (lr 0.1; no milestone comes "
                  "before 32,000): from the start, after 0.01 for the first 400 iterations, or after 0.01 rising "
                  "linearly to 0.1 over them.")


def _stalls(row) -> list[bool]:
    return [run_stall(run) is not None for run in row.runs if run.finished]


def _window_mean(row, key: str, first: int, last: int) -> float | None:
    values = [r[key] for run in row.runs for r in run.curve
              if first < r["iteration"] <= last and r.get(key) is not None]
    return sum(values) / len(values) if values else None


def _analyze(results, report_dir: Path) -> Analysis:
    analysis = Analysis(notes=budget_notes(results))
    for key, file, label, log_y in (("train_error", "train_error.png", "training error", False),
                                    ("grad_first_conv", "first_layer_gradient.png", "mean |gradient|, first conv",
                                     True)):
        panels = {net: {f"{row.label.split(', ')[1]}, seed {seed}": (
            [r["iteration"] for r in run.curve], [r[key] for r in run.curve])
            for row in results.group(net) for seed, run in enumerate(row.runs) if run.finished}
            for net, _ in NETS}
        figures.line_panels(panels, report_dir / file, "iteration", label, log_y=log_y)
        analysis.figures.append(Figure(file, f"{label.capitalize()} over the first 1,000 iterations, every seed, at "
                                       "lr 0.1 from the start and with each warm-up (window means of 25 iterations)."))
    # The first steps, the 100 after the warm-ups end (where the learning rate reaches 0.1), and the last 100.
    for title, (first, last) in (("train error, iterations 1-100 (%)", (0, 100)),
                                 ("train error, iterations 401-500 (%)", (400, 500)),
                                 ("train error, iterations 901-1000 (%)", (900, 1000))):
        analysis.columns[title] = {row.label: "-" if (v := _window_mean(row, "train_error", first, last)) is None
                                   else f"{100 * v:.1f}" for row in results.rows}
    analysis.columns["seeds stalled"] = {row.label: f"{sum(_stalls(row))}/{len(_stalls(row))}" for row in results.rows}
    for net, _ in NETS:
        rows = {row.label.split(", ")[1]: row for row in results.group(net)}
        for arm, _, description in ARMS[1:]:
            statement = f"With {description} no seed of {net} stalls in its first 1,000 iterations."
            if arm not in rows or ARMS[0][0] not in rows:  # `--rows` ran only part of the comparison
                analysis.claims.append(Claim(statement, None, f"(needs the rows '{net}, {ARMS[0][0]}' and "
                                                              f"'{net}, {arm}')"))
                continue
            stalled, warm_stalled = _stalls(rows[ARMS[0][0]]), _stalls(rows[arm])
            if not warm_stalled:
                analysis.claims.append(Claim(statement, None, "(no finished run)"))
                continue
            evidence = (f"Ours: stalled seeds {sum(stalled)}/{len(stalled)} at lr 0.1 from the start, "
                        f"{sum(warm_stalled)}/{len(warm_stalled)} with the {arm}.")
            analysis.claims.append(Claim(statement, not any(warm_stalled), evidence))
    return analysis


EXPERIMENTS: list[Experiment] = []
EXPERIMENTS.append(Experiment(
    name="warmup-pilot", title="Warm-up pilot: the first 1,000 iterations from lr 0.1, after 0.01 held for 400, or "
                               "ramped over 400",
    paper=PAPER,
    summary="At lr 0.1 from the first step deep CIFAR nets can diverge in a few iterations and stall near chance; "
            "He et al. warm ResNet-110 up at 0.01 for about 400 iterations. Does holding 0.01 for 400 iterations, "
            "or ramping from 0.01 to 0.1 over them, remove the stall?",
    rows=ROWS, plans={"smoke": replace(SMOKE, metric="final_train_error"), "cpu": PILOT,
                      "paper": PILOT},
    analyze=_analyze))
