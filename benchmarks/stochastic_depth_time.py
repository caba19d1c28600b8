"""Stochastic depth that saves time: ResNet-110 training steps with and without dropped blocks, side by side.

Huang et al. 2016 report about 25% less training time for ResNet-110 with the linear rule at p_L = 0.5 (the
expected depth is 3/4 of the net's: E[L~] = (3L - 1) / 4 = 40.25 of 54 blocks). In resnetlab's ``batch`` mode a
dropped block computes nothing, forward or backward. Setups, each in its own process, in interleaved rounds:
no stochastic depth; p_L = 0.5 batch; p_L = 0.2 batch; p_L = 0.5 ``row`` (per-sample masks: every block still
runs, so it saves nothing, shown for contrast); and constant depth and p_L = 0.5 batch through torch.compile
(the constant-depth net compiled whole, the gated one unit by unit, each compared with the compiled constant-depth
net), all in --precision (auto: bf16 where the CPU has AMX-BF16 units). The gates are drawn afresh every step, as
in training, so the epoch time is the mean step time times the steps of an epoch (45k images / 128 = 352 steps).

    .venv/bin/python benchmarks/stochastic_depth_time.py                # about 10 min on 2 cores
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STEPS_PER_EPOCH = 352  # ceil(45000 / 128): the papers' 45k training split at batch 128


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet110")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=16, help="timed steps per setup and round")
    parser.add_argument("--compiled", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure constant depth and p_L=0.5 with torch.compile (default: on)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--warmup-steps", type=int, default=6, help="untimed steps per process first: a gated net "
                        "compiled unit by unit compiles a unit shape when it first runs, which can be a few steps in")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "benchmarks" / "stochastic_depth_time.json")
    args = parser.parse_args()

    from resnetlab.bench.training import (
        compare_training,
        format_comparison,
        resnetlab_setup,
        write_results,
    )
    from resnetlab.models import create_model
    from resnetlab.training.environment import describe_machine

    def with_depth(p_last: float, mode: str, compile: bool = False):
        return resnetlab_setup(label=f"stochastic depth p_L={p_last} {mode}" + (", compiled" if compile else ""),
                               compile=compile, precision=args.precision,
                               stochastic_depth={"p_last": p_last, "mode": mode})

    setups = [resnetlab_setup(label="constant depth", precision=args.precision), with_depth(0.5, "batch"),
              with_depth(0.2, "batch"), with_depth(0.5, "row")]
    if args.compiled:  # the same two nets through torch.compile (the gated one compiled unit by unit)
        setups += [resnetlab_setup(label="constant depth, compiled", compile=True, precision=args.precision),
                   with_depth(0.5, "batch", True)]
    print(f"machine: {describe_machine()}", flush=True)
    comparison = compare_training(args.model, setups, args.batch, rounds=args.rounds, steps=args.steps,
                                  warmup_steps=args.warmup_steps)
    print(format_comparison(comparison))
    baselines = {False: comparison.setups[0].mean_step}  # each net against constant depth in the same mode
    baselines[True] = next((s.mean_step for s in comparison.setups if s.label == "constant depth, compiled"), None)
    print(f"\n{'setup':<36} {'E[blocks]':>9} {'of':>4} {'epoch s':>8} {'saving':>7} {'expected':>8}")
    rows = []
    for setup, summary in zip(setups, comparison.setups):
        model = create_model(args.model, **setup.model_options)
        blocks = len(model.survival_probabilities())
        expected_blocks = model.expected_depth() if setup.model_options.get("stochastic_depth", {}).get(
            "mode", "batch") == "batch" else blocks
        saving = 1 - summary.mean_step / baselines[setup.compile]
        # The ideal saving if a step's time were proportional to the blocks it runs.
        expected_saving = 1 - expected_blocks / blocks
        print(f"{setup.label:<36} {expected_blocks:>9.2f} {blocks:>4} {summary.mean_step * STEPS_PER_EPOCH:>8.0f} "
              f"{100 * saving:>6.1f}% {100 * expected_saving:>7.1f}%")
        rows.append({"label": setup.label, "expected_blocks": expected_blocks, "blocks": blocks,
                     "mean_step_seconds": summary.mean_step, "median_step_seconds": summary.median_step,
                     "step_seconds_stdev": statistics.pstdev(summary.step_seconds),
                     "epoch_seconds": summary.mean_step * STEPS_PER_EPOCH, "saving": saving,
                     "expected_saving": expected_saving})
    # Issue 14's comparison: each net in its fastest mode (eager or compiled), p_L = 0.5 batch against constant depth.
    steps = {summary.label: summary.mean_step for summary in comparison.setups}
    constant = min((label for label in steps if label.startswith("constant depth")), key=steps.get)
    gated = min((label for label in steps if label.startswith("stochastic depth p_L=0.5 batch")), key=steps.get)
    fastest = {"constant_depth": constant, "stochastic_depth": gated, "saving": 1 - steps[gated] / steps[constant]}
    print(f"\nfastest modes: {constant} {steps[constant] * STEPS_PER_EPOCH:.0f} s per epoch, {gated} "
          f"{steps[gated] * STEPS_PER_EPOCH:.0f} s: {100 * fastest['saving']:.1f}% less time per epoch")
    write_results(args.out, {"machine": f"machine: {describe_machine()}", "comparison": comparison.to_dict(),
                             "rows": rows, "fastest": fastest, "warmup_steps": args.warmup_steps})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
