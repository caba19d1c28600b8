"""Per-image transforms for large images (He et al. 2015's ImageNet recipe): Pillow images in, tensors out.

Every transform is a small class called as ``transform(image, rng)``. The random ones draw only from the
``random.Random`` passed in (never the global RNG), so a sample's augmentation is a pure function of its seed: the
streaming data set gives each sample its own ``random.Random`` derived from (seed, epoch, index). Deterministic
transforms accept the same argument and ignore it, so any chain of them composes with `Compose`.

The recipe: train = shorter side resized to a random integer in [256, 480], random 224 x 224 crop, horizontal
flip with p = 0.5; test = shorter side 256, centre 224 crop, or the 10 crops (4 corners + centre, and the same of
the mirrored image). The paper's colour augmentation, Krizhevsky's PCA lighting (`Lighting`), follows the crop and
flip when asked (`data.lighting`).
"""

from __future__ import annotations

import numbers
import random
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

__all__ = ["CenterCrop", "Compose", "Lighting", "Normalize", "RandomCrop", "RandomHorizontalFlip",
           "RandomResizeShorterSide", "ResizeShorterSide", "TenCrop", "ToTensor", "eval_transform", "train_transform"]

_PIXEL_SCALE = 255.0  # uint8 pixels to [0, 1]


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    """A crop size as (height, width) px; an int means a square."""
    height, width = (size, size) if isinstance(size, numbers.Integral) else tuple(size)
    if height <= 0 or width <= 0:
        raise ValueError(f"crop size must be positive, got {size}")
    return int(height), int(width)


def _need_rng(rng: random.Random | None, name: str) -> random.Random:
    if rng is None:
        raise ValueError(f"{name} is random: pass a seeded random.Random, e.g. {name}(...)(image, random.Random(0))")
    return rng


def _resize_shorter(image: Image.Image, size: int) -> Image.Image:
    """Resize (bilinear) so the shorter side is `size` px, keeping the aspect ratio (longer side rounded)."""
    width, height = image.size
    if min(width, height) == size:
        return image
    if width <= height:
        new_size = (size, max(size, round(height * size / width)))
    else:
        new_size = (max(size, round(width * size / height)), size)
    return image.resize(new_size, Image.Resampling.BILINEAR)


def _crop(image: Image.Image, top: int, left: int, height: int, width: int) -> Image.Image:
    return image.crop((left, top, left + width, top + height))


def _check_fits(image: Image.Image, height: int, width: int, name: str) -> None:
    if image.height < height or image.width < width:
        raise ValueError(f"{name} of {height}x{width} px (HxW) does not fit a {image.height}x{image.width} image: "
                         "resize the shorter side to at least the crop size first")


class Compose:
    """Apply transforms in order, passing each the same `rng`."""

    def __init__(self, transforms: Sequence):
        self.transforms = list(transforms)

    def __call__(self, image, rng: random.Random | None = None):
        for transform in self.transforms:
            image = transform(image, rng)
        return image

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(repr(t) for t in self.transforms)})"


class RandomResizeShorterSide:
    """Resize (bilinear) so the shorter side is an integer drawn uniformly from [min_size, max_size] px."""

    def __init__(self, min_size: int = 256, max_size: int = 480):
        if not 0 < min_size <= max_size:
            raise ValueError(f"need 0 < min_size <= max_size, got min_size={min_size}, max_size={max_size}")
        self.min_size, self.max_size = min_size, max_size

    def __call__(self, image: Image.Image, rng: random.Random | None = None) -> Image.Image:
        size = _need_rng(rng, type(self).__name__).randint(self.min_size, self.max_size)  # both ends included
        return _resize_shorter(image, size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(min_size={self.min_size}, max_size={self.max_size})"


class ResizeShorterSide:
    """Resize (bilinear) so the shorter side is `size` px, keeping the aspect ratio."""

    def __init__(self, size: int):
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        self.size = size

    def __call__(self, image: Image.Image, rng: random.Random | None = None) -> Image.Image:
        return _resize_shorter(image, self.size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.size})"


