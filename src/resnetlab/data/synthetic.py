"""A built-in data set drawn from a seed, so the quick start needs no download: 10 texture classes, 32x32 RGB.

Each image is a disc of texture at a random place and size on a plain background. The class is the texture alone:
stripes of 3 orientations and 2 periods, a diamond checkerboard, rings, dots, or none. Position, size, the texture's
phase, a small rotation, a mirror image, the three colours (background, and the texture's two), the contrast and the
pixel noise are all drawn independently of the class. So every class has the same mean image and a linear model on
raw pixels stays near chance, while a small conv net (oriented filters, then global pooling) learns the classes in
an epoch or two.

Every class is closed under the paper's augmentation: a random crop only moves the disc, and half of each class is
mirrored already, so a horizontal flip never turns an image into another class ("/" and "\\" stripes are one class).

Everything is vectorised numpy: 10k images take about half a second.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

IMAGE_SIZE = 32  # px, square, like CIFAR
NUM_CLASSES = 10

# (name, kind, angle of the texture's normal in degrees from the x axis towards +y (down), period in px), in label
# order. Each image uses the angle or its mirror image (180 - angle) at random: 45 deg gives "/" or "\\" stripes.
PATTERNS = (
    ("vertical_stripes_4px", "stripes", 0, 4),
    ("horizontal_stripes_4px", "stripes", 90, 4),
    ("diagonal_stripes_4px", "stripes", 45, 4),
    ("vertical_stripes_8px", "stripes", 0, 8),
    ("horizontal_stripes_8px", "stripes", 90, 8),
    ("diagonal_stripes_8px", "stripes", 45, 8),
    ("plain_disc", "plain", 0, 1),
    ("diamond_checkerboard_6px", "checkerboard", 45, 6),  # squares standing on a corner
    ("rings_5px", "rings", 0, 5),
    ("dots_6px", "dots", 0, 6),
)
# No upright checkerboard: its energy lies on the two diagonals at period / sqrt(2), so a small net takes it for
# diagonal stripes for many epochs. The diamond one (energy on the axes) has vertical and horizontal stripes as
# separate classes to tell it from, and is learned early.
CLASSES = tuple(name for name, _, _, _ in PATTERNS)
assert len(CLASSES) == NUM_CLASSES

# The nuisance variables, drawn uniformly in these ranges; they set how hard the data set is.
ANGLE_JITTER_DEG = 10.0  # rotation of the texture around its class orientation
PERIOD_JITTER = 0.1  # relative change of the texture's period
RADIUS_RANGE_PX = (9.0, 14.0)  # radius of the textured disc
CENTRE_MARGIN_PX = 6.0  # the disc's centre stays this far from the image border
CONTRAST_RANGE = (0.35, 0.7)  # difference of the texture's two colours, fraction of full scale
NOISE_STD_RANGE = (0.02, 0.08)  # Gaussian pixel noise, fraction of full scale, per image
DOT_RADIUS_CYCLES = 0.3  # dots: radius as a fraction of the grid period


class SyntheticSplits(NamedTuple):
    """Train and test splits: images uint8 NHWC (N, 32, 32, 3), labels int64 (N,), and the class names."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...]


def make_synthetic(num_train: int = 10_000, num_test: int = 2_000, seed: int = 0) -> SyntheticSplits:
    """The synthetic data set for a seed; the same seed gives the same bytes.

    Train and test come from independent streams of the seed, so the test split does not change with num_train.
    Classes are balanced (counts differ by at most one when N is not a multiple of 10).
    """
    if num_train < 0 or num_test < 0:
        raise ValueError(f"num_train and num_test must be >= 0, got {num_train} and {num_test}")
    train_stream, test_stream = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    train_images, train_labels = draw_synthetic_images(num_train, train_stream)
    test_images, test_labels = draw_synthetic_images(num_test, test_stream)
    return SyntheticSplits(train_images, train_labels, test_images, test_labels, CLASSES)


