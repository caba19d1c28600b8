"""ResNet-50 inference on the CPU: our model (eager, BN folded, channels-last, compiled; float32 and bfloat16) vs
onnxruntime float32 on the same exported model.

Measures batch-1 latency (ms per call) and batch-32 throughput (images/s) of every variant of
`resnetlab.bench.inference`, the variants interleaved in rounds; checks each variant's logits against eager's.
Then the bf16 variants' agreement with float32 eager on 1,000 random images: the fraction with the same top-1
class and the relative logit difference. The weights are random (no trained ImageNet ResNet-50 is available
offline) with randomized BN statistics. Prints the machine, one table per batch size with each variant's speed
relative to eager and to onnxruntime (> 1: faster), the agreement, and writes everything as JSON.

    make install                           # or: pip install -e '.[onnx]' (onnx, onnxruntime, onnxscript)
    .venv/bin/python benchmarks/inference_resnet50.py                 # the full measurement (minutes)
    .venv/bin/python benchmarks/inference_resnet50.py --rounds 2 --calls 2   # a quick look
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LATENCY_BATCH = 1
THROUGHPUT_BATCH = 32


def main() -> int:
    from resnetlab.bench.inference import BF16_SUFFIX, VARIANTS, format_table, measure_agreement, measure_inference
    from resnetlab.training.environment import describe_environment

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of interleaved variants")
    parser.add_argument("--calls", type=int, default=5, help="timed calls per variant per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per variant before the rounds")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--agreement-images", type=int, default=1000, help="images of the bf16 agreement check "
                        "(0: skip it)")
    parser.add_argument("--out", type=Path, default=None, help="default: runs/benchmarks/inference_<model>.json")
    parser.add_argument("--tune-allocator", action=argparse.BooleanOptionalAction, default=True,
                        help="glibc malloc keeps freed buffers, as `resnetlab train` does (default: on)")
    args = parser.parse_args()
    out = args.out or REPO / "runs" / "benchmarks" / f"inference_{args.model}.json"

    from resnetlab.training.performance import tune_allocator

    tuned = args.tune_allocator and tune_allocator()
    machine = describe_environment()
    machine["tuned_allocator"] = tuned
    print(f"machine: {machine['cpu']}, {machine['cpu_count']} cores, torch {machine['torch']} "
          f"({machine['torch_threads']} threads), onnxruntime {machine['onnxruntime']}, {machine['date']}, "
          f"glibc malloc {'tuned' if tuned else 'as it comes'}")
    result = {"model": args.model, "image_size": args.image_size, "environment": machine}
    for key, batch in (("latency", LATENCY_BATCH), ("throughput", THROUGHPUT_BATCH)):
        bench = measure_inference(args.model, args.image_size, batch, args.rounds, args.calls, args.variants,
                                  warmup_calls=args.warmup)
        print(f"\n{key} (batch {batch}):\n{format_table(bench)}")
        result[key] = bench.to_dict()
    bf16_variants = [v for v in args.variants if v.endswith(BF16_SUFFIX)]
    if args.agreement_images and bf16_variants:
        agreements = measure_agreement(args.model, args.image_size, bf16_variants, images=args.agreement_images)
        print(f"\nagreement with float32 eager on {args.agreement_images} random images:")
        for a in agreements:
            print(f"{a.variant:<36} top-1 equal {100 * a.top1_equal:.1f}%, relative logit difference median "
                  f"{100 * a.median_rel_diff:.2f}%, max {100 * a.max_rel_diff:.2f}%")
        result["agreement"] = [vars(a) for a in agreements]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
