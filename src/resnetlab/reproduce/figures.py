"""The reports' figures, in the papers' styles: error curves (training dashed, test bold, as ResNet Fig. 6),
per-layer lines (Fig. 7), curves over training and bars. Files only (Agg backend)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

Series = tuple[Sequence[float], Sequence[float]]  # x values, y values


def _colours() -> list[str]:
    return plt.rcParams["axes.prop_cycle"].by_key()["color"]


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def error_curve_panels(panels: Mapping[str, Mapping[str, tuple[Series, Series]]], path: Path,
                       x_label: str = "iterations") -> Path:
    """One panel per group; per row a dashed training-error and a bold held-out-error curve, in percent."""
    figure, axes = plt.subplots(1, max(len(panels), 1), figsize=(5.2 * max(len(panels), 1), 4.0), dpi=110,
                                squeeze=False)
    for axis, (title, rows) in zip(axes[0], panels.items()):
        for colour, (label, (train, held_out)) in zip(_colours() * 4, rows.items()):
            axis.plot(train[0], [100 * y for y in train[1]], "--", color=colour, linewidth=1.0)
            axis.plot(held_out[0], [100 * y for y in held_out[1]], "-", color=colour, linewidth=2.0, label=label)
        axis.set_title(title)
        axis.set_xlabel(x_label)
        axis.set_ylabel("error (%)")
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
        axis.legend(title="dashed: training, bold: test", fontsize=8, title_fontsize=8)
    return _save(figure, path)


def line_panels(panels: Mapping[str, Mapping[str, Series]], path: Path, x_label: str, y_label: str,
                log_y: bool = False) -> Path:
    """Panels of labelled lines (layer responses by index and sorted, gradient magnitudes over training)."""
    figure, axes = plt.subplots(len(panels), 1, figsize=(6.4, 3.4 * len(panels)), dpi=110, squeeze=False)
    for axis, (title, lines) in zip(axes[:, 0], panels.items()):
        for colour, (label, (xs, ys)) in zip(_colours() * 4, lines.items()):
            axis.plot(xs, ys, "-", color=colour, linewidth=1.4, label=label)
        axis.set_title(title)
        axis.set_xlabel(x_label)
        axis.set_ylabel(y_label)
        if log_y:
            axis.set_yscale("log")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    return _save(figure, path)


def bars(values: Mapping[str, float], path: Path, y_label: str, title: str) -> Path:
    figure, axis = plt.subplots(figsize=(5.0, 3.6), dpi=110)
    labels = list(values)
    axis.bar(range(len(labels)), [values[label] for label in labels], color=_colours()[: len(labels)])
    axis.set_xticks(range(len(labels)), labels, rotation=15)
    axis.set_ylabel(y_label)
    axis.set_title(title)
    axis.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def ours_vs_paper(xs: Sequence[float], ours: Sequence[float | None], paper: Sequence[float | None], path: Path,
                  x_label: str, y_label: str, title: str, tick_labels: Sequence[str] | None = None) -> Path:
    """Our metric and the paper's at the same x (depth, row), as two lines with markers."""
    figure, axis = plt.subplots(figsize=(5.6, 3.8), dpi=110)
    for values, label, style in ((ours, "ours", "o-"), (paper, "paper", "s--")):
        points = [(x, y) for x, y in zip(xs, values) if y is not None]
        if points:
            axis.plot([p[0] for p in points], [p[1] for p in points], style, label=label)
    if tick_labels is not None:
        axis.set_xticks(list(xs), tick_labels, rotation=20, ha="right", fontsize=8)
    axis.set_xlabel(x_label)
    axis.set_ylabel(y_label)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    return _save(figure, path)
