"""A run's record files: the small files a report is built from (no checkpoints), how a run folder's state is
read from them, and how they travel: copied into a report folder, and adopted back from one (a report folder
committed on one machine lets another take its finished runs instead of training them again)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from resnetlab.reproduce.results import MANIFEST_FILE
from resnetlab.training.checkpoint import LAST_CHECKPOINT, saved_checkpoints
from resnetlab.training.session import SUMMARY_FILE

DIVERGED_FILE = "diverged.json"
TWIN_FILE = "twin_of.json"  # in a run whose records are a twin's (`adopt_twin`): the run that trained
# Files of a run folder a report needs (checkpoints and TensorBoard logs stay behind).
RECORD_FILES = ("config.yaml", "environment.json", "metrics.jsonl", "curve.jsonl", SUMMARY_FILE, DIVERGED_FILE,
                "layer_responses.json", TWIN_FILE)
FINISHED = ("done", "diverged")


def run_state(run_dir: Path) -> str:
    """done | diverged | partial (a checkpoint to resume) | new."""
    if (run_dir / SUMMARY_FILE).is_file():
        return "done"
    if (run_dir / DIVERGED_FILE).is_file():
        return "diverged"
    return "partial" if saved_checkpoints(run_dir / LAST_CHECKPOINT) else "new"


def copy_records(runs_dir: Path, report_dir: Path, manifest: dict) -> None:
    """Put the manifest and each run's record files (no checkpoints) into the report folder."""
    report_dir.mkdir(parents=True, exist_ok=True)
    for row in manifest["rows"]:
        for name in row["runs"]:
            _copy_files(runs_dir / name, report_dir / "runs" / name)
    (report_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")


def adopt_records(run_dir: Path, reuse: Sequence[Path], needed: Sequence[str] = (),
                  own_only: bool = False) -> Path | None:
    """Copy the records of a finished run named like ``run_dir`` from a report folder in ``reuse`` (or one level
    below it) into ``run_dir``; returns the folder they came from, or None where no folder has them all (a
    finished run must also hold ``needed``, the files an experiment measures on trained runs). With ``own_only``
    records that a run took from its twin are passed over (`reproduce --no-twins`)."""
    for folder in reuse:
        for candidate in (folder / "runs" / run_dir.name, *sorted(folder.glob(f"*/runs/{run_dir.name}"))):
            if own_only and (candidate / TWIN_FILE).is_file():
                continue
            if run_state(candidate) in FINISHED and (
                    (candidate / DIVERGED_FILE).is_file() or all((candidate / f).is_file() for f in needed)):
                _copy_files(candidate, run_dir)
                return candidate
    return None


def adopt_twin(run_dir: Path, twin: Path) -> str:
    """Copy the records of ``twin``, a finished run of another recipe that trained what ``run_dir`` would, into
    ``run_dir``, with its checkpoints (for what an experiment measures on them) and a note naming the run that
    trained; returns that run's name. The records keep the twin's config, whose note of its paper is the other
    recipe's."""
    _copy_files(twin, run_dir)
    for checkpoint in saved_checkpoints(twin / LAST_CHECKPOINT):
        shutil.copy2(checkpoint, run_dir / checkpoint.name)
    trained_by = trainer_of(twin)
    if trained_by == run_dir.name:  # the twin was taken from this very run: these are its own records
        (run_dir / TWIN_FILE).unlink()
    else:
        (run_dir / TWIN_FILE).write_text(json.dumps({"run": trained_by}, indent=2) + "\n")
    return trained_by


def trainer_of(run_dir: Path) -> str:
    """The name of the run that trained the records in ``run_dir``: its own, or the twin's it took them from."""
    if (run_dir / TWIN_FILE).is_file():
        return json.loads((run_dir / TWIN_FILE).read_text())["run"]
    return run_dir.name


def _copy_files(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for file in RECORD_FILES:
        if (source / file).is_file():
            shutil.copy2(source / file, target / file)
