"""Large-image folders (ImageNet-style) streamed from disk by DataLoader worker processes.

Layout: ``root/<split>/<class>/*.{jpg,jpeg,png,bmp,webp}``; class names sorted give labels 0..K-1.

Reproducibility: every random draw of sample `index` in `epoch` comes from its own ``random.Random`` seeded by
(seed, epoch, index), and the training order from a ``torch.Generator`` seeded by (seed, epoch). A batch is
therefore the same whichever worker process decodes it, with any number of workers (0 included), and the
global RNGs of the main process are never touched. Call `set_loader_epoch(loader, epoch)` before each epoch.

Unreadable files: a DataError naming the file, or with ``skip_bad=True`` the next readable index takes the
sample's place. Skips are not counted across workers (each worker holds its own copy of the data set); each
process writes every skipped file's name to stderr once instead, and `StreamingImageDataset.skipped` lists the
files that this process skipped (all of them only with num_workers=0).
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from resnetlab.data.errors import DataError
from resnetlab.data.image_folder import IMAGE_EXTENSIONS
from resnetlab.data.seeding import derive_seed, torch_seed
from resnetlab.data.transforms import CenterCrop, ResizeShorterSide, eval_transform, train_transform

__all__ = ["SeededShuffleSampler", "StreamingImageDataset", "derive_seed", "estimate_channel_stats", "list_image_files",
           "make_streaming_loader", "set_loader_epoch"]

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
# Separate seed streams, so the shuffle, the workers' base seed and the per-sample draws never share a seed.
_SHUFFLE_STREAM, _WORKER_STREAM, _SAMPLE_STREAM = 0, 1, 2
_STATS_SAMPLE = 500  # training images drawn to estimate the channel statistics (~2-3 s of ImageNet JPEGs a core)
_STATS_SEED = 0  # fixed: the statistics are the data set's, the same for every run seed and every loader


def list_image_files(root_split_dir: str | os.PathLike) -> tuple[list[Path], list[int], list[str]]:
    """The images of ``root_split_dir/<class>/*``: paths (class by class, each sorted by name), labels, classes.

    Labels index the sorted class-folder names; hidden files and folders are ignored. Raises DataError for a
    missing folder, a folder without images, or a class folder without images.
    """
    folder = Path(root_split_dir).expanduser()
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist: expected <root>/<split>/<class>/*.jpg")
    with os.scandir(folder) as entries:
        entries = [e for e in entries if not e.name.startswith(".")]
    classes = sorted(e.name for e in entries if e.is_dir())
    by_class = {name: _image_files(folder / name) for name in classes}
    if not any(by_class.values()):
        loose = sum(1 for e in entries if e.is_file() and _is_image(e.name))
        hint = f" ({loose} images lie directly in it)" if loose else ""
        raise DataError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in class folders of {folder}{hint}: put "
                        f"each class's images in {folder}/<class>/")
    empty = [name for name, files in by_class.items() if not files]
    if empty:
        raise DataError(f"class folder {folder / empty[0]} holds no images"
                        f"{f' (nor do {len(empty) - 1} more)' if len(empty) > 1 else ''}: add some or remove it")
    paths = [path for files in by_class.values() for path in files]
    labels = [label for label, files in enumerate(by_class.values()) for _ in files]
    return paths, labels, classes


def _is_image(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _image_files(class_dir: Path) -> list[Path]:
    with os.scandir(class_dir) as entries:
        return sorted(class_dir / e.name for e in entries if e.is_file() and _is_image(e.name))


def _open_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode the whole file as RGB: grayscale and palette become 3 channels, RGBA drops alpha (no compositing).

    A truncated file raises OSError as long as PIL.ImageFile.LOAD_TRUNCATED_IMAGES is False (Pillow's default).
    """
    with Image.open(path) as image:
        image.load()
        return image.convert("RGB")


def _read_error(path, error: BaseException) -> str:
    return f"cannot read image {path}: {type(error).__name__}: {error}"


class StreamingImageDataset(torch.utils.data.Dataset):
    """Images decoded from disk on every access: item i is (transform(RGB image, rng), label), where rng is a
    ``random.Random`` seeded by (seed, epoch, i), so the sample does not depend on which worker reads it.

    `transform` is called as ``transform(image, rng)`` (see `resnetlab.data.transforms`). With `skip_bad`, an
    unreadable file is replaced by the next readable index (wrapping round), with that image's label and the
    rng of index i; its name goes to stderr once per process.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], labels: Sequence[int], transform: Callable,
                 seed: int = 0, epoch: int = 0, skip_bad: bool = False, classes: Sequence[str] | None = None):
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        derive_seed(seed, epoch)  # validates both
        self.paths, self.labels = [Path(p) for p in paths], [int(label) for label in labels]
        self.transform, self.seed, self.epoch, self.skip_bad = transform, seed, epoch, skip_bad
        self.classes = list(classes) if classes is not None else None
        self.skipped: set[str] = set()  # files this process found unreadable (workers keep their own copies)

    def set_epoch(self, epoch: int) -> None:
        """Draw the augmentation of `epoch`; takes effect in workers started after the call."""
        derive_seed(self.seed, epoch)
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self._load(index)
        rng = random.Random(derive_seed(self.seed, self.epoch, _SAMPLE_STREAM, index))
        return self.transform(image, rng), label

    def _load(self, index: int) -> tuple[Image.Image, int]:
        """The RGB image and label at `index`, or with skip_bad those of the next readable index."""
        count = len(self.paths)
        if not 0 <= index < count:
            raise IndexError(f"index {index} out of range for {count} images")
        for step in range(count if self.skip_bad else 1):
            position = (index + step) % count
            path = self.paths[position]
            try:
                return _open_rgb(path), self.labels[position]
            except _DECODE_ERRORS as error:
                if not self.skip_bad:
                    raise DataError(f"{_read_error(path, error)}; replace or delete the file, or pass "
                                    "data.skip_bad=true (skip_bad=True) to skip unreadable images") from error
                self._report_skip(path, error)
        raise DataError(f"none of the {count} images can be read, e.g. {self.paths[index]}: check the folder")

    def _report_skip(self, path: Path, error: BaseException) -> None:
        if str(path) not in self.skipped:
            self.skipped.add(str(path))
            print(f"resnetlab: skipping unreadable image: {_read_error(path, error)}", file=sys.stderr, flush=True)


class SeededShuffleSampler(torch.utils.data.Sampler[int]):
    """A random permutation of range(num_samples) drawn from a torch.Generator seeded by (seed, epoch)."""

    def __init__(self, num_samples: int, seed: int = 0, epoch: int = 0):
        derive_seed(seed, epoch)
        self.num_samples, self.seed, self.epoch = num_samples, seed, epoch

    def set_epoch(self, epoch: int) -> None:
        derive_seed(self.seed, epoch)
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(torch_seed(self.seed, self.epoch, _SHUFFLE_STREAM))
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())

    def __len__(self) -> int:
        return self.num_samples


def set_loader_epoch(loader: torch.utils.data.DataLoader, epoch: int) -> None:
    """Move a loader from `make_streaming_loader` to `epoch`: its shuffle, augmentation and worker seeds."""
    loader.dataset.set_epoch(epoch)
    if isinstance(loader.sampler, SeededShuffleSampler):
        loader.sampler.set_epoch(epoch)
    # Workers' own global RNGs (unused by our transforms) are seeded from this generator, not the global one.
    if loader.generator is not None:
        loader.generator.manual_seed(torch_seed(loader.dataset.seed, epoch, _WORKER_STREAM))


def make_streaming_loader(root: str | os.PathLike, split: str, batch_size: int, train: bool, num_workers: int = 2,
                          seed: int = 0, epoch: int = 0, ten_crop: bool = False,
                          mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                          crop: int = 224, scale: tuple[int, int] = (256, 480), resize: int = 256,
                          skip_bad: bool = False, stats_split: str = "train") -> torch.utils.data.DataLoader:
    """A DataLoader over ``root/split/<class>/*`` with He et al.'s ImageNet pipeline.

    train: shuffled by (seed, epoch), random-scale crop + flip (`train_transform`), the last incomplete batch
    dropped (a batch of 1 breaks batch norm). Eval: files in order, shorter side `resize` + centre crop, or with
    `ten_crop` batches of shape (B, 10, 3, crop, crop). `mean`/`std` (pixels in [0, 1]): None estimates them
    from ``root/stats_split`` with `estimate_channel_stats` (a few seconds), the data set's own statistics,
    the same for the training and the test loader. Workers are not persistent, so `set_loader_epoch` reaches them.
    """
    if train and ten_crop:
        raise ValueError("ten_crop is a test-time transform: pass train=False")
    if batch_size <= 0 or num_workers < 0:
        raise ValueError(f"need batch_size > 0 and num_workers >= 0, got {batch_size} and {num_workers}")
    paths, labels, classes = list_image_files(Path(root).expanduser() / split)
    if train and len(paths) < batch_size:
        raise DataError(f"{len(paths)} images in {Path(root) / split} are fewer than batch_size={batch_size}: the "
                        "training loader drops incomplete batches, so it would give none; lower batch_size")
    if mean is None and std is None:
        mean, std = estimate_channel_stats(list_image_files(Path(root).expanduser() / stats_split)[0],
                                           resize=max(resize, crop), crop=crop, skip_bad=skip_bad)
    if train:
        transform = train_transform(crop, scale, mean, std)
    else:
        transform = eval_transform(crop, resize, ten_crop, mean, std)
    dataset = StreamingImageDataset(paths, labels, transform, seed, epoch, skip_bad, classes)
    sampler = SeededShuffleSampler(len(dataset), seed, epoch) if train else \
        torch.utils.data.SequentialSampler(dataset)
    generator = torch.Generator().manual_seed(torch_seed(seed, epoch, _WORKER_STREAM))
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                                       drop_last=train, persistent_workers=False, generator=generator,
                                       pin_memory=torch.cuda.is_available())


def estimate_channel_stats(paths: Sequence[str | os.PathLike], sample: int = _STATS_SAMPLE, seed: int = _STATS_SEED,
                           resize: int = 256, crop: int = 224,
                           skip_bad: bool = False) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (R, G, B) mean and population std of pixels in [0, 1] over `sample` training images drawn
    without replacement by `seed` (all when fewer), each resized (shorter side `resize`) and centre-cropped."""
    if sample <= 0:
        raise ValueError(f"sample must be positive, got {sample}")
    if not paths:
        raise DataError("no images to estimate channel statistics from: check the training folder")
    picks = sorted(random.Random(seed).sample(range(len(paths)), min(sample, len(paths))))
    resize_image, crop_image = ResizeShorterSide(resize), CenterCrop(crop)
    total, total_sq, pixels = np.zeros(3), np.zeros(3), 0
    for i in picks:
        try:
            image = _open_rgb(paths[i])
        except _DECODE_ERRORS as error:
            if skip_bad:
                continue
            raise DataError(f"{_read_error(paths[i], error)}; replace or delete the file, or pass skip_bad=True "
                            "to leave unreadable images out") from error
        values = np.asarray(crop_image(resize_image(image)), dtype=np.float64).reshape(-1, 3) / 255.0
        total += values.sum(0)
        total_sq += np.square(values).sum(0)
        pixels += len(values)
    if pixels == 0:
        raise DataError(f"none of the {len(picks)} sampled images can be read, e.g. {paths[picks[0]]}")
    mean = total / pixels
    std = np.sqrt(np.maximum(total_sq / pixels - np.square(mean), 0.0))  # float64: cancellation costs < 1e-9 here
    return tuple(mean.tolist()), tuple(std.tolist())
