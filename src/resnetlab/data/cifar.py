"""CIFAR-10 and CIFAR-100 from their official python-format archives, with an opt-in, verified, safe download.

The official batch files are Python 2 pickles of dicts with bytes keys: ``b"data"`` is uint8 N x 3072 (each row is
one image as 3 planes R, G, B of 32 x 32, row-major), labels are a list of ints. Unpickling can run code, so
`RestrictedUnpickler` builds only the numpy arrays those files contain and refuses every other global.
A download is verified by md5 before anything is extracted, and every archive member is checked before any is
written: no absolute paths, no path leaving the destination, no links or devices.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from resnetlab.data.errors import DataError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"

IMAGE_SIZE = 32  # pixels, height = width
CHANNELS = 3  # R, G, B planes, stored one after another in each row of b"data"
PIXELS_PER_IMAGE = CHANNELS * IMAGE_SIZE * IMAGE_SIZE  # 3072 bytes per row
DOWNLOAD_CHUNK_BYTES = 1 << 20  # 1 MiB per read: small enough for a live progress line


@dataclass(frozen=True)
class CifarSource:
    """Where one CIFAR variant comes from and how its extracted folder is laid out."""

    url: str
    md5: str
    folder: str  # the folder the archive extracts to, under root
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: bytes  # key of the labels list in each batch dict
    names_key: bytes  # key of the class-name list in the meta dict
    num_classes: int


CIFAR_SOURCES = {
    "cifar10": CifarSource(
        url=CIFAR10_URL, md5=CIFAR10_MD5, folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)), test_file="test_batch",
        meta_file="batches.meta", label_key=b"labels", names_key=b"label_names", num_classes=10,
    ),
    "cifar100": CifarSource(
        url=CIFAR100_URL, md5=CIFAR100_MD5, folder="cifar-100-python",
        train_files=("train",), test_file="test",
        meta_file="meta", label_key=b"fine_labels", names_key=b"fine_label_names", num_classes=100,
    ),
}


@dataclass(frozen=True)
class CifarArrays:
    """One CIFAR data set in memory: images uint8 N x 32 x 32 x 3 (HWC, RGB), labels int64 N, class names."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list[str]


