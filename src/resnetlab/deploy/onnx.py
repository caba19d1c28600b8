"""ONNX files: writing one from a PyTorch module and running one with onnxruntime (CPU).

onnx, onnxscript and onnxruntime are the optional extra ``resnetlab[onnx]``: they are imported inside the
functions that need them, so the rest of resnetlab works without them (and starts faster).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from resnetlab.errors import ResnetlabError

ONNX_OPSET = 18


class ExportError(ResnetlabError, RuntimeError):
    """An export that failed or whose outputs differ from PyTorch's; the message says which and by how much."""


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
