"""Which image is which: the file (or the index) of every image of a split, in the order its evaluation batches
yield them, so that `resnetlab eval` can name the images a model gets wrong.

The listing repeats the loaders' own rules (classes and files sorted by name, the seeded test split of a folder
without train/ and test/, the seeded validation hold-out) rather than storing paths in the decoded cache.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from resnetlab.config import DataConfig
from resnetlab.data.datasets import uses_streaming
from resnetlab.data.image_folder import _list_images
from resnetlab.data.streaming_batches import list_streaming_splits

FOLDER_TEST_FRACTION = 0.1  # the in-memory loader's split of a folder without train/ and test/


def split_identifiers(config: DataConfig, split: str, skipped: list | tuple = ()) -> list[str]:
    """The file path of each image of ``split`` ("val" or "test") for image folders; ``split[index]`` for data
    without files (CIFAR's pickled batches, the synthetic set). ``skipped``: (path, reason) of the images the
    loader left out (data.skip_bad)."""
    if config.name != "folder":
        return []
    if uses_streaming(config):
        if config.skip_bad:  # a streamed unreadable file is replaced by its neighbour: names would not line up
            return []
        _, val, test, _ = list_streaming_splits(config.root, config.validation_size, config.split_seed)
        return [str(path) for path in (val if split == "val" else test)[0]]
    listing = _list_images(Path(config.root).expanduser().resolve(), config.split_seed, FOLDER_TEST_FRACTION)
    left_out = {path for path, _ in skipped}
    train = [str(p) for p in listing.train_paths if str(p) not in left_out]
    if split == "test":
        return [str(p) for p in listing.test_paths if str(p) not in left_out]
    if not config.validation_size:
        return []
    # hold_out_validation's permutation: the first validation_size of it, in file order
    order = np.random.default_rng(config.split_seed).permutation(len(train))
    return [train[i] for i in np.sort(order[:config.validation_size])]


def name_images(identifiers: list[str], split: str, count: int) -> list[str]:
    """``identifiers`` when they cover the ``count`` images evaluated, else ``split[index]`` for each."""
    return identifiers if len(identifiers) == count else [f"{split}[{index}]" for index in range(count)]
