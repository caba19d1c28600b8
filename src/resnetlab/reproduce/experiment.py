"""An experiment is data: the paper it reproduces, its rows (recipe files), what each budget runs, and an
analysis that turns the runs' records into extra table columns, figures and checked claims."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from resnetlab.config import recipe_root
from resnetlab.errors import ResnetlabError
from resnetlab.registry import Registry
from resnetlab.reproduce.budgets import BUDGET_NAMES, Plan


class UnknownExperimentError(ResnetlabError, ValueError):
    """An experiment name that is not registered; the message lists the close matches."""


@dataclass(frozen=True)
class Row:
    """One line of a paper's table: a recipe file and how it is labelled and grouped."""

    label: str  # as the paper names it, e.g. "plain-20", "(e) full pre-activation"
    recipe: str  # path below the shipped recipes (`resnetlab.config.recipe_root`): "resnet/fig6_cifar10_plain20.yaml"
    group: str = ""  # the series it belongs to in figures ("plain", "ResNet", "ResNet-110", ...)
    overrides: tuple[str, ...] = ()  # on top of the recipe, for every budget

    @property
    def recipe_path(self) -> Path:
        return recipe_root() / self.recipe


@dataclass(frozen=True)
class Claim:
    """A statement of the paper, and whether our runs show it (None: the runs cannot tell)."""

    statement: str
    shown: bool | None
    evidence: str  # the measured numbers behind the verdict, generated from the records
    # Claims between error rates: the rows within `CLOSE_CALL` of a row they are compared with (a second seed
    # could reorder them), and the smallest difference between compared rates (a fraction).
    close_rows: tuple[str, ...] = ()
    gap: float | None = None


@dataclass(frozen=True)
class Figure:
    file: str  # PNG name inside the report folder
    caption: str


@dataclass
class Analysis:
    """What an experiment adds to the generic report."""

    columns: dict[str, dict[str, str]] = field(default_factory=dict)  # column title -> row label -> text
    figures: list[Figure] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Experiment:
    name: str  # the command's argument, e.g. "degradation"
    title: str
    paper: str  # where the claim and the numbers come from
    summary: str  # the paper's claim, in a sentence or two
    rows: tuple[Row, ...]
    plans: Mapping[str, Plan]  # budget name -> plan
    analyze: Callable  # (ExperimentResults, report_dir: Path) -> Analysis
    measure: Callable | None = None  # (run_dir: Path) -> None: extra files measured on a trained run
    measured_files: tuple[str, ...] = ()  # what `measure` writes: a run reused from records needs them too

    def __post_init__(self) -> None:
        missing = set(BUDGET_NAMES) - set(self.plans)
        if missing:
            raise ValueError(f"experiment {self.name} has no plan for budget(s) {sorted(missing)}")
        labels = [row.label for row in self.rows]
        for plan in self.plans.values():
            unknown = set(plan.rows or ()) - set(labels)
            if unknown:
                raise ValueError(f"experiment {self.name}: a plan names unknown rows {sorted(unknown)}")

    def rows_for(self, budget: str) -> tuple[Row, ...]:
        chosen = self.plans[budget].rows
        return self.rows if chosen is None else tuple(row for row in self.rows if row.label in chosen)


# Filled when `resnetlab.reproduce` is imported: its package imports `resnetlab.reproduce.experiments`, whose
# modules register the experiments of each paper in the papers' order.
EXPERIMENTS: Registry[Experiment] = Registry("experiment", "resnetlab reproduce --list", UnknownExperimentError)


def register_experiment(experiment: Experiment) -> Experiment:
    return EXPERIMENTS.register(experiment.name, experiment)


def list_experiments() -> list[Experiment]:
    return list(EXPERIMENTS)


def get_experiment(name: str) -> Experiment:
    return EXPERIMENTS.get(name)
