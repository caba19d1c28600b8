"""Run an experiment's rows: train (or resume, or reuse) one run per row and seed, measure, then report.

Runs live in ``OUT/runs/NAME`` where NAME is the recipe, the budget, the seed and a hash of the resolved config,
so two experiments that need the same run (degradation and layer-responses both train plain-20) share it, a
finished run is reused, and an interrupted one resumes from its last checkpoint when the command is run again.
A run whose loss diverges is recorded as such (``diverged.json``) and the experiment goes on: "fail" is a
result in the identity-mappings tables. The report folder ``OUT/EXPERIMENT-BUDGET`` gets a copy of each run's
small record files, so it holds every number it shows and `resnetlab report` can rebuild it anywhere. It is
written once the runs finished earlier are taken and again after every run that trains, marked partial until the
last one ends, so a long reproduction shows its results as they come and an interruption loses at most the run in
progress.

Runs finished elsewhere count too: ``reuse`` names report folders (or folders of them, such as the committed
``docs/results``) whose records of a run with the same name stand for the run, so a reproduction too long for
one sitting goes on across machines from what was committed.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from resnetlab.config import Config, load_config
from resnetlab.errors import UsageError
from resnetlab.reproduce.budgets import BUDGET_NAMES, CLOSE_CALL, Plan, data_overrides
from resnetlab.reproduce.experiment import Experiment, Row
from resnetlab.reproduce.records import FINISHED, adopt_records, adopt_twin, copy_records, run_state, trainer_of
from resnetlab.reproduce.report import RESULTS_JSON, build_report
from resnetlab.reproduce.results import MANIFEST_FILE, ReportFolderError
from resnetlab.reproduce.runs import ensure_trained, find_twins, resolve_config, run_name
from resnetlab.training.checkpoint import LAST_CHECKPOINT, saved_checkpoints

__all__ = ["NothingFinished", "close_call_rows", "ensure_trained", "rebuild", "reproduce", "resolve_config",
           "run_name", "run_state"]


class NothingFinished(UsageError):
    """`--no-train` found no finished run of the experiment: there is no report to write."""


def reproduce(experiment: Experiment, budget: str, *, seeds: int | None = None, data: str | None = None,
              out_dir: str | Path = "runs/reproduce", device: str = "cpu", log: Callable[[str], None] = print,
              progress: bool | None = None, command: str | None = None,
              only_rows: Sequence[str] | None = None, reuse: Sequence[str | Path] = (),
              train_missing: bool = True, precision: str | None = None, twins: bool = True) -> Path:
    """Run every row of ``experiment`` at ``budget`` (or only the rows labelled ``only_rows``) and write its
    report; returns the report folder. Finished runs recorded in the report folders ``reuse`` are not trained
    again. The report covers every row: the runs not trained here (all of them with ``train_missing`` False,
    `--no-train`) count as still to train, and second seeds for close calls wait until every row has its first.
    ``precision`` (fp32 or bf16) trains here in place of each recipe's ``train.precision``, keeping run names.
    ``twins`` False (`--no-twins`) trains the runs whose twin has finished instead of taking the twin's records."""
    if budget not in BUDGET_NAMES:
        raise UsageError(f"unknown budget {budget!r}; choose one of {', '.join(BUDGET_NAMES)}")
    plan = experiment.plans[budget]
    close_calls = plan.second_seed_if_close and seeds is None and plan.seeds == 1  # not when --seeds is given
    seeds = plan.seeds if seeds is None else seeds
    if seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {seeds}")
    out_dir = Path(out_dir)
    reuse = [Path(folder) for folder in reuse]
    missing = [str(folder) for folder in reuse if not (folder / MANIFEST_FILE).is_file()
               and not any(folder.glob(f"*/{MANIFEST_FILE}"))]
    if missing:
        raise UsageError(f"--reuse: {', '.join(missing)} holds no report folder; give report folders written by "
                         "`resnetlab reproduce` or a folder of them, e.g. docs/results")
    data_settings = data_overrides(data, budget)
    report_dir = out_dir / f"{experiment.name}-{budget}"
    rows = experiment.rows_for(budget)  # the report covers them all: its claims compare rows by their place
    chosen = {row.label for row in select_rows(experiment, budget, only_rows)} if only_rows else None
    manifest = {
        "experiment": experiment.name, "budget": budget, "seeds": list(range(seeds)), "data": data or "recipe",
        "command": command or f"resnetlab reproduce {experiment.name} --budget {budget} --seeds {seeds}"
        + (f" --data {shlex.quote(str(data))}" if data else ""),
        "plan": {"iterations": plan.iterations, "batch_size": plan.batch_size, "curve_every": plan.curve_every,
                 "eval_images": plan.eval_images, "note": plan.note, "metric": plan.metric,
                 "compress": plan.compress, "warm_start": plan.warm_start,
                 "substitute": {model: list(overrides) for model, overrides in plan.substitute}},
        "rows": [],
    }
    sitting = _Sitting(experiment, budget, plan, out_dir, report_dir, reuse, data_settings, device, log, progress,
                       manifest, [_row_record(row, []) for row in rows], precision, twins)
    left = sitting.train([(index, row, seed) for index, row in enumerate(rows) for seed in range(seeds)],
                         train_missing, chosen)
    if not any(record["runs"] for record in sitting.records):  # only with --no-train: each run trains otherwise
        raise NothingFinished(f"--no-train: no run of {experiment.name} at the {budget} budget has finished in "
                              f"{out_dir} or the --reuse folders, so there is nothing to report; run it without "
                              "--no-train")
    report = sitting.write(pending=left)
    close = close_call_rows(report) if close_calls and not left else []
    if close:  # one seed cannot tell a gap this small from noise: a second seed for the rows of each such claim
        log(f"[{experiment.name}] a second seed for {', '.join(close)}: a claim's sides differ by less than "
            f"{100 * CLOSE_CALL:.0f} points")
        manifest.update(seeds=[0, 1], second_seed_rows=close)
        left = sitting.train([(index, row, 1) for index, row in enumerate(rows) if row.label in close],
                             train_missing, chosen)
        report = sitting.write(pending=left)
    return report


