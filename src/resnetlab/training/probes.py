"""Probes: measurements taken while a run trains, written next to its metrics.

`train(..., probes=[...])` calls each probe once per optimizer step, after the update and before the next
step clears the gradients, so a probe sees the step's loss, its batch error and the gradients that were applied.
A probe writes its own iteration-stamped log in the run folder and, on resume, drops the records written after
the checkpoint it resumes from, like ``metrics.jsonl``.

`TrainingCurve` is what the reproductions use: every ``every`` iterations one record of the window's mean
training loss and error (what the papers plot as training error), the mean absolute gradient of the first
convolution's weights (the stochastic-depth paper's Fig. 8 measure), and optionally the error on a fixed
subset of ``eval_images`` images of a held-out split (a cheap test curve between the full evaluations at epoch
ends), spread evenly over the split so that every class is in it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from resnetlab.layers.batchnorm import ReferenceBatchNorm2d
from resnetlab.training.evaluation import evaluate
from resnetlab.training.finetune import set_training_mode
from resnetlab.training.metrics_log import MetricsLog

CURVE_FILE = "curve.jsonl"


class Probe(Protocol):
    def start(self, run, run_dir: Path, resumed_at: int | None) -> None: ...

    def after_step(self, run, loss: float, batch_error: float) -> None: ...

    def close(self) -> None: ...


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The network's first convolution (the stem), in registration order."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module
    raise ValueError(f"{type(model).__name__} has no convolution")


def spread_subset(batches, split_size: int, max_images: int, batch_size: int = 500) -> list:
    """A fixed subset of an evaluation split: ``max_images`` images evenly spaced over its ``split_size``.

    Image folders list their images class by class (CIFAR-10's JPEG copy: 1000 airplanes, then 1000 cars...),
    so the leading images would hold one or two classes; every k-th image holds all of them in proportion.
    Returns the subset as a list of (images, labels) batches of at most ``batch_size``, kept to be reused.
    """
    count = min(max_images, split_size)
    if count < 1:
        return []
    wanted = torch.linspace(0, split_size - 1, count).round().long()
    kept_images, kept_labels, offset = [], [], 0
    for images, labels in batches:
        inside = wanted[(wanted >= offset) & (wanted < offset + len(labels))] - offset
        if len(inside):
            kept_images.append(images[inside.to(images.device)])
            kept_labels.append(labels[inside.to(labels.device)])
        offset += len(labels)
        if offset > int(wanted[-1]):
            break
    images, labels = torch.cat(kept_images), torch.cat(kept_labels)
    return [(images[start:start + batch_size], labels[start:start + batch_size])
            for start in range(0, len(labels), batch_size)]


class TrainingCurve:
    """Window means of loss, training error and first-layer gradient magnitude; a held-out error on a subset."""

    def __init__(self, every: int, eval_images: int = 0, split: str = "test", filename: str = CURVE_FILE) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1 iteration, got {every}")
        self.every, self.eval_images, self.split, self.filename = every, eval_images, split, filename
        self._log: MetricsLog | None = None
        self._held_out: list | None = None  # the subset's batches, gathered at the first evaluation
        self._reset_window()

    def _reset_window(self) -> None:
        self._steps, self._loss, self._error, self._gradient = 0, 0.0, 0.0, 0.0

    def start(self, run, run_dir: Path, resumed_at: int | None) -> None:
        self._log = MetricsLog(run_dir, resume_after_iteration=resumed_at, tensorboard=False, filename=self.filename)
        self._conv = first_conv(run.model)
        self._reset_window()

    def after_step(self, run, loss: float, batch_error: float) -> None:
        self._steps += 1
        self._loss += loss
        self._error += batch_error
        gradient = self._conv.weight.grad
        self._gradient += float(gradient.abs().mean()) if gradient is not None else 0.0
        iteration = run.state.iteration
        if iteration % self.every and iteration < run.total_iterations:
            return
        record = {"iteration": iteration, "epoch": iteration / run.data.train.num_batches,
                  "train_loss": self._loss / self._steps, "train_error": self._error / self._steps,
                  "grad_first_conv": self._gradient / self._steps, "lr": run.optimizer.param_groups[-1]["lr"]}
        if self.eval_images:
            record[f"{self.split}_error"] = self._held_out_error(run)
        self._log.append(record)
        self._reset_window()

    def _held_out_error(self, run) -> float | None:
        if self._held_out is None:
            self._held_out = spread_subset(run.data.eval_batches(self.split), run.data.split_sizes[self.split],
                                           self.eval_images)
        result = evaluate(run.model, self._held_out, len(run.data.classes), run.memory_format)
        set_training_mode(run.model, run.frozen)  # the trainer's clock is stopped while probes run: no training time
        return None if result is None else result["error"]

    def close(self) -> None:
        if self._log is not None:
            self._log.close()


@torch.no_grad()
def layer_response_stds(model: nn.Module, batches) -> list[dict]:
    """Std of each 3x3 layer's response after its BN, before the addition and the ReLU (He et al. 2015, Fig. 7).

    A response is the output of the normalisation layer that follows a 3x3 convolution, in the order the layers
    are registered (the stem first, then each unit's convolutions). The std is over every element (images,
    channels, positions) of the evaluation images, in eval mode (population BN statistics), as in the figure.
    """
    pairs, pending = [], None
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            pending = name if module.kernel_size == (3, 3) else None
        elif pending is not None and _is_norm(module):
            pairs.append((pending, name, module))
            pending = None
    sums = {name: [0, 0.0, 0.0] for _, name, _ in pairs}  # count, sum, sum of squares (float64)

    def hook(name):
        def record(_module, _inputs, output):
            values = output.detach().double()
            sums[name][0] += values.numel()
            sums[name][1] += float(values.sum())
            sums[name][2] += float((values * values).sum())
        return record

    handles = [module.register_forward_hook(hook(name)) for _, name, module in pairs]
    model.eval()
    try:
        for images, _labels in batches:
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    layers = []
    for index, (conv_name, name, _) in enumerate(pairs, 1):
        count, total, squares = sums[name]
        mean = total / max(count, 1)
        variance = max(squares / max(count, 1) - mean * mean, 0.0)
        layers.append({"index": index, "conv": conv_name, "norm": name, "std": variance ** 0.5})
    return layers


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.BatchNorm2d, ReferenceBatchNorm2d))
