"""Mini-batches from in-memory uint8 arrays: the order and the augmentation are pure functions of the seed,
the epoch and the batch index, so a run resumed in the middle of an epoch sees the very same batches.

Under data-parallel training each rank takes its contiguous slice of every global batch (``shard``), with
each image cropped and flipped exactly as one process would, so N ranks see the one process's batches."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from resnetlab.data.augment import Normalizer, crop_flip, draw_crop_flip, nhwc_to_nchw
from resnetlab.data.errors import DataError
from resnetlab.data.seeding import seeded_generator

CROP_PADDING = 4  # px of zero padding before the random crop (He et al. 2015, CIFAR)


class ArrayBatches:
    """Shuffled, augmented, normalized training batches of one split held in memory.

    ``batch_size`` is the global batch; ``shard = (rank, world_size)`` yields this rank's slice of each.
    The last batch of an epoch is kept when it has at least 2 images (BN needs 2 to compute a variance),
    and only in a single process: ranks need equal slices.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, normalizer: Normalizer,
                 augment: bool, seed: int, device: torch.device | str = "cpu",
                 shard: tuple[int, int] = (0, 1)) -> None:
        self.images = nhwc_to_nchw(images).contiguous().to(device)  # uint8 NCHW, ~150 MB for CIFAR's 50k
        self.labels = torch.as_tensor(labels, dtype=torch.int64).to(device)
        self.batch_size, self.normalizer, self.augment, self.seed = batch_size, normalizer, augment, seed
        self.device, self.shard = torch.device(device), shard
        full, rest = divmod(len(self.labels), batch_size)
        self.num_batches = full + (1 if rest >= 2 and shard[1] == 1 else 0)
        if self.num_batches == 0:
            raise DataError(f"{len(self.labels)} training images cannot make a batch of at least 2; add images or "
                            "lower data.validation_size")

    @property
    def num_images(self) -> int:
        return len(self.labels)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        return torch.randperm(self.num_images, generator=seeded_generator(self.seed, epoch))

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``start, start+1, ...`` of ``epoch``: (normalized float NCHW images, labels)."""
        order = self.epoch_order(epoch).to(self.device)
        rank, world_size = self.shard
        for index in range(start, self.num_batches):
            chosen = order[index * self.batch_size:(index + 1) * self.batch_size]
            mine = slice(rank * len(chosen) // world_size, (rank + 1) * len(chosen) // world_size)
            images = self.normalizer(self.images[chosen[mine]])
            if self.augment:
                # Drawn for the whole global batch, so an image's crop does not depend on the number of ranks.
                offset_y, offset_x, flip = draw_crop_flip(len(chosen), CROP_PADDING,
                                                          seeded_generator(self.seed, epoch, index, 1), self.device)
                # Normalized first, so the 4-px zero padding is the mean colour (as fb.resnet.torch pads).
                images = crop_flip(images, offset_y[mine], offset_x[mine], flip[mine], CROP_PADDING)
            yield images, self.labels[chosen[mine]]


def eval_batches(images: np.ndarray, labels: np.ndarray, normalizer: Normalizer, batch_size: int = 500,
                 device: torch.device | str = "cpu") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The original images in order, normalized, no augmentation (the papers test on the 32x32 image)."""
    for start in range(0, len(labels), batch_size):
        chunk = nhwc_to_nchw(images[start:start + batch_size]).to(device)
        yield normalizer(chunk), torch.as_tensor(labels[start:start + batch_size], dtype=torch.int64).to(device)
