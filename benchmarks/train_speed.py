"""Training-step speed of the CIFAR ResNets: the plain eager reference against resnetlab's levers, side by side.

For each model, every setup runs in its own process in interleaved rounds (reference, lever 1, lever 2, ...,
reference, ...), with the 2048x2048 float32 matmul peak measured in every round. Prints images/s (median and
min-max over all timed steps), GFLOP/s (6 x multiply-adds per image), the fraction of the matmul peak, the
speed-up over the reference, the warm-up (compile) time, the peak resident memory, and the cost of the data
pipeline (index, normalize, pad-crop-flip one batch) against the step. Writes the figures as JSON.

    .venv/bin/python benchmarks/train_speed.py                          # ResNet-20/56/110, about 25 min here
    .venv/bin/python benchmarks/train_speed.py --models resnet20 --rounds 2 --steps 4   # a quick look
"""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def setups_for(model: str, ablation: bool):
    from resnetlab.bench.training import REFERENCE, TrainSetup, resnetlab_setup

    setups = [REFERENCE]
    if ablation:  # each lever alone, on top of the reference
        setups += [TrainSetup("channels_last only", channels_last=True),
                   TrainSetup("tuned malloc only", tune_allocator=True),
                   TrainSetup("foreach SGD only", foreach=True)]
    ours = [resnetlab_setup(precision="fp32"), resnetlab_setup(compile=True, precision="fp32"),
            resnetlab_setup(precision="auto"), resnetlab_setup(compile=True, precision="auto")]
    unique = {setup.label.replace(" (auto)", ""): setup for setup in ours}  # auto is fp32 without bf16 units
    return setups + list(unique.values())


def default_out() -> Path:
    """runs/benchmarks/train_speed*.json, one file per kind of CPU (the goals differ with its bf16 units), so that a
    run on one machine never overwrites another's figures; benchmarks/report.py renders each one it finds."""
    from resnetlab.training.environment import describe_environment

    environment = describe_environment()
    kind = ("" if environment["cpu_amx_bf16"] else "_avx512_bf16" if environment["cpu_avx512_bf16"] else "_no_bf16")
    return REPO / "runs" / "benchmarks" / f"train_speed{kind}.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet20", "resnet56", "resnet110"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per setup and round")
    parser.add_argument("--ablation-model", default="resnet20", help="the model whose levers are also run one by one")
    parser.add_argument("--out", type=Path, help="default: runs/benchmarks/train_speed.json on a CPU with AMX-BF16, "
                        "train_speed_avx512_bf16.json or train_speed_no_bf16.json on the others")
    args = parser.parse_args()

    from resnetlab.bench.training import compare_training, format_comparison, write_results
    from resnetlab.training.environment import describe_machine

    print(f"machine: {describe_machine()}", flush=True)
    results = []
    for model in args.models:
        comparison = compare_training(model, setups_for(model, model == args.ablation_model), args.batch,
                                      rounds=args.rounds, steps=args.steps, augmentation=True)
        print(format_comparison(comparison), "\n", flush=True)
        results.append(comparison.to_dict())
    write_results(args.out or default_out(), {"machine": f"machine: {describe_machine()}", "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
