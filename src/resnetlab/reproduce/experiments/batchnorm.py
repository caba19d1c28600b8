"""Ioffe and Szegedy 2015, Batch Normalization, at small scale: a small conv net on CIFAR-10 with and without BN,
at the base and 5x learning rate, and with sigmoid activations; steps to a fixed validation accuracy (the
paper's Figures 2 and 3 for Inception on ImageNet)."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path

from resnetlab.reproduce import figures
from resnetlab.reproduce.budgets import CLOSE_CALL, SMOKE, Plan
from resnetlab.reproduce.experiment import Analysis, Claim, Experiment, Figure, Row
from resnetlab.reproduce.experiments.common import budget_notes, curve_series

BASELINE, BN_BASELINE, BN_X5, BN_X5_SIGMOID, SIGMOID = (
    "Baseline (no BN)", "BN-Baseline", "BN-x5", "BN-x5-Sigmoid", "Sigmoid (no BN)")
ROWS = tuple(Row(label, f"batchnorm/{stem}.yaml", "bn_cnn") for label, stem in (
    (BASELINE, "baseline"), (BN_BASELINE, "bn_baseline"), (BN_X5, "bn_x5"), (BN_X5_SIGMOID, "bn_x5_sigmoid"),
    (SIGMOID, "sigmoid")))
# The validation accuracy each budget counts steps to: the paper's 72.2% is Inception's ImageNet accuracy;
# these are what the small net reaches within each budget's length.
TARGET_ACCURACY = {"smoke": 0.2, "cpu": 0.6, "paper": 0.8}
PLANS = {
    "smoke": replace(SMOKE, eval_split="val"),
    "cpu": Plan(iterations=2000, curve_every=100, eval_images=2000, eval_split="val", compile=False),
    "paper": Plan(iterations=None, seeds=5, curve_every=250, eval_images=5000, eval_split="val"),
}


def steps_to_accuracy(curve: list[dict], target: float, key: str = "val_error") -> int | None:
    """The first recorded iteration whose held-out accuracy reaches ``target``; None if it never does."""
    return next((r["iteration"] for r in curve if r.get(key) is not None and 1 - r[key] >= target), None)


def _analyze(results, report_dir: Path) -> Analysis:
    analysis = Analysis(notes=budget_notes(results))
    target = TARGET_ACCURACY[results.manifest["budget"]]
    steps, best = {}, {}
    for row in results.rows:
        per_seed = [steps_to_accuracy(run.curve, target) for run in row.runs if run.finished]
        if not per_seed:  # not run (yet): no number, and claims on it cannot tell
            continue
        reached = sorted(s for s in per_seed if s is not None)
        steps[row.label] = reached[len(reached) // 2] if reached and len(reached) > len(per_seed) / 2 else None
        accuracies = [1 - r["val_error"] for run in row.runs for r in run.curve if r.get("val_error") is not None]
        best[row.label] = max(accuracies) if accuracies else None
    baseline = steps.get(BASELINE)
    paper_baseline = results.row(BASELINE).paper.get("steps_to_72_2") if results.row(BASELINE) else None
    title = f"steps to {100 * target:.0f}% val. accuracy"
    analysis.columns[title] = {k: "never" if v is None else str(v) for k, v in steps.items()}
    analysis.columns["relative to Baseline"] = {k: "-" if v is None or not baseline else f"{v / baseline:.2f}"
                                                for k, v in steps.items()}
    analysis.columns["paper: relative to Inception (72.2%)"] = {
        row.label: f"{row.paper['steps_to_72_2'] / paper_baseline:.3f}" if row.paper.get("steps_to_72_2")
        and paper_baseline else "-" for row in results.rows}
    analysis.columns["max val. accuracy (%)"] = {k: "-" if v is None else f"{100 * v:.2f}" for k, v in best.items()}
    analysis.columns["paper: max accuracy (%)"] = {
        row.label: f"{100 * row.paper['max_accuracy']:.1f}" if row.paper.get("max_accuracy") else "-"
        for row in results.rows}
    curves = {}
    for row in results.rows:
        xs, errors = curve_series(row, "val_error")
        curves[row.label] = (xs, [100 * (1 - e) for e in errors])
    figures.line_panels({f"validation accuracy (target {100 * target:.0f}%)": curves},
                        report_dir / "accuracy_curves.png", "iterations", "accuracy (%)")
    analysis.figures.append(Figure("accuracy_curves.png", "Validation accuracy over training (on the first "
                                   "validation images), as in the paper's Figure 2."))

    claim = partial(fewer_steps_claim, steps=steps, best=best, target=target)
    analysis.claims += [
        claim(BN_BASELINE, BASELINE, "BN reaches the target accuracy in fewer steps than the same net without BN."),
        claim(BN_X5, BN_BASELINE, "BN with a 5x learning rate reaches it in fewer steps still."),
        claim(BN_X5_SIGMOID, SIGMOID, "With sigmoid activations, BN trains where the net without BN lags or fails.",
              by_accuracy_if_neither_reaches=True),
    ]
    return analysis


def fewer_steps_claim(a: str, b: str, statement: str, *, steps: dict, best: dict, target: float,
                      by_accuracy_if_neither_reaches: bool = False) -> Claim:
    """Row ``a`` reaches ``target`` in fewer steps than row ``b`` (``steps``: a row's steps to it, None for never).
    Where neither reaches it and the claim is about training at all (the sigmoid rows: "lags or fails"), the
    higher best validation accuracy (``best``) decides instead, a gap under `CLOSE_CALL` marking a close call."""
    if a not in steps or b not in steps:
        return Claim(statement, None, "(a row has no finished run)")
    reached = f"Ours: {a} {steps[a] or 'never'}, {b} {steps[b] or 'never'} steps to {100 * target:.0f}%."
    if steps[a] is None and steps[b] is None and by_accuracy_if_neither_reaches:
        if best.get(a) is None or best.get(b) is None:
            return Claim(statement, None, reached + " (a row has no validation accuracy)")
        gap = best[a] - best[b]
        return Claim(statement, gap > 0, f"{reached[:-1]}; best validation accuracy {a} {100 * best[a]:.2f}%, "
                                         f"{b} {100 * best[b]:.2f}%.",
                     close_rows=(a, b) if abs(gap) < CLOSE_CALL else (), gap=abs(gap))
    return Claim(statement, steps[a] is not None and (steps[b] is None or steps[a] < steps[b]), reached)


EXPERIMENTS: list[Experiment] = []  # registered by the package, in the papers' order

EXPERIMENTS.append(Experiment(
    name="batchnorm", title="Batch normalization at small scale (Ioffe and Szegedy 2015, Figures 2-3)",
    paper="Ioffe and Szegedy 2015, Batch Normalization",
    summary="With BN the same network reaches a given accuracy in far fewer steps (Inception: 31.0M steps, "
            "BN-Baseline 13.3M, BN-x5 2.1M), tolerates a 5x higher learning rate, and trains with sigmoid "
            "activations where the network without BN does not.",
    rows=ROWS, plans=PLANS, analyze=_analyze))
