"""The GPU check (issue 14): training speed of ResNet-20 and ResNet-56 on one CUDA GPU, fp32 and bf16, and one
NCCL step under torchrun. Written to run in at most about 8 minutes on one GPU; the project never needs a GPU.

For each model and precision: the trainer's own `TrainStep` (channels_last, torch.compile, autocast for bf16) on
a batch of 128 random 32x32 images resident on the GPU, no host synchronisation per step (the loss is checked for
finiteness once, at the end; the trainer itself reads it every `DEFERRED_SYNC_STEPS` steps on a GPU), `--steps` timed
steps after `--warmup` (compilation). Prints images/s and the projected time of the ResNet paper's CIFAR schedule
(64,000 iterations of batch 128). Then one step of `resnetlab train` under `torchrun --nproc-per-node 1` with NCCL.

    python benchmarks/gpu_check.py                     # on a machine with a CUDA GPU
    python benchmarks/gpu_check.py --json gpu.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PAPER_ITERATIONS = 64_000  # He et al. 2015, CIFAR-10: 64k iterations of batch 128


def measure(model_name: str, precision: str, steps: int, warmup: int, batch: int) -> dict:
    import torch

    from resnetlab.config import ModelConfig, TrainConfig
    from resnetlab.layers.stochastic_depth import set_gate_generator
    from resnetlab.training.performance import prepare_forward
    from resnetlab.training.step import TrainStep, make_optimizer

    device = torch.device("cuda")
    torch.manual_seed(0)
    model = ModelConfig(model_name).build(10).to(device).train()
    gates = torch.Generator()
    set_gate_generator(model, gates)
    forward = prepare_forward(model, channels_last=True, compile=True, log=print)
    step = TrainStep(forward, make_optimizer(model, TrainConfig()), torch.channels_last, "cuda", precision, gates)
    images = torch.randn(batch, 3, 32, 32, device=device)
    labels = torch.randint(0, 10, (batch,), device=device)
    started = time.perf_counter()
    for index in range(warmup):
        step(index, images, labels)
    torch.cuda.synchronize()
    warmup_seconds = time.perf_counter() - started
    losses = []
    started = time.perf_counter()
    for index in range(warmup, warmup + steps):
        loss, _ = step(index, images, labels)
        losses.append(loss.detach())  # kept on the device: no synchronisation per step
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    finite = bool(torch.isfinite(torch.stack(losses)).all())
    images_per_second = steps * batch / seconds
    return {"model": model_name, "precision": precision, "images_per_second": images_per_second,
            "step_ms": 1e3 * seconds / steps, "warmup_seconds": warmup_seconds, "losses_finite": finite,
            "paper_schedule_hours": PAPER_ITERATIONS * batch / images_per_second / 3600}


def nccl_step() -> dict:
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1", "-m",
                   "resnetlab", "train", "table6_cifar10_resnet20", "data.name=synthetic", "train.iterations=1",
                   "data.synthetic_train_size=512", "data.validation_size=128", "data.synthetic_test_size=128",
                   f"run.out_dir={folder}", "run.name=nccl", "--device", "cuda"]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        return {"returncode": done.returncode, "seconds": time.perf_counter() - started,
                "last_lines": (done.stdout + done.stderr).strip().splitlines()[-3:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU here: this check runs on a machine with one", file=sys.stderr)
        return 2
    from resnetlab.training.environment import describe_machine

    print(f"machine: {describe_machine()}", flush=True)
    rows = []
    for model_name in ("resnet20", "resnet56"):
        for precision in ("fp32", "bf16"):
            row = measure(model_name, precision, args.steps, args.warmup, args.batch)
            rows.append(row)
            print(f"{model_name} {precision}: {row['images_per_second']:.0f} images/s ({row['step_ms']:.1f} ms per "
                  f"step, compile {row['warmup_seconds']:.0f} s), losses finite: {row['losses_finite']}; the paper's "
                  f"64k-iteration schedule would take {row['paper_schedule_hours']:.2f} h", flush=True)
    nccl = nccl_step()
    print(f"torchrun --nproc-per-node 1 (NCCL): exit {nccl['returncode']} in {nccl['seconds']:.0f} s: "
          + " | ".join(nccl["last_lines"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": describe_machine(), "rows": rows, "nccl": nccl}, indent=1) + "\n")
    return 0 if nccl["returncode"] == 0 and all(row["losses_finite"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
