"""Huang et al. 2016, Deep Networks with Stochastic Depth: ResNet-110 with constant depth against stochastic
depth (Table 1 error, Table 2 training time, the expected depth, and Fig. 8's first-layer gradient magnitude)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from resnetlab.reproduce import figures
from resnetlab.reproduce.budgets import SMOKE, Plan
from resnetlab.reproduce.experiment import Analysis, Claim, Experiment, Figure, Row
from resnetlab.reproduce.experiments.common import (
    budget_notes,
    curve_series,
    first_finished,
    median_of,
    no_result,
    unless_stalled,
)

CONSTANT, STOCHASTIC = "ResNet-110 constant depth", "ResNet-110 stochastic depth"
RECIPE_EPOCHS, ITERATIONS_PER_EPOCH = 500, 352  # Huang et al. 2016: 500 epochs of 45k images in batches of 128
ROWS = (Row(CONSTANT, "stochastic_depth/table1_cifar10_resnet110_constant.yaml", "constant"),
        Row(STOCHASTIC, "stochastic_depth/table1_cifar10_resnet110_stochastic.yaml", "stochastic"))
# Both rows run eager: the trainer compiles long constant-depth runs but not gated ones, which would compare
# a compiled net with an eager one. The curve takes no held-out evaluation, so the measured time is training.
SMOKE_PLAN = replace(SMOKE, eval_images=0, compile=False)
# cpu: 20 epochs of 352 iterations (45k images, batch 128), the milestones compressed to epochs 10 and 15, after
# He et al. 2016's warm-up; the splits are evaluated every 2 epochs. About 2 hours for both rows with AMX-BF16
# (eager bf16). Enough for the time, depth and gradient claims; the accuracy claim needs the recipe's 500 epochs.
CPU = Plan(iterations=7040, curve_every=88, eval_every=2, compile=False, warm_start=True, second_seed_if_close=True)
PAPER = Plan(iterations=None, seeds=5, curve_every=352, compile=False)


def _timed_epochs(row) -> dict[str, tuple[float, int]]:
    """(training seconds, iterations) per machine of the row's first finished run; {} where none finished."""
    run = first_finished(row)
    return run.training_time_by_machine() if run else {}


def _own_seconds_per_iteration(row) -> float | None:
    """The row's training seconds per iteration on the machine that trained most of it."""
    times = _timed_epochs(row)
    if not times:
        return None
    seconds, iterations = max(times.values(), key=lambda t: t[1])
    return seconds / iterations


def _shared_seconds_per_iteration(rows) -> tuple[dict[str, float], str | None]:
    """Each row's training seconds per iteration on the machine (and precision) that trained the most of every
    row, and that machine; ({}, None) where no machine trained them all (a comparison across machines would time
    the machines, not stochastic depth)."""
    times = [_timed_epochs(row) for row in rows]
    shared = set.intersection(*(set(t) for t in times)) if times else set()
    if not shared:
        return {}, None
    machine = max(sorted(shared), key=lambda m: min(t[m][1] for t in times))
    return {row.label: t[machine][0] / t[machine][1] for row, t in zip(rows, times)}, machine


def _time_claim(constant, stochastic) -> Claim:
    statement = "Stochastic depth trains faster: the paper saves about 25% of the time at p_L = 0.5."
    if (missing := no_result([constant, stochastic], "train_seconds")) is not None:
        return Claim(statement, None, missing)
    if untimed := [row.label for row in (constant, stochastic) if not _timed_epochs(row)]:
        return Claim(statement, None, f"(no timed epochs in the records of {', '.join(untimed)})")
    per_step, machine = _shared_seconds_per_iteration([constant, stochastic])
    if machine is None:
        return Claim(statement, None, "Cannot tell: no machine trained both rows, and times taken on different "
                                      "machines do not compare (`resnetlab reproduce` on one machine finishes both).")
    saved = 1 - per_step[STOCHASTIC] / per_step[CONSTANT]
    return Claim(statement, saved > 0, f"Ours: {100 * saved:.1f}% less time per iteration "
                                       f"({1000 * per_step[CONSTANT]:.0f} vs {1000 * per_step[STOCHASTIC]:.0f} ms, "
                                       f"epochs trained on {machine}).")


