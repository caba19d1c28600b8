"""The training step: the one function `resnetlab train` runs every iteration and `resnetlab bench` times.

One step draws the iteration's stochastic-depth gates (a pure function of the seed and the iteration, so a
resumed run and every distributed rank draw the same), runs the forward pass under the run's precision,
computes the loss in float32, lets the caller look at it before anything changes (the NaN guard), then
backpropagates and updates the weights. Weights, optimizer state and BN statistics stay float32 in every
precision: autocast only changes the dtype of the matmul-heavy operations inside the forward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from resnetlab.config import TrainConfig
from resnetlab.data.seeding import torch_seed
from resnetlab.training.finetune import parameter_groups

GATE_STREAM = 2  # tags the stochastic-depth gate stream among the seed-derived generators


def make_optimizer(model: torch.nn.Module, train: TrainConfig, foreach: bool | None = True) -> torch.optim.SGD:
    """SGD with the config's momentum, Nesterov flag and weight decay (the papers' optimizer) over the trainable
    parameters, the backbone's group at ``train.backbone_lr_scale`` (`finetune.parameter_groups`). ``foreach``:
    one kernel per operation over all parameters instead of one per parameter (fewer launches; None is torch's
    default, a per-parameter loop on the CPU)."""
    return torch.optim.SGD(parameter_groups(model, train.backbone_lr_scale), lr=train.lr, momentum=train.momentum,
                           nesterov=train.nesterov, weight_decay=train.weight_decay, foreach=foreach)


@dataclass
class TrainStep:
    """One optimizer step of ``forward`` (the model, possibly compiled or DDP-wrapped).

    ``gates`` is the generator of the model's batch-mode stochastic-depth gates (`set_gate_generator`), reseeded
    from (``seed``, iteration) at every step; ``precision`` ``"bf16"`` runs the forward pass under autocast.
    """

    forward: Callable[[torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    memory_format: torch.memory_format  # the activations' layout; input batches are put in it
    device_type: str = "cpu"
    precision: str = "fp32"
    gates: torch.Generator | None = None
    seed: int = 0
    label_smoothing: float = 0.0

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def __call__(self, iteration: int, images: torch.Tensor, labels: torch.Tensor,
                 inspect: Callable[[torch.Tensor, torch.Tensor], None] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Train on one batch; returns the (float32) loss and the logits. ``inspect(loss, logits)`` runs before
        the update and may raise to stop it (the weights are then untouched)."""
        if self.gates is not None:
            self.gates.manual_seed(torch_seed(self.seed, iteration, GATE_STREAM))
        with self.autocast():
            logits = self.forward(images.contiguous(memory_format=self.memory_format))
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)
        if inspect is not None:
            inspect(loss, logits)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss, logits
