"""Mini-batches from in-memory uint8 arrays: the order and the augmentation are pure functions of the seed,
the epoch and the batch index, so a run resumed in the middle of an epoch sees the very same batches."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from resnetlab.data.augment import Normalizer, nhwc_to_nchw, random_crop_flip
from resnetlab.data.seeding import seeded_generator

class ArrayBatches:
    """Shuffled, augmented, normalized training batches of one split held in memory.

    The last batch of an epoch is kept when it has at least 2 images (BN needs 2 to compute a variance).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, normalizer: Normalizer,
                 augment: bool, seed: int, device: torch.device | str = "cpu") -> None:
        self.images = nhwc_to_nchw(images).contiguous().to(device)  # uint8 NCHW, ~150 MB for CIFAR's 50k
        self.labels = torch.as_tensor(labels, dtype=torch.int64).to(device)
        self.batch_size, self.normalizer, self.augment, self.seed = batch_size, normalizer, augment, seed
        self.device = torch.device(device)
        full, rest = divmod(len(self.labels), batch_size)
        self.num_batches = full + (1 if rest >= 2 else 0)
        if self.num_batches == 0:
            raise ValueError(f"{len(self.labels)} training images cannot make a batch of at least 2")

    @property
    def num_images(self) -> int:
        return len(self.labels)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        return torch.randperm(self.num_images, generator=seeded_generator(self.seed, epoch))

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``start, start+1, ...`` of ``epoch``: (normalized float NCHW images, labels)."""
        order = self.epoch_order(epoch).to(self.device)
        for index in range(start, self.num_batches):
            chosen = order[index * self.batch_size:(index + 1) * self.batch_size]
            images = self.normalizer(self.images[chosen])
            if self.augment:
                # Normalized first, so the 4-px zero padding is the mean colour (as fb.resnet.torch pads).
                images = random_crop_flip(images, generator=seeded_generator(self.seed, epoch, index, 1))
            yield images, self.labels[chosen]


def eval_batches(images: np.ndarray, labels: np.ndarray, normalizer: Normalizer, batch_size: int = 500,
                 device: torch.device | str = "cpu") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The original images in order, normalized, no augmentation (the papers test on the 32x32 image)."""
    for start in range(0, len(labels), batch_size):
        chunk = nhwc_to_nchw(images[start:start + batch_size]).to(device)
        yield normalizer(chunk), torch.as_tensor(labels[start:start + batch_size], dtype=torch.int64).to(device)
