"""Small image-folder data sets (up to 64 px a side), decoded once into uint8 arrays and cached on disk.

Two layouts, class names sorted giving labels 0..K-1:

    root/train/<class>/*  and  root/test/<class>/*    the data set's own split
    root/<class>/*                                    split into train/test by a seeded shuffle

Decoding 60,000 32 x 32 JPEGs takes about 12 s on one core, so the arrays are cached in an uncompressed
`.npz` keyed by every file's path, size and modification time: a changed, added or removed file re-reads
the folder. Large images belong to a streaming loader, not to arrays held in memory.
"""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
import os
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import PIL
from PIL import Image, ImageFile

from resnetlab.data.errors import DataError
from resnetlab.paths import cache_root

__all__ = ["IMAGE_EXTENSIONS", "MAX_IMAGE_SIDE", "ImageFolderArrays", "default_cache_dir", "load_small_image_folder"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})  # compared lower-cased
MAX_IMAGE_SIDE = 64  # px; 50,000 images of 64 x 64 x 3 are already 600 MB of uint8
_POOL_MIN_FILES = 2000  # below this a pool's start-up costs about what it saves (~2 s per 10,000 JPEGs a core)
_POOL_WORKERS = 2
_POOL_CHUNK_FILES = 500  # files per task: large enough that pickling the task costs little
_CACHE_FORMAT = 1  # bump when the decoding or the stored arrays change, so old caches are not read
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


