"""Batched CIFAR augmentation (pad-crop-flip) and the normalizer: statistics, content, seeds, round trips."""

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from resnetlab.data.augment import (
    Normalizer,
    crop_flip,
    draw_crop_flip,
    nhwc_to_nchw,
    random_crop_flip,
    to_nchw_float,
)

PADDING = 4
POSITIONS = 2 * PADDING + 1  # 9 crop offsets per axis, 81 in all


def coordinate_images(n, h=32, w=32):
    """Float images whose pixel (r, c) holds 1 + r * w + c, so a crop tells where it came from (padding is 0)."""
    grid = 1.0 + torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w)
    return grid.expand(n, 1, h, w).contiguous()


def recover_crop_flip(crops):
    """Offsets and flips read back from crops of coordinate_images: output pixels (8, 8) and (8, 9) always lie
    inside the original image, whatever the offset, for images of 16 px or more."""
    w = crops.shape[-1]
    value, right = crops[:, 0, 8, 8].long() - 1, crops[:, 0, 8, 9].long() - 1
    flipped = right < value  # a mirrored crop reads columns backwards
    row, col = value // w, value % w
    offset_y = row - 8 + PADDING
    offset_x = torch.where(flipped, col - (w - 1 - 8) + PADDING, col - 8 + PADDING)
    return offset_y, offset_x, flipped


@pytest.fixture(scope="module")
def many_draws():
    """Offsets and flips of 400 draws for each of 64 images, shape (400, 64): one call on a batch of 25,600
    16x16 images (one big call, not 400 small ones, keeps this fast on a busy machine)."""
    batch, draws = 64, 400
    images = coordinate_images(batch, 16, 16).repeat(draws, 1, 1, 1)
    out = random_crop_flip(images, PADDING, torch.Generator().manual_seed(0))
    return [part.view(draws, batch) for part in recover_crop_flip(out)]


@pytest.mark.parametrize("size", [16, 32])
def test_recovery_helper_reads_known_parameters(size):
    images = coordinate_images(4, size, size)
    offset_y, offset_x, flip = torch.tensor([0, 8, 3, 5]), torch.tensor([0, 8, 7, 1]), torch.tensor([0, 1, 1, 0]).bool()
    recovered = recover_crop_flip(crop_flip(images, offset_y, offset_x, flip, PADDING))
    assert all(torch.equal(a, b) for a, b in zip(recovered, (offset_y, offset_x, flip)))


def test_each_image_is_flipped_about_half_the_time(many_draws):
    _, _, flips = many_draws
    draws = flips.shape[0]
    per_image = flips.sum(0).double()
    sigma = (draws * 0.25) ** 0.5  # binomial(400, 0.5): std 10
    assert (per_image - draws / 2).abs().max() < 5 * sigma, per_image
    assert abs(flips.double().mean().item() - 0.5) < 5 * (0.25 / flips.numel()) ** 0.5


def test_crop_offsets_are_uniform_over_the_9x9_positions(many_draws):
    offset_y, offset_x, _ = many_draws
    assert offset_y.min() >= 0 and offset_y.max() <= 2 * PADDING and offset_x.min() >= 0 and offset_x.max() <= 8
    counts = torch.bincount((offset_y * POSITIONS + offset_x).flatten(), minlength=POSITIONS**2).double()
    assert (counts > 0).all()  # each of the 81 offsets seen
    expected = offset_y.numel() / POSITIONS**2
    chi_square = ((counts - expected) ** 2 / expected).sum().item()
    assert chi_square < 80 + 6 * (2 * 80) ** 0.5  # 80 degrees of freedom: mean 80, std ~12.6


def test_zero_offset_is_the_padded_images_corner():
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    padded = F.pad(images, (PADDING,) * 4)
    zeros, no_flip = torch.zeros(5, dtype=torch.long), torch.zeros(5, dtype=torch.bool)
    assert torch.equal(crop_flip(images, zeros, zeros, no_flip, PADDING), padded[:, :, :32, :32])
    last = torch.full((5,), 2 * PADDING)
    assert torch.equal(crop_flip(images, last, last, no_flip, PADDING), padded[:, :, -32:, -32:])
    centre = torch.full((5,), PADDING)
    assert torch.equal(crop_flip(images, centre, centre, no_flip, PADDING), images)
    assert torch.equal(crop_flip(images, centre, centre, ~no_flip, PADDING), images.flip(3))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_crops_are_shifted_copies_as_plain_slicing_gives(dtype):
    images = torch.randint(1, 256, (8, 3, 20, 28), dtype=torch.uint8).to(dtype)  # non-square on purpose
    out = random_crop_flip(images, PADDING, torch.Generator().manual_seed(3))
    offset_y, offset_x, flip = draw_crop_flip(8, PADDING, torch.Generator().manual_seed(3))
    assert out.shape == images.shape and out.dtype == dtype
    padded = F.pad(images, (PADDING,) * 4)
    for i in range(8):  # the per-image reference the batched version must equal
        y, x = int(offset_y[i]), int(offset_x[i])
        reference = padded[i, :, y:y + 20, x:x + 28]
        assert torch.equal(out[i], reference.flip(2) if flip[i] else reference)


