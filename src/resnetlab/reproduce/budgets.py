"""Budgets: how much of a paper's recipe a reproduction runs, as pure functions of the recipe.

``paper`` runs each recipe in ``configs/`` as it is. ``cpu`` and ``smoke`` compress it in time: the run stops
after a fixed number of iterations, and every milestone of the learning-rate schedule (and a fixed-length
warm-up) moves by the same factor, so the shortened run keeps the recipe's shape (lr 0.1, /10 at 50% and 75%
of training for the ResNet paper's CIFAR recipe). ``smoke`` also swaps in a tiny built-in synthetic data set so
every experiment runs end to end in seconds (the test suite runs them all).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from resnetlab.config import Config
from resnetlab.data.errors import DataError

BUDGET_NAMES = ("smoke", "cpu", "paper")

# The smoke budget's data: 160 training images (32 held out for validation) and 32 test images of the built-in
# texture classes; tiny enough that a 1001-layer net runs its few steps in seconds.
SMOKE_DATA = ("data.name=synthetic", "data.synthetic_train_size=160", "data.synthetic_test_size=32",
              "data.validation_size=32", "data.augment=true")


@dataclass(frozen=True)
class Plan:
    """What one budget of one experiment runs."""

    iterations: int | None  # per run; None: the recipe's own length (the paper budget)
    seeds: int = 1  # runs per row unless --seeds says otherwise
    batch_size: int | None = None  # None: the recipe's (smoke shrinks it so deep nets stay fast)
    curve_every: int = 50  # iterations between training-curve records (`TrainingCurve`)
    eval_images: int = 0  # held-out images evaluated at each curve record (0: training statistics only)
    eval_split: str = "test"
    eval_every: int = 1  # epochs between evaluations of the validation and test splits (always at the end)
    validation_size: int | None = None  # None: the recipe's held-out split; 0 trains on every training image
    metric: str = "test_error_at_best_val"  # the summary field the budget's tables and claims compare
    compress: bool = True  # move the recipe's milestones with its length (False: run its first iterations as they are)
    compile: bool | None = None  # None: the trainer's rule (compile runs of >= 1000 iterations)
    rows: tuple[str, ...] | None = None  # labels of the rows this budget runs; None: every row
    # Cheap budgets may run a smaller stand-in: (model in the recipe, overrides that replace it).
    substitute: tuple[tuple[str, tuple[str, ...]], ...] = ()
    note: str = ""  # why this budget differs from the paper beyond its length, for the report
    # Every row starts with `WARM_START` in place of its recipe's warm-up (if any), not compressed.
    warm_start: bool = False
    # With one seed, rows whose claim's sides differ by less than `CLOSE_CALL` run a second seed (issue 15).
    second_seed_if_close: bool = False
    # Rewrite the report, marked partial, before each run trains, so a long sitting shows what has finished (False:
    # once, at the end; for runs of seconds, where the figures of every rewrite would cost more than the training).
    partial_reports: bool = True


# Two error rates closer than this (2 points) are within what a second seed can reverse at one seed's budget.
CLOSE_CALL = 0.02

# How a shortened CIFAR budget starts every row: lr 0.01 rising linearly to the recipe's 0.1 over the first 400
# iterations, then the recipe. At lr 0.1 from the first step deep nets blow up within a few iterations and lose
# hundreds of them: noise in 64k iterations, the whole result in a few thousand. He et al. 2016's warm-up (0.01
# held for 400 iterations, then 0.1) was the first choice, but in the warm-up pilot (docs/results/warmup-pilot-cpu)
# the jump to 0.1 blew ResNet-56 up again and set ResNet-110 back, while the linear ramp over the same 400
# iterations trained through. One start for every row keeps rows comparable; the paper budget keeps each
# recipe's own warm-up (ResNet-110's error-threshold rule included).
WARM_START_ITERATIONS, WARM_START_LR = 400, 0.01
WARM_START = ("train.schedule.warmup.kind=linear", f"train.schedule.warmup.steps={WARM_START_ITERATIONS}",
              f"train.schedule.warmup.lr={WARM_START_LR}")
WARM_START_NOTE = (f"Every row starts with a linear warm-up, lr {WARM_START_LR} rising to the recipe's lr over the "
                   f"first {WARM_START_ITERATIONS} iterations, in place of its recipe's start (He et al. 2016 hold "
                   "0.01 for 400 iterations; He et al. 2015 warm ResNet-110 up until its training error is below "
                   "80%; the other recipes start at 0.1). The warm-up pilot chose it: the jump from 0.01 to 0.1 "
                   "blew ResNet-56 up again, the ramp did not. The warm-up is not shortened with the run.")

# An evaluation interval (in epochs) longer than any recipe: the splits are evaluated once, at the end.
AT_THE_END = 1_000_000

# Every experiment's smoke plan: 2 steps of 8 images, a curve record (on 8 held-out images) after each, the report
# written once at the end (the warm-up pilot's 8 partial reports took 11 of its 24 seconds at smoke). The
# 1001- and 1202-layer rows run on their 164- and 110-layer counterparts: the same code, a tenth of the time.
SMOKE = Plan(iterations=2, batch_size=8, curve_every=1, eval_images=8, partial_reports=False,
             substitute=(("resnet1202", ("model.name=resnet110",)), ("resnet1001", ("model.name=resnet164",)),
                         ("preact_resnet1001", ("model.name=preact_resnet164",))),
             note="The smoke budget runs the 1001- and 1202-layer rows on their 164- and 110-layer counterparts.")


def shorten_overrides(config: Config, iterations: int, compress: bool = True) -> list[str]:
    """Overrides that stop ``config``'s recipe after ``iterations`` with its schedule compressed to fit (or, with
    ``compress=False``, its first ``iterations`` as they are: milestones after the end simply never come)."""
    train, schedule = config.train, config.train.schedule
    length = train.iterations if train.epochs is None else train.epochs  # in the schedule's own unit
    if not compress and (train.epochs is not None or schedule.unit != "iterations"):
        raise ValueError("a budget that keeps the recipe's milestones needs a recipe counted in iterations")
    factor = iterations / length if compress else 1.0
    milestones = sorted({round(m * factor) for m in schedule.milestones} - {0})
    milestones = [m for m in milestones if m < iterations]
    overrides = [f"train.iterations={iterations}", "train.schedule.unit=iterations",
                 f"train.schedule.milestones=[{', '.join(str(m) for m in milestones)}]"]
    warmup = schedule.warmup
    if warmup.steps:
        overrides.append(f"train.schedule.warmup.steps={max(1, round(warmup.steps * factor))}")
    return overrides


def data_overrides(data: str | None, budget: str) -> list[str]:
    """The data set a reproduction trains on: ``--data`` (a folder or ``synthetic``), else the budget's default.

    A folder holding ``cifar-10-batches-py`` is the official CIFAR-10; one with ``train/`` and ``test/`` class
    folders of images (such as the CIFAR-10 JPEG copy) is an image folder.
    """
    if data is None:
        return list(SMOKE_DATA) if budget == "smoke" else []
    if data == "synthetic":
        return list(SMOKE_DATA) if budget == "smoke" else ["data.name=synthetic"]
    root = Path(data)
    if (root / "cifar-10-batches-py").is_dir():
        return ["data.name=cifar10", f"data.root={root}"]
    if (root / "cifar-100-python").is_dir():
        raise DataError(f"--data {root} holds CIFAR-100; the reproductions' rows are CIFAR-10 recipes")
    if (root / "train").is_dir() and (root / "test").is_dir():
        return ["data.name=folder", f"data.root={root}"]
    if not root.exists():
        raise DataError(f"--data {root} does not exist; give a CIFAR-10 folder or 'synthetic'")
    raise DataError(f"--data {root} is neither a CIFAR-10 folder (cifar-10-batches-py/) nor an image folder "
                    "(train/ and test/ with one folder per class); give one of them or 'synthetic'")
