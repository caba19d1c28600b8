"""Where resnetlab keeps files that can be rebuilt: ``$RESNETLAB_CACHE``, else ``$XDG_CACHE_HOME/resnetlab``,
else ``~/.cache/resnetlab``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    explicit = os.environ.get("RESNETLAB_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "resnetlab"
