"""`resnetlab export`: a trained checkpoint to ONNX, TorchScript or safetensors, each checked after writing.

ONNX (torch.export-based exporter, dynamic batch axis) is run back with onnxruntime, TorchScript with
`torch.jit.load`, and safetensors through `load_pretrained`; each against the PyTorch model on the same images,
at two batch sizes (the dynamic axis must work), and the largest absolute difference of the logits is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from resnetlab.config import to_dict
from resnetlab.deploy.card import FORMATS, SUFFIXES, ModelCard, card_path
from resnetlab.deploy.onnx import ExportError, export_onnx, onnx_runner, quiet_exporters
from resnetlab.deploy.pretrained import load_predictor
from resnetlab.models.fusion import fuse_for_inference
from resnetlab.training.inference import load_trained_model

FLOAT32_TOLERANCE = 1e-4  # largest acceptable |exported - PyTorch| of a logit, float32
CHECK_BATCH_SIZES = (2, 3)  # the export traces batch 2; batch 3 proves the batch axis is dynamic


class NormalizedModel(nn.Module):
    """The network with its input normalization in front: takes RGB pixels in [0, 1], NCHW float32."""

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor | None) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", mean.clone())
        self.register_buffer("inverse_std", torch.ones_like(mean) if std is None else 1.0 / std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model((images - self.mean) * self.inverse_std)


@dataclass(frozen=True)
class ExportResult:
    path: Path
    card: Path
    format: str
    max_abs_difference: float  # largest |exported - PyTorch| over the checked logits
    batch_sizes: tuple[int, ...]

    @property
    def passed(self) -> bool:
        return self.max_abs_difference <= FLOAT32_TOLERANCE


def default_output(checkpoint: Path, format: str) -> Path:
    folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    stem = checkpoint.name if checkpoint.is_dir() else checkpoint.stem
    return folder / "export" / f"{stem}{SUFFIXES[format]}"


def export_checkpoint(checkpoint: str | Path, format: str, out: str | Path | None = None,
                      fuse_bn: bool = False, seed: int = 0) -> ExportResult:
    """Write ``checkpoint`` (a run folder or a .pt) as ``format`` with its model card, check it, and return
    the result; `ExportError` when the exported model's logits differ by more than `FLOAT32_TOLERANCE`."""
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    trained = load_trained_model(checkpoint)
    path = Path(out) if out else default_output(Path(checkpoint), format)
    if not path.name.endswith(SUFFIXES[format]):
        raise ExportError(f"a {format} export's file name must end in {SUFFIXES[format]}, got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    model = fuse_for_inference(trained.model) if fuse_bn else trained.model.eval()
    card = ModelCard.from_trained(trained, format, fuse_bn).with_provenance(trained.checkpoint_path,
                                                                           to_dict(trained.config))
    normalizer = trained.normalizer
    wrapped = NormalizedModel(model, normalizer.mean, normalizer.std).eval()
    generator = torch.Generator().manual_seed(seed)
    size = trained.image_size
    batches = [torch.rand(n, 3, size, size, generator=generator) for n in CHECK_BATCH_SIZES]
    with torch.no_grad():
        expected = [wrapped(images) for images in batches]
    if format == "safetensors":
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        card.write(card_path(path))
        run = load_predictor(path).forward
    elif format == "onnx":
        export_onnx(wrapped, batches[0], path)
        card.write(card_path(path))
        run = onnx_runner(path)
    else:
        with torch.no_grad(), quiet_exporters():
            traced = torch.jit.trace(wrapped, batches[0], check_trace=False)
        torch.jit.save(traced, str(path))
        card.write(card_path(path))
        loaded = torch.jit.load(str(path), map_location="cpu").eval()
        run = loaded
    with torch.no_grad():
        difference = max(float((run(images) - reference).abs().max()) for images, reference in zip(batches, expected))
    result = ExportResult(path, card_path(path), format, difference, CHECK_BATCH_SIZES)
    if not result.passed:
        raise ExportError(f"{format} export {path} differs from PyTorch by {difference:.3g} (tolerance "
                          f"{FLOAT32_TOLERANCE:g}); the file is kept for inspection")
    return result
