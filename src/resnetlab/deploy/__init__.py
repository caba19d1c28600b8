"""Shipping trained models: export (ONNX, TorchScript, safetensors), loading them back, and weights from other
tools (torchvision, DataParallel/DDP, torch.compile)."""

from resnetlab.deploy.card import ModelCard
from resnetlab.deploy.pretrained import Predictor, load_predictor, load_pretrained
from resnetlab.deploy.published import published_weights
from resnetlab.deploy.weights import WeightsMismatchError, load_weights, read_weights_file, strip_wrapper_prefixes

__all__ = ["ModelCard", "Predictor", "WeightsMismatchError", "load_predictor", "load_pretrained", "load_weights",
           "published_weights", "read_weights_file", "strip_wrapper_prefixes"]
