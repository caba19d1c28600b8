"""Image-folder data sets: layouts, labels, exact pixels, the seeded split, the disk cache and one clear line per bad
input."""

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnetlab.data import image_folder
from resnetlab.data.errors import DataError
from resnetlab.data.image_folder import ImageFolderArrays, default_cache_dir, load_small_image_folder

CIFAR10_JPEG = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNETLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "image_folders"


def pixels(value: int, size: int = 4) -> np.ndarray:
    """A size x size RGB image whose pixels all differ and encode `value`, so a mixed-up file or label shows."""
    y, x = np.mgrid[0:size, 0:size]
    return np.stack([np.full((size, size), value), y * 16 + x, 255 - y * 16 - x], axis=-1).astype(np.uint8)


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def make_split_folder(root: Path, classes=("zebra", "ant", "moose"), train_per_class=3, test_per_class=2) -> dict:
    """train/ and test/ folders of PNGs; returns {(split, class, index): pixels}. Value = 10 * class order + index."""
    written = {}
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for order, name in enumerate(classes):
            for index in range(count):
                array = pixels(10 * order + index + (100 if split == "test" else 0))
                write_png(root / split / name / f"{index:03d}.png", array)
                written[split, name, index] = array
    return written


def make_flat_folder(root: Path, per_class: int = 10) -> None:
    for order, name in enumerate(["b", "a"]):
        for index in range(per_class):
            write_png(root / name / f"{index:03d}.png", pixels(50 * order + index))


