"""resnetlab's networks: the generic `ResNet`, its units, the builders, the BN-study conv net and the registry."""

from resnetlab.models import architectures as _architectures  # noqa: F401  (registers the named models)
from resnetlab.models import bn_study as _bn_study  # noqa: F401  (registers bn_cnn, after the ResNets)
from resnetlab.models.architectures import cifar_resnet, imagenet_resnet
from resnetlab.models.options import ResNetOptions
from resnetlab.models.registry import (
    ModelSpec,
    UnknownModelError,
    create_model,
    get_model_spec,
    list_models,
    register_model,
)
from resnetlab.models.resnet import ResNet

__all__ = ["ModelSpec", "ResNet", "ResNetOptions", "UnknownModelError", "cifar_resnet", "create_model",
           "get_model_spec", "imagenet_resnet", "list_models", "register_model"]