@dataclass(frozen=True)
class ImageFolderArrays:
    """A decoded image-folder data set: uint8 images N x H x W x 3 (RGB) and int64 labels indexing `classes`."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list[str]
    skipped: list[tuple[str, str]]  # (path, reason) of each unreadable file left out when skip_bad=True


class _Listing(NamedTuple):
    classes: list[str]
    train_paths: list[Path]
    train_labels: list[int]
    test_paths: list[Path]
    test_labels: list[int]


def default_cache_dir() -> Path:
    """Where decoded folders are cached: ``image_folders`` under `resnetlab.paths.cache_root`."""
    return cache_root() / "image_folders"


def load_small_image_folder(root: str | os.PathLike, image_size: int | None = None,
                            cache_dir: str | os.PathLike | None = None, skip_bad: bool = False, split_seed: int = 0,
                            test_fraction: float = 0.1) -> ImageFolderArrays:
    """Decode every image under `root` into uint8 arrays, or read them from the cache if no file changed.

    `image_size`: resize every image (bilinear) to image_size x image_size px; None keeps the size, which must
    then be the same for all images. `split_seed`, `test_fraction`: the split of a folder without train/ and
    test/. `skip_bad`: leave out unreadable images (listed in `skipped`) instead of raising DataError.
    """
    if image_size is not None and not 0 < image_size <= MAX_IMAGE_SIDE:
        raise ValueError(f"image_size must be 1..{MAX_IMAGE_SIDE} px, got {image_size}; use the streaming loader "
                         "for larger images")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    root = Path(root).expanduser().resolve()
    listing = _list_images(root, split_seed, test_fraction)
    options = {"image_size": image_size, "split_seed": split_seed, "test_fraction": test_fraction,
               "skip_bad": skip_bad}
    cache_file, stale = _cache_file(root, listing, options, Path(cache_dir) if cache_dir else default_cache_dir())
    cached = _read_cache(cache_file)
    if cached is not None:
        return cached
    arrays = _decode_listing(root, listing, image_size, skip_bad)
    _write_cache(cache_file, arrays, stale)
    return arrays


def _list_images(root: Path, split_seed: int, test_fraction: float) -> _Listing:
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist: check the path")
    train_dir, test_dir = root / "train", root / "test"
    if not test_dir.is_dir() and (root / "val").is_dir():
        test_dir = root / "val"  # ImageNet's layout: the validation set is the test split
    if train_dir.is_dir() != test_dir.is_dir():
        present, missing = (train_dir, test_dir) if train_dir.is_dir() else (test_dir, train_dir)
        raise DataError(f"{present} exists but {missing} does not: add {missing}/<class>/ folders, or put the "
                        f"class folders directly in {root} to split them by test_fraction")
    if train_dir.is_dir():
        train, test = _class_files(train_dir), _class_files(test_dir)
        if list(train) != list(test):
            only_train, only_test = sorted(set(train) - set(test)), sorted(set(test) - set(train))
            raise DataError(f"the class folders of {train_dir} and {test_dir} differ (only in train: {only_train}, "
                            f"only in test: {only_test}): give both splits the same classes")
        return _Listing(list(train), *_flatten(train), *_flatten(test))
    by_class = _class_files(root)
    paths, labels = _flatten(by_class)
    test_count = round(len(paths) * test_fraction)
    if not 0 < test_count < len(paths):
        raise DataError(f"{len(paths)} images in {root} leave an empty split at test_fraction={test_fraction}: "
                        "add images or change test_fraction")
    order = np.random.default_rng(split_seed).permutation(len(paths))
    test_picks, train_picks = np.sort(order[:test_count]), np.sort(order[test_count:])  # sorted: files stay in order
    return _Listing(list(by_class), [paths[i] for i in train_picks], [labels[i] for i in train_picks],
                    [paths[i] for i in test_picks], [labels[i] for i in test_picks])


def _class_files(folder: Path) -> dict[str, list[Path]]:
    """The image files of each class folder in `folder`, classes and files sorted by name; hidden entries ignored."""
    with os.scandir(folder) as entries:
        class_dirs = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    by_class = {}
    for name in class_dirs:
        with os.scandir(folder / name) as entries:
            images = [e.name for e in entries if e.is_file() and not e.name.startswith(".")
                      and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS]
        by_class[name] = [folder / name / image for image in sorted(images)]
    if not any(by_class.values()):
        raise DataError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in class folders of {folder}: put each "
                        f"class's images in {folder}/<class>/")
    for name, files in by_class.items():
        if not files:
            raise DataError(f"class folder {folder / name} holds no images: add some or remove the folder")
    return by_class


def _flatten(by_class: dict[str, list[Path]]) -> tuple[list[Path], list[int]]:
    paths = [path for files in by_class.values() for path in files]
    labels = [label for label, files in enumerate(by_class.values()) for _ in files]
    return paths, labels


def _decode_listing(root: Path, listing: _Listing, image_size: int | None, skip_bad: bool) -> ImageFolderArrays:
    paths = listing.train_paths + listing.test_paths
    _check_first_image_is_small(paths)
    decoded = _decode_files(paths, image_size)
    skipped = [(str(path), result) for path, result in zip(paths, decoded) if isinstance(result, str)]
    if skipped and not skip_bad:
        others = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
        raise DataError(f"cannot decode image {skipped[0][0]}{others}: {skipped[0][1]}; replace or delete the file, "
                        "or set data.skip_bad=true (skip_bad=True) to leave unreadable images out")
    good = [(path, result) for path, result in zip(paths, decoded) if not isinstance(result, str)]
    if not good:
        raise DataError(f"none of the {len(paths)} images in {root} can be decoded, e.g. {skipped[0][0]}: "
                        f"{skipped[0][1]}")
    _check_same_size(good)
    train_count, shape = len(listing.train_paths), good[0][1].shape
    train_images, train_labels = _kept(decoded[:train_count], listing.train_labels, shape)
    test_images, test_labels = _kept(decoded[train_count:], listing.test_labels, shape)
    return ImageFolderArrays(train_images, train_labels, test_images, test_labels, listing.classes, skipped)


def _kept(decoded: list[np.ndarray | str], labels: list[int], shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The decoded images stacked, and their labels, leaving out the unreadable ones."""
    kept = [(image, label) for image, label in zip(decoded, labels) if not isinstance(image, str)]
    images = np.stack([image for image, _ in kept]) if kept else np.empty((0, *shape), dtype=np.uint8)
    return images, np.array([label for _, label in kept], dtype=np.int64)


def _check_first_image_is_small(paths: list[Path]) -> None:
    """Refuse large images before decoding all of them, which could take minutes and many GB."""
    for path in paths:
        try:
            with Image.open(path) as img:
                width, height = img.size  # reads the header only
        except _DECODE_ERRORS:
            continue  # reported, or skipped, when the folder is decoded
        if max(width, height) > MAX_IMAGE_SIDE:
            raise DataError(f"{path} is {width}x{height} px, larger than the {MAX_IMAGE_SIDE} px this in-memory "
                            "loader is for: stream large images (data.loader=stream)")
        return


