"""From a `DataConfig` to the papers' splits: train / validation (held out, seeded) / test, as uint8 arrays.

Array data sets (synthetic, CIFAR-10/100, small image folders) live in memory as uint8 NHWC; the input
statistics are computed on the training split that remains after the validation images are held out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from resnetlab.config import DataConfig
from resnetlab.data.augment import Normalizer
from resnetlab.data.batches import ArrayBatches, eval_batches
from resnetlab.data.cifar import CifarArrays, load_cifar
from resnetlab.data.errors import DataError
from resnetlab.data.image_folder import IMAGE_EXTENSIONS, ImageFolderArrays, load_small_image_folder
from resnetlab.data.streaming_batches import (
    StreamingBatches,
    channel_normalizer,
    list_streaming_splits,
    streaming_eval_batches,
)
from resnetlab.data.synthetic import make_synthetic


@dataclass(frozen=True, eq=False)
class ArraySplits:
    """uint8 NHWC images and int64 labels of each split, and the class names in label order."""

    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...]
    skipped: list = field(default_factory=list)  # (path, reason) of unreadable images skipped with data.skip_bad

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[1])


def hold_out_validation(images: np.ndarray, labels: np.ndarray, validation_size: int, seed: int):
    """Split a training set into (train, validation) by a seeded permutation; validation_size images held out."""
    if validation_size >= len(images):
        raise DataError(f"data.validation_size={validation_size} leaves no training images out of {len(images)}; "
                        "lower it (0 disables the validation split)")
    order = np.random.default_rng(seed).permutation(len(images))
    val_index, train_index = np.sort(order[:validation_size]), np.sort(order[validation_size:])
    return images[train_index], labels[train_index], images[val_index], labels[val_index]


def _train_and_test(data: CifarArrays | ImageFolderArrays) -> tuple:
    """(train images, train labels, test images, test labels, classes) of a loaded CIFAR or image-folder set."""
    return data.train_images, data.train_labels, data.test_images, data.test_labels, data.classes


def load_arrays(config: DataConfig) -> ArraySplits:
    """Load (and, for CIFAR with data.download=true, fetch) the data set a config names."""
    skipped: list = []
    if config.name == "synthetic":
        data = make_synthetic(config.synthetic_train_size, config.synthetic_test_size, seed=config.split_seed)
        train, train_labels, test, test_labels, classes = data
    elif config.name in ("cifar10", "cifar100"):
        data = load_cifar(config.root, config.name, download=config.download)
        train, train_labels, test, test_labels, classes = _train_and_test(data)
    elif config.name == "folder":
        data = load_small_image_folder(config.root, image_size=config.image_size, skip_bad=config.skip_bad,
                                       split_seed=config.split_seed)
        train, train_labels, test, test_labels, classes = _train_and_test(data)
        skipped = list(data.skipped)
    else:
        raise DataError(f"unknown data set {config.name!r}; data.name must be synthetic, cifar10, cifar100 or folder")
    train_labels, test_labels = np.asarray(train_labels, np.int64), np.asarray(test_labels, np.int64)
    if config.validation_size:
        train, train_labels, val, val_labels = hold_out_validation(train, train_labels, config.validation_size,
                                                                   config.split_seed)
    else:
        val, val_labels = train[:0], train_labels[:0]
    return ArraySplits(train, train_labels, val, val_labels, test, test_labels, tuple(classes), skipped)


SMALL_IMAGE_SIDE = 64  # px: folders of images up to this size are decoded once into memory; larger ones stream


def _first_image_side(root: Path) -> int | None:
    """The larger side of the first image found under root (header only), or None when there is none."""
    base = root / "train" if (root / "train").is_dir() else root
    for class_dir in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(class_dir.iterdir()):
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                try:
                    with Image.open(path) as image:
                        return max(image.size)
                except OSError:
                    continue
    return None


def uses_streaming(config: DataConfig) -> bool:
    if config.name != "folder" or config.loader == "memory":
        return False
    if config.loader == "stream":
        return True
    root = Path(config.root).expanduser()
    if not root.is_dir():
        return False  # the in-memory loader names the missing folder
    side = _first_image_side(root)
    return side is not None and side > SMALL_IMAGE_SIDE


@dataclass(eq=False)
class DataBundle:
    """What the trainer needs of a data set: training batches, evaluation batches per split, and the facts a
    checkpoint keeps for prediction (classes, normalizer, input size, the evaluation resize)."""

    train: object  # ArrayBatches or StreamingBatches: num_batches, num_images, batches(epoch, start)
    classes: tuple[str, ...]
    normalizer: Normalizer
    image_size: int  # side of the model's input (px)
    eval_resize: int  # shorter side before the centre crop when predicting on a file (px)
    split_sizes: dict  # images per split
    skipped: list
    _eval: dict  # split -> callable giving an iterator of (images, labels)

    def eval_batches(self, split: str):
        return self._eval[split]()


def build_data(config: DataConfig, seed: int, batch_size: int, device: torch.device | str = "cpu",
               normalizer: Normalizer | None = None, shard: tuple[int, int] = (0, 1)) -> DataBundle:
    """Training and evaluation batches for a data config: in memory for small images, streamed for large.

    ``normalizer``: statistics already known (a checkpoint's), so they are not computed again. ``shard``:
    (rank, world size) of data-parallel training: this rank's slice of every global training batch of
    ``batch_size``, and every world-size-th image of the evaluation splits (`split_sizes` stay the full ones)."""
    if uses_streaming(config):
        return _build_streaming(config, seed, batch_size, device, normalizer, shard)
    arrays = load_arrays(config)
    # auto without known statistics (no model.weights): the ResNet paper's per-pixel mean
    mode = "per_pixel_mean" if config.normalization == "auto" else config.normalization
    normalizer = normalizer or Normalizer.from_training_images(arrays.train_images, mode)
    train = ArrayBatches(arrays.train_images, arrays.train_labels, batch_size, normalizer, config.augment, seed, device,
                         shard)
    rank, world_size = shard
    splits = {"val": (arrays.val_images[rank::world_size], arrays.val_labels[rank::world_size]),
              "test": (arrays.test_images[rank::world_size], arrays.test_labels[rank::world_size])}
    evaluators = {name: (lambda images=images, labels=labels: eval_batches(images, labels, normalizer, device=device))
                  for name, (images, labels) in splits.items()}
    sizes = {"train": len(arrays.train_labels), "val": len(arrays.val_labels), "test": len(arrays.test_labels)}
    return DataBundle(train, arrays.classes, normalizer, arrays.image_size, arrays.image_size, sizes,
                      arrays.skipped, evaluators)


def _build_streaming(config: DataConfig, seed: int, batch_size: int, device,
                     normalizer: Normalizer | None, shard: tuple[int, int]) -> DataBundle:
    train, val, test, classes = list_streaming_splits(config.root, config.validation_size, config.split_seed)
    normalizer = normalizer or channel_normalizer(train[0], config.crop, config.eval_resize, config.skip_bad)
    batches = StreamingBatches(*train, batch_size, normalizer, config.augment, seed, config.crop,
                               tuple(config.scale), config.eval_resize, config.num_workers, config.skip_bad, device,
                               shard, config.lighting)
    rank, world_size = shard
    evaluators = {name: (lambda split=split: streaming_eval_batches(
        split[0][rank::world_size], split[1][rank::world_size], normalizer, config.eval_crop or config.crop,
        config.eval_resize,
        config.ten_crop, num_workers=config.num_workers, skip_bad=config.skip_bad, device=device))
        for name, split in (("val", val), ("test", test))}
    sizes = {"train": len(train[0]), "val": len(val[0]), "test": len(test[0])}
    return DataBundle(batches, tuple(classes), normalizer, config.eval_crop or config.crop, config.eval_resize, sizes,
                      [], evaluators)
