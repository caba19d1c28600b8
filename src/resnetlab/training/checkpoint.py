"""Checkpoints: written atomically, read without executing code.

A checkpoint holds everything a bitwise-exact resume needs: model and optimizer state, the position (epoch,
iteration, batch within the epoch), the warm-up state, the best validation result so far, and every random
generator (python, numpy, torch CPU and, where present, CUDA). Writing goes to a temporary file in the same
folder, flushed to disk, then `os.replace`d over the old file, so a crash leaves either the previous good
checkpoint or the new one, never half of one. Reading uses ``torch.load(weights_only=True)``, which refuses
any pickle that asks for objects other than tensors and plain containers.
"""

from __future__ import annotations

import os
import pickle
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resnetlab.errors import ResnetlabError

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"


class CheckpointError(ResnetlabError):
    """A checkpoint that cannot be read; the message names the file and the reason."""


def capture_rng_state() -> dict[str, Any]:
    """Every global random generator, as tensors and plain Python values (loadable with weights_only)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["position"], numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def older_checkpoint(path: str | Path, age: int) -> Path:
    """The checkpoint written ``age`` saves before ``path``: ``last.pt`` -> ``last-1.pt``, ``last-2.pt``, ..."""
    path = Path(path)
    return path if age == 0 else path.with_name(f"{path.stem}-{age}{path.suffix}")


def save_checkpoint(state: dict[str, Any], path: str | Path, keep: int = 1) -> None:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename), keeping the ``keep - 1`` previous
    checkpoints as ``last-1.pt``, ``last-2.pt``, ... (the new file is complete on disk before any is moved)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(temporary, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        for age in range(keep - 1, 0, -1):
            if older_checkpoint(path, age - 1).is_file():
                os.replace(older_checkpoint(path, age - 1), older_checkpoint(path, age))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def saved_checkpoints(path: str | Path) -> list[Path]:
    """``path`` and its older copies that exist, newest first."""
    path, found, age = Path(path), [], 0
    while age == 0 or older_checkpoint(path, age).is_file():
        if older_checkpoint(path, age).is_file():
            found.append(older_checkpoint(path, age))
        age += 1
    return found


def load_newest_readable(path: str | Path, log: Callable[[str], None]) -> tuple[dict[str, Any], Path]:
    """The newest readable checkpoint among ``path`` and its older copies; says in one line which one it skipped
    and why. `CheckpointError` (the newest one's) when none can be read."""
    candidates = saved_checkpoints(path)
    if not candidates:
        raise CheckpointError(f"checkpoint {path} not found")
    first_error = None
    for candidate in candidates:
        try:
            checkpoint = load_checkpoint(candidate)
        except CheckpointError as error:
            first_error = first_error or error
            continue
        if first_error is not None:
            log(f"note: {first_error}; continuing from the previous checkpoint {candidate}")
        return checkpoint, candidate
    raise first_error


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint without running code from it; `CheckpointError` names a bad file in one line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"refusing to load {path}: it asks for more than tensors and plain data "
                              f"({_unpickler_reason(error)}); only load files you trust with other tools") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path} is unreadable or truncated ({type(error).__name__}); "
                              "resume from an earlier checkpoint or retrain") from None


def _unpickler_reason(error: Exception) -> str:
    """The line of torch's weights-only refusal that names what the file asked for (e.g. ``GLOBAL posix.system``);
    torch's message opens with generic advice about ``weights_only=False``, which we do not give."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line or "WeightsUnpickler error:" in line:
            return line.split("WeightsUnpickler error:", 1)[-1].strip().rstrip(".")
    return lines[-1] if lines else "unsafe content"
