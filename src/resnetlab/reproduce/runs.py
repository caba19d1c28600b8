"""One run of an experiment's row: the config it uses under a budget, its name, and training it.

A run is named by its recipe, budget, seed and a hash of its resolved config, so two experiments that need the
same run share it, and a finished or interrupted run is found again by the same command. A run of another recipe
that trained the very same way (a twin: the recipes differ only in their note of the paper) is found by
`find_twins`, so one training serves both papers' tables."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from resnetlab.config import Config, config_from_dict, load_config, to_dict
from resnetlab.config.schema import ConfigError
from resnetlab.reproduce.budgets import WARM_START, Plan, shorten_overrides
from resnetlab.reproduce.experiment import Row
from resnetlab.reproduce.records import DIVERGED_FILE, FINISHED, run_state
from resnetlab.training.checkpoint import LAST_CHECKPOINT, saved_checkpoints
from resnetlab.training.probes import CURVE_FILE, TrainingCurve
from resnetlab.training.session import train
from resnetlab.training.trainer import TrainingDiverged

__all__ = ["ADDED_LATER", "ensure_trained", "find_twins", "resolve_config", "run_name", "training_key"]


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
    if plan.warm_start:  # one start for every row, in place of the recipe's (see `WARM_START`)
        overrides += WARM_START
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


def _settings(config: Config) -> dict:
    """The settings that name a run: its config without the output place, and without the keys added after runs
    were named where they sit at their default, so finished runs keep being found (a reproduction never trains
    with them on)."""
    settings = {key: value for key, value in to_dict(config).items() if key != "run"}
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
    return settings


def _digest(settings: dict) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


def run_name(row: Row, budget: str, seed: int, config: Config) -> str:
    return f"{Path(row.recipe).stem}-{budget}-s{seed}-{_digest(_settings(config))}"


def training_key(config: Config) -> str:
    """A digest of what a run trains: every setting of `run_name`'s but the recipe's note of its paper and row.
    Two recipes of different papers with one key train the same net the same way (twins)."""
    settings = _settings(config)
    settings.pop("paper", None)
    return _digest(settings)


def find_twins(config: Config, run_dir: Path, folders: Sequence[Path], plan: Plan,
               needed: Sequence[str] = ()) -> list[Path]:
    """The finished runs, named for another recipe, that trained what ``config`` trains (the same `training_key`,
    so the same budget and seed), from the run folders held in ``folders``, in the order searched: folder by
    folder, each sorted by name. A twin must have recorded its training curve as ``plan`` records it, and hold
    ``needed``, the files an experiment measures on trained runs, or a checkpoint to measure them on."""
    stem, budget, seed_part, _ = run_dir.name.rsplit("-", 3)
    key = training_key(config)
    return [candidate for folder in folders for candidate in sorted(folder.glob(f"*-{budget}-{seed_part}-*"))
            if candidate.name.rsplit("-", 3)[0] != stem  # this recipe's own runs are found by name
            and _serves(candidate, plan, needed) and _training_key_of(candidate) == key]


def _serves(candidate: Path, plan: Plan, needed: Sequence[str]) -> bool:
    state = run_state(candidate)
    if state not in FINISHED:
        return False
    measurable = (state == "diverged" or all((candidate / file).is_file() for file in needed)
                  or bool(saved_checkpoints(candidate / LAST_CHECKPOINT)))
    return measurable and _curve_recorded_as(candidate, plan)


def _curve_recorded_as(run_dir: Path, plan: Plan) -> bool:
    """Whether the run's training curve has ``plan``'s spacing and held-out split, read from its points (the
    records do not say how many images a point evaluated). A run that diverged before its first point has
    none to compare."""
    path = run_dir / CURVE_FILE
    points = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    if not points:
        return run_state(run_dir) == "diverged"
    first = points[0]
    spaced = first["iteration"] == plan.curve_every or len(points) == 1  # a run shorter than one spacing
    return spaced and (f"{plan.eval_split}_error" in first) == bool(plan.eval_images)


def _training_key_of(run_dir: Path) -> str | None:
    try:
        return training_key(config_from_dict(yaml.safe_load((run_dir / "config.yaml").read_text())))
    except (OSError, yaml.YAMLError, ConfigError):
        return None  # records of an older config schema, or none: not comparable


def ensure_trained(config: Config, run_dir: Path, plan: Plan, *, device: str, log: Callable[[str], None],
                   progress: bool | None, precision: str | None = None) -> str:
    """Train, resume or reuse the run in ``run_dir``; returns how it ended (done or diverged). ``precision``
    (`reproduce --precision`) replaces the config's ``train.precision`` for the training done here."""
    state = run_state(run_dir)
    if state in FINISHED:
        log(f"  {run_dir.name}: {state}, reused")
        return state
    if state == "new" and run_dir.exists():
        shutil.rmtree(run_dir)  # a start that never reached its first checkpoint: nothing to keep
    probes = [TrainingCurve(plan.curve_every, plan.eval_images, plan.eval_split)]
    try:
        if state == "partial":
            train(resume=run_dir, device=device, progress=progress, log=log, probes=probes, precision=precision)
        else:
            train(config, run_dir=run_dir, device=device, progress=progress, log=log, probes=probes,
                  precision=precision)
    except TrainingDiverged as error:
        (run_dir / DIVERGED_FILE).write_text(json.dumps({"error": str(error)}, indent=2) + "\n")
        log(f"  {run_dir.name}: diverged ({error})")
        return "diverged"
    return "done"
