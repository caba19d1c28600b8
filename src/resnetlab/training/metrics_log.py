"""Per-epoch metrics: one JSON line per epoch in ``metrics.jsonl`` and the same scalars in TensorBoard.

The same class keeps other iteration-stamped logs (``filename``), e.g. the training curve of `probes`."""

from __future__ import annotations

import json
import math
from pathlib import Path

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Appends epoch records; on resume, drops records written after the checkpoint being resumed.

    ``write=False`` keeps the records in memory only (the ranks other than 0 of a distributed run)."""

    def __init__(self, run_dir: str | Path, resume_after_iteration: int | None = None, tensorboard: bool = True,
                 filename: str = METRICS_FILE, write: bool = True, kept_records: int | None = None):
        self.path = Path(run_dir) / filename
        self.write = write
        self.records: list[dict] = []
        if resume_after_iteration is not None and self.path.exists():
            # ``kept_records``: how many records the checkpoint had seen (one saved at an epoch's last step comes
            # before that epoch's record); without it, the records up to the checkpoint's iteration.
            records = read_metrics(self.path)
            kept = records[:kept_records] if kept_records is not None else \
                [r for r in records if r["iteration"] <= resume_after_iteration]
            if write:
                self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
            self.records = kept
        self.writer = None
        if tensorboard and write:
            from torch.utils.tensorboard import SummaryWriter  # imported here: it is slow to import

            self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=resume_after_iteration)

    def append(self, record: dict) -> None:
        self.records.append(record)
        if not self.write:
            return
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("epoch", "iteration") and math.isfinite(value):
                    self.writer.add_scalar(key.replace("_", "/", 1), value, record["iteration"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: str | Path) -> list[dict]:
    lines = Path(path).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]
