"""Evaluation of a network on a split: loss, top-1 and top-5 error, summed over distributed ranks."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from resnetlab.training.distributed import SINGLE, Distributed


def top_k_errors(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...]) -> list[int]:
    """Number of samples whose label is not among the top-k logits, for each k."""
    top = logits.topk(max(ks), dim=1).indices
    hits = top == labels[:, None]
    return [int((~hits[:, :k].any(1)).sum()) for k in ks]


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches, num_classes: int,
             memory_format: torch.memory_format = torch.contiguous_format,
             distributed: Distributed = SINGLE, per_class: bool = False) -> dict | None:
    """Loss, top-1 and (for more than 10 classes) top-5 error over a split; None for an empty split.
    ``per_class``: also the top-1 accuracy of each class (``per_class_accuracy``, None for a class with no image).

    ``distributed``: ``batches`` are this rank's shard of the split; the counts are summed over the ranks."""
    model.eval()
    ks = (1, 5) if num_classes > 10 else (1,)
    total, loss_sum, errors = 0, 0.0, [0] * len(ks)
    class_images = torch.zeros(num_classes, dtype=torch.int64)
    class_correct = torch.zeros(num_classes, dtype=torch.int64)
    for images, labels in batches:
        if images.ndim == 4:
            images = images.contiguous(memory_format=memory_format)
        if images.ndim == 5:  # multi-crop testing: average the scores of the crops (He et al. 2015, 10-crop)
            logits = model(images.flatten(0, 1)).view(images.shape[0], images.shape[1], -1).mean(1)
        else:
            logits = model(images)
        loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
        errors = [e + n for e, n in zip(errors, top_k_errors(logits, labels, ks))]
        total += len(labels)
        if per_class:
            labels = labels.cpu()
            class_images += torch.bincount(labels, minlength=num_classes)
            class_correct += torch.bincount(labels[logits.argmax(1).cpu() == labels], minlength=num_classes)
    total, loss_sum, *errors = distributed.sum([total, loss_sum, *errors])
    if total == 0:
        return None
    result = {"loss": loss_sum / total, "error": errors[0] / total}
    if per_class:
        counts = distributed.sum([*class_images.tolist(), *class_correct.tolist()])
        images, correct = counts[:num_classes], counts[num_classes:]
        result["per_class_accuracy"] = [c / n if n else None for c, n in zip(correct, images)]
    if len(ks) > 1:
        result["top5_error"] = errors[1] / total
    return result
