"""Large-image pipeline: He et al. 2015's ImageNet transforms and the streaming folder loader."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnetlab.data.errors import DataError
from resnetlab.data.streaming import (
    SeededShuffleSampler,
    StreamingImageDataset,
    estimate_channel_stats,
    list_image_files,
    make_streaming_loader,
    set_loader_epoch,
)
from resnetlab.data.transforms import (
    CenterCrop,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    RandomResizeShorterSide,
    ResizeShorterSide,
    TenCrop,
    ToTensor,
    eval_transform,
    train_transform,
)

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.15)
SIZES = [(300, 400), (500, 260)]  # (width, height) px, as Pillow gives sizes


def pattern(width: int, height: int) -> Image.Image:
    """Each pixel encodes its own coordinates: R = x mod 256, G = y mod 256, B = x // 256 + 16 * (y // 256)."""
    y, x = np.mgrid[:height, :width]
    return Image.fromarray(np.stack([x % 256, y % 256, x // 256 + 16 * (y // 256)], -1).astype(np.uint8))


def offset_of(crop: Image.Image) -> tuple[int, int]:
    """(row, column) in the pattern image of the crop's top-left pixel."""
    r, g, b = crop.getpixel((0, 0))
    return g + 256 * (b >> 4), r + 256 * (b & 15)


def noise_image(seed: int, size: tuple[int, int]) -> Image.Image:
    width, height = size
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    """root/train/{ant,bee,cat}/ with 4 images each (JPEG and PNG, 300x400 and 500x260), root/test/ the same."""
    root = tmp_path_factory.mktemp("images")
    for split in ("train", "test"):
        for label, name in enumerate(["ant", "bee", "cat"]):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(4):
                image = noise_image(100 * label + i + (1000 if split == "test" else 0), SIZES[i % 2])
                image.save(folder / (f"{i}.jpg" if i < 2 else f"{i}.png"), quality=90)
    return root


def batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(images.clone(), labels.clone()) for images, labels in loader]


def same_batches(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) and torch.equal(s, t) for (x, s), (y, t) in zip(a, b))


# --- transforms --------------------------------------------------------------------------------------------------

def test_random_resize_shorter_side_covers_256_to_480_and_keeps_aspect():
    image, transform, rng = Image.new("RGB", (30, 20)), RandomResizeShorterSide(256, 480), random.Random(0)
    sizes = []
    for _ in range(600):
        out = transform(image, rng)
        short = min(out.size)
        assert 256 <= short <= 480 and out.size == (round(30 * short / 20), short)
        sizes.append(short)
    assert min(sizes) <= 260 and max(sizes) >= 476  # P(either fails) < 1e-4 for uniform draws

    class Ends:  # a stub rng returning the lower, then the upper end it is asked for: both ends are reachable
        calls = []

        def randint(self, a, b):
            self.calls.append((a, b))
            return a if len(self.calls) == 1 else b
    ends = Ends()
    assert min(transform(image, ends).size) == 256 and min(transform(image, ends).size) == 480
    assert Ends.calls == [(256, 480), (256, 480)]


def test_resize_shorter_side_portrait_and_landscape():
    assert ResizeShorterSide(256)(Image.new("RGB", (300, 400))).size == (256, round(400 * 256 / 300))
    assert ResizeShorterSide(256)(Image.new("RGB", (500, 260))).size == (round(500 * 256 / 260), 256)


@pytest.mark.parametrize("size", [224, (100, 50)])
def test_random_crop_comes_from_a_uniform_valid_offset(size):
    image = pattern(400, 300)
    pixels, transform, rng = np.asarray(image), RandomCrop(size), random.Random(1)
    height, width = (size, size) if isinstance(size, int) else size
    offsets = []
    for draw in range(2000):
        crop = transform(image, rng)
        assert crop.size == (width, height)
        top, left = offset_of(crop)
        if draw < 20:
            assert np.array_equal(np.asarray(crop), pixels[top:top + height, left:left + width])
        offsets.append((top, left))
    tops, lefts = zip(*offsets)
    assert (min(tops), max(tops), min(lefts), max(lefts)) == (0, 300 - height, 0, 400 - width)


def test_center_crop_position():
    image = pattern(400, 300)
    crop = CenterCrop(224)(image)
    assert offset_of(crop) == ((300 - 224) // 2, (400 - 224) // 2)
    assert np.array_equal(np.asarray(crop), np.asarray(image)[38:262, 88:312])


def test_crop_larger_than_image_is_a_clear_error():
    with pytest.raises(ValueError, match="does not fit"):
        RandomCrop(224)(Image.new("RGB", (300, 200)), random.Random(0))


def test_horizontal_flip_probability():
    image, rng = pattern(40, 30), random.Random(2)
    draws = 2000
    flips = sum(offset_of(RandomHorizontalFlip(0.5)(image, rng)) == (0, 39) for _ in range(draws))
    assert abs(flips - draws / 2) < 5 * math.sqrt(draws / 4)  # 5 binomial standard deviations
    assert not any(offset_of(RandomHorizontalFlip(0.0)(image, rng)) == (0, 39) for _ in range(50))
    assert all(offset_of(RandomHorizontalFlip(1.0)(image, rng)) == (0, 39) for _ in range(50))


def test_random_transforms_refuse_the_global_rng():
    for transform in (RandomResizeShorterSide(), RandomCrop(8), RandomHorizontalFlip()):
        with pytest.raises(ValueError, match="random.Random"):
            transform(Image.new("RGB", (16, 16)))


@pytest.mark.parametrize("width,height", [(400, 300), (301, 260)])
def test_ten_crop_is_five_crops_and_their_mirrors(width, height):
    image, c = pattern(width, height), 224
    pixels = np.asarray(image)
    crops = [np.asarray(crop) for crop in TenCrop(c)(image)]
    assert len(crops) == 10
    top, left = (height - c) // 2, (width - c) // 2
    for source, first in ((pixels, 0), (pixels[:, ::-1], 5)):
        expected = [source[:c, :c], source[:c, -c:], source[-c:, :c], source[-c:, -c:],
                    source[top:top + c, left:left + c]]
        for k, want in enumerate(expected):
            assert np.array_equal(crops[first + k], want), f"crop {first + k}"
    assert np.array_equal(crops[5], crops[1][:, ::-1]) and np.array_equal(crops[6], crops[0][:, ::-1])


def test_to_tensor_and_normalize():
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    tensor = ToTensor()(Image.fromarray(pixels))
    assert tensor.dtype == torch.float32 and tensor.shape == (3, 5, 7)
    assert torch.equal(tensor, torch.from_numpy(pixels).permute(2, 0, 1).float() / 255)
    assert ToTensor()([Image.fromarray(pixels)] * 2).shape == (2, 3, 5, 7)
    normalized = Normalize(MEAN, STD)(tensor)
    for c in range(3):
        assert torch.allclose(normalized[c], (tensor[c] - MEAN[c]) / STD[c])
    with pytest.raises(ValueError, match="std"):
        Normalize(MEAN, (0.2, 0.0, 0.1))


def test_train_and_eval_transform_shapes_and_determinism():
    image = noise_image(0, (500, 260))
    out = train_transform(mean=MEAN, std=STD)(image, random.Random(0))
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    assert torch.equal(out, train_transform(mean=MEAN, std=STD)(image, random.Random(0)))
    plain = train_transform()(image, random.Random(0))
    assert 0.0 <= plain.min() and plain.max() <= 1.0
    center = eval_transform()(image, random.Random(0))
    assert torch.equal(center, eval_transform()(image, random.Random(99)))
    assert torch.equal(center, eval_transform()(image))  # no rng needed: nothing is random
    assert torch.equal(center, ToTensor()(CenterCrop(224)(ResizeShorterSide(256)(image))))
    ten = eval_transform(ten_crop=True)(image)
    assert ten.shape == (10, 3, 224, 224) and torch.equal(ten[4], center)


def test_crop_larger_than_resize_is_refused():
    with pytest.raises(ValueError, match="crop 300 px"):
        train_transform(crop=300, scale=(256, 480))
    with pytest.raises(ValueError, match="crop 288 px"):
        eval_transform(crop=288, resize=256)


# --- listing -----------------------------------------------------------------------------------------------------

def test_list_image_files(image_root, tmp_path):
    paths, labels, classes = list_image_files(image_root / "train")
    assert classes == ["ant", "bee", "cat"] and labels == [0] * 4 + [1] * 4 + [2] * 4
    assert [p.name for p in paths[:4]] == ["0.jpg", "1.jpg", "2.png", "3.png"] and paths == sorted(paths)
    (tmp_path / "a").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "x.JPG")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    assert list_image_files(tmp_path)[0] == [tmp_path / "a" / "x.JPG"]
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DataError, match="empty_class"):
        list_image_files(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        list_image_files(tmp_path / "missing")
    (tmp_path / "none" / "b").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        list_image_files(tmp_path / "none")


# --- loader ------------------------------------------------------------------------------------------------------

def test_sampler_is_a_seeded_permutation():
    sampler = SeededShuffleSampler(50, seed=1, epoch=0)
    first = list(sampler)
    assert sorted(first) == list(range(50)) and first == list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_loader_is_reproducible_and_independent_of_workers(image_root):
    def loader(epoch, workers=2):
        return make_streaming_loader(image_root, "train", batch_size=4, train=True, num_workers=workers, seed=3,
                                     epoch=epoch, mean=MEAN, std=STD)
    torch_state, python_state = torch.get_rng_state(), random.getstate()
    epoch0 = batches(loader(0))
    assert [images.shape for images, _ in epoch0] == [(4, 3, 224, 224)] * 3
    assert sorted(torch.cat([labels for _, labels in epoch0]).tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    assert same_batches(epoch0, batches(loader(0)))
    assert same_batches(epoch0, batches(loader(0, workers=0)))  # the sample does not depend on the worker
    epoch1 = batches(loader(1))
    assert not torch.equal(epoch0[0][0], epoch1[0][0])
    moved = loader(0)
    set_loader_epoch(moved, 1)
    assert same_batches(epoch1, batches(moved))
    assert torch.equal(torch.get_rng_state(), torch_state) and random.getstate() == python_state


def test_eval_loader_is_sequential_with_ten_crops_and_own_statistics(image_root):
    loader = make_streaming_loader(image_root, "test", batch_size=5, train=False, num_workers=0, ten_crop=True)
    got = batches(loader)
    assert [images.shape for images, _ in got] == [(5, 10, 3, 224, 224), (5, 10, 3, 224, 224), (2, 10, 3, 224, 224)]
    assert torch.cat([labels for _, labels in got]).tolist() == list_image_files(image_root / "test")[1]
    normalize = loader.dataset.transform.transforms[-1]
    mean, std = estimate_channel_stats(list_image_files(image_root / "train")[0])
    assert torch.allclose(normalize.mean, torch.tensor(mean)) and torch.allclose(normalize.std, torch.tensor(std))
    with pytest.raises(ValueError, match="ten_crop"):
        make_streaming_loader(image_root, "train", 4, train=True, ten_crop=True, mean=MEAN, std=STD)
    with pytest.raises(DataError, match="fewer than batch_size=13"):
        make_streaming_loader(image_root, "train", 13, train=True, mean=MEAN, std=STD)
    with pytest.raises(IndexError):
        loader.dataset[len(loader.dataset)]


def test_grayscale_palette_and_rgba_come_out_rgb(tmp_path):
    Image.new("L", (300, 260), 77).save(tmp_path / "gray.png")
    Image.new("L", (300, 260), 77).save(tmp_path / "gray.jpg")
    Image.new("RGBA", (260, 300), (10, 20, 30, 0)).save(tmp_path / "rgba.png")
    Image.new("RGB", (260, 300), (200, 100, 50)).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "p.png")
    paths = [tmp_path / name for name in ("gray.png", "gray.jpg", "rgba.png", "p.png")]
    dataset = StreamingImageDataset(paths, [0, 1, 2, 3], eval_transform())
    expected = [(77, 77, 77), (77, 77, 77), (10, 20, 30), (200, 100, 50)]
    for i, colour in enumerate(expected):
        image, label = dataset[i]
        assert image.shape == (3, 224, 224) and label == i
        want = torch.tensor(colour, dtype=torch.float32)[:, None, None] / 255
        assert torch.allclose(image, want.expand_as(image), atol=1.5 / 255), paths[i].name


@pytest.fixture()
def bad_folder(tmp_path) -> Path:
    """train/a/: 0.png, 1_garbage.jpg (not an image), 2.png, 3_truncated.jpg (first half of a JPEG)."""
    folder = tmp_path / "train" / "a"
    folder.mkdir(parents=True)
    noise_image(0, (300, 260)).save(folder / "0.png")
    (folder / "1_garbage.jpg").write_bytes(b"this is not a JPEG at all" * 10)
    noise_image(2, (300, 260)).save(folder / "2.png")
    noise_image(3, (300, 260)).save(folder / "full.jpg", quality=90)
    data = (folder / "full.jpg").read_bytes()
    (folder / "3_truncated.jpg").write_bytes(data[:len(data) // 2])
    (folder / "full.jpg").unlink()
    return tmp_path


def test_corrupt_and_truncated_files_raise_data_error_naming_them(bad_folder):
    paths, labels, _ = list_image_files(bad_folder / "train")
    dataset = StreamingImageDataset(paths, labels, eval_transform())
    for i in (1, 3):
        with pytest.raises(DataError, match=paths[i].name):
            dataset[i]
    loader = make_streaming_loader(bad_folder, "train", 2, train=False, num_workers=2, mean=MEAN, std=STD)
    with pytest.raises(DataError, match="1_garbage.jpg"):
        batches(loader)


def test_skip_bad_uses_the_next_readable_image_and_logs_once(bad_folder, capsys):
    paths, labels, _ = list_image_files(bad_folder / "train")
    dataset = StreamingImageDataset(paths, [0, 1, 2, 3], eval_transform(), skip_bad=True)
    for _ in range(2):
        image, label = dataset[1]
        assert label == 2 and torch.equal(image, dataset[2][0])
    image, label = dataset[3]  # the last file: wraps round to index 0
    assert label == 0 and torch.equal(image, dataset[0][0])
    lines = capsys.readouterr().err.splitlines()
    assert [sum(name in line for line in lines) for name in ("1_garbage.jpg", "3_truncated.jpg")] == [1, 1]
    assert dataset.skipped == {str(paths[1]), str(paths[3])}
    loader = make_streaming_loader(bad_folder, "train", 4, train=False, num_workers=2, skip_bad=True)
    assert batches(loader)[0][1].tolist() == [0, 0, 0, 0]  # all 4 slots filled; every label is class a


def test_channel_stats_of_constant_colour_images(tmp_path):
    paths = []
    for i, size in enumerate(SIZES * 3):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", size, (51, 102, 204)).save(paths[-1])
    mean, std = estimate_channel_stats(paths)
    assert np.allclose(mean, (0.2, 0.4, 0.8), atol=1e-6) and np.allclose(std, 0.0, atol=1e-6)
    Image.new("RGB", (300, 400), (0, 0, 0)).save(tmp_path / "black.png")
    Image.new("RGB", (500, 260), (255, 255, 255)).save(tmp_path / "white.png")
    mean, std = estimate_channel_stats([tmp_path / "black.png", tmp_path / "white.png"])
    assert np.allclose(mean, 0.5) and np.allclose(std, 0.5)  # equal pixel counts: 224 x 224 each


def test_channel_stats_sample_is_seeded(tmp_path):
    paths = []
    for i in range(12):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (260, 260), (20 * i, 10, 10)).save(paths[-1])
    first = estimate_channel_stats(paths, sample=3, seed=5)
    assert first == estimate_channel_stats(paths, sample=3, seed=5)
    assert first != estimate_channel_stats(paths, sample=3, seed=6)
