"""How many 224-px training and test images per second the streaming loader delivers on this machine.

The ImageNet recipes stream JPEGs from disk: decode, shorter side random in [256, 480], random 224 crop, flip,
PCA lighting, then normalization (training); shorter side 256, centre 224 crop, or 10 crops (test). On a GPU
machine the loader must keep up with the GPU's step, so this prints images/s per configuration next to what a
GPU would need. The images are generated JPEGs at ImageNet's typical size (500x375, quality 90) unless --folder
names a folder with train/<class>/ images. Each configuration runs `--rounds` times over `--batches` batches;
the median rate is reported, with the machine.

    .venv/bin/python benchmarks/loader_throughput.py                       # about 2 minutes on 2 cores
    .venv/bin/python benchmarks/loader_throughput.py --workers 0 2 --batches 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMAGENET_SIZE = (500, 375)  # width, height: the most common ImageNet image size
GENERATED_IMAGES = 512


def generate(root: Path, count: int) -> Path:
    """``count`` JPEGs in 4 class folders of root/train, with some texture so the encoder does real work."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    width, height = IMAGENET_SIZE
    base = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8)
    for index in range(count):
        folder = root / "train" / f"class{index % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        tile = Image.fromarray(np.roll(base, index, axis=1)).resize((width, height), Image.BILINEAR)
        noisy = np.asarray(tile, dtype=np.int16) + rng.integers(-20, 20, (height, width, 3))
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(folder / f"{index}.jpg", quality=90)
    return root


def measure(paths, labels, mode: str, workers: int, batch: int, batches: int, rounds: int) -> dict:
    """Images per second of one configuration (``mode``: train, test or test10), median over rounds."""
    import torch

    from resnetlab.data.augment import Normalizer
    from resnetlab.data.streaming_batches import StreamingBatches, streaming_eval_batches

    normalizer = Normalizer("per_channel", torch.full((3, 1, 1), 0.45), torch.full((3, 1, 1), 0.25))
    count = batch * batches
    rates = []
    for round_index in range(rounds):
        start = time.perf_counter()
        if mode == "train":
            loader = StreamingBatches(paths[:count], labels[:count], batch, normalizer, True, round_index,
                                      num_workers=workers, lighting=0.1)
            seen = sum(len(images) for images, _ in loader.batches(0))
        else:
            seen = sum(len(images) for images, _ in streaming_eval_batches(
                paths[:count], labels[:count], normalizer, ten_crop=mode == "test10", batch_size=batch,
                num_workers=workers))
        rates.append(seen / (time.perf_counter() - start))
    return {"mode": mode, "workers": workers, "batch": batch, "images": count, "rounds": rounds,
            "images_per_second": statistics.median(rates), "all": rates}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=None, help="an image folder with train/<class>/ (default: "
                        f"{GENERATED_IMAGES} generated JPEGs)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "benchmarks" / "loader_throughput.json")
    args = parser.parse_args()

    from resnetlab.data.streaming import list_image_files
    from resnetlab.training.environment import describe_machine

    print(f"machine: {describe_machine()}")
    with tempfile.TemporaryDirectory(prefix="resnetlab-loader-") as scratch:
        root = args.folder or generate(Path(scratch), max(GENERATED_IMAGES, args.batch * args.batches))
        paths, labels, _ = list_image_files(root / "train")
        results = [measure(paths, labels, mode, workers, args.batch, args.batches, args.rounds)
                   for mode in ("train", "test", "test10") for workers in args.workers]
    print(f"{'pipeline':<52} {'workers':>7} {'images/s':>9}")
    names = {"train": "train: decode, scale 256-480, crop 224, flip, lighting", "test": "test: decode, resize 256, "
             "centre crop 224", "test10": "test: decode, resize 256, 10 crops of 224"}
    for result in results:
        print(f"{names[result['mode']]:<52} {result['workers']:>7} {result['images_per_second']:>9.1f}")
    print("A GPU training ResNet-50 at 1,000 images/s needs that many decoded training images per second: compare "
          "with the train rows (per 2 cores here; loaders scale with cores).")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": describe_machine(), "source": str(args.folder or "generated"),
                                    "results": results}, indent=2) + "\n")
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