def _check_same_size(good: list[tuple[Path, np.ndarray]]) -> None:
    first_path, first = good[0]
    for path, image in good:
        if image.shape != first.shape:
            raise DataError(f"images differ in size: {first_path} is {first.shape[1]}x{first.shape[0]} px but {path} "
                            f"is {image.shape[1]}x{image.shape[0]} px; set data.image_size=N (image_size=N) to resize "
                            f"all to N x N, e.g. {min(first.shape[:2])}")


def _decode_files(paths: list[Path], image_size: int | None) -> list[np.ndarray | str]:
    """Each file as uint8 H x W x 3, or the reason it cannot be read; in 2 processes for large folders."""
    decode = functools.partial(_decode_image, image_size=image_size)
    names = [str(path) for path in paths]
    if len(names) <= _POOL_MIN_FILES:
        return [decode(name) for name in names]
    with multiprocessing.Pool(_POOL_WORKERS) as pool:
        return pool.map(decode, names, chunksize=_POOL_CHUNK_FILES)


def _decode_image(path: str, image_size: int | None) -> np.ndarray | str:
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file must fail, not decode with a grey bottom
    try:
        with Image.open(path) as img:
            img.load()
            # Grayscale and palette become 3 equal/looked-up channels; RGBA drops alpha (no compositing).
            rgb = img.convert("RGB")
    except _DECODE_ERRORS as error:
        return f"{type(error).__name__}: {error}"
    if image_size is not None and rgb.size != (image_size, image_size):
        rgb = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def _cache_file(root: Path, listing: _Listing, options: dict, cache_dir: Path) -> tuple[Path, list[Path]]:
    """The cache file for this folder's current files, and older caches of the same folder and options."""
    setting = hashlib.sha256(json.dumps([_CACHE_FORMAT, PIL.__version__, str(root), options]).encode())
    files = hashlib.sha256(setting.digest())
    root_length = len(str(root)) + 1  # strings, not Path.relative_to: 60,000 files take 0.3 s less
    for name in sorted(str(path) for path in listing.train_paths + listing.test_paths):
        stat = os.stat(name)
        files.update(f"{name[root_length:]}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    prefix = f"{root.name}-{setting.hexdigest()[:12]}-"
    cache_file = cache_dir / f"{prefix}{files.hexdigest()[:16]}.npz"
    stale = [path for path in cache_dir.glob(f"{prefix}*.npz") if path != cache_file] if cache_dir.is_dir() else []
    return cache_file, stale


def _read_cache(cache_file: Path) -> ImageFolderArrays | None:
    """The cached arrays, or None when the file is missing or unreadable (it is then rebuilt)."""
    try:
        with np.load(cache_file, allow_pickle=False) as stored:
            arrays = ImageFolderArrays(
                train_images=stored["train_images"], train_labels=stored["train_labels"],
                test_images=stored["test_images"], test_labels=stored["test_labels"],
                classes=[str(name) for name in stored["classes"]],
                skipped=[(str(p), str(r)) for p, r in zip(stored["skipped_paths"], stored["skipped_reasons"])])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    intact = (arrays.train_images.dtype == np.uint8 and arrays.train_images.ndim == 4
              and len(arrays.train_images) == len(arrays.train_labels)
              and len(arrays.test_images) == len(arrays.test_labels))
    return arrays if intact else None


def _write_cache(cache_file: Path, arrays: ImageFolderArrays, stale: list[Path]) -> None:
    temporary = None
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache_file.parent, suffix=".tmp", delete=False) as handle:
            temporary = Path(handle.name)
            np.savez(handle, train_images=arrays.train_images, train_labels=arrays.train_labels,
                     test_images=arrays.test_images, test_labels=arrays.test_labels,
                     classes=np.array(arrays.classes, dtype=str),
                     skipped_paths=np.array([p for p, _ in arrays.skipped], dtype=str),
                     skipped_reasons=np.array([r for _, r in arrays.skipped], dtype=str))
        os.replace(temporary, cache_file)  # atomic: a concurrent reader sees the old file or the whole new one
        for path in stale:
            path.unlink(missing_ok=True)  # older listings of this folder: each is as large as the data set
    except OSError as error:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        warnings.warn(f"could not cache the decoded images in {cache_file.parent} ({error}); they will be decoded "
                      "again next time", stacklevel=3)
