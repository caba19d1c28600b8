"""`resnetlab eval`: evaluate a run or an export on a labelled split and write, beside it, the per-class table,
the confusion matrix (PNG) and the misclassified images with the model's top-3 guesses (CSV)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from resnetlab.data.datasets import build_data
from resnetlab.data.errors import DataError
from resnetlab.data.identifiers import name_images, split_identifiers
from resnetlab.deploy.initial_weights import check_normalizer_fits
from resnetlab.evaluation.scores import (
    Predictions,
    format_table,
    plot_confusion,
    summarize,
    write_misclassified,
)
from resnetlab.evaluation.subject import Subject, open_subject

RANKED = 5  # classes kept per image: top-5 error and the CSV's top-3


@dataclass
class EvalResult:
    summary: dict
    table: str
    files: dict[str, Path]  # what was written: summary, table, confusion, misclassified


@torch.no_grad()
def predict_split(subject: Subject, split: str, device: str = "cpu") -> Predictions:
    """Run ``subject`` over every image of ``split`` of its data, in order."""
    # The training split is listed, never read: a batch of 1 fits any folder's training split.
    data = build_data(subject.data, 0, 1, device, subject.normalizer)
    check_normalizer_fits(subject.normalizer, data.image_size)
    if tuple(data.classes) != tuple(subject.classes):
        raise DataError(f"the classes of {subject.data.root} ({', '.join(data.classes[:6])}"
                        f"{', ...' if len(data.classes) > 6 else ''}) differ from the model's "
                        f"({', '.join(subject.classes[:6])}{', ...' if len(subject.classes) > 6 else ''}): give a "
                        "folder with the same class folders")
    labels, ranked, probabilities = [], [], []
    k = min(RANKED, len(subject.classes))
    for images, batch_labels in data.eval_batches(split):
        if images.ndim == 5:  # ten-crop: average the crops' scores, as `evaluate` does
            logits = subject.forward(images.flatten(0, 1)).float().view(images.shape[0], images.shape[1], -1).mean(1)
        else:
            logits = subject.forward(images).float()
        top = logits.softmax(1).topk(k, dim=1)
        labels.append(batch_labels.cpu().numpy())
        ranked.append(top.indices.cpu().numpy())
        probabilities.append(top.values.cpu().numpy())
    count = sum(len(chunk) for chunk in labels)
    if count == 0:
        hint = " (the run trained on every training image: evaluate --split test)" if split == "val" else ""
        raise DataError(f"the {split} split of {subject.data.root or subject.data.name} holds no images{hint}")
    names = name_images(split_identifiers(subject.data, split, data.skipped), split, count)
    return Predictions(np.concatenate(labels), np.concatenate(ranked), np.concatenate(probabilities), names,
                       list(subject.classes))


def evaluate_source(source: str | Path, data_root: str | Path | None = None, split: str = "test",
                    out: str | Path | None = None, device: str = "cpu") -> EvalResult:
    """Evaluate a run folder, checkpoint or export on ``split`` and write its four files (see the module)."""
    subject = open_subject(source, data_root, device)
    predictions = predict_split(subject, split, device)
    summary = summarize(predictions)
    summary.update(source=str(source), data=str(subject.data.root if subject.data.name == "folder"
                                                else subject.data.name), split=split, model=subject.description)
    out_dir = Path(out) if out else subject.default_out
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = split if data_root is None else f"{Path(data_root).name}-{split}"
    files = {"summary": out_dir / f"{tag}_summary.json", "table": out_dir / f"{tag}_per_class.md",
             "confusion": out_dir / f"{tag}_confusion.png", "misclassified": out_dir / f"{tag}_misclassified.csv"}
    table = format_table(summary)
    summary["misclassified"] = write_misclassified(predictions, files["misclassified"])
    files["summary"].write_text(json.dumps(summary, indent=1) + "\n")
    files["table"].write_text(f"# {subject.description} on {summary['data']} ({split})\n\n{table}\n")
    plot_confusion(np.asarray(summary["confusion"]), predictions.classes, files["confusion"],
                   f"{Path(str(source)).name} on {Path(summary['data']).name} ({split})")
    return EvalResult(summary, table, files)