def forbid_decoding(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("decoded the images again instead of reading the cache")
    monkeypatch.setattr(image_folder, "_decode_files", fail)


def count_decoding(monkeypatch) -> list:
    calls, decode = [], image_folder._decode_files
    def counted(paths, image_size):
        calls.append(len(paths))
        return decode(paths, image_size)
    monkeypatch.setattr(image_folder, "_decode_files", counted)
    return calls


def assert_same(a: ImageFolderArrays, b: ImageFolderArrays) -> None:
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.classes == b.classes and a.skipped == b.skipped


def test_labels_follow_sorted_class_names_and_png_pixels_round_trip(tmp_path):
    written = make_split_folder(tmp_path / "data")
    data = load_small_image_folder(tmp_path / "data")
    assert data.classes == ["ant", "moose", "zebra"]
    assert data.train_images.shape == (9, 4, 4, 3) and data.train_images.dtype == np.uint8
    assert data.test_images.shape == (6, 4, 4, 3)
    assert data.train_labels.dtype == np.int64
    np.testing.assert_array_equal(data.train_labels, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(data.test_labels, [0, 0, 1, 1, 2, 2])
    for split, images, labels, per_class in (("train", data.train_images, data.train_labels, 3),
                                             ("test", data.test_images, data.test_labels, 2)):
        for position, (image, label) in enumerate(zip(images, labels)):
            np.testing.assert_array_equal(image, written[split, data.classes[label], position % per_class])
    assert data.skipped == []


def test_jpeg_grayscale_and_rgba_come_out_as_rgb(tmp_path):
    root = tmp_path / "data"
    write_png(root / "train" / "a" / "gray.png", np.arange(16, dtype=np.uint8).reshape(4, 4) * 16)
    rgba = np.dstack([pixels(7), np.full((4, 4), 128, np.uint8)])
    write_png(root / "train" / "a" / "rgba.PNG", rgba)  # upper-case extension counts too
    (root / "train" / "b").mkdir()
    Image.fromarray(np.full((4, 4, 3), (200, 40, 90), np.uint8)).save(root / "train" / "b" / "flat.jpg", quality=95)
    write_png(root / "test" / "a" / "x.png", pixels(1))
    write_png(root / "test" / "b" / "y.png", pixels(2))
    (root / "train" / "b" / "notes.txt").write_text("not an image")
    data = load_small_image_folder(root)
    assert data.train_images.shape == (3, 4, 4, 3)
    gray, rgb_of_rgba, jpeg = data.train_images.astype(int)
    np.testing.assert_array_equal(gray[..., 0], np.arange(16).reshape(4, 4) * 16)
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    np.testing.assert_array_equal(rgb_of_rgba, pixels(7))  # alpha dropped, colour kept (no compositing)
    assert np.abs(jpeg - [200, 40, 90]).max() <= 3  # JPEG is lossy, but a flat colour survives closely
    np.testing.assert_array_equal(data.train_labels, [0, 0, 1])


def test_mixed_sizes_name_two_files_and_image_size_resizes(tmp_path):
    root = tmp_path / "data"
    write_png(root / "a" / "small.png", pixels(1, size=4))
    write_png(root / "a" / "other.png", pixels(2, size=4))
    write_png(root / "b" / "large.png", pixels(3, size=8))
    with pytest.raises(DataError, match=r"image_size=") as raised:
        load_small_image_folder(root, test_fraction=0.34)
    assert "large.png" in str(raised.value) and "other.png" in str(raised.value)
    data = load_small_image_folder(root, image_size=6, test_fraction=0.34)
    assert data.train_images.shape[1:] == (6, 6, 3) and data.test_images.shape[1:] == (6, 6, 3)
    assert len(data.train_images) + len(data.test_images) == 3


def test_images_over_64_px_point_to_the_streaming_loader(tmp_path):
    root = tmp_path / "data"
    write_png(root / "a" / "big.png", np.zeros((65, 30, 3), np.uint8))
    write_png(root / "a" / "big2.png", np.zeros((65, 30, 3), np.uint8))
    with pytest.raises(DataError, match=r"big2?\.png is 30x65 px.*data.loader=stream"):
        load_small_image_folder(root, test_fraction=0.5)


def test_single_folder_split_is_seeded_and_sizes_add_up(tmp_path):
    make_flat_folder(tmp_path / "data", per_class=10)
    first = load_small_image_folder(tmp_path / "data", test_fraction=0.25, split_seed=3)
    again = load_small_image_folder(tmp_path / "data", test_fraction=0.25, split_seed=3, cache_dir=tmp_path / "c2")
    other = load_small_image_folder(tmp_path / "data", test_fraction=0.25, split_seed=4)
    assert first.classes == ["a", "b"]
    assert len(first.test_images) == 5 and len(first.train_images) == 15
    assert_same(first, again)
    assert not np.array_equal(first.test_images, other.test_images)
    for data in (first, other):  # every image lands in exactly one split, with its own label
        values = np.concatenate([data.train_images, data.test_images])[:, 0, 0, 0]
        labels = np.concatenate([data.train_labels, data.test_labels])
        assert sorted(values) == list(range(10)) + list(range(50, 60))
        np.testing.assert_array_equal(labels, (values < 50).astype(int))  # "a" (label 0) holds values 50..59


def test_pool_decodes_the_same_as_the_loop(tmp_path, monkeypatch):
    make_split_folder(tmp_path / "data")
    by_loop = load_small_image_folder(tmp_path / "data", cache_dir=tmp_path / "loop")
    monkeypatch.setattr(image_folder, "_POOL_MIN_FILES", 1)
    monkeypatch.setattr(image_folder, "_POOL_CHUNK_FILES", 2)
    assert_same(by_loop, load_small_image_folder(tmp_path / "data", cache_dir=tmp_path / "pool"))


def test_cache_is_written_read_back_and_invalidated_by_changed_files(tmp_path, monkeypatch, private_cache):
    root = tmp_path / "data"
    make_split_folder(root)
    first = load_small_image_folder(root)
    assert len(list(private_cache.glob("*.npz"))) == 1 and default_cache_dir() == private_cache
    with monkeypatch.context() as patch:
        forbid_decoding(patch)
        assert_same(first, load_small_image_folder(root))
    calls = count_decoding(monkeypatch)
    touched = root / "train" / "ant" / "000.png"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 1_000_000_000))
    assert_same(first, load_small_image_folder(root))
    assert calls == [15]
    write_png(root / "train" / "ant" / "999.png", pixels(77))
    assert len(load_small_image_folder(root).train_images) == 10
    assert calls == [15, 16]
    (root / "train" / "ant" / "999.png").unlink()
    load_small_image_folder(root)
    assert calls == [15, 16, 15]
    assert len(list(private_cache.glob("*.npz"))) == 1  # older listings of the folder are removed
    load_small_image_folder(root, image_size=2)  # other options: their own cache file, the first one kept
    assert len(list(private_cache.glob("*.npz"))) == 2 and not list(private_cache.glob("*.tmp"))


def test_corrupt_cache_is_ignored_and_rebuilt(tmp_path, monkeypatch, private_cache):
    make_split_folder(tmp_path / "data")
    first = load_small_image_folder(tmp_path / "data")
    (cache_file,) = private_cache.glob("*.npz")
    cache_file.write_bytes(cache_file.read_bytes()[:1000])
    calls = count_decoding(monkeypatch)
    assert_same(first, load_small_image_folder(tmp_path / "data"))
    assert calls == [15]
    forbid_decoding(monkeypatch)
    assert_same(first, load_small_image_folder(tmp_path / "data"))