def load_cifar(root: str | os.PathLike, name: str = "cifar10", download: bool = False) -> CifarArrays:
    """Read CIFAR-10 (``name="cifar10"``) or CIFAR-100 (``"cifar100"``, fine labels) from ``root``.

    ``root`` holds the extracted official folder (``cifar-10-batches-py`` or ``cifar-100-python``). When it is
    missing, ``download=True`` fetches and verifies the official archive; otherwise a `DataError` says how to fix it.
    """
    if name not in CIFAR_SOURCES:
        raise ValueError(f"unknown CIFAR data set {name!r}; choose one of {sorted(CIFAR_SOURCES)}")
    source = CIFAR_SOURCES[name]
    folder = Path(root) / source.folder
    if not folder.is_dir():
        if not download:
            raise DataError(f"{name} not found at {folder}: set data.download=true to fetch it from {source.url}, "
                            f"or put the extracted folder there")
        download_and_extract(source.url, source.md5, root)
        if not folder.is_dir():
            raise DataError(f"the archive from {source.url} did not contain the folder {source.folder}")

    classes = _read_class_names(folder / source.meta_file, source)
    train = [_read_batch(folder / file, source) for file in source.train_files]
    test_images, test_labels = _read_batch(folder / source.test_file, source)
    return CifarArrays(
        train_images=np.concatenate([images for images, _ in train]),
        train_labels=np.concatenate([labels for _, labels in train]),
        test_images=test_images,
        test_labels=test_labels,
        classes=classes,
    )


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds plain numpy arrays and nothing else: every other global is refused."""

    def find_class(self, module: str, name: str):
        allowed = _allowed_globals()
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: a CIFAR file needs only "
                                         f"numpy array helpers")
        return allowed[(module, name)]


def _allowed_globals() -> dict[tuple[str, str], object]:
    # The official files were written by numpy 1 (numpy.core); numpy 2 writes numpy._core. Both names map to the
    # same function, imported from numpy._core where it exists so that numpy 2 raises no deprecation warning.
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


def _read_pickle(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"missing CIFAR file {path}; delete its folder and download again")
    try:
        with open(path, "rb") as file:
            content = RestrictedUnpickler(file, encoding="bytes").load()
    except Exception as error:  # any failure to decode means the file is truncated, corrupt or unsafe
        raise DataError(f"cannot read CIFAR file {path} ({type(error).__name__}: {error}); "
                        f"delete its folder and download again") from error
    if not isinstance(content, dict):
        raise DataError(f"CIFAR file {path} holds a {type(content).__name__}, expected a dict")
    return content


def _field(content: dict, key: bytes, path: Path):
    if key not in content:
        raise DataError(f"CIFAR file {path} has no {key!r} entry (keys: {sorted(content)})")
    return content[key]


def _read_class_names(path: Path, source: CifarSource) -> list[str]:
    names = _field(_read_pickle(path), source.names_key, path)
    if not isinstance(names, list) or len(names) != source.num_classes:
        raise DataError(f"CIFAR file {path}: expected {source.num_classes} class names under {source.names_key!r}")
    return [name.decode("utf-8") if isinstance(name, bytes) else str(name) for name in names]


def _read_batch(path: Path, source: CifarSource) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 N x 32 x 32 x 3 (HWC) and labels int64 N from one batch file."""
    content = _read_pickle(path)
    data = _field(content, b"data", path)
    labels = np.asarray(_field(content, source.label_key, path))
    well_formed = isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
    if not well_formed or data.shape[1] != PIXELS_PER_IMAGE:
        shape = getattr(data, "shape", None)
        raise DataError(f"CIFAR file {path}: b'data' must be uint8 N x {PIXELS_PER_IMAGE}, got "
                        f"{type(data).__name__} of shape {shape} and dtype {getattr(data, 'dtype', None)}")
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"CIFAR file {path}: expected {data.shape[0]} integer labels, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= source.num_classes):
        raise DataError(f"CIFAR file {path}: labels must lie in [0, {source.num_classes}), "
                        f"got [{labels.min()}, {labels.max()}]")
    # Each row is CHW (all red, then green, then blue); the project works in HWC.
    images = data.reshape(-1, CHANNELS, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def download_and_extract(url: str, md5: str, root: str | os.PathLike) -> None:
    """Fetch the tar.gz at ``url`` into ``root``, check its md5, then extract it there safely.

    Nothing is extracted unless the digest matches and every member is a regular file or folder whose path stays
    inside ``root``; the archive itself is deleted afterwards (also on failure).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    handle, archive_name = tempfile.mkstemp(prefix=".download-", suffix=".tar.gz", dir=root)
    archive = Path(archive_name)
    try:
        with os.fdopen(handle, "wb") as file:
            actual = _download(url, file)
        if actual != md5.lower():
            raise DataError(f"checksum mismatch for {url}: expected md5 {md5.lower()}, got {actual}; "
                            f"the download was deleted, try again")
        _extract_tar_gz(archive, root, source=url)
    finally:
        archive.unlink(missing_ok=True)


def _download(url: str, file) -> str:
    """Stream ``url`` into the open binary ``file``; returns the md5 hex digest of the bytes written."""
    digest = hashlib.md5(usedforsecurity=False)  # md5 only detects corruption; the host is trusted via https
    show_progress = sys.stderr.isatty()
    done_bytes = 0
    try:
        with urllib.request.urlopen(url) as response:
            total_bytes = int(response.headers.get("Content-Length") or 0)
            while chunk := response.read(DOWNLOAD_CHUNK_BYTES):
                file.write(chunk)
                digest.update(chunk)
                done_bytes += len(chunk)
                if show_progress:
                    _print_progress(url, done_bytes, total_bytes)
    except (urllib.error.URLError, OSError) as error:
        raise DataError(f"cannot download {url}: {error}") from error
    finally:
        if show_progress:
            sys.stderr.write("\n")
    return digest.hexdigest()


def _print_progress(url: str, done_bytes: int, total_bytes: int) -> None:
    mib = 1 << 20
    total = f" / {total_bytes / mib:.1f}" if total_bytes else ""
    sys.stderr.write(f"\rdownloading {url.rsplit('/', 1)[-1]}: {done_bytes / mib:.1f}{total} MiB")
    sys.stderr.flush()


def _extract_tar_gz(archive: Path, root: Path, source: str) -> None:
    """Extract ``archive`` into ``root`` after checking every member; nothing is written if one is refused."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, root, source)
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.12: a second, independent guard
                tar.extractall(root, members=members, filter="data")
            else:
                tar.extractall(root, members=members)
    except (tarfile.TarError, EOFError) as error:
        raise DataError(f"cannot extract the archive from {source}: {error}") from error


def _check_member(member: tarfile.TarInfo, root: Path, source: str) -> None:
    refuse = f"refusing to extract the archive from {source}: member {member.name!r}"
    if os.path.isabs(member.name) or member.name.startswith(("/", "\\")):
        raise DataError(f"{refuse} has an absolute path")
    if not (member.isfile() or member.isdir()):
        raise DataError(f"{refuse} is a link or special file; only regular files and folders are allowed")
    resolved_root = os.path.realpath(root)
    resolved = os.path.realpath(os.path.join(resolved_root, member.name))
    if os.path.commonpath([resolved_root, resolved]) != resolved_root:
        raise DataError(f"{refuse} would be written outside {root}")
