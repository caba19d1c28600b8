"""Pieces the experiments share: curve series of a row, claims about orderings, and the notes that explain
why a budget's numbers differ from the paper's (all generated from the records)."""

from __future__ import annotations

import itertools

from resnetlab.reproduce.experiment import Claim
from resnetlab.reproduce.results import ExperimentResults, RowResult


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


def ordered_claim(statement: str, rows: list[RowResult | None], key: str, *, increasing: bool,
                  what: str = "error") -> Claim:
    """Whether ``key`` (median over seeds) strictly increases (or decreases) along ``rows``."""
    values = [median_of(row, key) for row in rows]
    if any(row is None for row in rows) or any(v is None for v in values):
        return Claim(statement, None, "(a row has no finished run)")
    pairs = list(itertools.pairwise(values))
    shown = all((b > a) if increasing else (b < a) for a, b in pairs)
    evidence = f"Ours ({what}, %): " + ", ".join(f"{row.label} {100 * v:.2f}" for row, v in zip(rows, values)) + "."
    return Claim(statement, shown, evidence)


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
        notes.append(f"Length: each run stopped after {length} iterations of batch {train['batch_size']}, against "
                     f"{results.rows[0].recipe_length} of batch {results.rows[0].recipe_batch_size} in the paper's "
                     "recipe, with the learning-rate steps moved in proportion. Such short runs end far from "
                     "convergence, so every error here is well above the paper's; only comparisons between rows "
                     "trained the same way carry over, and even those can change with longer training.")
    if data["name"] == "folder":
        notes.append(f"Data: `{data['root']}`, an image folder. For the CIFAR-10 JPEG copy the pixels went through "
                     "lossy JPEG compression (quality about 75), so errors are not directly comparable with the "
                     "papers' lossless CIFAR-10 even at the full budget.")
    elif data["name"] == "synthetic":
        notes.append("Data: the built-in synthetic texture classes, not CIFAR-10: this budget checks that the "
                     "experiment runs end to end, its numbers say nothing about the paper.")
    seeds = len(manifest["seeds"])
    if seeds == 1:
        notes.append("Seeds: one run per row, so no spread is shown; differences of a point or two between rows "
                     "are within what a second seed could change (the ResNet paper's ResNet-110 varies by "
                     "+-0.16 over 5 runs at the full budget).")
    return notes
