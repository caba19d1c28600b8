"""``resnetlab train``, ``eval``, ``predict``, ``export`` and ``recipes``: a run from a recipe to a shipped model."""

from __future__ import annotations

import argparse
import sys

from resnetlab.errors import UsageError

# Each command imports torch and the models when it runs, so that `resnetlab --help` answers at once.

# The quick start: what `resnetlab train` runs with no config, on the built-in synthetic data (no download);
# about two minutes on 2 CPU cores.
QUICKSTART_OVERRIDES = [
    "model.name=resnet20", "data.name=synthetic", "data.synthetic_train_size=10000", "data.synthetic_test_size=2000",
    "data.validation_size=1000", "train.epochs=3", "train.schedule.unit=epochs",
    "train.schedule.name=cosine", "run.name=null",
]


def cmd_recipes(args: argparse.Namespace) -> int:
    from resnetlab.config import list_recipes

    recipes = list_recipes(args.pattern)
    if not recipes:
        raise UsageError(f"no recipe matches {args.pattern!r}; run `resnetlab recipes` for the list")
    rows = [recipe.summary() for recipe in recipes]
    width = max(len(row["name"]) for row in rows)
    print(f"{'recipe':<{width}}  {'model':<18} {'data':<9} {'paper':<28} source")
    for row in rows:
        print(f"{row['name']:<{width}}  {row['model']:<18} {row['data']:<9} {row['paper']:<28} {row['source']}")
    print(f"{len(rows)} recipes; train one with `resnetlab train NAME [key=value ...]` (the stem alone works when "
          "it is unique)")
    return 0


def _split_config_args(items: list[str]) -> tuple[str | None, list[str]]:
    """``[RECIPE] [key=value ...]``: the first item is a recipe (a name or a YAML file) unless it is an override."""
    if items and "=" not in items[0]:
        return items[0], items[1:]
    return None, items


def cmd_train(args: argparse.Namespace) -> int:
    from resnetlab.config import load_config
    from resnetlab.training.distributed import init_distributed, shutdown_distributed
    from resnetlab.training.session import train
    from resnetlab.training.trainer import TrainingInterrupted

    if args.resume:
        if args.items:
            raise UsageError("--resume continues a run with its saved config; drop the config and overrides")
        config = None
    else:
        path, overrides = _split_config_args(args.items)
        if path is None:
            print("no config given: running the quick start (ResNet-20 on the built-in synthetic data)")
            overrides = QUICKSTART_OVERRIDES + overrides
        config = load_config(path, overrides)
    distributed, device = init_distributed(args.device)  # torchrun's processes join their group here
    say = print if distributed.is_main else (lambda *_, **__: None)
    together = False  # whether every rank is known to stop here (a finished run, or a stop voted by all)
    try:
        summary = train(config, resume=args.resume, device=device, progress=args.progress, distributed=distributed)
        together = True
    except TrainingInterrupted as stop:
        together = True
        run_dir = getattr(stop, "run_dir", args.resume)
        say(f"resnetlab: interrupted ({stop}); a checkpoint was written: continue with "
            f"`resnetlab train --resume {run_dir}`", file=sys.stderr)
        return stop.exit_code
    finally:
        shutdown_distributed(distributed, wait_for_all=together)
    final = summary["final_test_error"]
    say(f"done: test error {100 * final:.2f}% after {summary['epochs']} epochs" if final is not None else "done")
    if summary["test_error_at_best_val"] is not None:
        say(f"test error at the best validation epoch ({summary['best_epoch']}): "
            f"{100 * summary['test_error_at_best_val']:.2f}%")
    say(f"run folder: {summary['run_dir']} (metrics.jsonl, error_curves.png, tensorboard/, last.pt)")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from resnetlab.evaluation.run import evaluate_source

    result = evaluate_source(args.run, data_root=args.data, split=args.split, out=args.out, device=args.device)
    summary = result.summary
    print(f"{summary['model']} on {summary['data']} ({args.split})")
    print(result.table)
    print(f"{summary['misclassified']} misclassified images; wrote {', '.join(str(p) for p in result.files.values())}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from resnetlab.deploy import load_predictor
    from resnetlab.training.inference import predict_files

    predictor = load_predictor(args.checkpoint, device=args.device)
    for path, ranking in zip(args.images, predict_files(predictor, args.images, args.top)):
        print(path)
        for rank, (name, probability) in enumerate(ranking, 1):
            print(f"  {rank}. {name:<24} {100 * probability:6.2f}%")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from resnetlab.deploy.export import FLOAT32_TOLERANCE, export_checkpoint

    result = export_checkpoint(args.checkpoint, args.format, args.out, fuse_bn=args.fuse_bn)
    sizes = " and ".join(str(n) for n in result.batch_sizes)
    print(f"wrote {result.path} and its model card {result.card}")
    print(f"checked against PyTorch on random images at batch {sizes}: max abs difference of the logits "
          f"{result.max_abs_difference:.3g} (tolerance {FLOAT32_TOLERANCE:g})")
    return 0
