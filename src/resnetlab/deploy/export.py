"""`resnetlab export`: a trained checkpoint to ONNX, TorchScript or safetensors, each checked after writing.

ONNX (torch.export-based exporter, dynamic batch axis) is run back with onnxruntime, TorchScript with
`torch.jit.load`, and safetensors through `load_pretrained`; each against the PyTorch model on the same images,
at two batch sizes (the dynamic axis must work), and the largest absolute difference of the logits is reported.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from resnetlab.deploy.card import FORMATS, SUFFIXES, ModelCard, card_path
from resnetlab.models.fusion import fuse_for_inference

FLOAT32_TOLERANCE = 1e-4  # largest acceptable |exported - PyTorch| of a logit, float32
CHECK_BATCH_SIZES = (2, 3)  # the export traces batch 2; batch 3 proves the batch axis is dynamic
ONNX_OPSET = 18


class ExportError(RuntimeError):
    """An export that failed or whose outputs differ from PyTorch's; the message says which and by how much."""


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
    from resnetlab.training.inference import load_trained_model

    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    trained = load_trained_model(checkpoint)
    path = Path(out) if out else default_output(Path(checkpoint), format)
    if not path.name.endswith(SUFFIXES[format]):
        raise ValueError(f"a {format} export's file name must end in {SUFFIXES[format]}, got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    model = fuse_for_inference(trained.model) if fuse_bn else trained.model.eval()
    card = ModelCard.from_trained(trained, format, fuse_bn)
    normalizer = trained.normalizer
    wrapped = NormalizedModel(model, normalizer.mean, normalizer.std).eval()
    generator = torch.Generator().manual_seed(seed)
    size = trained.image_size
    batches = [torch.rand(n, 3, size, size, generator=generator) for n in CHECK_BATCH_SIZES]
    with torch.no_grad():
        expected = [wrapped(images) for images in batches]
    if format == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        card.write(card_path(path))
        from resnetlab.deploy.pretrained import load_predictor

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


def export_onnx(module: nn.Module, example: torch.Tensor, path: str | Path) -> None:
    """ONNX with a dynamic batch axis named ``batch``: input ``images``, output ``logits``."""
    try:
        import onnxscript  # noqa: F401  (the torch.export-based exporter needs it)
    except ImportError as error:
        raise ExportError(f"ONNX export needs onnx and onnxscript ({error}); pip install -e '.[onnx]'") from None
    parameter = next(iter(_forward_parameters(module)))
    with quiet_exporters():
        torch.onnx.export(module, (example,), str(path), input_names=["images"], output_names=["logits"],
                          dynamic_shapes={parameter: {0: torch.export.Dim("batch")}}, dynamo=True,
                          opset_version=ONNX_OPSET, external_data=False, verbose=False)


def onnx_runner(path: str | Path, threads: int | None = None):
    """A callable running the ONNX file on float32 NCHW tensors with onnxruntime on the CPU."""
    try:
        import onnxruntime
    except ImportError as error:
        raise ExportError(f"running ONNX needs onnxruntime ({error}); pip install -e '.[onnx]'") from None
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    # ORT's idle threads otherwise spin after each call, taking the cores from whatever runs next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    return lambda images: torch.from_numpy(session.run(None, {input_name: images.contiguous().numpy()})[0])


def _forward_parameters(module: nn.Module) -> list[str]:
    import inspect

    return [name for name in inspect.signature(module.forward).parameters if name != "self"]


@contextlib.contextmanager
def quiet_exporters():
    """Silence the exporters' warnings (deprecations, missing torchvision ops)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
