"""Error curves in the style of Fig. 6 of the ResNet paper (training error dashed, test error bold): one function
for a run folder's ``error_curves.png`` and for the reproductions' report figures. Files only (Agg backend)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers
import matplotlib.pyplot as plt  # noqa: E402

Series = tuple[Sequence[float], Sequence[float]]  # x values, y values
PAPER_AXIS_FROM = 20_000  # iterations: from this length on, the x axis is in units of 1e4 as in the paper


def colours() -> list[str]:
    return plt.rcParams["axes.prop_cycle"].by_key()["color"]


def save_figure(figure, path: str | Path) -> Path:
    path = Path(path)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_error_curves(panels: Mapping[str, Mapping[str, tuple[Series, Series]]], path: str | Path,
                      x_label: str = "iterations") -> Path:
    """One panel per title; per label a dashed training-error and a bold test-error curve (errors as fractions,
    drawn in percent). Iterations past `PAPER_AXIS_FROM` are drawn in units of 1e4, as the paper's axis."""
    count = max(len(panels), 1)
    figure, axes = plt.subplots(1, count, figsize=(5.2 * count, 4.0), dpi=120, squeeze=False)
    longest = max((x for rows in panels.values() for train, test in rows.values() for x in (*train[0], *test[0])),
                  default=0)
    scale = 1e-4 if x_label == "iterations" and longest >= PAPER_AXIS_FROM else 1.0
    for axis, (title, rows) in zip(axes[0], panels.items()):
        for colour, (label, (train, test)) in zip(colours() * 4, rows.items()):
            axis.plot([x * scale for x in train[0]], [100 * y for y in train[1]], "--", color=colour, linewidth=1.0)
            axis.plot([x * scale for x in test[0]], [100 * y for y in test[1]], "-", color=colour, linewidth=2.0,
                      label=label)
        axis.set_title(title)
        axis.set_xlabel("iter. (1e4)" if scale != 1.0 else x_label)
        axis.set_ylabel("error (%)")
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
        if rows:
            axis.legend(title="dashed: training error, bold: test error", fontsize=8, title_fontsize=8)
        else:  # a partial report whose rows of this panel have not trained yet
            axis.text(0.5, 0.5, "no finished run yet", transform=axis.transAxes, ha="center", va="center")
    return save_figure(figure, path)


def record_series(records: Sequence[dict], key: str, x_key: str = "iteration") -> Series:
    """(x, value) of the records that have ``key`` (epoch records without an evaluation are left out)."""
    kept = [r for r in records if r.get(key) is not None]
    return [r[x_key] for r in kept], [r[key] for r in kept]