def test_missing_root_is_named(tmp_path):
    with pytest.raises(DataError, match="nowhere.*does not exist"):
        load_small_image_folder(tmp_path / "nowhere")


@pytest.mark.parametrize("present, missing", [("train", "test"), ("test", "train")])
def test_one_split_folder_without_the_other_is_named(tmp_path, present, missing):
    write_png(tmp_path / "data" / present / "a" / "x.png", pixels(1))
    with pytest.raises(DataError, match=f"{present} exists but .*{missing} does not"):
        load_small_image_folder(tmp_path / "data")


def test_empty_class_folder_is_named(tmp_path):
    make_split_folder(tmp_path / "data")
    (tmp_path / "data" / "test" / "emu").mkdir()
    (tmp_path / "data" / "train" / "emu").mkdir()
    with pytest.raises(DataError, match=r"emu holds no images"):
        load_small_image_folder(tmp_path / "data")


@pytest.mark.parametrize("layout", ["empty root", "no images in class folders"])
def test_no_images_at_all(tmp_path, layout):
    root = tmp_path / "data"
    root.mkdir()
    if layout == "no images in class folders":
        (root / "a").mkdir()
        (root / "a" / "readme.txt").write_text("no images here")
        write_png(root / "stray.png", pixels(1))  # images belong in class folders
    with pytest.raises(DataError, match=f"no images .* in class folders of {re.escape(str(root))}"):
        load_small_image_folder(root)


def test_test_split_classes_must_equal_train_classes(tmp_path):
    root = tmp_path / "data"
    make_split_folder(root)
    write_png(root / "test" / "yak" / "0.png", pixels(1))
    with pytest.raises(DataError, match=r"only in test: \['yak'\]"):
        load_small_image_folder(root)


def truncated_png(path: Path) -> Path:
    noise = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)  # incompressible
    write_png(path, noise)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


@pytest.mark.parametrize("damage", ["truncated", "not an image"])
def test_corrupt_image_is_named(tmp_path, damage):
    root = tmp_path / "data"
    make_split_folder(root)
    bad = root / "train" / "moose" / "bad.png"
    if damage == "truncated":
        truncated_png(bad)
    else:
        bad.write_bytes(b"\x89PNG but then nothing sensible")
    with pytest.raises(DataError, match="skip_bad=True") as raised:
        load_small_image_folder(root)
    assert str(bad) in str(raised.value)


def test_skip_bad_skips_and_counts_a_truncated_file(tmp_path):
    root = tmp_path / "data"
    written = make_split_folder(root)
    bad = truncated_png(root / "train" / "moose" / "001b.png")  # sorts between moose 001 and 002
    data = load_small_image_folder(root, skip_bad=True)
    assert len(data.skipped) == 1 and data.skipped[0][0] == str(bad) and data.skipped[0][1]
    assert data.train_images.shape == (9, 4, 4, 3)
    np.testing.assert_array_equal(data.train_labels, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(data.train_images[5], written["train", "moose", 2])
    assert load_small_image_folder(root, skip_bad=True).skipped == data.skipped  # kept in the cache too


def test_real_cifar10_jpeg_copy(tmp_path, monkeypatch):
    if not (CIFAR10_JPEG / "train").is_dir():
        pytest.skip(f"the CIFAR-10 JPEG copy is not at {CIFAR10_JPEG} (see ../shared/data/README.md)")
    start = time.perf_counter()
    data = load_small_image_folder(CIFAR10_JPEG, cache_dir=tmp_path / "cache")  # decodes 60,000 JPEGs once
    first_s = time.perf_counter() - start
    assert data.classes == CIFAR10_CLASSES and data.skipped == []
    assert data.train_images.shape == (50000, 32, 32, 3) and data.test_images.shape == (10000, 32, 32, 3)
    assert np.bincount(data.train_labels).tolist() == [5000] * 10
    assert np.bincount(data.test_labels).tolist() == [1000] * 10
    # Measured on this copy (../shared/data/README.md); a wrong channel order or a shifted split would miss it.
    channel_mean = data.test_images.reshape(-1, 3).mean(axis=0) / 255
    np.testing.assert_allclose(channel_mean, [0.4943, 0.4853, 0.4508], atol=0.002)
    forbid_decoding(monkeypatch)
    start = time.perf_counter()
    again = load_small_image_folder(CIFAR10_JPEG, cache_dir=tmp_path / "cache")
    second_s = time.perf_counter() - start
    assert_same(data, again)
    print(f"CIFAR-10 JPEG copy: first load (decode) {first_s:.1f} s, second load (cache) {second_s:.1f} s")
