"""``resnetlab reproduce`` and ``report``: the papers' experiments, run and written up."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resnetlab.errors import UsageError

# Each command imports torch and the models when it runs, so that `resnetlab --help` answers at once.


def cmd_reproduce(args: argparse.Namespace) -> int:
    from resnetlab.reproduce.experiment import get_experiment, list_experiments
    from resnetlab.reproduce.runner import NothingFinished, command_line, reproduce

    if args.list:
        return _list_experiments(list_experiments())
    if args.experiment is None:
        raise UsageError("name an experiment, e.g. `resnetlab reproduce degradation --budget smoke`; "
                         "`resnetlab reproduce --list` shows them")
    names = [e.name for e in list_experiments()] if args.experiment == "all" else [args.experiment]
    if args.rows and len(names) > 1:
        raise UsageError("--rows names rows of one experiment; give the experiment instead of 'all'")
    if args.precision and args.no_train:
        raise UsageError("--precision sets the arithmetic of the runs trained here, and --no-train trains none; "
                         "drop one of the two")
    from resnetlab.training.trainer import TrainingInterrupted

    skipped: list[str] = []  # with --no-train: experiments that have no finished run
    for name in names:
        experiment = get_experiment(name)
        try:
            report_dir = reproduce(experiment, args.budget, seeds=args.seeds, data=args.data, out_dir=args.out,
                                   device=args.device, progress=args.progress, command=command_line(),
                                   only_rows=args.rows, reuse=args.reuse, train_missing=not args.no_train,
                                   precision=args.precision, twins=not args.no_twins)
        except NothingFinished:
            if len(names) == 1:
                raise
            print(f"resnetlab: {name}: no run has finished, so no report (--no-train); skipped", file=sys.stderr)
            skipped.append(name)
            continue
        except TrainingInterrupted as stop:
            print(f"resnetlab: interrupted ({stop}); finished runs are kept and the current one has a checkpoint: "
                  "run the same command again to continue", file=sys.stderr)
            return stop.exit_code
        print(f"report: {report_dir / 'report.md'} (and report.html, results.json, figures)")
    if len(skipped) == len(names) > 1:
        raise UsageError(f"--no-train: no run of any experiment at the {args.budget} budget has finished in "
                         f"{args.out} or the --reuse folders, so there is nothing to report")
    return 0


def _list_experiments(experiments) -> int:
    from resnetlab.config.loading import read_yaml
    from resnetlab.reproduce.budgets import BUDGET_NAMES

    print(f"{'experiment':<22} {'budget':<7} {'rows':>4} {'seeds':>5}  length per run")
    for experiment in experiments:
        for budget in BUDGET_NAMES:
            plan = experiment.plans[budget]
            length = f"{plan.iterations} iterations" if plan.iterations else "the paper's recipe"
            # the recipes' model names, read without validating each recipe (that builds its model: seconds)
            models = {read_yaml(row.recipe_path)["model"]["name"] for row in experiment.rows_for(budget)}
            if used := [(model, o) for model, o in plan.substitute if model in models]:  # only this budget's rows
                length += " (" + "; ".join(f"{model} run as {' '.join(o)}" for model, o in used) + ")"
            name = experiment.name if budget == BUDGET_NAMES[0] else ""
            print(f"{name:<22} {budget:<7} {len(experiment.rows_for(budget)):>4} {plan.seeds:>5}  {length}")
    print("smoke: seconds per experiment on built-in synthetic data (the tests run it); cpu: a shortened "
          "schedule, about 2 hours per experiment on 2 cores with AMX-BF16 (docs/results/README.md); paper: the full "
          "recipes")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from resnetlab.reproduce.runner import rebuild

    if args.out and len(args.runs) > 1:
        raise UsageError("--out takes one report folder; rebuild several in place, or one at a time")
    if not args.runs and args.index is None:
        raise UsageError("name report folders to rebuild, or --index DIR for every report in DIR and their claims "
                         "table, e.g. `resnetlab report --index docs/results`")
    for source in args.runs:
        report_dir = rebuild(source, args.out)
        print(f"report: {report_dir / 'report.md'}")
    if args.index is not None:
        from resnetlab.reproduce.index import report_folders, write_index

        for folder in report_folders(Path(args.index)) if Path(args.index).is_dir() else []:
            rebuild(folder)
        print(f"claims table: {write_index(args.index)}")
    return 0
