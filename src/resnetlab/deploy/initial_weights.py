"""Weights to start a network from: a torchvision-style file (``resnet50-*.pth``), a resnetlab checkpoint or run
folder, a safetensors export with its card, or the name of published weights (``weights/NAME.safetensors``).

Every key must fit the network except the classifier: when the data set has another number of classes, the
classifier stays as initialised. The normalization travels with the weights: a resnetlab file brings its own
statistics, a torchvision file ImageNet's per-channel ones. Files are read without running code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from resnetlab.data.augment import Normalizer
from resnetlab.deploy.card import ModelCard, card_path
from resnetlab.deploy.published import resolve_weights
from resnetlab.deploy.weights import Mismatch, WeightsMismatchError, read_weights_file, strip_wrapper_prefixes
from resnetlab.training.checkpoint import CheckpointError, load_checkpoint

# torchvision's ImageNet normalization (pixels in [0, 1]), which its published weights expect
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLASSIFIER = "fc"  # the classifier's module name in every resnetlab net (and torchvision's)


@dataclass
class InitialWeights:
    """Weights to start from, as read from their file, and the normalization they were trained with."""

    source: str
    kind: str  # for messages: "resnetlab checkpoint", "safetensors export", "state dict"
    state: dict[str, torch.Tensor]
    normalizer: Normalizer | None  # None: unknown (the run computes its own from the data)
    classes: list[str] | None = None  # the class names the weights were trained on, where the file records them


def imagenet_normalizer() -> Normalizer:
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return Normalizer("per_channel", mean, std)


def open_initial_weights(source: str | Path) -> InitialWeights:
    """Read ``source`` (see the module) without running code."""
    path = resolve_weights(source)
    if path.suffix == ".safetensors":
        card_file = card_path(path)
        card = ModelCard.read(card_file) if card_file.is_file() else None
        if card is not None and card.fused_bn:
            raise WeightsMismatchError(f"{path} holds BN-folded weights (exported with --fuse-bn), which cannot be "
                                       "trained further; export the run again without --fuse-bn")
        normalizer = card.build_normalizer() if card is not None else None
        classes = list(card.classes) if card is not None else None
        return InitialWeights(str(path), "safetensors export", read_weights_file(path), normalizer, classes)
    checkpoint_file = path / "last.pt" if path.is_dir() else path
    if not checkpoint_file.is_file():
        raise CheckpointError(f"model.weights: {path} not found; give a .pth/.pt/.safetensors file, a run folder or "
                              "the name of published weights")
    loaded = load_checkpoint(checkpoint_file)
    if isinstance(loaded, dict) and "config" in loaded and "model" in loaded and "normalizer" in loaded:
        classes = list(loaded.get("classes") or []) or None
        return InitialWeights(str(checkpoint_file), "resnetlab checkpoint", dict(loaded["model"]),
                              Normalizer.from_state_dict(loaded["normalizer"]), classes)
    # Any other file is taken as a torchvision-style state dict: trained on ImageNet's normalization.
    return InitialWeights(str(checkpoint_file), "state dict", read_weights_file(checkpoint_file), imagenet_normalizer())


def load_initial_weights(model: nn.Module, weights: InitialWeights, log: Callable[[str], None],
                         classes: list[str] | None = None) -> list[str]:
    """Load ``weights`` into ``model``; a classifier of another shape, or trained on other class names than
    ``classes`` (where the file records them), is left as initialised (its keys are returned and logged). Any
    other mismatch is a `WeightsMismatchError` naming the first keys."""
    state = strip_wrapper_prefixes(weights.state)
    expected = model.state_dict()
    other_classes = bool(classes and weights.classes and list(classes) != list(weights.classes))
    fresh = [key for key in expected if key.startswith(CLASSIFIER + ".") and key in state
             and (other_classes or tuple(state[key].shape) != tuple(expected[key].shape))]
    kept = {key: value for key, value in state.items() if key not in fresh}
    mismatch = Mismatch.between(model, kept)
    missing_beyond_fresh = [key for key in mismatch.missing if key not in fresh]
    if missing_beyond_fresh or mismatch.unexpected or mismatch.reshaped:
        raise WeightsMismatchError(f"model.weights {weights.source} does not fit {type(model).__name__}: "
                                   f"{Mismatch(missing_beyond_fresh, mismatch.unexpected, mismatch.reshaped)}; "
                                   "check model.name and model.options against the file")
    model.load_state_dict(kept, strict=False)
    log(f"weights: {len(kept)} tensors from {weights.kind} {weights.source}")
    if fresh:
        shapes = ", ".join(f"{key} {tuple(state[key].shape)} -> {tuple(expected[key].shape)}" for key in fresh)
        why = (f"the file's classes ({', '.join(weights.classes[:4])}, ...) are not these"
               if other_classes else "another number of classes")
        log(f"weights: the classifier starts afresh for this data set's classes ({why}; {shapes})")
    return fresh


def check_normalizer_fits(normalizer: Normalizer, image_size: int) -> None:
    """A per-pixel mean image (a CIFAR net's) cannot normalize images of another size: one clear line."""
    if normalizer.mode == "per_pixel_mean" and normalizer.mean.shape[-1] != image_size:
        side = normalizer.mean.shape[-1]
        raise WeightsMismatchError(f"the weights' normalization is a {side}x{side} mean image but these images are "
                                   f"{image_size} px; set data.normalization=per_channel (statistics of this data) "
                                   f"or data.image_size={side}")
