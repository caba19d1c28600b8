"""Weights published with resnetlab: the repository's ``weights/`` folder (a source checkout has it, a wheel does
not), each ``NAME.safetensors`` with its card ``NAME.json``, found by name."""

from __future__ import annotations

from pathlib import Path

from resnetlab.deploy.card import SUFFIXES, CardError

PUBLISHED_WEIGHTS = Path(__file__).resolve().parents[3] / "weights"


def published_weights() -> list[str]:
    """Names of the published weights, sorted."""
    return sorted(p.name.removesuffix(SUFFIXES["safetensors"]) for p in PUBLISHED_WEIGHTS.glob("*.safetensors"))


def resolve_weights(source: str | Path) -> Path:
    """A path as it is; a bare name (no folder, no suffix) that is not a file means ``weights/NAME.safetensors``."""
    path = Path(source)
    if path.exists() or path.suffix or len(path.parts) > 1:
        return path
    published = PUBLISHED_WEIGHTS / f"{path.name}{SUFFIXES['safetensors']}"
    if published.is_file():
        return published
    names = ", ".join(published_weights()) or f"none in {PUBLISHED_WEIGHTS}"
    raise CardError(f"{source} not found: no such file or folder, and no published weights of that name (published: "
                    f"{names}); give a path or one of the names")
