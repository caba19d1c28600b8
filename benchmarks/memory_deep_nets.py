"""Peak memory of one training step of the papers' deepest CIFAR nets, with and without activation checkpointing.

preact_resnet1001 (Identity Mappings) and resnet1202 (the ResNet paper) at batch 128 and 64, each setup in its own
process: two training steps (the first warms up), SGD with momentum, resnetlab's trainer settings (channels_last,
tuned allocator). Reported: the peak resident memory of the process (what the OS had to give it, torch itself
included), the growth over the resident memory before the first step, and the step time. With checkpointing the
residual units run in k segments: round(sqrt(units)) and twice that by default. sqrt(units) would minimise the
stored activations if a unit kept as much as its input; a bottleneck unit keeps several times more, which moves
the best k up.

A setup whose activations cannot fit in this machine's available memory is not run (it would swap or be killed):
its saved-activation bytes are measured at batch 2 with `torch.autograd.graph.saved_tensors_hooks`, scaled
linearly to the batch, and printed instead.

    .venv/bin/python benchmarks/memory_deep_nets.py             # about 10 min on 2 cores
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GOAL_BYTES = 6 * 2**30  # issue 5: preact_resnet1001 at batch 128 trains within 6 GiB peak on the CPU
PROBE_BATCH = 2


def saved_activation_bytes(model_name: str, batch_size: int, image_size: int = 32) -> int:
    """Bytes autograd keeps for backward in one plain training forward pass, measured at a small batch
    and scaled linearly (every activation is proportional to the batch). Distinct storages counted once."""
    import torch
    import torch.nn.functional as F

    from resnetlab.models import create_model

    model = create_model(model_name).train().to(memory_format=torch.channels_last)
    images = torch.randn(PROBE_BATCH, 3, image_size, image_size).contiguous(memory_format=torch.channels_last)
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}  # data pointer -> bytes of every storage saved for backward

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        F.cross_entropy(model(images), torch.zeros(PROBE_BATCH, dtype=torch.long)).backward()
    return int(sum(storages.values()) * batch_size / PROBE_BATCH)


def available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["preact_resnet1001", "resnet1202"])
    parser.add_argument("--batches", nargs="+", type=int, default=[128, 64])
    parser.add_argument("--segments", type=int, nargs="+", default=None,
                        help="checkpoint segment counts to measure (default: sqrt(units) and 2 sqrt(units))")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "benchmarks" / "memory_deep_nets.json")
    args = parser.parse_args()

    from resnetlab.bench.training import BenchError, resnetlab_setup, run_isolated, write_results
    from resnetlab.models.complexity import build_on_meta
    from resnetlab.training.environment import describe_machine

    print(f"machine: {describe_machine()}", f"available memory {available_bytes() / 2**30:.1f} GiB", flush=True)
    print(f"{'model':<18} {'batch':>5} {'segments':>8} {'peak GiB':>9} {'growth GiB':>10} {'step s':>7} "
          f"{'saved act. GiB':>14}  note")
    rows = []
    for model_name in args.models:
        units = len(list(build_on_meta(model_name).units()))
        segment_counts = args.segments or [round(math.sqrt(units)), round(2 * math.sqrt(units))]
        for batch in args.batches:
            estimate = saved_activation_bytes(model_name, batch)
            for k in (0, *segment_counts):
                row = {"model": model_name, "batch": batch, "segments": k, "units": units,
                       "saved_activation_bytes_plain": estimate}
                # The saved activations are most of a plain step's memory, not all: gradients, the optimizer's
                # momentum and the backward pass's temporaries come on top (a 18.3 GiB estimate was killed here).
                if k == 0 and estimate > 0.75 * available_bytes():
                    row["note"] = (f"not run: {estimate / 2**30:.1f} GiB of saved activations, plus gradients and "
                                   f"temporaries, exceed 75% of the {available_bytes() / 2**30:.1f} GiB available")
                else:
                    setup = resnetlab_setup(checkpoint_segments=k, label=f"segments={k}")
                    try:
                        result = run_isolated("train", model=model_name, setup=setup.__dict__, batch_size=batch,
                                              image_size=32, steps=1, warmup_steps=1)
                    except BenchError as error:
                        row["note"] = str(error)
                    else:
                        row.update(peak_bytes=result["peak_resident_bytes"],
                                   growth_bytes=result["peak_resident_bytes"] - result["resident_before_bytes"],
                                   step_seconds=result["step_seconds"][0],
                                   note="goal <= 6 GiB: " + ("met" if result["peak_resident_bytes"] <= GOAL_BYTES
                                                               else "not met")
                                   if (model_name, batch) == ("preact_resnet1001", 128) else "")
                rows.append(row)
                peak = f"{row['peak_bytes'] / 2**30:>9.2f} {row['growth_bytes'] / 2**30:>10.2f} " \
                       f"{row['step_seconds']:>7.1f}" if "peak_bytes" in row else f"{'-':>9} {'-':>10} {'-':>7}"
                print(f"{model_name:<18} {batch:>5} {k:>8} {peak} {estimate / 2**30:>14.2f}  {row.get('note', '')}",
                      flush=True)
    write_results(args.out, {"machine": f"machine: {describe_machine()}", "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
