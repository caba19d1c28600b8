"""The papers' CIFAR input pipeline on whole batches of tensors: pad-crop-flip augmentation and normalization.

Nothing here loops over images in Python: a batch stays one tensor (on the device if it lives there) and the random
crop is a single gather with per-image offsets. Layouts: data sets are stored NHWC uint8 (as CIFAR ships); models take
NCHW float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

NORMALIZER_MODES = ("per_pixel_mean", "per_channel")
_PIXEL_SCALE = 255.0  # uint8 pixels to [0, 1]
_STATS_CHUNK = 1024  # images per chunk when computing training statistics (about 25 MB of float64 at 32x32x3)


def nhwc_to_nchw(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """NHWC numpy array or tensor to an NCHW tensor of the same dtype (a view where possible)."""
    images = torch.as_tensor(images)
    if images.ndim != 4:
        raise ValueError(f"expected an NHWC batch (4 dims), got shape {tuple(images.shape)}")
    return images.permute(0, 3, 1, 2)


def to_nchw_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 NHWC images to a contiguous float32 NCHW tensor with pixels in [0, 1]."""
    images = nhwc_to_nchw(images)
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 pixels, got {images.dtype}")
    return images.float().div_(_PIXEL_SCALE).contiguous()


def draw_crop_flip(num_images: int, padding: int = 4, generator: torch.Generator | None = None,
                   device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image random crop offsets (rows, columns, each in [0, 2 * padding]) and flip flags (p = 0.5)."""
    if padding < 0:
        raise ValueError(f"padding must be >= 0 px, got {padding}")
    draw_device = generator.device if generator is not None else device
    offsets = torch.randint(0, 2 * padding + 1, (2, num_images), generator=generator, device=draw_device)
    flips = torch.randint(0, 2, (num_images,), generator=generator, device=draw_device).bool()
    return offsets[0].to(device), offsets[1].to(device), flips.to(device)


def crop_flip(images: torch.Tensor, offset_y: torch.Tensor, offset_x: torch.Tensor, flip: torch.Tensor,
              padding: int = 4) -> torch.Tensor:
    """Zero-pad NCHW images by `padding` px, crop each at its (offset_y, offset_x) to the input size, then mirror
    the crops whose flip flag is set. Offset 0 is the padded image's top-left corner."""
    if images.ndim != 4:
        raise ValueError(f"expected an NCHW batch (4 dims), got shape {tuple(images.shape)}")
    n, c, h, w = images.shape
    # Every HxW window of the padded batch as a view (N, C, 2p+1, 2p+1, H, W), no copy; pick one per image.
    windows = F.pad(images, (padding, padding, padding, padding)).unfold(2, h, 1).unfold(3, w, 1)
    device = images.device
    crops = windows[torch.arange(n, device=device), :, offset_y.to(device), offset_x.to(device)]  # (N, C, H, W)
    return torch.where(flip.to(device)[:, None, None, None], crops.flip(3), crops)


def random_crop_flip(images: torch.Tensor, padding: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """He et al.'s CIFAR augmentation on a batch: pad 4 px with zeros, random crop back to HxW, flip with p = 0.5.

    Works on uint8 or float NCHW batches and returns the same shape and dtype. The padding is zeros in the batch's
    own units: black on raw pixels, the mean on a normalized batch (fb.resnet.torch normalizes first).
    """
    offset_y, offset_x, flip = draw_crop_flip(images.shape[0], padding, generator, images.device)
    return crop_flip(images, offset_y, offset_x, flip, padding)


@dataclass(frozen=True, eq=False)
class Normalizer:
    """Input normalization computed on the training split.

    mode ``"per_pixel_mean"`` (He et al.: subtract the mean training image, mean of shape CxHxW, no scaling) or
    ``"per_channel"`` (subtract the per-channel mean and divide by the per-channel std, shapes Cx1x1). Statistics
    are of pixels scaled to [0, 1]; std is the population std, so the training split comes out with std 1 exactly.
    """

    mode: str
    mean: torch.Tensor  # float32, CxHxW or Cx1x1, pixels in [0, 1]
    std: torch.Tensor | None = None  # float32, Cx1x1 for per_channel; None for per_pixel_mean

    def __post_init__(self) -> None:
        if self.mode not in NORMALIZER_MODES:
            raise ValueError(f"normalizer mode must be one of {NORMALIZER_MODES}, got {self.mode!r}")
        if (self.std is None) != (self.mode == "per_pixel_mean"):
            raise ValueError(f"mode {self.mode!r} {'takes no' if self.std is not None else 'needs a'} std")

    @classmethod
    def from_training_images(cls, images: np.ndarray | torch.Tensor, mode: str = "per_pixel_mean") -> Normalizer:
        """Statistics of a uint8 NHWC training array (never the test split), in float64 then stored as float32."""
        if mode not in NORMALIZER_MODES:
            raise ValueError(f"normalizer mode must be one of {NORMALIZER_MODES}, got {mode!r}")
        images = images.cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 NHWC training images, got {images.dtype} {images.shape}")
        chunks = [images[i:i + _STATS_CHUNK] for i in range(0, len(images), _STATS_CHUNK)]
        pixel_sum = sum(chunk.sum(axis=0, dtype=np.float64) for chunk in chunks)  # (H, W, C)
        mean_image = pixel_sum / (len(images) * _PIXEL_SCALE)
        if mode == "per_pixel_mean":
            return cls(mode, torch.from_numpy(mean_image.transpose(2, 0, 1)).float())
        channel_mean = mean_image.mean(axis=(0, 1))  # (C,)
        squared = sum((((chunk / _PIXEL_SCALE) - channel_mean) ** 2).sum(axis=(0, 1, 2)) for chunk in chunks)
        channel_std = np.sqrt(squared / (images.shape[0] * images.shape[1] * images.shape[2]))
        return cls(mode, torch.from_numpy(channel_mean).float().view(-1, 1, 1),
                   torch.from_numpy(channel_std).float().view(-1, 1, 1))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW (0..255) or float NCHW already in [0, 1] to normalized float32 NCHW."""
        if images.dtype == torch.uint8:
            images = images.float() / _PIXEL_SCALE
        elif images.is_floating_point():
            images = images.float()
        else:
            raise TypeError(f"expected uint8 or float pixels, got {images.dtype}")
        expected = self.mean.shape if self.mode == "per_pixel_mean" else (self.mean.shape[0],)
        if tuple(images.shape[1:1 + len(expected)]) != tuple(expected) or images.ndim != 4:
            raise ValueError(f"{self.mode} statistics of shape {tuple(self.mean.shape)} do not fit a batch of shape "
                             f"{tuple(images.shape)}")
        out = images - self.mean.to(images.device)
        return out if self.std is None else out / self.std.to(images.device)

    def state_dict(self) -> dict:
        return {"mode": self.mode, "mean": self.mean.clone(), "std": None if self.std is None else self.std.clone()}

    @classmethod
    def from_state_dict(cls, state: dict) -> Normalizer:
        return cls(state["mode"], state["mean"].float(), None if state["std"] is None else state["std"].float())
