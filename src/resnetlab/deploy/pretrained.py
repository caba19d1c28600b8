"""Trained models back for use: `load_pretrained` (safetensors + card) and `load_predictor` (any saved form).

`load_pretrained` rebuilds the architecture from the card's registered name and options with resnetlab's own
code, then loads the safetensors weights: nothing in either file can run code. `load_predictor` opens a run
folder or checkpoint, a safetensors export, an ONNX export (run by onnxruntime) or a TorchScript export, and
gives one interface to `resnetlab predict`: RGB pixels in [0, 1] in, logits out, with the class names and the
input size. ONNX and TorchScript files are programs: open them only from sources you trust; safetensors and
resnetlab checkpoints are data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from resnetlab.deploy.card import SUFFIXES, CardError, ModelCard, card_path
from resnetlab.deploy.onnx import onnx_runner
from resnetlab.deploy.published import resolve_weights
from resnetlab.deploy.weights import load_weights
from resnetlab.errors import UsageError
from resnetlab.models import create_model
from resnetlab.models.fusion import fuse_for_inference
from resnetlab.training.inference import load_trained_model


@dataclass
class Predictor:
    """A trained classifier in any saved form: ``forward`` maps RGB pixels in [0, 1] (NCHW float32) to logits."""

    forward: Callable[[torch.Tensor], torch.Tensor]
    classes: list[str]
    image_size: int  # px, the input side
    eval_resize: int  # px, shorter side before the centre crop
    description: str  # what was loaded, for messages
    device: torch.device = torch.device("cpu")

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of uint8 (0..255) or float ([0, 1]) NCHW images."""
        images = images.float() / 255 if images.dtype == torch.uint8 else images.float()
        return self.forward(images.to(self.device)).float().cpu()


def load_pretrained(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The network saved by ``resnetlab export --format safetensors`` (a path, or the name of published weights
    such as ``cifar10_resnet20``), rebuilt from its card, in eval mode."""
    path = resolve_weights(path)
    card = ModelCard.read(card_path(path))
    model = create_model(card.model, num_classes=card.num_classes, **card.options)
    if card.fused_bn:  # the saved weights are those of the folded network: fold first, then load
        fuse_for_inference(model)
    load_weights(model, path)
    return model.to(device).eval()


def load_predictor(path: str | Path, device: str | torch.device = "cpu") -> Predictor:
    """A run folder, a resnetlab checkpoint, a file written by `resnetlab export`, or published weights' name."""
    path = resolve_weights(path)
    device = torch.device(device)
    name = path.name
    if name.endswith(SUFFIXES["safetensors"]):
        card = ModelCard.read(card_path(path))
        model, normalizer = load_pretrained(path, device), card.build_normalizer()
        return _from_card(lambda images: model(normalizer(images)), card, path, device)
    if name.endswith(SUFFIXES["onnx"]):
        if device.type != "cpu":
            raise UsageError(f"ONNX models run on the CPU here (onnxruntime's CPU provider); drop --device {device}")
        card = ModelCard.read(card_path(path))
        return _from_card(onnx_runner(path), card, path, device)
    if name.endswith(SUFFIXES["torchscript"]):
        card = ModelCard.read(card_path(path))
        if not path.is_file():
            raise CardError(f"TorchScript file {path} not found; give the file written by `resnetlab export`")
        module = torch.jit.load(str(path), map_location=device).eval()
        return _from_card(module, card, path, device)
    trained = load_trained_model(path, device=str(device))
    model, normalizer = trained.model, trained.normalizer
    return Predictor(lambda images: model(normalizer(images)), list(trained.classes), trained.image_size,
                     trained.eval_resize, f"{trained.checkpoint_path} ({trained.config.model.name})", device)


def _from_card(forward, card: ModelCard, path: Path, device: torch.device) -> Predictor:
    return Predictor(forward, list(card.classes), card.image_size, card.eval_resize,
                     f"{path} ({card.model}, {card.format})", device)
