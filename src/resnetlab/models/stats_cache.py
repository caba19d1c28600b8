"""A per-user cache of `model_stats` for the default options of each registered model.

Counting multiply-adds runs one forward pass under `FlopCounterMode`, about 2 s for ResNet-1202 on a CPU,
so `resnetlab models` would take ~20 s each time. The cache is keyed by the source of the model code and
the torch version, so any change to an architecture recomputes it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path

import torch

from resnetlab.models.complexity import ModelStats, model_stats
from resnetlab.models.registry import get_model_spec
from resnetlab.paths import cache_root

_SOURCE_DIRS = ("models", "layers")


def cache_path() -> Path:
    return cache_root() / "model_stats.json"


def _source_key() -> str:
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256(torch.__version__.encode())
    for folder in _SOURCE_DIRS:
        for path in sorted((package / folder).glob("*.py")):
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def cached_model_stats(names: Iterable[str], on_compute: Callable[[str], None] | None = None) -> list[ModelStats]:
    """Stats of the named models with default options, computing (and caching) only the missing ones."""
    path, key = cache_path(), _source_key()
    try:
        stored = json.loads(path.read_text())
        entries = stored["models"] if stored.get("key") == key else {}
    except (OSError, ValueError, KeyError, TypeError):
        entries = {}
    result, changed = [], False
    for name in names:
        if name in entries:
            result.append(ModelStats(**entries[name]))
            continue
        if on_compute is not None:
            on_compute(name)
        stats = model_stats(name)
        result.append(stats)
        # Only resnetlab's own models: the key does not cover a user's builder code.
        if get_model_spec(name).builder.__module__.startswith("resnetlab."):
            entries[name] = asdict(stats)
            changed = True
    if changed:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(f".tmp{os.getpid()}")
            temporary.write_text(json.dumps({"key": key, "models": entries}, indent=1))
            temporary.replace(path)  # atomic: a concurrent reader sees the old or the new file, never half
        except OSError:
            pass  # a read-only home only costs the recomputation next time
    return result
