"""From a `DataConfig` to the papers' splits: train / validation (held out, seeded) / test, as uint8 arrays.

Array data sets (synthetic, CIFAR-10/100, small image folders) live in memory as uint8 NHWC; the input
statistics are computed on the training split that remains after the validation images are held out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from resnetlab.config import DataConfig
from resnetlab.data.errors import DataError


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


def load_arrays(config: DataConfig) -> ArraySplits:
    """Load (and, for CIFAR with data.download=true, fetch) the data set a config names."""
    skipped: list = []
    if config.name == "synthetic":
        from resnetlab.data.synthetic import make_synthetic

        data = make_synthetic(config.synthetic_train_size, config.synthetic_test_size, seed=config.split_seed)
        train, train_labels, test, test_labels, classes = data
    elif config.name in ("cifar10", "cifar100"):
        from resnetlab.data.cifar import load_cifar

        data = load_cifar(config.root, config.name, download=config.download)
        train, train_labels, test, test_labels = data.train_images, data.train_labels, data.test_images, data.test_labels
        classes = data.classes
    elif config.name == "folder":
        from resnetlab.data.image_folder import load_small_image_folder

        data = load_small_image_folder(config.root, image_size=config.image_size, skip_bad=config.skip_bad,
                                       split_seed=config.split_seed)
        train, train_labels, test, test_labels = data.train_images, data.train_labels, data.test_images, data.test_labels
        classes, skipped = data.classes, list(data.skipped)
    else:
        raise DataError(f"unknown data set {config.name!r}; data.name must be synthetic, cifar10, cifar100 or folder")
    train_labels, test_labels = np.asarray(train_labels, np.int64), np.asarray(test_labels, np.int64)
    if config.validation_size:
        train, train_labels, val, val_labels = hold_out_validation(train, train_labels, config.validation_size,
                                                                   config.split_seed)
    else:
        val, val_labels = train[:0], train_labels[:0]
    return ArraySplits(train, train_labels, val, val_labels, test, test_labels, tuple(classes), skipped)
