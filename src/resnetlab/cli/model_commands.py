"""``resnetlab models``, ``info`` and ``bench``: what the networks are and how fast they train and infer."""

from __future__ import annotations

import argparse
import sys

from resnetlab.errors import UsageError

# Each command imports torch and the models when it runs, so that `resnetlab --help` answers at once.


def _format_count(value: int) -> str:
    return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.1f}K"


def cmd_models(args: argparse.Namespace) -> int:
    from resnetlab.models import get_model_spec, list_models
    from resnetlab.models.stats_cache import cached_model_stats

    names = list_models(args.pattern)
    if not names:
        raise UsageError(f"no model matches {args.pattern!r}; run `resnetlab models` for the list")
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
    from resnetlab.models import get_model_spec
    from resnetlab.training.environment import describe_machine

    spec = get_model_spec(args.model)
    if args.batch < 2:
        raise UsageError(f"--batch must be at least 2 (BN needs 2 images), got {args.batch}")
    print(f"machine: {describe_machine()}")
    if args.mode == "infer":
        return _bench_inference(args, spec)
    from resnetlab.bench.training import REFERENCE, compare_training, format_comparison, resnetlab_setup

    ours = resnetlab_setup(channels_last=args.channels_last, compile=args.compile, precision=args.precision or "auto")
    comparison = compare_training(args.model, [REFERENCE, ours], batch_size=args.batch, image_size=args.image_size,
                                  rounds=args.rounds, steps=args.steps, augmentation=spec.input_size <= 64,
                                  progress=lambda line: print(line, file=sys.stderr))
    print(format_comparison(comparison))
    _write_json(args.json, comparison.to_dict())
    return 0


def _bench_inference(args: argparse.Namespace, spec) -> int:
    import resource

    from resnetlab.bench.inference import format_table, measure_inference
    from resnetlab.bench.measure import matmul_gflops
    from resnetlab.models.complexity import build_on_meta, count_multiply_adds
    from resnetlab.training.precision import PRECISION_OPTION, resolve_precision

    size = args.image_size or spec.input_size
    precision = resolve_precision(args.precision or "auto", source=PRECISION_OPTION)
    ours = ("folded_channels_last" if args.channels_last else "folded") + ("_compiled" if args.compile else "")
    if not args.channels_last and (args.compile or precision.precision == "bf16"):
        raise UsageError("--compile and bf16 inference are measured with channels_last; drop --no-channels-last "
                         "(or add --precision fp32)")
    ours += "_bf16" if precision.precision == "bf16" else ""
    print(f"inference: {precision.describe()}; the reference is float32 eager")
    bench = measure_inference(args.model, size, args.batch, rounds=args.rounds, calls_per_round=args.steps,
                              variants=("eager", ours))
    peak = matmul_gflops(dtype="bfloat16" if precision.precision == "bf16" else "float32")["median"]
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
