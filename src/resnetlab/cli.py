"""The ``resnetlab`` command line: ``models`` and ``info`` (training, evaluation and export come later).

Errors a user can fix (unknown names, bad values) print one line and exit with status 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

EXIT_USAGE = 2
# Commands import torch and the models when they run, so `--help` answers at once.


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
    from resnetlab.models import get_model_spec
    from resnetlab.models.complexity import build_on_meta, count_parameters, count_weight_parameters, stage_table
    from resnetlab.models.stats_cache import cached_model_stats

    spec = get_model_spec(args.name)
    size = args.input_size or spec.input_size
    model = build_on_meta(args.name)
    print(f"{spec.name}: {spec.description} ({spec.paper})")
    print(f"depth {spec.depth}, {count_parameters(model):,} parameters "
          f"({count_weight_parameters(model):,} in conv and fc weights), input {size}x{size}")
    print(f"\n{'stage':<8} {'output':>14} {'units':>6}  {'layout':<40} {'params':>10}")
    for row in stage_table(model, size):
        shape = "x".join(str(d) for d in row.output_shape)
        units = str(row.units) if row.units else "-"
        layout = f"[{row.layout}] x {row.units}" if row.units else row.layout
        print(f"{row.name:<8} {shape:>14} {units:>6}  {layout:<40} {row.parameters:>10,}")
    (stats,) = cached_model_stats([args.name]) if size == spec.input_size else [None]
    if stats is not None:
        print(f"\n{stats.multiply_adds / 1e9:.3f} G multiply-adds per {size}x{size} image")
    print(f"options: {', '.join(o for o in spec.options() if o != 'num_classes')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resnetlab", description="Deep residual networks of four papers, "
                                     "built exactly, trained and measured.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    models = sub.add_parser("models", help="list every model with depth, parameters and multiply-adds")
    models.add_argument("pattern", nargs="?", help="shell pattern on the name, e.g. 'preact*'")
    models.set_defaults(handler=cmd_models)
    info = sub.add_parser("info", help="print a model's stage table")
    info.add_argument("name", help="a model name from `resnetlab models`")
    info.add_argument("--input-size", type=int, default=None, help="image side in pixels (default: the model's)")
    info.set_defaults(handler=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, TypeError, KeyError, OSError) as error:
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
