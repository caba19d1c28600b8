"""Training and evaluation batches of a large-image folder, streamed by worker processes (ImageNet recipe).

The same interface as `resnetlab.data.batches`: `StreamingBatches.batches(epoch, start)` yields normalized
(images, labels) from batch ``start`` of ``epoch``, so the trainer resumes mid-epoch without re-reading the
batches before it. The order is `SeededShuffleSampler`'s, the augmentation is per (seed, epoch, index).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from resnetlab.data.augment import Normalizer
from resnetlab.data.errors import DataError
from resnetlab.data.seeding import torch_seed
from resnetlab.data.streaming import (
    _WORKER_STREAM,
    SeededShuffleSampler,
    StreamingImageDataset,
    estimate_channel_stats,
    list_image_files,
)
from resnetlab.data.transforms import eval_transform, train_transform


def channel_normalizer(paths: Sequence[Path], crop: int, resize: int, skip_bad: bool) -> Normalizer:
    """Per-channel statistics of a seeded sample of the training images (the data set's own)."""
    mean, std = estimate_channel_stats(paths, resize=resize, crop=crop, skip_bad=skip_bad)
    return Normalizer("per_channel", torch.tensor(mean).view(3, 1, 1).float(), torch.tensor(std).view(3, 1, 1).float())


def _loader(dataset, indices: list[int], batch_size: int, num_workers: int, drop_last: bool, seed: int, epoch: int):
    generator = torch.Generator().manual_seed(torch_seed(seed, epoch, _WORKER_STREAM))
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=indices, num_workers=num_workers,
                                       drop_last=drop_last, generator=generator, persistent_workers=False)


class StreamingBatches:
    """Shuffled, augmented (random shorter side in `scale`, random crop, flip) training batches from files."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], batch_size: int, normalizer: Normalizer,
                 augment: bool, seed: int, crop: int = 224, scale: tuple[int, int] = (256, 480), resize: int = 256,
                 num_workers: int = 2, skip_bad: bool = False, device: torch.device | str = "cpu",
                 shard: tuple[int, int] = (0, 1), lighting: float = 0.0) -> None:
        self.paths, self.labels, self.shard = list(paths), list(labels), shard
        self.batch_size, self.normalizer, self.seed, self.num_workers = batch_size, normalizer, seed, num_workers
        self.transform = train_transform(crop, tuple(scale), lighting=lighting) if augment \
            else eval_transform(crop, resize)
        self.skip_bad, self.device = skip_bad, torch.device(device)
        self.num_batches = len(self.paths) // batch_size  # incomplete last batch dropped (BN needs full batches)
        if self.num_batches == 0:
            raise DataError(f"{len(self.paths)} training images are fewer than train.batch_size={batch_size}")

    @property
    def num_images(self) -> int:
        return len(self.paths)

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        dataset = StreamingImageDataset(self.paths, self.labels, self.transform, self.seed, epoch, self.skip_bad)
        order = list(SeededShuffleSampler(len(dataset), self.seed, epoch))
        rank, world_size = self.shard
        per_rank = self.batch_size // world_size  # this rank's contiguous slice of each global batch
        firsts = [batch * self.batch_size + rank * per_rank for batch in range(start, self.num_batches)]
        mine = [i for first in firsts for i in order[first:first + per_rank]]
        # Workers are seeded by rank too, though the transforms draw from (seed, epoch, image) generators.
        for images, labels in _loader(dataset, mine, per_rank, self.num_workers, True, self.seed + rank, epoch):
            yield self.normalizer(images.to(self.device)), labels.to(self.device)


def streaming_eval_batches(paths: Sequence[Path], labels: Sequence[int], normalizer: Normalizer, crop: int = 224,
                           resize: int = 256, ten_crop: bool = False, batch_size: int = 64, num_workers: int = 2,
                           skip_bad: bool = False, device: torch.device | str = "cpu"):
    """Centre-crop (or 10-crop: batches of shape N x 10 x 3 x crop x crop) test batches, files in order."""
    dataset = StreamingImageDataset(paths, labels, eval_transform(crop, resize, ten_crop), 0, 0, skip_bad)
    for images, batch_labels in _loader(dataset, list(range(len(dataset))), batch_size, num_workers, False, 0, 0):
        shape = images.shape
        images = normalizer(images.flatten(0, 1) if images.ndim == 5 else images).view(shape)
        yield images.to(device), batch_labels.to(device)


def list_streaming_splits(root: str | Path, validation_size: int, split_seed: int, test_fraction: float = 0.1):
    """(train, val, test) as (paths, labels) pairs, and the classes: ``root/train`` + ``root/test`` (or
    ``root/val``, ImageNet's layout, when there is no test/), or one folder of class folders split by a seeded
    shuffle; validation images are held out of train by the same seed."""
    root = Path(root).expanduser()
    if (root / "train").is_dir():
        train_paths, train_labels, classes = list_image_files(root / "train")
        test_dir = root / "test" if (root / "test").is_dir() or not (root / "val").is_dir() else root / "val"
        test_paths, test_labels, test_classes = list_image_files(test_dir)
        if test_classes != classes:
            raise DataError(f"{test_dir} has classes {test_classes[:5]}... but {root / 'train'} has "
                            f"{classes[:5]}...: both splits need the same class folders")
    else:
        paths, labels, classes = list_image_files(root)
        order = np.random.default_rng(split_seed).permutation(len(paths))
        cut = max(1, round(len(paths) * test_fraction))
        test_paths, test_labels = [paths[i] for i in order[:cut]], [labels[i] for i in order[:cut]]
        train_paths, train_labels = [paths[i] for i in order[cut:]], [labels[i] for i in order[cut:]]
    if validation_size >= len(train_paths):
        raise DataError(f"data.validation_size={validation_size} leaves no training images out of "
                        f"{len(train_paths)}; lower it")
    order = np.random.default_rng(split_seed).permutation(len(train_paths))
    held = set(order[:validation_size].tolist())
    val = ([p for i, p in enumerate(train_paths) if i in held], [y for i, y in enumerate(train_labels) if i in held])
    train = ([p for i, p in enumerate(train_paths) if i not in held],
             [y for i, y in enumerate(train_labels) if i not in held])
    return train, val, (test_paths, test_labels), classes
