"""A trained model back from a checkpoint (no code runs on load), and predictions on image files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from resnetlab.config import Config, config_from_dict
from resnetlab.data.augment import Normalizer, nhwc_to_nchw
from resnetlab.data.errors import DataError
from resnetlab.training.checkpoint import LAST_CHECKPOINT, CheckpointError, load_checkpoint


@dataclass
class TrainedModel:
    model: torch.nn.Module  # in eval mode
    normalizer: Normalizer
    classes: list[str]
    image_size: int  # px, the side of the model's input
    eval_resize: int  # px, shorter side before the centre crop (the image size itself for small-image data)
    config: Config
    checkpoint_path: Path


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder means its last checkpoint; a file is taken as it is."""
    path = Path(path)
    return path / LAST_CHECKPOINT if path.is_dir() else path


def load_trained_model(path: str | Path, device: str = "cpu") -> TrainedModel:
    checkpoint_path = resolve_checkpoint(path)
    checkpoint = load_checkpoint(checkpoint_path)
    if not isinstance(checkpoint, dict) or "config" not in checkpoint or "model" not in checkpoint:
        raise CheckpointError(f"{checkpoint_path} is not a resnetlab checkpoint (no config and model inside); for "
                              "plain weights (torchvision, other scripts) use resnetlab.load_weights(model, path)")
    config = config_from_dict(checkpoint["config"])
    classes = list(checkpoint["classes"])
    model = config.model.build(len(classes))
    model.load_state_dict(checkpoint["model"])
    model.to(device).eval()
    image_size = int(checkpoint["image_size"])
    return TrainedModel(model, Normalizer.from_state_dict(checkpoint["normalizer"]), classes, image_size,
                        int(checkpoint.get("eval_resize", image_size)), config, checkpoint_path)


def read_image(path: str | Path, size: int, resize: int | None = None) -> np.ndarray:
    """An image file as uint8 HWC RGB of size x size: shorter side resized to `resize` (default `size`), then
    the centre size x size crop (the test-time view of He et al. 2015: resize 256, crop 224)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"image {path} not found")
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            shorter = resize or size
            scale = shorter / min(image.size)
            width, height = max(shorter, round(image.width * scale)), max(shorter, round(image.height * scale))
            image = image.resize((width, height), Image.BILINEAR)
            left, top = (width - size) // 2, (height - size) // 2
            return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"image {path} is unreadable or corrupt ({type(error).__name__}); check the file") from None


def predict_files(predictor, paths: list[str | Path], top: int = 5) -> list[list[tuple[str, float]]]:
    """Top-k (class name, probability) for each image file; ``predictor`` is a `resnetlab.deploy.Predictor`
    (any saved model: `load_predictor`)."""
    images = np.stack([read_image(p, predictor.image_size, predictor.eval_resize) for p in paths])
    probabilities = predictor.logits(nhwc_to_nchw(images)).softmax(1)
    k = min(top, probabilities.shape[1])
    values, indices = probabilities.topk(k, dim=1)
    return [[(predictor.classes[i], float(v)) for v, i in zip(row_v, row_i)] for row_v, row_i in
            zip(values.tolist(), indices.tolist())]
