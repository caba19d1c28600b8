"""resnetlab: the deep residual networks of four papers, built exactly, on PyTorch."""

from resnetlab.deploy import load_predictor, load_pretrained, load_weights
from resnetlab.layers.batchnorm import ReferenceBatchNorm2d
from resnetlab.layers.stochastic_depth import StochasticDepth
from resnetlab.models import ModelSpec, ResNet, UnknownModelError, create_model, get_model_spec, list_models, register_model

__version__ = "0.1.0"

__all__ = ["ModelSpec", "ReferenceBatchNorm2d", "ResNet", "StochasticDepth", "UnknownModelError", "create_model",
           "get_model_spec", "list_models", "load_predictor", "load_pretrained", "load_weights", "register_model",
           "__version__"]