def test_same_seed_same_result_and_other_seeds_differ():
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    first = random_crop_flip(images, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, random_crop_flip(images, generator=torch.Generator().manual_seed(7)))
    assert not torch.equal(first, random_crop_flip(images, generator=torch.Generator().manual_seed(8)))


def test_without_padding_only_the_flip_remains():
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    out = random_crop_flip(images, padding=0, generator=torch.Generator().manual_seed(0))
    same = (out == images).flatten(1).all(1)
    mirrored = (out == images.flip(3)).flatten(1).all(1)
    assert (same | mirrored).all() and same.any() and mirrored.any()


def test_bad_batches_raise():
    with pytest.raises(ValueError, match="NCHW"):
        random_crop_flip(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match="padding"):
        random_crop_flip(torch.zeros(1, 3, 32, 32), padding=-1)


def training_images(n=300, h=8, w=8, seed=0):
    """uint8 NHWC images with different statistics per channel and per pixel."""
    rng = np.random.default_rng(seed)
    low = np.array([0, 40, 100], dtype=np.int64)
    span = np.array([255, 120, 60], dtype=np.int64)
    ramp = np.linspace(0, 1, h * w).reshape(h, w, 1)
    values = low + span * (0.5 * rng.random((n, h, w, 3)) + 0.5 * ramp)
    return values.round().clip(0, 255).astype(np.uint8)


def test_to_nchw_float_from_numpy_and_tensor():
    images = training_images()
    from_numpy, from_tensor = to_nchw_float(images), to_nchw_float(torch.from_numpy(images))
    assert from_numpy.shape == (300, 3, 8, 8) and from_numpy.dtype == torch.float32 and from_numpy.is_contiguous()
    assert torch.equal(from_numpy, from_tensor)
    assert torch.equal(from_numpy[5, 2, 3, 4], torch.tensor(images[5, 3, 4, 2] / 255.0, dtype=torch.float32))
    assert torch.equal(nhwc_to_nchw(images), torch.from_numpy(images).permute(0, 3, 1, 2))
    with pytest.raises(TypeError, match="uint8"):
        to_nchw_float(images.astype(np.float32))


def test_per_pixel_mean_subtracts_exactly_the_training_mean_image():
    images = training_images()
    normalizer = Normalizer.from_training_images(images, mode="per_pixel_mean")
    mean_image = images.astype(np.float64).mean(0).transpose(2, 0, 1) / 255.0  # (C, H, W)
    assert normalizer.mean.shape == (3, 8, 8) and normalizer.std is None
    torch.testing.assert_close(normalizer.mean, torch.from_numpy(mean_image).float(), rtol=0, atol=1e-7)
    batch = nhwc_to_nchw(images)
    out = normalizer(batch)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, to_nchw_float(images) - normalizer.mean, rtol=0, atol=0)
    torch.testing.assert_close(out.mean(0), torch.zeros(3, 8, 8), rtol=0, atol=1e-6)
    torch.testing.assert_close(normalizer(to_nchw_float(images)), out)  # float in [0, 1] gives the same


def test_per_channel_gives_zero_mean_and_unit_std_on_the_training_split():
    images = training_images()
    normalizer = Normalizer.from_training_images(torch.from_numpy(images), mode="per_channel")
    assert normalizer.mean.shape == normalizer.std.shape == (3, 1, 1)
    out = normalizer(nhwc_to_nchw(images)).double()
    torch.testing.assert_close(out.mean((0, 2, 3)), torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-6)
    torch.testing.assert_close(out.std((0, 2, 3), correction=0), torch.ones(3, dtype=torch.float64), rtol=0,
                               atol=1e-5)


def test_statistics_span_several_chunks():
    images = training_images(n=2500, h=4, w=4, seed=1)  # more images than one statistics chunk
    normalizer = Normalizer.from_training_images(images, mode="per_channel")
    flat = images.reshape(-1, 3).astype(np.float64) / 255.0
    torch.testing.assert_close(normalizer.mean.flatten(), torch.from_numpy(flat.mean(0)).float())
    torch.testing.assert_close(normalizer.std.flatten(), torch.from_numpy(flat.std(0)).float())


@pytest.mark.parametrize("mode", ["per_pixel_mean", "per_channel"])
def test_state_dict_round_trip(mode):
    images = training_images()
    normalizer = Normalizer.from_training_images(images, mode=mode)
    buffer = io.BytesIO()
    torch.save(normalizer.state_dict(), buffer)
    buffer.seek(0)
    restored = Normalizer.from_state_dict(torch.load(buffer))
    assert restored.mode == mode
    batch = nhwc_to_nchw(images[:10])
    assert torch.equal(restored(batch), normalizer(batch))


def test_normalizer_rejects_bad_modes_and_shapes():
    images = training_images()
    with pytest.raises(ValueError, match="mode"):
        Normalizer.from_training_images(images, mode="imagenet")
    with pytest.raises(ValueError, match="uint8 NHWC"):
        Normalizer.from_training_images(images.astype(np.float32))
    per_pixel = Normalizer.from_training_images(images)
    with pytest.raises(ValueError, match="do not fit"):
        per_pixel(torch.zeros(2, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(TypeError, match="uint8 or float"):
        per_pixel(torch.zeros(2, 3, 8, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="needs a std"):
        Normalizer("per_channel", torch.zeros(3, 1, 1))
