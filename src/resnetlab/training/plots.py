"""Error curves in the style of Fig. 6 of the ResNet paper: training error dashed, test error bold."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers
import matplotlib.pyplot as plt  # noqa: E402


def plot_error_curves(runs: Mapping[str, Sequence[dict]], path: str | Path, title: str = "",
                      x_key: str = "iteration") -> Path:
    """One curve pair per run: training error (dashed, thin) and test error (solid, bold), in percent."""
    figure, axis = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    longest = max((r[x_key] for records in runs.values() for r in records), default=0)
    scale = 1e-4 if x_key == "iteration" and longest >= 20000 else 1.0  # the paper's axis: iter. (1e4)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (label, records) in enumerate(runs.items()):
        colour = colours[index % len(colours)]
        steps = [r[x_key] for r in records]
        axis.plot([s * scale for s in steps], [100 * r["train_error"] for r in records], "--", color=colour,
                  linewidth=1.0)
        tested = [r for r in records if r.get("test_error") is not None]
        axis.plot([r[x_key] * scale for r in tested], [100 * r["test_error"] for r in tested], "-", color=colour,
                  linewidth=2.0, label=label)
    axis.set_xlabel("iter. (1e4)" if scale != 1.0 else x_key)
    axis.set_ylabel("error (%)")
    axis.set_ylim(bottom=0)
    axis.grid(alpha=0.3)
    axis.legend(title="dashed: training error, bold: test error", fontsize=8, title_fontsize=8)
    if title:
        axis.set_title(title)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    plt.close(figure)
    return path
