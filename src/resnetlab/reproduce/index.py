"""The table of every claim checked: one line per claim of every report folder under a results folder, with its
verdict, the numbers behind it, the budget and the seeds, all read from the reports' ``results.json`` and
manifests. `resnetlab report --index DIR` rebuilds each report from its records and then writes this table into
``DIR/README.md`` between two marker lines, leaving the rest of the file as it is."""

from __future__ import annotations

import json
from pathlib import Path

from resnetlab.errors import UsageError
from resnetlab.reproduce.experiment import get_experiment
from resnetlab.reproduce.report import RESULTS_JSON, VERDICTS, close_call_note
from resnetlab.reproduce.results import MANIFEST_FILE

INDEX_FILE = "README.md"
BEGIN = "<!-- claims table: written by `resnetlab report --index`; edits between these lines are overwritten -->"
END = "<!-- end of the claims table -->"


def report_folders(root: Path) -> list[Path]:
    """The report folders directly under ``root`` (those holding a manifest and a built report), by name."""
    return sorted(folder for folder in root.iterdir()
                  if (folder / MANIFEST_FILE).is_file() and (folder / RESULTS_JSON).is_file())


def _length(manifest: dict) -> str:
    iterations = manifest["plan"].get("iterations")
    return "the paper's recipe" if iterations is None else f"{iterations:,} iterations"


def stand_ins(results: dict) -> str:
    """The smaller nets a cheap budget trained in the recipes' place, e.g. '; resnet56 stands in for resnet110 and
    preact_resnet110', so that a claim about depth 110 is read with the depth that ran ("" when none)."""
    replaced: dict[str, list[str]] = {}
    for row in results["rows"]:
        recipe_model = row.get("recipe_model", row["model"])  # reports built before the field: none named
        if row["model"] != recipe_model and recipe_model not in replaced.setdefault(row["model"], []):
            replaced[row["model"]].append(recipe_model)
    return "".join(f"; {model} stands in for {' and '.join(names)}" for model, names in replaced.items())


def _status(manifest: dict) -> str:
    """What a reader must know before trusting a line: a report still partial, or one of an older budget."""
    if manifest.get("pending_runs"):
        pending = manifest["pending_runs"]
        return f" (partial: {pending} run{'s' if pending > 1 else ''} to go)"
    plan = get_experiment(manifest["experiment"]).plans[manifest["budget"]]
    if manifest["plan"].get("iterations") != plan.iterations:
        now = "the recipe's length" if plan.iterations is None else f"{plan.iterations:,} iterations"
        return f" (an older budget: the `{manifest['budget']}` budget is now {now})"
    return ""


def _seeds(results: dict) -> str:
    counts = sorted({len(row["runs"]) for row in results["rows"]})
    return "-".join(str(c) for c in (counts[0], counts[-1])) if len(counts) > 1 else str(counts[0] if counts else 0)


def claims_table(root: Path) -> list[str]:
    lines = ["| report | claim | verdict | the numbers | budget | seeds per row |", "|---|---|---|---|---|---|"]
    for folder in report_folders(root):
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
        results = json.loads((folder / RESULTS_JSON).read_text())
        where = f"[`{folder.name}`]({folder.name}/report.md){_status(manifest)}"
        budget = f"`{manifest['budget']}`: {_length(manifest)}{stand_ins(results)}"
        runs_per_row = {row["label"]: len(row["runs"]) for row in results["rows"]}
        for claim in results["claims"] or [{"statement": "(no claim checked)", "shown": None, "evidence": ""}]:
            evidence = claim["evidence"].replace("|", "\\|")
            close = close_call_note(claim.get("close_rows"), claim.get("gap"), runs_per_row)
            lines.append(f"| {where} | {claim['statement']} | **{VERDICTS[claim['shown']]}**{close} | {evidence} "
                         f"| {budget} | {_seeds(results)} |")
    return lines


def write_index(root: str | Path) -> Path:
    """Put the claims table of the reports under ``root`` into ``root/README.md`` (below its first heading when
    the markers are not there yet); returns the file."""
    root = Path(root)
    if not root.is_dir() or not report_folders(root):
        raise UsageError(f"--index {root}: no report folder in it; give the folder that holds the reports, "
                         "e.g. docs/results")
    index = root / INDEX_FILE
    text = index.read_text() if index.is_file() else "# Reproductions\n"
    table = "\n".join([BEGIN, "", *claims_table(root), "", END])
    if (BEGIN in text) != (END in text):
        raise UsageError(f"{index} has only one of the claims table's two marker lines; restore the other (or "
                         "remove both to put the table below the first heading)")
    if BEGIN in text:
        text = text[:text.index(BEGIN)] + table + text[text.index(END) + len(END):]
    else:
        heading, _, rest = text.partition("\n")
        text = f"{heading}\n\n{table}\n{rest}"
    index.write_text(text)
    return index
