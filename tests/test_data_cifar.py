"""CIFAR-10/100 reading, verified download and safe extraction, on tiny archives in the official format."""

import hashlib
import io
import os
import pickle
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from resnetlab.data import cifar
from resnetlab.data.cifar import RestrictedUnpickler, download_and_extract, load_cifar
from resnetlab.data.errors import DataError

TRAIN_PER_BATCH = 4  # images in each of the 5 CIFAR-10 train batches
TEST_IMAGES = 6


def _images(count: int, first: int) -> np.ndarray:
    """uint8 N x 3072 rows in the official CHW order; every image, channel, row and column gets its own value."""
    index = np.arange(first, first + count).reshape(-1, 1, 1, 1)
    channel = np.arange(3).reshape(1, -1, 1, 1)
    row = np.arange(32).reshape(1, 1, -1, 1)
    column = np.arange(32).reshape(1, 1, 1, -1)
    chw = (index * 37 + channel * 80 + row * 3 + column * 5) % 256
    return chw.astype(np.uint8).reshape(count, 3 * 32 * 32)


def _expected_hwc(rows: np.ndarray) -> np.ndarray:
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _write_pickle(path: Path, content: dict) -> None:
    path.write_bytes(pickle.dumps(content, protocol=4))  # no _codecs global, as in the official files


def _make_cifar10(root: Path) -> dict:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    expected = {"train_rows": [], "train_labels": []}
    for batch in range(1, 6):
        rows = _images(TRAIN_PER_BATCH, first=batch * 10)
        labels = [(batch + i) % 10 for i in range(TRAIN_PER_BATCH)]
        _write_pickle(folder / f"data_batch_{batch}",
                      {b"batch_label": b"training batch", b"labels": labels, b"data": rows,
                       b"filenames": [b"x.png"] * TRAIN_PER_BATCH})
        expected["train_rows"].append(rows)
        expected["train_labels"] += labels
    expected["test_rows"] = _images(TEST_IMAGES, first=200)
    expected["test_labels"] = [9, 0, 1, 2, 3, 4]
    _write_pickle(folder / "test_batch", {b"labels": expected["test_labels"], b"data": expected["test_rows"]})
    expected["classes"] = [f"class{i}" for i in range(10)]
    _write_pickle(folder / "batches.meta", {b"label_names": [n.encode() for n in expected["classes"]],
                                            b"num_vis": 3072})
    return expected


def _make_cifar100(root: Path) -> dict:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    expected = {"train_rows": _images(5, first=1), "train_labels": [99, 0, 42, 7, 13],
                "test_rows": _images(3, first=100), "test_labels": [1, 98, 50]}
    for file, rows, labels in (("train", expected["train_rows"], expected["train_labels"]),
                               ("test", expected["test_rows"], expected["test_labels"])):
        _write_pickle(folder / file, {b"fine_labels": labels, b"coarse_labels": [0] * len(labels), b"data": rows})
    expected["classes"] = [f"fine{i}" for i in range(100)]
    _write_pickle(folder / "meta", {b"fine_label_names": [n.encode() for n in expected["classes"]],
                                    b"coarse_label_names": [b"coarse"] * 20})
    return expected


