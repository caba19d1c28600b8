"""The records of a report folder, read back: one `RunRecord` per run, grouped into the experiment's rows,
with the statistics the papers report (median and mean +- std over seeds)."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from resnetlab.errors import ResnetlabError
from resnetlab.training.environment import training_segments
from resnetlab.training.metrics_log import read_metrics

MANIFEST_FILE = "experiment.json"  # a report folder's list of rows and runs, written by `resnetlab reproduce`
# The summary fields a budget's tables and claims compare (`Plan.metric`), as the report names them.
METRIC_LABELS = {"test_error_at_best_val": "test error at the epoch of lowest validation error",
                 "final_test_error": "test error after the last iteration",
                 "final_train_error": "training error over the last window of iterations"}


class ReportFolderError(ResnetlabError, FileNotFoundError):
    """A report folder or a run record in it is missing; the message names it and the command that writes it."""


@dataclass
class RunRecord:
    name: str
    config: dict
    environment: dict
    summary: dict | None  # None while unfinished or when diverged
    metrics: list[dict]  # one record per epoch
    curve: list[dict]  # one record per `TrainingCurve` window
    diverged: dict | None = None
    extras: dict = field(default_factory=dict)  # other JSON measurements, by file stem (layer_responses, ...)

    @classmethod
    def read(cls, run_dir: Path) -> RunRecord:
        def optional_json(name):
            path = run_dir / name
            return json.loads(path.read_text()) if path.is_file() else None

        def optional_jsonl(name):
            path = run_dir / name
            return read_metrics(path) if path.is_file() else []

        config_path = run_dir / "config.yaml"
        if not config_path.is_file():
            raise ReportFolderError(f"run records missing: {config_path}; rerun `resnetlab reproduce` to finish it")
        extras = {path.stem: json.loads(path.read_text()) for path in sorted(run_dir.glob("*.json"))
                  if path.name not in ("environment.json", "summary.json", "diverged.json")}
        return cls(run_dir.name, yaml.safe_load(config_path.read_text()), optional_json("environment.json") or {},
                   optional_json("summary.json"), optional_jsonl("metrics.jsonl"), optional_jsonl("curve.jsonl"),
                   optional_json("diverged.json"), extras)

    @property
    def finished(self) -> bool:
        return self.summary is not None

    def final_train_error(self) -> float | None:
        """Training error over the last curve window (the papers' training curves end there)."""
        return self.curve[-1]["train_error"] if self.curve else None

    def training_time_by_machine(self) -> dict[str, tuple[float, int]]:
        """(training seconds, iterations) per machine and precision that trained the run, from its epoch records:
        a run resumed elsewhere mixes machines, and only times taken on one machine compare. An epoch cut by an
        interruption (part of it trained on each side) is left out."""
        segments = training_segments(self.environment)
        ends = [segment["at_iteration"] for segment in segments[1:]] + [float("inf")]
        totals: dict[str, tuple[float, int]] = {}
        start = 0
        for record in self.metrics:  # one per epoch: the iteration it ended at, its training seconds
            end = record["iteration"]
            segment = next((s for s, stop in zip(segments, ends) if s["at_iteration"] <= start and end <= stop), None)
            machine = _machine_and_precision(segment) if segment is not None else None
            if machine is not None and record.get("epoch_seconds") is not None:
                seconds, iterations = totals.get(machine, (0.0, 0))
                totals[machine] = (seconds + record["epoch_seconds"], iterations + end - start)
            start = end
        return totals

    def value(self, key: str) -> float | None:
        if key == "final_train_error":
            return self.final_train_error()
        return None if self.summary is None else self.summary.get(key)


def _machine_and_precision(segment: dict) -> str | None:
    """A stretch of training's machine as its speed depends on it, e.g. 'AMD EPYC (no bf16 units), 2 CPUs, 2 torch
    threads, fp32'; None where the record was lost (a resume of a run whose start went unrecorded)."""
    if not segment.get("cpu"):
        return None
    # A record without the AVX512-BF16 field predates it, and every machine then without AMX had no bf16 units;
    # the oldest records name neither.
    units = ("" if "cpu_amx_bf16" not in segment else " (AMX-BF16)" if segment["cpu_amx_bf16"] else
             " (AVX512-BF16, no AMX)" if segment.get("cpu_avx512_bf16") else " (no bf16 units)")
    gpus, processes = segment.get("gpus") or [], segment.get("world_size") or 1
    precision = (segment.get("precision") or {}).get("precision", "fp32")
    return (f"{segment['cpu']}{units}, {segment.get('cpu_count')} CPUs, {segment.get('torch_threads')} torch threads"
            + (f", GPU {', '.join(gpus)}" if gpus else "") + (f", {processes} processes" if processes > 1 else "")
            + f", {precision}")


@dataclass(frozen=True)
class Stats:
    values: tuple[float, ...]
    diverged: int = 0

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None


@dataclass
class RowResult:
    label: str
    group: str
    recipe: str
    recipe_model: str
    recipe_length: str
    recipe_batch_size: int | None
    paper: dict
    runs: list[RunRecord]
    planned_model: str = ""  # the model the budget trains for this row (its stand-in, if any); "" = the recipe's
    planned_length: str = ""  # how long the budget trains each run of the row ("5,000 iterations"); "" = unknown

    def stats(self, key: str) -> Stats:
        values = tuple(v for v in (run.value(key) for run in self.runs) if v is not None)
        return Stats(values, diverged=sum(run.diverged is not None for run in self.runs))

    @property
    def model(self) -> str:
        """The model the runs trained, or will train while none has (a cheap budget may stand in a smaller one
        for the recipe's)."""
        return self.runs[0].config["model"]["name"] if self.runs else self.planned_model or self.recipe_model

    @property
    def paper_text(self) -> str:
        """The paper's error as its table prints it: a percentage, "fail" (above 20%) or "-" (not reported)."""
        if self.paper_error is not None:
            return f"{self.paper_error:.2f}"
        return "fail (>20)" if self.paper.get("fail") else "-"

    @property
    def paper_error(self) -> float | None:
        """The paper's CIFAR-10 test error for this row, in percent (from the recipe's ``paper`` section)."""
        return self.paper.get("cifar10_error")


@dataclass
class ExperimentResults:
    manifest: dict
    rows: list[RowResult]

    def row(self, label: str) -> RowResult | None:
        return next((row for row in self.rows if row.label == label), None)

    def group(self, name: str) -> list[RowResult]:
        return [row for row in self.rows if row.group == name]

    @property
    def metric(self) -> str:
        """The summary field this budget compares (reports written before budgets chose it used the best epoch)."""
        return self.manifest["plan"].get("metric", "test_error_at_best_val")

    @property
    def runs(self) -> list[RunRecord]:
        return [run for row in self.rows for run in row.runs]


def load_results(report_dir: Path) -> ExperimentResults:
    manifest = json.loads((report_dir / MANIFEST_FILE).read_text())
    substitutes = manifest["plan"].get("substitute", {})
    iterations = manifest["plan"].get("iterations")  # None: the budget trains the recipe's own length
    rows = [RowResult(row["label"], row["group"], row["recipe"], row["recipe_model"], row.get("recipe_length", ""),
                      row.get("recipe_batch_size"), row.get("paper") or {},
                      [RunRecord.read(report_dir / "runs" / name) for name in row["runs"]],
                      _stand_in(substitutes.get(row["recipe_model"], ())),
                      f"{iterations:,} iterations" if iterations else _with_thousands(row.get("recipe_length", "")))
            for row in manifest["rows"]]
    return ExperimentResults(manifest, rows)


def _with_thousands(length: str) -> str:
    """A recipe's length as the reports print lengths: "64000 iterations" -> "64,000 iterations"."""
    count, _, unit = length.partition(" ")
    return f"{int(count):,} {unit}" if count.isdigit() else length


def _stand_in(overrides: list[str]) -> str:
    """The model a budget's substitute overrides (``model.name=resnet20``, ...) put in a recipe's place, or ""."""
    return next((value for key, _, value in (o.partition("=") for o in overrides) if key == "model.name"), "")
