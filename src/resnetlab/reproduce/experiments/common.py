"""Pieces the experiments share: curve series of a row, claims about orderings, and the notes that explain
why a budget's numbers differ from the paper's (all generated from the records)."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

from resnetlab.reproduce.budgets import CLOSE_CALL, WARM_START_NOTE
from resnetlab.reproduce.experiment import Claim
from resnetlab.reproduce.results import ExperimentResults, RowResult

STALL_FACTOR = 20  # a first-layer gradient this many times below its first window's means the net stalled
RECOVERED_FRACTION = 0.25  # ... and back above this fraction of the first window's: training again
# ... after a blow-up: a window's training loss this many times chance (ln of the class count) at or before the
# gradient's low. A plain net's first-layer gradient also shrinks from a large start while its loss only creeps
# down from chance: that is slow optimisation (what the degradation study measures), not a stall.
DIVERGED_LOSS_FACTOR = 1.2
CIFAR10_CLASSES = 10  # the data of every reproduction, for records that do not give their class count


def first_finished(row: RowResult | None):
    """The lowest-seed finished run of a row (figures show one run per row), or None."""
    if row is None:
        return None
    return next((run for run in row.runs if run.finished), None)


def curve_series(row: RowResult | None, key: str) -> tuple[list[float], list[float]]:
    run = first_finished(row)
    points = [(r["iteration"], r[key]) for r in (run.curve if run else []) if r.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def median_of(row: RowResult | None, key: str) -> float | None:
    return None if row is None else row.stats(key).median


def no_result(rows: list[RowResult | None], key: str) -> str | None:
    """Why ``rows`` give no ``key`` to compare, as a claim's evidence, or None when every row has one. A partial
    report names the rows still to train; rows whose every run diverged are named as such."""
    if any(row is None for row in rows):
        return "(a row of the claim is not in this report)"
    to_train = [row for row in rows if not any(run.finished or run.diverged for run in row.runs)]
    if to_train:
        return not_run_note(to_train)
    diverged = [row.label for row in rows if row.stats(key).median is None]
    return f"(no result from {', '.join(diverged)}: every run diverged)" if diverged else None


def not_run_note(rows: list[RowResult]) -> str:
    """A claim's evidence while ``rows`` are still to train: their labels and the length each run needs at the
    report's budget, so a reader of a partial report (or of one row run at the paper budget) sees what is owed."""
    lengths = {row.planned_length for row in rows}
    each = " each" if len(rows) > 1 else ""
    needs = f", {lengths.pop()}{each} at this budget" if len(lengths) == 1 and "" not in lengths else ""
    return f"(not run yet: {', '.join(row.label for row in rows)}{needs})"


def close_call(gaps: dict[str, float]) -> tuple[tuple[str, ...], float | None]:
    """The labels whose gap (a difference of error rates, as a fraction) to the row they are compared with is
    under `CLOSE_CALL`, where a second seed could reverse the verdict, and the smallest gap (None: no gaps)."""
    close = tuple(label for label, gap in gaps.items() if gap < CLOSE_CALL)
    return close, (min(gaps.values()) if gaps else None)


def ordered_claim(statement: str, rows: list[RowResult | None], key: str, *, increasing: bool,
                  what: str = "error") -> Claim:
    """Whether ``key`` (median over seeds) strictly increases (or decreases) along ``rows``."""
    values = [median_of(row, key) for row in rows]
    if (missing := no_result(rows, key)) is not None:
        return Claim(statement, None, missing)
    if len(rows) < 2:  # an ordering needs two rows (`reproduce --rows` may run fewer)
        return Claim(statement, None, f"(needs two rows or more; this report holds {len(rows)})")
    pairs = list(itertools.pairwise(values))
    in_order = [(b > a) if increasing else (b < a) for a, b in pairs]
    shown = all(in_order)
    evidence = f"Ours ({what}, %): " + ", ".join(f"{row.label} {100 * v:.2f}" for row, v in zip(rows, values)) + "."
    if not shown:  # name the steps that break the order, so the verdict says where it fails
        evidence += " Out of order: " + "; ".join(
            f"{first.label} to {second.label}, {100 * a:.2f} to {100 * b:.2f}"
            for (first, second), (a, b), ok in zip(itertools.pairwise(rows), pairs, in_order) if not ok) + "."
    close = {row.label for pair, (a, b) in zip(itertools.pairwise(rows), pairs) if abs(b - a) < CLOSE_CALL
             for row in pair}
    return Claim(statement, shown, evidence, tuple(row.label for row in rows if row.label in close),
                 min(abs(b - a) for a, b in pairs))


