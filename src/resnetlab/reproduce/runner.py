"""Run an experiment's rows: train (or resume, or reuse) one run per row and seed, measure, then report.

Runs live in ``OUT/runs/NAME`` where NAME is the recipe, the budget, the seed and a hash of the resolved config,
so two experiments that need the same run (degradation and layer-responses both train plain-20) share it, a
finished run is reused, and an interrupted one resumes from its last checkpoint when the command is run again.
A run whose loss diverges is recorded as such (``diverged.json``) and the experiment goes on: "fail" is a
result in the identity-mappings tables. The report folder ``OUT/EXPERIMENT-BUDGET`` gets a copy of each run's
small record files, so it holds every number it shows and `resnetlab report` can rebuild it anywhere.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from resnetlab.config import Config, load_config, to_dict
from resnetlab.errors import UsageError
from resnetlab.reproduce.budgets import BUDGET_NAMES, Plan, data_overrides, shorten_overrides
from resnetlab.reproduce.experiment import Experiment, Row
from resnetlab.reproduce.report import build_report
from resnetlab.reproduce.results import MANIFEST_FILE, ReportFolderError
from resnetlab.training.checkpoint import LAST_CHECKPOINT, saved_checkpoints
from resnetlab.training.probes import TrainingCurve
from resnetlab.training.session import SUMMARY_FILE, train
from resnetlab.training.trainer import TrainingDiverged

DIVERGED_FILE = "diverged.json"
# Files of a run folder a report needs (checkpoints and TensorBoard logs stay behind).
RECORD_FILES = ("config.yaml", "environment.json", "metrics.jsonl", "curve.jsonl", SUMMARY_FILE, DIVERGED_FILE,
                "layer_responses.json")


def resolve_config(row: Row, budget: str, plan: Plan, seed: int, data: Sequence[str]) -> Config:
    """The validated config one run of ``row`` uses under ``budget``."""
    overrides = list(row.overrides)
    recipe = load_config(row.recipe_path, overrides)
    substitutes = dict(plan.substitute)
    if recipe.model.name in substitutes:
        overrides += substitutes[recipe.model.name]
        # A smaller stand-in needs no activation checkpointing (set for the 1001/1202-layer recipes).
        overrides.append("model.checkpoint_segments=0")
    if plan.iterations is not None:
        overrides += shorten_overrides(recipe, plan.iterations, plan.compress)
    if plan.batch_size is not None:
        overrides.append(f"train.batch_size={plan.batch_size}")
    if plan.compile is not None:
        overrides.append(f"train.compile={str(plan.compile).lower()}")
    if plan.validation_size is not None:
        overrides.append(f"data.validation_size={plan.validation_size}")
    overrides += [*data, f"train.seed={seed}", f"train.eval_every={plan.eval_every}"]
    return load_config(row.recipe_path, overrides)


# (dotted key, default) of config keys newer than the first runs
ADDED_LATER = (("model.sync_bn", False), ("train.label_smoothing", 0.0), ("model.weights", None),
               ("train.freeze", "none"), ("train.backbone_lr_scale", 1.0), ("train.checkpoint_every_minutes", 10.0),
               ("train.checkpoint_every_iterations", 0), ("train.keep_checkpoints", 2), ("data.lighting", 0.0),
               ("data.eval_crop", None))


def run_name(row: Row, budget: str, seed: int, config: Config) -> str:
    settings = {key: value for key, value in to_dict(config).items() if key != "run"}
    # Keys added to the config after runs were named leave the name alone at their default, so finished runs
    # keep being found (a reproduction never trains with them on).
    for dotted, default in ADDED_LATER:
        *path, key = dotted.split(".")
        section = settings
        for part in path:
            section = section[part]
        if section.get(key, default) == default:
            section.pop(key, None)
    warmup = settings["train"]["schedule"]["warmup"]
    if warmup["kind"] != "error_threshold":  # a floor only that warm-up reads (it changed the runs that have it)
        warmup.pop("min_steps", None)
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return f"{Path(row.recipe).stem}-{budget}-s{seed}-{digest}"


def run_state(run_dir: Path) -> str:
    """done | diverged | partial (a checkpoint to resume) | new."""
    if (run_dir / SUMMARY_FILE).is_file():
        return "done"
    if (run_dir / DIVERGED_FILE).is_file():
        return "diverged"
    return "partial" if saved_checkpoints(run_dir / LAST_CHECKPOINT) else "new"


def ensure_trained(config: Config, run_dir: Path, plan: Plan, *, device: str, log: Callable[[str], None],
                   progress: bool | None) -> str:
    """Train, resume or reuse the run in ``run_dir``; returns how it ended (done or diverged)."""
    state = run_state(run_dir)
    if state in ("done", "diverged"):
        log(f"  {run_dir.name}: {state}, reused")
        return state
    if state == "new" and run_dir.exists():
        shutil.rmtree(run_dir)  # a start that never reached its first checkpoint: nothing to keep
    probes = [TrainingCurve(plan.curve_every, plan.eval_images, plan.eval_split)]
    try:
        if state == "partial":
            train(resume=run_dir, device=device, progress=progress, log=log, probes=probes)
        else:
            train(config, run_dir=run_dir, device=device, progress=progress, log=log, probes=probes)
    except TrainingDiverged as error:
        (run_dir / DIVERGED_FILE).write_text(json.dumps({"error": str(error)}, indent=2) + "\n")
        log(f"  {run_dir.name}: diverged ({error})")
        return "diverged"
    return "done"


def reproduce(experiment: Experiment, budget: str, *, seeds: int | None = None, data: str | None = None,
              out_dir: str | Path = "runs/reproduce", device: str = "cpu", log: Callable[[str], None] = print,
              progress: bool | None = None, command: str | None = None,
              only_rows: Sequence[str] | None = None) -> Path:
    """Run every row of ``experiment`` at ``budget`` (or the rows labelled ``only_rows``) and write its report;
    returns the report folder."""
    if budget not in BUDGET_NAMES:
        raise UsageError(f"unknown budget {budget!r}; choose one of {', '.join(BUDGET_NAMES)}")
    plan = experiment.plans[budget]
    seeds = plan.seeds if seeds is None else seeds
    if seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {seeds}")
    out_dir = Path(out_dir)
    data_settings = data_overrides(data, budget)
    report_dir = out_dir / f"{experiment.name}-{budget}"
    rows = select_rows(experiment, budget, only_rows)
    manifest = {
        "experiment": experiment.name, "budget": budget, "seeds": list(range(seeds)), "data": data or "recipe",
        "command": command or f"resnetlab reproduce {experiment.name} --budget {budget} --seeds {seeds}"
        + (f" --data {shlex.quote(str(data))}" if data else ""),
        "plan": {"iterations": plan.iterations, "batch_size": plan.batch_size, "curve_every": plan.curve_every,
                 "eval_images": plan.eval_images, "note": plan.note, "metric": plan.metric,
                 "compress": plan.compress,
                 "substitute": {model: list(overrides) for model, overrides in plan.substitute}},
        "rows": [],
    }
    started = time.time()
    for index, row in enumerate(rows, 1):
        runs = []
        for seed in range(seeds):
            config = resolve_config(row, budget, plan, seed, data_settings)
            name = run_name(row, budget, seed, config)
            log(f"[{experiment.name} {index}/{len(rows)}] {row.label}, seed {seed}: {config.model.name}, "
                f"{config.train.iterations or config.train.epochs} {'iterations' if config.train.iterations else 'epochs'}")
            status = ensure_trained(config, out_dir / "runs" / name, plan, device=device, log=log, progress=progress)
            if status == "done" and experiment.measure is not None:
                experiment.measure(out_dir / "runs" / name)
            runs.append(name)
        manifest["rows"].append(_row_record(row, runs))
    manifest["wall_seconds"] = time.time() - started
    copy_records(out_dir / "runs", report_dir, manifest)
    build_report(report_dir)
    return report_dir


def select_rows(experiment: Experiment, budget: str, labels: Sequence[str] | None) -> tuple[Row, ...]:
    """The budget's rows, or those of them named in ``labels`` (`--rows`), in the experiment's order."""
    rows = experiment.rows_for(budget)
    if not labels:
        return rows
    known = [row.label for row in rows]
    unknown = [label for label in labels if label not in known]
    if unknown:
        raise UsageError(f"--rows: {', '.join(unknown)} is not a row of {experiment.name} at the {budget} budget; "
                         f"choose from {', '.join(known)}")
    return tuple(row for row in rows if row.label in labels)


def _row_record(row: Row, runs: list[str]) -> dict:
    """A row in the manifest: its label, its recipe as the paper gives it (model, length, numbers), its runs."""
    recipe = load_config(row.recipe_path, list(row.overrides))
    length = f"{recipe.train.iterations} iterations" if recipe.train.iterations else f"{recipe.train.epochs} epochs"
    return {"label": row.label, "group": row.group, "recipe": row.recipe, "recipe_model": recipe.model.name,
            "recipe_length": length, "recipe_batch_size": recipe.train.batch_size, "paper": recipe.paper,
            "runs": runs}


def copy_records(runs_dir: Path, report_dir: Path, manifest: dict) -> None:
    """Put the manifest and each run's record files (no checkpoints) into the report folder."""
    report_dir.mkdir(parents=True, exist_ok=True)
    for row in manifest["rows"]:
        for name in row["runs"]:
            target = report_dir / "runs" / name
            target.mkdir(parents=True, exist_ok=True)
            for file in RECORD_FILES:
                if (runs_dir / name / file).is_file():
                    shutil.copy2(runs_dir / name / file, target / file)
    (report_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")


def rebuild(source: str | Path, out: str | Path | None = None) -> Path:
    """`resnetlab report`: rebuild the report of a report folder, optionally into a copy at ``out``."""
    source = Path(source)
    if not (source / MANIFEST_FILE).is_file():
        raise ReportFolderError(f"{source} is not a report folder (no {MANIFEST_FILE}); give a folder written by "
                                "`resnetlab reproduce`, e.g. runs/reproduce/degradation-cpu")
    if out is not None and Path(out).resolve() != source.resolve():
        manifest = json.loads((source / MANIFEST_FILE).read_text())
        copy_records(source / "runs", Path(out), manifest)
        source = Path(out)
    build_report(source)
    return source


def command_line() -> str:
    return "resnetlab " + " ".join(shlex.quote(a) for a in sys.argv[1:])