class RandomCrop:
    """Crop a `size` window (int: square, or (height, width)) at a uniformly random position, no padding."""

    def __init__(self, size: int | Sequence[int]):
        self.height, self.width = _pair(size)

    def __call__(self, image: Image.Image, rng: random.Random | None = None) -> Image.Image:
        rng = _need_rng(rng, type(self).__name__)
        _check_fits(image, self.height, self.width, type(self).__name__)
        top = rng.randint(0, image.height - self.height)
        left = rng.randint(0, image.width - self.width)
        return _crop(image, top, left, self.height, self.width)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(({self.height}, {self.width}))"


class CenterCrop:
    """Crop the centre `size` window; an odd margin leaves the extra pixel at the bottom/right."""

    def __init__(self, size: int | Sequence[int]):
        self.height, self.width = _pair(size)

    def __call__(self, image: Image.Image, rng: random.Random | None = None) -> Image.Image:
        _check_fits(image, self.height, self.width, type(self).__name__)
        top, left = (image.height - self.height) // 2, (image.width - self.width) // 2
        return _crop(image, top, left, self.height, self.width)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(({self.height}, {self.width}))"


class RandomHorizontalFlip:
    """Mirror left-right with probability `p`."""

    def __init__(self, p: float = 0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, image: Image.Image, rng: random.Random | None = None) -> Image.Image:
        if _need_rng(rng, type(self).__name__).random() < self.p:
            return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