def budget_notes(results: ExperimentResults) -> list[str]:
    """Why absolute numbers differ: the budget's length and the data set, stated from the records."""
    notes = []
    manifest = results.manifest
    run = next((r for r in results.runs if r.config), None)
    if run is None:
        return notes
    train, data = run.config["train"], run.config["data"]
    if manifest["budget"] != "paper" and results.rows:
        length = train.get("iterations")
        moved = ("with the learning-rate steps moved in proportion" if manifest["plan"].get("compress", True)
                 else "its learning rate as the recipe has it over those iterations (no step comes that early)")
        if manifest["plan"].get("warm_start"):
            notes.append(WARM_START_NOTE)
        notes.append(f"Length: each run stopped after {length} iterations of batch {train['batch_size']}, against "
                     f"{results.rows[0].recipe_length} of batch {results.rows[0].recipe_batch_size} in the paper's "
                     f"recipe, {moved}. Such short runs end far from "
                     "convergence, so every error here is well above the paper's; only comparisons between rows "
                     "trained the same way carry over, and even those can change with longer training.")
    if data["name"] == "folder":
        notes.append(f"Data: `{data['root']}`, an image folder. For the CIFAR-10 JPEG copy the pixels went through "
                     "lossy JPEG compression (quality about 75), so errors are not directly comparable with the "
                     "papers' lossless CIFAR-10 even at the full budget.")
    elif data["name"] == "synthetic":
        notes.append("Data: the built-in synthetic texture classes, not CIFAR-10: this budget checks that the "
                     "experiment runs end to end, its numbers say nothing about the paper.")
    notes += stall_notes(results)
    seeds = len(manifest["seeds"])
    if seeds == 1:
        notes.append("Seeds: one run per row, so no spread is shown; differences of a point or two between rows "
                     "are within what a second seed could change (the ResNet paper's ResNet-110 varies by "
                     "+-0.16 over 5 runs at the full budget).")
    return notes


def stall(row: RowResult | None) -> dict | None:
    """Where a row's first steps diverged and stalled the net (`run_stall` of its first finished run)."""
    return run_stall(first_finished(row))


def run_stall(run) -> dict | None:
    """Where a run's first steps diverged and stalled the net, from its training curve: the window where the
    mean |gradient| of the first convolution was lowest, when that is more than `STALL_FACTOR`-fold below the
    first window's and a window's training loss rose above `DIVERGED_LOSS_FACTOR` x chance at or before it
    (None: no stall, or no curve)."""
    curve = [r for r in (run.curve if run else []) if r.get("grad_first_conv") is not None]
    if len(curve) < 2 or not curve[0]["grad_first_conv"]:
        return None
    start = curve[0]["grad_first_conv"]
    lowest = min(curve, key=lambda r: r["grad_first_conv"])
    if lowest["grad_first_conv"] * STALL_FACTOR > start:
        return None
    summary = getattr(run, "summary", None) or {}
    chance = math.log(len(summary.get("final_test_per_class_accuracy") or ()) or CIFAR10_CLASSES)
    peak = max((r for r in curve if r["iteration"] <= lowest["iteration"] and r.get("train_loss") is not None),
               key=lambda r: r["train_loss"], default=None)
    if peak is None or peak["train_loss"] < DIVERGED_LOSS_FACTOR * chance:
        return None
    later = [r for r in curve if r["iteration"] > lowest["iteration"]]
    back = next((r for r in later if r["grad_first_conv"] >= RECOVERED_FRACTION * start), None)
    return {"start": start, "first_window_end": curve[0]["iteration"], "lowest": lowest, "back": back,
            "end": curve[-1]["iteration"], "peak_loss": peak, "chance_loss": chance}


def unless_stalled(claim: Claim, rows: list[RowResult | None]) -> Claim:
    """``claim``, or "cannot tell" when one of ``rows`` stalled early: its numbers measure the stall."""
    stalled = [row.label for row in rows if row is not None and stall(row) is not None]
    if not stalled or claim.shown is None:
        return claim
    return Claim(claim.statement, None, f"{claim.evidence} Cannot tell at this length: {', '.join(stalled)} "
                 "stalled early (see the notes below).")


def ordered_among_unstalled(statement: str, rows: list[RowResult | None], key: str, *, increasing: bool,
                            what: str = "error") -> Claim:
    """`ordered_claim` over the ``rows`` that did not stall, naming those left out ("cannot tell" when fewer
    than two are left): the same rule for every group of rows, whichever way the answer goes."""
    stalled = [row.label for row in rows if row is not None and stall(row) is not None]
    kept = [row for row in rows if row is None or stall(row) is None]
    if len(kept) < 2:
        return Claim(statement, None, f"Cannot tell at this length: {', '.join(stalled)} stalled early (see the "
                     "notes below).")
    claim = ordered_claim(statement, kept, key, increasing=increasing, what=what)
    if not stalled:
        return claim
    return replace(claim, evidence=f"{claim.evidence} Left out: {', '.join(stalled)}, stalled early (see the notes "
                   "below).")


def stall_notes(results: ExperimentResults) -> list[str]:
    """A note for each row whose first steps diverged and stalled the net (`stall`)."""
    notes = []
    for row in results.rows:
        found = stall(row)
        if found is None:
            continue
        start, lowest, back = found["start"], found["lowest"], found["back"]
        recovery = (f"it was back above {RECOVERED_FRACTION:.0%} of its first value at iteration {back['iteration']}"
                    if back else f"it was still below {RECOVERED_FRACTION:.0%} of its first value at the end")
        peak = found["peak_loss"]
        notes.append(f"{row.label} stalled early: its training loss rose to {peak['train_loss']:.2f} (window ending "
                     f"at iteration {peak['iteration']}; chance is {found['chance_loss']:.2f}) and the mean "
                     f"|gradient| of its first convolution fell from {start:.1e} "
                     f"(iterations 1-{found['first_window_end']}) to {lowest['grad_first_conv']:.1e} (window ending "
                     f"at iteration {lowest['iteration']}), with the training error at "
                     f"{100 * lowest['train_error']:.0f}%, and {recovery} (of {found['end']}). The blow-up "
                     "left the net near chance; a short run spends much of its length recovering, so its errors "
                     "say little about the depth itself. (He et al. start ResNet-110 at a learning rate of 0.01 "
                     "for this reason.)")
    return notes