def _tar_gz(source: Path, folder: str, archive: Path) -> str:
    """Archive ``source/folder`` as the official tarballs are laid out; returns the archive's md5."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / folder, arcname=folder)
    return hashlib.md5(archive.read_bytes()).hexdigest()


def test_cifar10_pixels_labels_and_classes(tmp_path):
    expected = _make_cifar10(tmp_path)
    data = load_cifar(tmp_path, "cifar10")
    assert data.train_images.shape == (5 * TRAIN_PER_BATCH, 32, 32, 3) and data.train_images.dtype == np.uint8
    np.testing.assert_array_equal(data.train_images, _expected_hwc(np.concatenate(expected["train_rows"])))
    np.testing.assert_array_equal(data.test_images, _expected_hwc(expected["test_rows"]))
    # One pixel by hand: image 0 of batch 1 (index 10), row 2, column 7, blue channel.
    assert data.train_images[0, 2, 7, 2] == (10 * 37 + 2 * 80 + 2 * 3 + 7 * 5) % 256
    assert data.train_labels.dtype == np.int64 and data.train_labels.tolist() == expected["train_labels"]
    assert data.test_labels.tolist() == expected["test_labels"]
    assert data.classes == expected["classes"]


def test_cifar100_reads_fine_labels(tmp_path):
    expected = _make_cifar100(tmp_path)
    data = load_cifar(tmp_path, "cifar100")
    np.testing.assert_array_equal(data.train_images, _expected_hwc(expected["train_rows"]))
    np.testing.assert_array_equal(data.test_images, _expected_hwc(expected["test_rows"]))
    assert data.train_labels.tolist() == expected["train_labels"]
    assert data.test_labels.tolist() == expected["test_labels"]
    assert len(data.classes) == 100 and data.classes[42] == "fine42"


def test_download_from_file_url_extracts_and_loads(tmp_path, monkeypatch):
    expected = _make_cifar100(tmp_path / "build")
    archive = tmp_path / "cifar-100-python.tar.gz"
    md5 = _tar_gz(tmp_path / "build", "cifar-100-python", archive)
    root = tmp_path / "root"
    monkeypatch.setitem(cifar.CIFAR_SOURCES, "cifar100",
                        replace(cifar.CIFAR_SOURCES["cifar100"], url=archive.as_uri(), md5=md5))
    data = load_cifar(root, "cifar100", download=True)
    assert data.test_labels.tolist() == expected["test_labels"]
    assert sorted(os.listdir(root)) == ["cifar-100-python"]  # the downloaded archive is not left behind


def test_download_and_extract_cifar10(tmp_path):
    expected = _make_cifar10(tmp_path / "build")
    archive = tmp_path / "cifar-10-python.tar.gz"
    md5 = _tar_gz(tmp_path / "build", "cifar-10-batches-py", archive)
    download_and_extract(archive.as_uri(), md5, tmp_path / "root")
    assert load_cifar(tmp_path / "root").train_labels.tolist() == expected["train_labels"]


def test_wrong_md5_is_refused_and_nothing_is_extracted(tmp_path):
    _make_cifar10(tmp_path / "build")
    archive = tmp_path / "cifar-10-python.tar.gz"
    actual = _tar_gz(tmp_path / "build", "cifar-10-batches-py", archive)
    root = tmp_path / "root"
    with pytest.raises(DataError, match=f"expected md5 {'0' * 32}, got {actual}"):
        download_and_extract(archive.as_uri(), "0" * 32, root)
    assert os.listdir(root) == []


def _hostile_archive(path: Path, member: tarfile.TarInfo, payload: bytes = b"pwned") -> str:
    with tarfile.open(path, "w:gz") as tar:
        safe = tarfile.TarInfo("cifar-10-batches-py/ok.txt")  # a good member first: it must not be written either
        safe.size = 2
        tar.addfile(safe, io.BytesIO(b"ok"))
        if member.isfile():
            member.size = len(payload)
            tar.addfile(member, io.BytesIO(payload))
        else:
            tar.addfile(member)
    return hashlib.md5(path.read_bytes()).hexdigest()


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type = tarfile.SYMTYPE
    member.linkname = target
    return member


@pytest.mark.parametrize("kind", ["parent", "absolute", "symlink", "hardlink"])
def test_unsafe_archive_members_are_refused(tmp_path, kind):
    root = tmp_path / "root"
    outside = tmp_path / "escape.txt"
    if kind == "parent":
        member, reason = tarfile.TarInfo("cifar-10-batches-py/../../escape.txt"), "outside"
    elif kind == "absolute":
        member, reason = tarfile.TarInfo(str(outside)), "absolute path"
    elif kind == "symlink":
        member, reason = _symlink("cifar-10-batches-py/link", str(outside)), "link"
    else:
        member = tarfile.TarInfo("cifar-10-batches-py/hard")
        member.type, member.linkname, reason = tarfile.LNKTYPE, "../../escape.txt", "link"
    archive = tmp_path / "hostile.tar.gz"
    md5 = _hostile_archive(archive, member)
    with pytest.raises(DataError, match=f"refusing to extract.*{reason}"):
        download_and_extract(archive.as_uri(), md5, root)
    assert not outside.exists()
    assert os.listdir(root) == []
    assert sorted(os.listdir(tmp_path)) == ["hostile.tar.gz", "root"]


def test_missing_folder_without_download_names_path_and_fix(tmp_path):
    with pytest.raises(DataError) as info:
        load_cifar(tmp_path, "cifar10")
    message = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "data.download=true" in message and cifar.CIFAR10_URL in message
    assert "\n" not in message


def test_truncated_batch_names_the_file(tmp_path):
    _make_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:500])
    with pytest.raises(DataError, match="data_batch_3"):
        load_cifar(tmp_path)


def test_wrong_shape_is_a_data_error(tmp_path):
    _make_cifar10(tmp_path)
    _write_pickle(tmp_path / "cifar-10-batches-py" / "test_batch",
                  {b"labels": [0, 1], b"data": np.zeros((2, 1024), np.uint8)})
    with pytest.raises(DataError, match="test_batch.*uint8 N x 3072"):
        load_cifar(tmp_path)


class _RunsShell:
    """Pickles to ``os.system(command)``: loading it with plain pickle would run the command."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_pickle_calling_os_system_is_refused_without_running(tmp_path):
    _make_cifar10(tmp_path)
    side_effect = tmp_path / "side_effect"
    _write_pickle(tmp_path / "cifar-10-batches-py" / "data_batch_1",
                  {b"data": _RunsShell(f"touch '{side_effect}'"), b"labels": []})
    with pytest.raises(DataError, match=r"data_batch_1.*refusing to load global (posix|nt|os)\.system"):
        load_cifar(tmp_path)
    assert not side_effect.exists()


def test_legacy_numpy_core_name_is_allowed():
    # The official files were pickled by numpy 1, which names the helper numpy.core.multiarray._reconstruct.
    unpickler = RestrictedUnpickler(io.BytesIO(b""), encoding="bytes")
    assert unpickler.find_class("numpy.core.multiarray", "_reconstruct") is not None
    with pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
        unpickler.find_class("builtins", "eval")