def _analyze(results, report_dir: Path) -> Analysis:
    analysis = Analysis(notes=budget_notes(results))
    constant, stochastic = results.row(CONSTANT), results.row(STOCHASTIC)
    depth = {}
    for row in results.rows:
        run = first_finished(row)
        depth[row.label] = run.metrics[-1].get("expected_depth") if run and run.metrics else None
    analysis.columns["expected depth (residual blocks)"] = {label: "-" if blocks is None else f"{blocks:.1f}"
                                                            for label, blocks in depth.items()}
    per_step, machine = _shared_seconds_per_iteration(results.rows)
    own = {row.label: per_step.get(row.label) or _own_seconds_per_iteration(row) for row in results.rows}
    analysis.columns["ms per iteration"] = {label: "-" if v is None else f"{1000 * v:.0f}" for label, v in own.items()}
    panels = {"training curves": {row.label: (curve_series(row, "train_error"), _epoch_test_series(row))
                                  for row in results.rows}}
    figures.plot_error_curves(panels, report_dir / "error_curves.png")
    gradients = {row.label: curve_series(row, "grad_first_conv") for row in results.rows}
    figures.line_panels({"mean |gradient| of the first convolution's weights": gradients},
                        report_dir / "gradient_magnitude.png", "iterations", "mean |gradient|", log_y=True)
    if per_step:
        figures.bars({label.replace("ResNet-110 ", ""): 1000 * v for label, v in per_step.items()},
                     report_dir / "training_time.png", "ms per iteration", "training time per iteration")
        analysis.figures.append(Figure("training_time.png", "Training time per iteration (evaluation excluded), "
                                                            f"epochs trained on {machine}."))
    analysis.figures += [
        Figure("error_curves.png", "Training error (dashed, window means) and test error at each epoch (bold)."),
        Figure("gradient_magnitude.png", "Mean absolute gradient of the first convolution's weights over training, "
                                         "averaged over each window of iterations (the paper's Fig. 8)."),
    ]
    analysis.claims.append(_time_claim(constant, stochastic))
    analysis.claims.append(_accuracy_claim(results, constant, stochastic, own.get(CONSTANT)))
    means = [_mean(curve_series(row, "grad_first_conv")[1]) for row in (constant, stochastic)]
    statement = "The first layer gets larger gradients with stochastic depth (mean over training)."
    if (missing := no_result([constant, stochastic], results.metric)) is not None:  # a row still to train
        analysis.claims.append(Claim(statement, None, missing))
    else:
        analysis.claims.append(Claim(statement, None, "(no gradient records)") if None in means else unless_stalled(
            Claim(statement, means[1] > means[0], f"Ours: mean |gradient| {means[0]:.3g} constant, "
                                                  f"{means[1]:.3g} stochastic."), [constant, stochastic]))
    return analysis


def _accuracy_claim(results, constant, stochastic, seconds_per_iteration: float | None) -> Claim:
    """Lower test error with stochastic depth: judged at the paper budget only. The gap comes from a regularizer
    over the recipe's 500 epochs; a shortened run cannot show it, so the claim names the length it needs."""
    errors = [median_of(constant, results.metric), median_of(stochastic, results.metric)]
    statement = "Stochastic depth has the lower test error at the best validation epoch."
    if (missing := no_result([constant, stochastic], results.metric)) is not None:
        return Claim(statement, None, missing)
    ours = f"Ours: {100 * errors[0]:.2f}% constant, {100 * errors[1]:.2f}% stochastic"
    if results.manifest["budget"] == "paper":
        return unless_stalled(Claim(statement, errors[1] < errors[0], ours + "."), [constant, stochastic])
    run = first_finished(constant)
    epochs = run.summary.get("epochs") if run else None
    needs = f"the recipe's {RECIPE_EPOCHS} epochs (`--budget paper`)"
    if seconds_per_iteration:
        hours = RECIPE_EPOCHS * ITERATIONS_PER_EPOCH * seconds_per_iteration / 3600
        needs += f", about {hours:.0f} hours per constant-depth run at the speed measured here"
    return Claim(statement, None, f"{ours} after {epochs} epochs. Cannot tell at this length: it needs {needs}.")


def _epoch_test_series(row) -> tuple[list[float], list[float]]:
    run = first_finished(row)
    records = run.metrics if run else []
    points = [(r["iteration"], r["test_error"]) for r in records if r.get("test_error") is not None]
    return [p[0] for p in points], [p[1] for p in points]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


EXPERIMENTS: list[Experiment] = []  # registered by the package, in the papers' order

EXPERIMENTS.append(Experiment(
    name="stochastic-depth", title="ResNet-110 with constant and stochastic depth", paper="Huang et al. 2016, "
    "Deep Networks with Stochastic Depth",
    summary="Dropping whole residual blocks in training (survival probability falling linearly to 0.5) cuts "
            "the training time by about 25% (Table 2) and the CIFAR-10 test error from 6.41% to 5.25% (Table 1), "
            "with larger gradients reaching the first layers (Fig. 8).",
    rows=ROWS, plans={"smoke": SMOKE_PLAN, "cpu": CPU, "paper": PAPER}, analyze=_analyze))