def close_call_rows(report_dir: Path) -> list[str]:
    """Labels of the rows that a claim of the report compares with a row less than `CLOSE_CALL` away (as error
    fractions), from its ``results.json``."""
    claims = json.loads((report_dir / RESULTS_JSON).read_text())["claims"]
    return sorted({label for claim in claims for label in claim.get("close_rows", ())})


@dataclass
class _Sitting:
    """The runs one `reproduce` call trains, and the report it rewrites after each (partial until the last)."""

    experiment: Experiment
    budget: str
    plan: Plan
    out_dir: Path
    report_dir: Path
    reuse: list[Path]
    data_settings: list[str]
    device: str
    log: Callable[[str], None]
    progress: bool | None
    manifest: dict
    records: list[dict]  # the manifest's rows, each with the runs finished so far
    precision: str | None  # --precision: the arithmetic of the runs trained here (None: each config's)
    twins: bool = True  # take a finished twin's records for a run (False: --no-twins, train it)
    started: float = field(default_factory=time.time)
    seed_of: dict[str, int] = field(default_factory=dict)  # run name -> seed, to list each row's runs in seed order
    reused: int = 0  # runs taken finished in this sitting (the others of the manifest trained in it)

    def train(self, todo: list[tuple[int, Row, int]], train_missing: bool = True,
              chosen: set[str] | None = None) -> int:
        """Take the runs of ``todo`` (row index, row, seed) that have finished, here or in a reused folder, then
        train the others of the rows labelled in ``chosen`` (`--rows`; all rows where None) in order, rewriting
        the partial report before each where the plan asks for it; returns how many are left untrained (all of
        the others where ``train_missing`` is False)."""
        waiting, held = [], 0
        for index, row, seed in todo:
            config = resolve_config(row, self.budget, self.plan, seed, self.data_settings)
            run_dir = self.out_dir / "runs" / run_name(row, self.budget, seed, config)
            if self._take_finished(index, row, seed, run_dir, config):
                continue
            if train_missing and (chosen is None or row.label in chosen):
                waiting.append((index, row, seed, config, run_dir))
            else:
                held += 1
                why = "--no-train" if not train_missing else "not in --rows"
                self.log(f"  {row.label}, seed {seed}: {run_dir.name} has not finished; left to train ({why})")
        for done, (index, row, seed, config, run_dir) in enumerate(waiting):
            if self.plan.partial_reports and any(record["runs"] for record in self.records):  # marked partial
                self.write(pending=len(waiting) - done + held)
            length = (f"{config.train.iterations} iterations" if config.train.iterations
                      else f"{config.train.epochs} epochs")
            self.log(f"[{self.experiment.name} {index + 1}/{len(self.records)}] {row.label}, seed {seed}: "
                     f"{config.model.name}, {length}")
            status = ensure_trained(config, run_dir, self.plan, device=self.device, log=self.log,
                                    progress=self.progress, precision=self.precision)
            self._record(index, seed, run_dir, status)
        return held

    def _take_finished(self, index: int, row: Row, seed: int, run_dir: Path, config: Config) -> bool:
        """Record the run if it has finished here, its records are adopted from a reused folder, or a twin of it
        has finished (here or there)."""
        if not self.twins and trainer_of(run_dir) != run_dir.name:
            raise UsageError(f"--no-twins: {run_dir} holds the records of its twin {trainer_of(run_dir)}, taken in "
                             "an earlier sitting; remove that folder to train the run here, or drop --no-twins")
        if run_state(run_dir) not in FINISHED and not self._adopted(run_dir) and not self._twin_taken(config, run_dir):
            return False
        if run_state(run_dir) == "done" and not self._measurable(run_dir):
            raise UsageError(f"{run_dir} has the records of a finished run but neither a checkpoint nor "
                             f"{', '.join(self.experiment.measured_files)}, which {self.experiment.name} measures; "
                             "give --reuse a folder whose records have them, or remove the folder to train it again")
        self.log(f"[{self.experiment.name} {index + 1}/{len(self.records)}] {row.label}, seed {seed}: "
                 f"{run_dir.name}, {run_state(run_dir)}, reused")
        self._record(index, seed, run_dir, run_state(run_dir))
        self.reused += 1
        return True

    def _record(self, index: int, seed: int, run_dir: Path, status: str) -> None:
        if status == "done" and self.experiment.measure is not None:
            self.experiment.measure(run_dir)
        self.records[index]["runs"].append(run_dir.name)
        self.seed_of[run_dir.name] = seed

    def _measurable(self, run_dir: Path) -> bool:
        """Whether this experiment's measurements are on a finished run, or can be taken from its checkpoint
        (a run adopted for another experiment may have neither: then records that hold them are adopted)."""
        needed = self.experiment.measured_files
        if all((run_dir / file).is_file() for file in needed) or saved_checkpoints(run_dir / LAST_CHECKPOINT):
            return True
        return self._adopted(run_dir)

    def _adopted(self, run_dir: Path) -> bool:
        source = (adopt_records(run_dir, self.reuse, self.experiment.measured_files, own_only=not self.twins)
                  if self.reuse else None)
        if source is not None:
            self.log(f"  {run_dir.name}: {run_state(run_dir)}, its records taken from {source}")
        return source is not None

    def _twin_taken(self, config: Config, run_dir: Path) -> bool:
        """Take the records of a finished twin (`find_twins`, the first found) for a run not started here:
        training it again would repeat the twin's training (on one CPU, bit for bit)."""
        if run_state(run_dir) != "new" or not self.twins:
            return False  # a run partly trained here resumes; --no-twins trains it
        folders = [self.out_dir / "runs", *(folder / "runs" for folder in self.reuse),
                   *(runs for folder in self.reuse for runs in sorted(folder.glob("*/runs")))]
        found = find_twins(config, run_dir, folders, self.plan, self.experiment.measured_files)
        if not found:
            return False
        twin, others = found[0], sorted({trainer_of(other) for other in found} - {trainer_of(found[0])})
        if run_dir.exists():
            shutil.rmtree(run_dir)  # a start that never reached its first checkpoint
        trained_by = adopt_twin(run_dir, twin)
        if trained_by == run_dir.name:
            self.log(f"  {run_dir.name}: {run_state(run_dir)}, its own records taken back from {twin}, a run "
                     "that had taken them as its twin")
        else:
            self.log(f"  {run_dir.name}: {run_state(run_dir)}, its records taken from its twin {twin} (trained "
                     f"as {trained_by}): a run of another recipe whose config differs only in its note of the paper")
        if others:  # twins that trained apart from the one taken (copies of one training are not named)
            self.log(f"  {run_dir.name}: other twins, trained apart from the one taken (the first found), were "
                     f"left: {', '.join(others)}")
        return True

    def write(self, pending: int = 0) -> Path:
        rows = [{**row, "runs": sorted(row["runs"], key=self.seed_of.get)} for row in self.records]
        manifest = {**self.manifest, "rows": rows, "wall_seconds": time.time() - self.started,
                    "runs_trained": len(self.seed_of) - self.reused, "runs_reused": self.reused}
        if pending:
            manifest["pending_runs"] = pending
        copy_records(self.out_dir / "runs", self.report_dir, manifest)
        build_report(self.report_dir)
        return self.report_dir


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
