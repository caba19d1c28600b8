"""Fine-tuning: starting a run from trained weights (`model.weights`, read by `resnetlab.deploy.initial_weights`),
the part of the net kept fixed (`train.freeze`) and the backbone's learning rate (`train.backbone_lr_scale`)."""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn

from resnetlab.config.schema import FREEZE_CHOICES
from resnetlab.deploy.initial_weights import CLASSIFIER

STEM = ("conv1", "bn1")


def frozen_modules(model: nn.Module, freeze: str) -> list[nn.Module]:
    """The top-level modules ``freeze`` keeps fixed (`FREEZE_CHOICES`)."""
    if freeze not in FREEZE_CHOICES:
        raise ValueError(f"train.freeze must be one of {', '.join(FREEZE_CHOICES)}, got {freeze!r}")
    if freeze == "none":
        return []
    stages = list(getattr(model, "stage_names", []))
    if freeze == "all-but-head":
        names = [name for name, _ in model.named_children() if name != CLASSIFIER]
    else:
        count = 0 if freeze == "stem" else int(freeze.removeprefix("stage"))
        if count > len(stages):
            raise ValueError(f"train.freeze={freeze}: {type(model).__name__} has {len(stages)} stages; choose up to "
                             f"stage{len(stages)} or all-but-head")
        names = [*STEM, *stages[:count]]
    return [getattr(model, name) for name in names if getattr(model, name, None) is not None]


def freeze(model: nn.Module, setting: str) -> list[nn.Module]:
    """Stop gradients to the frozen modules' parameters; returns the modules (for `set_training_mode`)."""
    modules = frozen_modules(model, setting)
    for module in modules:
        for parameter in module.parameters():
            parameter.requires_grad_(False)
    return modules


def set_training_mode(model: nn.Module, frozen: list[nn.Module]) -> None:
    """``model.train()``, with the frozen modules in eval mode: their BN layers keep their running statistics."""
    model.train()
    for module in frozen:
        module.eval()


def parameter_groups(model: nn.Module, backbone_lr_scale: float) -> list[dict]:
    """The trainable parameters as optimizer groups: the backbone at ``backbone_lr_scale`` times the learning
    rate, the classifier at 1 (the trainer multiplies each group's ``lr_scale`` in at every step)."""
    def trainable(named: Iterator[tuple[str, nn.Parameter]]) -> list[nn.Parameter]:
        return [parameter for _, parameter in named if parameter.requires_grad]

    every = trainable(model.named_parameters())
    if backbone_lr_scale == 1.0:  # one group, in the model's order: as runs (and their checkpoints) always had
        return [{"params": every, "lr_scale": 1.0}]
    head = trainable(getattr(model, CLASSIFIER).named_parameters()) if hasattr(model, CLASSIFIER) else []
    head_ids = {id(parameter) for parameter in head}
    groups = [{"params": [p for p in every if id(p) not in head_ids], "lr_scale": backbone_lr_scale},
              {"params": head, "lr_scale": 1.0}]
    return [group for group in groups if group["params"]]
