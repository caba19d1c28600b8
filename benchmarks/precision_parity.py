"""Accuracy parity of bf16 and fp32 training: ResNet-20 on the CIFAR-10 JPEG copy, the same schedule, two seeds each.

The ResNet paper's CIFAR recipe (`table6_cifar10_resnet20`: 45k/5k split, per-pixel mean, pad-4 crop and flip,
SGD momentum 0.9, weight decay 1e-4, batch 128, lr 0.1) compressed to --iterations with the learning-rate steps
moved in proportion (50% and 75%), as the reproductions' budgets do; train.compile is left to its rule (compiled:
these runs are longer than 1,000 iterations). The runs go fp32 seed 0, bf16 seed 0, fp32 seed 1, bf16 seed 1, so
a slow spell of the machine hits both precisions; finished runs are reused. bf16 has parity when each of its test
errors lies within the fp32 seeds' range or within 0.5 points of their mean (issue 14's rule for making it the
default where it is fast).

    .venv/bin/python benchmarks/precision_parity.py                       # 3,000 iterations x 4 runs
    .venv/bin/python benchmarks/precision_parity.py --iterations 300      # a quick look
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg"
PARITY_POINTS = 0.5  # percentage points of test error: the slack beyond the fp32 seeds' range


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CIFAR-10 as train/<class>/*.jpg, test/...")
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--recipe", default="table6_cifar10_resnet20")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "benchmarks" / "precision_parity")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "benchmarks" / "precision_parity.json")
    args = parser.parse_args()
    if not (args.data / "train").is_dir():
        print(f"CIFAR-10 JPEG copy not found at {args.data}; pass --data", file=sys.stderr)
        return 2

    from resnetlab.bench.training import write_results
    from resnetlab.config import load_config
    from resnetlab.reproduce.budgets import shorten_overrides
    from resnetlab.training.environment import describe_machine
    from resnetlab.training.session import train

    print(f"machine: {describe_machine()}", flush=True)
    recipe = load_config(args.recipe)
    base = [*shorten_overrides(recipe, args.iterations), "data.name=folder", f"data.root={args.data}",
            f"run.out_dir={args.runs}"]
    rows = []
    for seed in args.seeds:
        for precision in ("fp32", "bf16"):
            name = f"{precision}-s{seed}-{args.iterations}"
            summary_file = args.runs / name / "summary.json"
            if not summary_file.is_file():
                config = load_config(args.recipe, [*base, f"train.precision={precision}", f"train.seed={seed}",
                                                   f"run.name={name}"])
                train(config, progress=False)
            summary = json.loads(summary_file.read_text())
            records = [json.loads(line) for line in (args.runs / name / "metrics.jsonl").read_text().splitlines()]
            rows.append({"precision": precision, "seed": seed, "run": name,
                         "final_test_error": summary["final_test_error"],
                         "test_error_at_best_val": summary["test_error_at_best_val"],
                         "final_train_error": records[-1]["train_error"], "train_seconds": summary["train_seconds"],
                         # epoch 1 holds the compilation: the speed is the median of the later epochs
                         "images_per_second": statistics.median(r["images_per_second"]
                                                                for r in records[1:] or records)})
            print(f"{name}: test error {100 * summary['final_test_error']:.2f}% (at the best validation epoch "
                  f"{100 * summary['test_error_at_best_val']:.2f}%), {summary['train_seconds'] / 60:.1f} min",
                  flush=True)
    verdict = parity(rows)
    print(verdict["text"])
    write_results(args.out, {"machine": f"machine: {describe_machine()}", "iterations": args.iterations,
                             "recipe": args.recipe, "rows": rows, "parity": verdict})
    return 0


def parity(rows: list[dict]) -> dict:
    """Whether every bf16 test error lies within the fp32 range, or within `PARITY_POINTS` of the fp32 mean."""
    fp32 = [100 * r["final_test_error"] for r in rows if r["precision"] == "fp32"]
    bf16 = [100 * r["final_test_error"] for r in rows if r["precision"] == "bf16"]
    mean = statistics.fmean(fp32)
    inside = [min(fp32) <= e <= max(fp32) or abs(e - mean) <= PARITY_POINTS for e in bf16]
    speed = {precision: statistics.median(r["images_per_second"] for r in rows if r["precision"] == precision)
             for precision in ("fp32", "bf16")}
    text = (f"test error (%): fp32 {', '.join(f'{e:.2f}' for e in fp32)} (mean {mean:.2f}); bf16 "
            f"{', '.join(f'{e:.2f}' for e in bf16)} (mean {statistics.fmean(bf16):.2f}): parity "
            f"{'holds' if all(inside) else 'does not hold'}; training images/s (median): fp32 {speed['fp32']:.0f}, "
            f"bf16 {speed['bf16']:.0f} ({speed['bf16'] / speed['fp32']:.2f}x)")
    return {"holds": all(inside), "fp32_errors": fp32, "bf16_errors": bf16, "fp32_mean": mean,
            "images_per_second": speed, "text": text}


if __name__ == "__main__":
    sys.exit(main())
