"""Where a training step's time goes: self time per operator group (convolution, batch norm, ReLU, the rest).

Eager steps only (a compiled graph is one opaque block to the profiler), batch 128, each setup in its own
process, the reference and resnetlab's eager setup side by side, `--rounds` times. The convolutions' time gives
the ceiling of every lever that leaves the convolution kernels alone: a step cannot be faster than its
convolutions, and their GFLOP/s against the matmul peak bounds the whole step's fraction of that peak.

    .venv/bin/python benchmarks/step_profile.py            # ResNet-20/56/110, about 3 min on 2 cores
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet20", "resnet56", "resnet110"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "benchmarks" / "step_profile.json")
    args = parser.parse_args()

    from resnetlab.bench.training import (
        REFERENCE,
        TRAIN_FLOPS_PER_MULTIPLY_ADD,
        resnetlab_setup,
        run_isolated,
        write_results,
    )
    from resnetlab.models.complexity import build_on_meta, count_multiply_adds
    from resnetlab.training.environment import describe_machine

    print(f"machine: {describe_machine()}", flush=True)
    peak = statistics.median(run_isolated("matmul")["seconds"])
    peak_gflops = 2 * 2048**3 / peak / 1e9
    print(f"matmul peak {peak_gflops:.0f} GFLOP/s (2048x2048 float32)")
    print(f"{'model':<10} {'setup':<40} {'conv ms':>8} {'BN ms':>7} {'ReLU ms':>8} {'other ms':>9} {'step ms':>8} "
          f"{'conv share':>10} {'conv GFLOP/s':>12} {'conv % peak':>11}")
    rows = []
    for model in args.models:
        flops = TRAIN_FLOPS_PER_MULTIPLY_ADD * count_multiply_adds(build_on_meta(model), 32) * args.batch
        for setup in (REFERENCE, resnetlab_setup(label="resnetlab eager (channels_last, tuned malloc)")):
            runs = [run_isolated("profile", model=model, setup=vars(setup), batch_size=args.batch, image_size=32,
                                 seed=r)["seconds_per_step"] for r in range(args.rounds)]
            groups = {g: statistics.median(run[g] for run in runs) for g in runs[0]}
            step = sum(groups.values())
            conv_gflops = flops / groups["convolution"] / 1e9
            print(f"{model:<10} {setup.label[:40]:<40} {1e3 * groups['convolution']:>8.1f} "
                  f"{1e3 * groups['batch norm']:>7.1f} {1e3 * groups['relu']:>8.1f} {1e3 * groups['other']:>9.1f} "
                  f"{1e3 * step:>8.1f} {100 * groups['convolution'] / step:>9.0f}% {conv_gflops:>12.0f} "
                  f"{100 * conv_gflops / peak_gflops:>10.0f}%", flush=True)
            rows.append({"model": model, "setup": setup.label, "seconds_per_step": groups,
                         "conv_gflops": conv_gflops, "matmul_peak_gflops": peak_gflops})
    write_results(args.out, {"machine": f"machine: {describe_machine()}", "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