class TenCrop:
    """The 10 test crops of He et al. / Krizhevsky et al., returned as a list in this order:

    0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right, 4 centre of the image, then 5..9 the same five
    positions cropped from the horizontally mirrored image (so crop 5 is the mirror of crop 1, 6 of 0, ...).
    """

    def __init__(self, size: int | Sequence[int]):
        self.height, self.width = _pair(size)
        self._center = CenterCrop((self.height, self.width))

    def __call__(self, image: Image.Image, rng: random.Random | None = None) -> list[Image.Image]:
        _check_fits(image, self.height, self.width, type(self).__name__)
        mirrored = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return self._five(image) + self._five(mirrored)

    def _five(self, image: Image.Image) -> list[Image.Image]:
        bottom, right = image.height - self.height, image.width - self.width
        corners = [(0, 0), (0, right), (bottom, 0), (bottom, right)]
        return [_crop(image, top, left, self.height, self.width) for top, left in corners] + [self._center(image)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(({self.height}, {self.width}))"


class ToTensor:
    """uint8 H x W x C image (Pillow or numpy) to float32 C x H x W in [0, 1]; a list of images to N x C x H x W."""

    def __call__(self, image, rng: random.Random | None = None) -> torch.Tensor:
        if isinstance(image, (list, tuple)):
            return torch.stack([self(one) for one in image])
        pixels = np.array(image, dtype=np.uint8, copy=True)  # a writable copy: Pillow's buffer is read-only
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if pixels.ndim != 3:
            raise ValueError(f"expected an H x W x C image, got shape {pixels.shape}")
        return torch.from_numpy(pixels).permute(2, 0, 1).float().div_(_PIXEL_SCALE).contiguous()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Normalize:
    """(x - mean) / std per channel of a float (..., C, H, W) tensor; mean and std in the [0, 1] pixel scale."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        if len(mean) != len(std):
            raise ValueError(f"mean and std need one value per channel each, got {len(mean)} and {len(std)}")
        if any(not s > 0 for s in std):
            raise ValueError(f"std must be > 0 in every channel, got {tuple(std)}")
        self.mean = torch.tensor([float(m) for m in mean], dtype=torch.float32)
        self.std = torch.tensor([float(s) for s in std], dtype=torch.float32)

    def __call__(self, tensor: torch.Tensor, rng: random.Random | None = None) -> torch.Tensor:
        if tensor.ndim < 3 or tensor.shape[-3] != len(self.mean):
            raise ValueError(f"expected (..., {len(self.mean)}, H, W), got shape {tuple(tensor.shape)}")
        return (tensor - self.mean[:, None, None]) / self.std[:, None, None]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean.tolist()}, std={self.std.tolist()})"


# ImageNet's RGB principal components (pixels in [0, 1]): eigenvalues and eigenvectors (columns), as AlexNet's PCA
# colour augmentation uses them (Krizhevsky et al. 2012; the values of fb.resnet.torch, which the ResNet paper's
# "standard color augmentation" points to).
IMAGENET_PCA_EIGENVALUES = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGENVECTORS = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))


class Lighting:
    """AlexNet's PCA colour augmentation on a float 3 x H x W tensor in [0, 1]: adds
    ``eigenvectors @ (alpha * eigenvalues)`` to every pixel, alpha ~ N(0, ``std``) per component, per image."""

    def __init__(self, std: float, eigenvalues: Sequence[float] = IMAGENET_PCA_EIGENVALUES,
                 eigenvectors: Sequence[Sequence[float]] = IMAGENET_PCA_EIGENVECTORS):
        if not std >= 0:
            raise ValueError(f"lighting std must be >= 0, got {std}")
        self.std = float(std)
        self.eigenvalues = torch.tensor(eigenvalues, dtype=torch.float32)
        self.eigenvectors = torch.tensor(eigenvectors, dtype=torch.float32)

    def __call__(self, tensor: torch.Tensor, rng: random.Random | None = None) -> torch.Tensor:
        rng = _need_rng(rng, type(self).__name__)
        alpha = torch.tensor([rng.gauss(0.0, self.std) for _ in range(3)], dtype=torch.float32)
        shift = self.eigenvectors @ (alpha * self.eigenvalues)
        return tensor + shift[:, None, None]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(std={self.std})"


def _tensor_tail(mean: Sequence[float] | None, std: Sequence[float] | None) -> list:
    if (mean is None) != (std is None):
        raise ValueError("pass both mean and std, or neither (no normalization)")
    return [ToTensor()] + ([Normalize(mean, std)] if mean is not None else [])


def train_transform(crop: int = 224, scale: tuple[int, int] = (256, 480), mean: Sequence[float] | None = None,
                    std: Sequence[float] | None = None, lighting: float = 0.0) -> Compose:
    """He et al.'s training augmentation: shorter side random in `scale` px, random `crop` square, flip p = 0.5,
    then a 3 x crop x crop float tensor with, if `lighting` > 0, AlexNet's PCA colour shift of that std
    (`Lighting`), normalized per channel when mean and std are given."""
    min_size, max_size = scale
    if crop > min_size:
        raise ValueError(f"crop {crop} px is larger than the smallest resized shorter side {min_size} px: use "
                         f"crop <= scale[0] (the paper: crop 224, scale (256, 480))")
    tail = _tensor_tail(mean, std)
    if lighting:
        tail.insert(1, Lighting(lighting))
    return Compose([RandomResizeShorterSide(min_size, max_size), RandomCrop(crop), RandomHorizontalFlip(0.5), *tail])


def eval_transform(crop: int = 224, resize: int = 256, ten_crop: bool = False, mean: Sequence[float] | None = None,
                   std: Sequence[float] | None = None) -> Compose:
    """Test-time transform, deterministic: shorter side `resize` px, then the centre `crop` square (3 x crop x crop)
    or, with `ten_crop`, the 10 crops of `TenCrop` in its order (10 x 3 x crop x crop)."""
    if crop > resize:
        raise ValueError(f"crop {crop} px is larger than the resized shorter side {resize} px: use crop <= resize "
                         "(the paper: resize 256, crop 224)")
    cropper = TenCrop(crop) if ten_crop else CenterCrop(crop)
    return Compose([ResizeShorterSide(resize), cropper, *_tensor_tail(mean, std)])
