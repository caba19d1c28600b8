"""The reports' figures, in the papers' styles: error curves (`resnetlab.training.plots.plot_error_curves`, the
same as a run folder's), per-layer lines (Fig. 7), curves over training and bars. Files only (Agg backend)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from resnetlab.training.plots import Series, colours, plot_error_curves, plt, save_figure

__all__ = ["bars", "line_panels", "ours_vs_paper", "plot_error_curves"]


def line_panels(panels: Mapping[str, Mapping[str, Series]], path: Path, x_label: str, y_label: str,
                log_y: bool = False) -> Path:
    """Panels of labelled lines (layer responses by index and sorted, gradient magnitudes over training)."""
    figure, axes = plt.subplots(len(panels), 1, figsize=(6.4, 3.4 * len(panels)), dpi=110, squeeze=False)
    for axis, (title, lines) in zip(axes[:, 0], panels.items()):
        for colour, (label, (xs, ys)) in zip(colours() * 4, lines.items()):
            axis.plot(xs, ys, "-", color=colour, linewidth=1.4, label=label)
        axis.set_title(title)
        axis.set_xlabel(x_label)
        axis.set_ylabel(y_label)
        if log_y:
            axis.set_yscale("log")
        axis.grid(alpha=0.3)
        if lines:  # a partial report may have a panel with no finished run yet
            axis.legend(fontsize=8)
    return save_figure(figure, path)


def bars(values: Mapping[str, float], path: Path, y_label: str, title: str) -> Path:
    figure, axis = plt.subplots(figsize=(5.0, 3.6), dpi=110)
    labels = list(values)
    axis.bar(range(len(labels)), [values[label] for label in labels], color=colours()[: len(labels)])
    axis.set_xticks(range(len(labels)), labels, rotation=15)
    axis.set_ylabel(y_label)
    axis.set_title(title)
    axis.grid(axis="y", alpha=0.3)
    return save_figure(figure, path)


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
    return save_figure(figure, path)