def draw_synthetic_images(num_images: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """num_images balanced, shuffled (uint8 NHWC images, int64 labels) drawn from rng."""
    n = num_images
    labels = rng.permutation(np.arange(n, dtype=np.int64) % NUM_CLASSES)
    radius = _uniform(rng, *RADIUS_RANGE_PX, n)
    centre_y, centre_x = _uniform(rng, CENTRE_MARGIN_PX, IMAGE_SIZE - CENTRE_MARGIN_PX, (2, n))
    coordinate = np.arange(IMAGE_SIZE, dtype=np.float32)
    dy = coordinate[None, :, None] - centre_y[:, None, None]  # (N, H, 1) px from the disc centre
    dx = coordinate[None, None, :] - centre_x[:, None, None]  # (N, 1, W)
    inside = dy**2 + dx**2 < radius[:, None, None] ** 2
    pattern = _texture(labels, dy, dx, rng)  # (N, H, W) bool: which of the texture's two colours

    # 0: background, 1 and 2: the texture's two colours; one gather from a flat palette paints every image.
    colour_index = (inside * (1 + pattern.view(np.uint8))).astype(np.intp)
    colour_index += 3 * np.arange(n)[:, None, None]
    images = np.take(_palettes(n, rng).reshape(-1, 3), colour_index.ravel(), axis=0).reshape(n, IMAGE_SIZE,
                                                                                             IMAGE_SIZE, 3)
    # Grey (luminance) noise: one draw per pixel, not per channel, as drawing normals is the slowest step.
    noise_std = _uniform(rng, *NOISE_STD_RANGE, (n, 1, 1, 1))
    images += rng.standard_normal((n, IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.float32) * noise_std
    return _to_uint8(images), labels


def _texture(labels: np.ndarray, dy: np.ndarray, dx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The class texture of each image as a boolean map around the disc centre (offsets dy, dx in px), with random
    phase, rotation jitter, mirror image and period jitter."""
    n = len(labels)
    kinds = np.array([kind for _, kind, _, _ in PATTERNS])[labels]
    angle_deg = (np.array([angle for _, _, angle, _ in PATTERNS], dtype=np.float32)[labels]
                 + _uniform(rng, -ANGLE_JITTER_DEG, ANGLE_JITTER_DEG, n))
    angle_deg = np.where(rng.random(n) < 0.5, 180.0 - angle_deg, angle_deg)  # x -> -x maps angle to 180 - angle
    angle = np.deg2rad(angle_deg)
    cycles_per_px = 1.0 / (np.array([period for _, _, _, period in PATTERNS], dtype=np.float32)[labels]
                           * _uniform(rng, 1.0 - PERIOD_JITTER, 1.0 + PERIOD_JITTER, n))
    phase = _uniform(rng, 0.0, 1.0, (2, n))[:, :, None, None]  # in cycles: the texture need not line up with the disc
    cos = (np.cos(angle) * cycles_per_px)[:, None, None]  # cycles per px along x
    sin = (np.sin(angle) * cycles_per_px)[:, None, None]  # cycles per px along y
    # Cycles along the normal, (dx cos + dy sin) / period + phase, summed from an (N, 1, W) and an (N, H, 1) part.
    pattern = _first_half_cycle(dx * cos + phase[0], dy * sin)  # stripes, for every image first

    pattern[kinds == "plain"] = True  # the disc in one colour, no texture
    checkerboard = kinds == "checkerboard"  # stripes xor stripes at right angles
    pattern[checkerboard] ^= _first_half_cycle(phase[1][checkerboard] - dx[checkerboard] * sin[checkerboard],
                                               dy[checkerboard] * cos[checkerboard])
    rings = kinds == "rings"  # centred on the disc
    distance = np.sqrt(dy[rings] ** 2 + dx[rings] ** 2) * cycles_per_px[rings, None, None]
    pattern[rings] = _first_half_cycle(distance, phase[0][rings])
    dots = kinds == "dots"  # a square grid of round dots, radius 0.3 period
    along = _centred_fraction(dx[dots] * cos[dots] + phase[0][dots], dy[dots] * sin[dots])
    across = _centred_fraction(phase[1][dots] - dx[dots] * sin[dots], dy[dots] * cos[dots])
    pattern[dots] = along**2 + across**2 < DOT_RADIUS_CYCLES**2
    return pattern


def _centred_fraction(cycles_x: np.ndarray, cycles_y: np.ndarray) -> np.ndarray:
    """Position within the current cycle of cycles_x + cycles_y, in [-0.5, 0.5)."""
    cycles = cycles_x + cycles_y
    return cycles - np.floor(cycles) - 0.5


def _first_half_cycle(cycles_x: np.ndarray, cycles_y: np.ndarray) -> np.ndarray:
    """Square wave of cycles_x + cycles_y: True in the first half of each cycle (floor beats % 1.0 by ~5x)."""
    cycles = cycles_x + cycles_y
    return cycles - np.floor(cycles) < 0.5


def _palettes(n: int, rng: np.random.Generator) -> np.ndarray:
    """(N, 3 colours, RGB) in [0, 1]: background, then the texture's two colours. The second is the first +- a
    contrast, the sign at random, so dark-on-light and light-on-dark are equally likely in every class."""
    background = _uniform(rng, 0.0, 1.0, (n, 3))
    first = _uniform(rng, 0.0, 1.0, (n, 3))
    sign = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(n, 1))
    tint = _uniform(rng, 0.5, 1.0, (n, 3))  # the contrast is not purely grey
    second = np.clip(first + sign * _uniform(rng, *CONTRAST_RANGE, (n, 1)) * tint, 0.0, 1.0)
    return np.stack([background, first, second], axis=1)


def _uniform(rng: np.random.Generator, low: float, high: float, size) -> np.ndarray:
    return rng.uniform(low, high, size).astype(np.float32)


def _to_uint8(images: np.ndarray) -> np.ndarray:
    """[0, 1] floats to uint8 pixels, rounded and clipped; works in place on `images`."""
    np.clip(images, 0.0, 1.0, out=images)
    images *= 255.0
    images += 0.5
    return images.astype(np.uint8)
