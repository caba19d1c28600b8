"""The ``resnetlab`` command line: ``train``, ``eval``, ``predict``, ``export``, ``models``, ``info``,
``bench``, ``reproduce`` and ``report``.

Errors a user can fix (unknown names, bad config values, missing or corrupt files, a diverged loss) print one
line and exit non-zero; ``--debug`` shows the traceback instead. An interrupted run writes a checkpoint at
its exact position and says how to resume it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

EXIT_USAGE = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130
# Commands import torch and the models when they run, so `--help` answers without loading them.

# The quick start: what `resnetlab train` runs with no config, on the built-in synthetic data (no download);
# about two minutes on 2 CPU cores.
QUICKSTART_OVERRIDES = [
    "model.name=resnet20", "data.name=synthetic", "data.synthetic_train_size=10000", "data.synthetic_test_size=2000",
    "data.validation_size=1000", "train.epochs=3", "train.schedule.unit=epochs",
    "train.schedule.name=cosine", "run.name=null",
]


def _format_count(value: int) -> str:
    return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.1f}K"


def cmd_models(args: argparse.Namespace) -> int:
    from resnetlab.models import get_model_spec, list_models
    from resnetlab.models.stats_cache import cached_model_stats

    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"no model matches {args.pattern!r}; run `resnetlab models` for the list")
    stats = cached_model_stats(names, on_compute=lambda name: print(f"counting {name} ...", file=sys.stderr))
    print(f"{'model':<20} {'depth':>6} {'params':>9} {'mult-adds':>11} {'input':>8}  description")
    for row in stats:
        spec = get_model_spec(row.name)
        print(f"{row.name:<20} {row.depth:>6} {_format_count(row.parameters):>9} "
              f"{row.multiply_adds / 1e9:>10.3f}G {row.input_size:>5}px  {spec.description}")
    print(f"{len(stats)} models; multiply-adds of one image, counted by torch.utils.flop_counter")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from resnetlab.models import ResNet, get_model_spec
    from resnetlab.models.complexity import build_on_meta, count_parameters, count_weight_parameters, stage_table
    from resnetlab.models.stats_cache import cached_model_stats

    spec = get_model_spec(args.name)
    size = args.input_size or spec.input_size
    model = build_on_meta(args.name)
    print(f"{spec.name}: {spec.description} ({spec.paper})")
    print(f"depth {spec.depth}, {count_parameters(model):,} parameters "
          f"({count_weight_parameters(model):,} in conv and fc weights), input {size}x{size}")
    if isinstance(model, ResNet):  # the stage table reads a ResNet's stem, stages and head
        print(f"\n{'stage':<8} {'output':>14} {'units':>6}  {'layout':<40} {'params':>10}")
        for row in stage_table(model, size):
            shape = "x".join(str(d) for d in row.output_shape)
            units = str(row.units) if row.units else "-"
            layout = f"[{row.layout}] x {row.units}" if row.units else row.layout
            print(f"{row.name:<8} {shape:>14} {units:>6}  {layout:<40} {row.parameters:>10,}")
    else:
        print(f"(no stage table: {type(model).__name__} is not a ResNet)")
    (stats,) = cached_model_stats([args.name]) if size == spec.input_size else [None]
    if stats is not None:
        print(f"\n{stats.multiply_adds / 1e9:.3f} G multiply-adds per {size}x{size} image")
    print(f"options: {', '.join(o for o in spec.options() if o != 'num_classes')}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from resnetlab.bench.training import describe_machine
    from resnetlab.models import get_model_spec

    spec = get_model_spec(args.model)
    if args.batch < 2:
        raise ValueError(f"--batch must be at least 2 (BN needs 2 images), got {args.batch}")
    print(describe_machine())
    if args.mode == "infer":
        return _bench_inference(args, spec)
    from resnetlab.bench.training import REFERENCE, compare_training, format_comparison, resnetlab_setup

    ours = resnetlab_setup(channels_last=args.channels_last, compile=args.compile)
    comparison = compare_training(args.model, [REFERENCE, ours], batch_size=args.batch, image_size=args.image_size,
                                  rounds=args.rounds, steps=args.steps, augmentation=spec.input_size <= 64,
                                  progress=lambda line: print(line, file=sys.stderr))
    print(format_comparison(comparison))
    _write_json(args.json, comparison.to_dict())
    return 0


def _bench_inference(args: argparse.Namespace, spec) -> int:
    import resource

    from resnetlab.bench.inference import format_table, measure_inference
    from resnetlab.bench.training import matmul_gflops
    from resnetlab.models.complexity import build_on_meta, count_multiply_adds

    size = args.image_size or spec.input_size
    ours = ("folded_channels_last" if args.channels_last else "folded") + ("_compiled" if args.compile else "")
    if ours == "folded_compiled":
        raise ValueError("--compile is measured with channels_last; drop --no-channels-last")
    bench = measure_inference(args.model, size, args.batch, rounds=args.rounds, calls_per_round=args.steps,
                              variants=("eager", ours))
    peak = matmul_gflops()["median"]
    multiply_adds = count_multiply_adds(build_on_meta(args.model), size)
    print(format_table(bench, baselines=("eager",)))
    for name in ("eager", ours):
        result = bench.results[name]
        if result.status != "ok":
            continue
        gflops = 2 * multiply_adds * args.batch / (result.median_ms / 1e3) / 1e9
        print(f"{name}: {bench.images_per_second(name):.1f} img/s, {gflops:.1f} GFLOP/s, "
              f"{100 * gflops / peak:.0f}% of the matmul peak ({peak:.0f} GFLOP/s)")
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of this process: {peak_rss:.0f} MiB")
    _write_json(args.json, bench.to_dict())
    return 0


def _write_json(path: str | None, data: dict) -> None:
    if path:
        from resnetlab.bench.training import write_results

        write_results(path, data)


def _split_config_args(items: list[str]) -> tuple[str | None, list[str]]:
    """``[CONFIG] [key=value ...]``: the first item is a config file unless it is an override."""
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
            raise ValueError("--resume continues a run with its saved config; drop the config and overrides")
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
        return EXIT_INTERRUPTED
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
    from resnetlab.data.datasets import build_data
    from resnetlab.training.inference import load_trained_model
    from resnetlab.training.trainer import evaluate

    trained = load_trained_model(args.run, device=args.device)
    config = trained.config
    data = build_data(config.data, config.train.seed, config.train.batch_size, args.device, trained.normalizer)
    print(f"{trained.checkpoint_path}: {config.model.name} on {config.data.name}")
    for split in ("val", "test"):
        if args.split not in (split, "all"):
            continue
        result = evaluate(trained.model, data.eval_batches(split), len(trained.classes))
        if result is None:
            print(f"{split}: no images")
            continue
        top5 = f", top-5 error {100 * result['top5_error']:.2f}%" if "top5_error" in result else ""
        print(f"{split}: {data.split_sizes[split]} images, top-1 error {100 * result['error']:.2f}%{top5}, "
              f"loss {result['loss']:.4f}")
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


def cmd_reproduce(args: argparse.Namespace) -> int:
    from resnetlab.reproduce.experiment import get_experiment, list_experiments
    from resnetlab.reproduce.runner import command_line, reproduce

    if args.list:
        return _list_experiments(list_experiments())
    if args.experiment is None:
        raise ValueError("name an experiment, e.g. `resnetlab reproduce degradation --budget smoke`; "
                         "`resnetlab reproduce --list` shows them")
    names = [e.name for e in list_experiments()] if args.experiment == "all" else [args.experiment]
    from resnetlab.training.trainer import TrainingInterrupted

    for name in names:
        experiment = get_experiment(name)
        try:
            report_dir = reproduce(experiment, args.budget, seeds=args.seeds, data=args.data, out_dir=args.out,
                                   device=args.device, progress=args.progress, command=command_line())
        except TrainingInterrupted as stop:
            print(f"resnetlab: interrupted ({stop}); finished runs are kept and the current one has a checkpoint: "
                  "run the same command again to continue", file=sys.stderr)
            return EXIT_INTERRUPTED
        print(f"report: {report_dir / 'report.md'} (and report.html, results.json, figures)")
    return 0


def _list_experiments(experiments) -> int:
    from resnetlab.reproduce.budgets import BUDGET_NAMES

    print(f"{'experiment':<22} {'budget':<7} {'rows':>4} {'seeds':>5}  length per run")
    for experiment in experiments:
        for budget in BUDGET_NAMES:
            plan = experiment.plans[budget]
            length = f"{plan.iterations} iterations" if plan.iterations else "the paper's recipe"
            if plan.substitute:
                length += " (" + "; ".join(f"{model} run as {' '.join(o)}" for model, o in plan.substitute) + ")"
            name = experiment.name if budget == BUDGET_NAMES[0] else ""
            print(f"{name:<22} {budget:<7} {len(experiment.rows_for(budget)):>4} {plan.seeds:>5}  {length}")
    print("smoke: seconds per experiment on built-in synthetic data (the tests run it); cpu: a shortened "
          "schedule, up to about an hour on 2 cores; paper: the full recipes")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from resnetlab.reproduce.runner import rebuild

    if args.out and len(args.runs) > 1:
        raise ValueError("--out takes one report folder; rebuild several in place, or one at a time")
    for source in args.runs:
        report_dir = rebuild(source, args.out)
        print(f"report: {report_dir / 'report.md'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resnetlab", description="Deep residual networks of four papers, "
                                     "built exactly, trained and measured.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    train = sub.add_parser("train", help="train a model (no config: the quick start on synthetic data)",
                           description="Train from a recipe in configs/ with key=value overrides, e.g. "
                           "`resnetlab train configs/resnet/table6_cifar10_resnet110.yaml train.seed=1`.")
    train.add_argument("items", nargs="*", metavar="[CONFIG] [key=value]", help="a YAML recipe, then overrides")
    train.add_argument("--resume", metavar="RUN", help="continue the run in this folder (or from this checkpoint)")
    train.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    train.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="progress bar with ETA (default: only on a terminal)")
    train.set_defaults(handler=cmd_train)
    evaluate = sub.add_parser("eval", help="evaluate a run (or a checkpoint) on its validation and test splits")
    evaluate.add_argument("run", metavar="RUN|CHECKPOINT")
    evaluate.add_argument("--split", choices=("val", "test", "all"), default="all")
    evaluate.add_argument("--device", default="cpu")
    evaluate.set_defaults(handler=cmd_eval)
    predict = sub.add_parser("predict", help="top-5 classes of image files with a trained or exported model")
    predict.add_argument("checkpoint", metavar="MODEL", help="a run folder, a checkpoint, or a file written by "
                         "`resnetlab export` (.safetensors, .onnx, .torchscript.pt, with its .json card beside it)")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--top", type=int, default=5, help="how many classes to list (default: 5)")
    predict.add_argument("--device", default="cpu")
    predict.set_defaults(handler=cmd_predict)
    export = sub.add_parser("export", help="write a trained model as ONNX, TorchScript or safetensors, checked "
                            "against PyTorch", description="Export a checkpoint with a model card (JSON) beside it. "
                            "ONNX and TorchScript take RGB pixels in [0, 1] (normalization inside the graph) with a "
                            "dynamic batch axis; each export is run back and compared with PyTorch.")
    export.add_argument("checkpoint", metavar="CHECKPOINT|RUN")
    export.add_argument("--format", choices=("onnx", "torchscript", "safetensors"), required=True)
    export.add_argument("--out", default=None, help="output file (default: RUN/export/<name><suffix>)")
    export.add_argument("--fuse-bn", action="store_true", help="fold BN into the convolutions first (inference only)")
    export.set_defaults(handler=cmd_export)
    models = sub.add_parser("models", help="list every model with depth, parameters and multiply-adds")
    models.add_argument("pattern", nargs="?", help="shell pattern on the name, e.g. 'preact*'")
    models.set_defaults(handler=cmd_models)
    info = sub.add_parser("info", help="print a model's stage table")
    info.add_argument("name", help="a model name from `resnetlab models`")
    info.add_argument("--input-size", type=int, default=None, help="image side in pixels (default: the model's)")
    info.set_defaults(handler=cmd_info)
    bench = sub.add_parser("bench", help="training or inference speed of a model against the plain eager reference",
                           description="Measure images/s, GFLOP/s, the fraction of the matmul peak and peak memory, "
                           "side by side with the plain eager NCHW float32 reference, in interleaved rounds.")
    bench.add_argument("model", help="a model name from `resnetlab models`")
    bench.add_argument("--batch", type=int, default=128, help="images per step (default: 128)")
    mode = bench.add_mutually_exclusive_group()
    mode.add_argument("--train", dest="mode", action="store_const", const="train", help="training steps (default)")
    mode.add_argument("--infer", dest="mode", action="store_const", const="infer",
                      help="inference: eager vs BN folded into the convolutions")
    bench.set_defaults(mode="train")
    bench.add_argument("--compile", action="store_true", help="torch.compile resnetlab's side")
    bench.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                       help="NHWC memory on resnetlab's side (default: on, as in training)")
    bench.add_argument("--image-size", type=int, default=None, help="image side in px (default: the model's)")
    bench.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default: 3)")
    bench.add_argument("--steps", type=int, default=5, help="timed steps (or calls) per round (default: 5)")
    bench.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    bench.set_defaults(handler=cmd_bench)
    reproduce = sub.add_parser("reproduce", help="run a paper's experiment and write its report beside the paper's "
                               "numbers", description="Train every row of an experiment (resuming finished and "
                               "interrupted runs), then write a Markdown/HTML report with figures.")
    reproduce.add_argument("experiment", nargs="?", help="an experiment from --list, or 'all'")
    reproduce.add_argument("--list", action="store_true", help="list the experiments and their budgets")
    reproduce.add_argument("--budget", choices=("smoke", "cpu", "paper"), default="smoke",
                           help="smoke: seconds, synthetic data; cpu: about an hour; paper: the full recipes")
    reproduce.add_argument("--seeds", type=int, default=None, help="runs per row (default: the budget's)")
    reproduce.add_argument("--data", metavar="PATH", default=None, help="a CIFAR-10 folder, an image folder "
                           "with train/ and test/ (e.g. the CIFAR-10 JPEG copy), or 'synthetic' (default: "
                           "synthetic for smoke, the recipes' data/ otherwise)")
    reproduce.add_argument("--out", default="runs/reproduce", help="where runs and reports go (default: %(default)s)")
    reproduce.add_argument("--device", default="cpu")
    reproduce.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    reproduce.set_defaults(handler=cmd_reproduce)
    report = sub.add_parser("report", help="rebuild a reproduction's report from its run records")
    report.add_argument("runs", nargs="+", metavar="REPORT_DIR", help="folders written by `resnetlab reproduce`")
    report.add_argument("--out", default=None, help="copy the records there and build the report in the copy")
    report.set_defaults(handler=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from resnetlab.bench.training import BenchError
    from resnetlab.data.errors import DataError
    from resnetlab.deploy.export import ExportError
    from resnetlab.training.checkpoint import CheckpointError
    from resnetlab.training.trainer import TrainingDiverged

    try:
        return args.handler(args)
    except TrainingDiverged as error:
        if args.debug:
            raise
        print(f"resnetlab: error: {error}", file=sys.stderr)
        return EXIT_DIVERGED
    except (ValueError, TypeError, KeyError, OSError, DataError, CheckpointError, BenchError,
            ExportError) as error:
        if args.debug:
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"resnetlab: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("resnetlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
