"""A classifier's predictions on a labelled split, counted: top-1/top-5 error, the confusion matrix, per-class
precision and recall, and the images it gets wrong with its three best guesses. Pure functions of the
predictions (numpy in, plain data out), so the counts are tested against hand-made predictions."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TOP_K = 3  # guesses listed per misclassified image
TOP5_FROM_CLASSES = 11  # top-5 error is reported above 10 classes (as `evaluate` does)


@dataclass
class Predictions:
    """Every image of a split: its label, the classes ranked by the model (best first) and their probabilities."""

    labels: np.ndarray  # int64 (N,)
    ranked: np.ndarray  # int64 (N, k): class indices, best first (k = min(5, classes))
    probabilities: np.ndarray  # float (N, k): softmax probability of each ranked class
    names: list[str]  # the image files (or split[index]), N
    classes: list[str]

    def __post_init__(self) -> None:
        count = len(self.labels)
        if self.ranked.shape[0] != count or self.probabilities.shape != self.ranked.shape or len(self.names) != count:
            raise ValueError(f"predictions of {count} images need {count} rankings, probabilities and names; got "
                             f"{self.ranked.shape}, {self.probabilities.shape}, {len(self.names)}")

    @property
    def predicted(self) -> np.ndarray:
        return self.ranked[:, 0]


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts, int64 (classes x classes): row = the true class, column = the predicted class."""
    return np.bincount(num_classes * np.asarray(labels) + np.asarray(predicted),
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def class_scores(confusion: np.ndarray, classes: list[str]) -> list[dict]:
    """Per class: images (support), predicted as it, correct, precision (correct / predicted as it; None when
    nothing was) and recall (correct / images; None when the split has none of it)."""
    scores = []
    for index, name in enumerate(classes):
        correct, support = int(confusion[index, index]), int(confusion[index].sum())
        predicted = int(confusion[:, index].sum())
        scores.append({"class": name, "images": support, "predicted": predicted, "correct": correct,
                       "precision": correct / predicted if predicted else None,
                       "recall": correct / support if support else None})
    return scores


def summarize(predictions: Predictions) -> dict:
    """Top-1 (and above 10 classes top-5) error, the per-class scores and the confusion matrix, JSON-ready."""
    count, labels = len(predictions.labels), predictions.labels
    confusion = confusion_matrix(labels, predictions.predicted, len(predictions.classes))
    summary = {"images": count, "top1_error": float((predictions.predicted != labels).mean()) if count else None,
               "per_class": class_scores(confusion, predictions.classes), "confusion": confusion.tolist(),
               "classes": list(predictions.classes)}
    if len(predictions.classes) >= TOP5_FROM_CLASSES:
        hit = (predictions.ranked[:, :5] == labels[:, None]).any(1)
        summary["top5_error"] = float(1 - hit.mean()) if count else None
    return summary


def format_table(summary: dict) -> str:
    """The per-class table (Markdown, also readable as text) followed by the totals."""
    width = max([len("class")] + [len(row["class"]) for row in summary["per_class"]])
    lines = [f"| {'class':<{width}} | images | predicted | correct | precision (%) | recall (%) |",
             f"|{'-' * (width + 2)}|--------|-----------|---------|---------------|------------|"]
    for row in summary["per_class"]:
        precision = "-" if row["precision"] is None else f"{100 * row['precision']:.2f}"
        recall = "-" if row["recall"] is None else f"{100 * row['recall']:.2f}"
        lines.append(f"| {row['class']:<{width}} | {row['images']:>6} | {row['predicted']:>9} | {row['correct']:>7} "
                     f"| {precision:>13} | {recall:>10} |")
    total = f"\n{summary['images']} images: top-1 error {100 * summary['top1_error']:.2f}%"
    if "top5_error" in summary:
        total += f", top-5 error {100 * summary['top5_error']:.2f}%"
    return "\n".join(lines) + total


def write_misclassified(predictions: Predictions, path: str | Path) -> int:
    """A CSV row per misclassified image: the file, its class, then the model's top-3 guesses with their
    probabilities; returns the number of rows."""
    wrong = np.flatnonzero(predictions.predicted != predictions.labels)
    k = min(TOP_K, predictions.ranked.shape[1])
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "class"] + [f"{field}_{rank}" for rank in range(1, k + 1)
                                              for field in ("guess", "probability")])
        for index in wrong:
            guesses = [value for rank in range(k) for value in (predictions.classes[predictions.ranked[index, rank]],
                                                                 f"{predictions.probabilities[index, rank]:.4f}")]
            writer.writerow([predictions.names[index], predictions.classes[predictions.labels[index]], *guesses])
    return len(wrong)


def plot_confusion(confusion: np.ndarray, classes: list[str], path: str | Path, title: str) -> Path:
    """The confusion matrix as a heat map of each true class's row in percent (counts written in the cells up to
    30 classes)."""
    from resnetlab.training.plots import plt, save_figure

    rows = confusion.sum(1, keepdims=True)
    share = np.divide(confusion, rows, out=np.zeros(confusion.shape), where=rows > 0)
    side = min(4 + 0.45 * len(classes), 30)
    figure, axis = plt.subplots(figsize=(side + 1.5, side), dpi=110)
    image = axis.imshow(100 * share, cmap="Blues", vmin=0, vmax=100)
    figure.colorbar(image, ax=axis, label="share of the true class (%)")
    if len(classes) <= 30:
        ticks = range(len(classes))
        axis.set_xticks(ticks, classes, rotation=60, ha="right")
        axis.set_yticks(ticks, classes)
        for (row, column), count in np.ndenumerate(confusion):
            axis.text(column, row, str(count), ha="center", va="center", fontsize=8,
                      color="white" if share[row, column] > 0.5 else "black")
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    axis.set_title(title)
    return save_figure(figure, path)
