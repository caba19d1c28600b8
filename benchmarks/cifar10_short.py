"""ResNet-20 on the CIFAR-10 JPEG copy with the paper's pipeline, for a short schedule (a benchmark, not a test).

The paper's pipeline: 45k/5k train/validation split (seeded), per-pixel mean subtraction computed on the 45k
training images, pad-4 random crop and horizontal flip, SGD momentum 0.9, weight decay 1e-4, batch 128, lr 0.1.
The schedule is shortened: --epochs epochs with the lr divided by 10 at 50% and 75% of them (the paper's
32k/48k of 64k iterations, in proportion). Prints the machine, the per-epoch time and the test accuracy.

    .venv/bin/python benchmarks/cifar10_short.py                 # 12 epochs, about 45 min on 2 CPU cores
    .venv/bin/python benchmarks/cifar10_short.py --epochs 2      # a quick look
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CIFAR-10 as train/<class>/*.jpg, test/...")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "benchmarks")
    args = parser.parse_args()
    if not (args.data / "train").is_dir():
        print(f"CIFAR-10 JPEG copy not found at {args.data}; pass --data", file=sys.stderr)
        return 2

    from resnetlab.config import load_config
    from resnetlab.training.environment import describe_environment
    from resnetlab.training.session import train

    milestones = [args.epochs // 2, (3 * args.epochs) // 4]
    name = f"cifar10_short-{args.model}-e{args.epochs}-s{args.seed}"
    config = load_config(None, [
        f"model.name={args.model}", "data.name=folder", f"data.root={args.data}", "data.validation_size=5000",
        "data.normalization=per_pixel_mean", f"train.epochs={args.epochs}", "train.schedule.unit=epochs",
        f"train.schedule.milestones={milestones}", f"train.seed={args.seed}", f"run.out_dir={args.out}",
        f"run.name={name}",
    ])
    environment = describe_environment(args.seed)
    print(f"machine: {environment['cpu']}, {environment['cpu_count']} cores, torch {environment['torch']} "
          f"({environment['torch_threads']} threads)")
    summary = train(config, progress=False)
    run_dir = Path(summary["run_dir"])
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    epoch_seconds = [r["epoch_seconds"] for r in records]
    result = {
        "model": args.model, "epochs": args.epochs, "milestones_epochs": milestones, "seed": args.seed,
        "data": str(args.data), "train_images": 45000, "test_images": 10000,
        "test_accuracy": 1 - summary["final_test_error"],
        "test_accuracy_at_best_val": 1 - summary["test_error_at_best_val"],
        "best_epoch": summary["best_epoch"],
        "epoch_seconds_median": statistics.median(epoch_seconds),
        "epoch_seconds_min": min(epoch_seconds), "epoch_seconds_max": max(epoch_seconds),
        "train_images_per_second_median": statistics.median(r["images_per_second"] for r in records),
        "environment": environment,
    }
    (run_dir / "benchmark.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"test accuracy {100 * result['test_accuracy']:.2f}% after {args.epochs} epochs "
          f"({100 * result['test_accuracy_at_best_val']:.2f}% at the best validation epoch {summary['best_epoch']}); "
          f"training time per epoch median {result['epoch_seconds_median']:.0f} s "
          f"(min {result['epoch_seconds_min']:.0f}, max {result['epoch_seconds_max']:.0f}), "
          f"{result['train_images_per_second_median']:.0f} images/s")
    print(f"results: {run_dir / 'benchmark.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
