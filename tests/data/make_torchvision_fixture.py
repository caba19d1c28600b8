"""Generate ``tests/data/torchvision_resnet_layout.json`` from torchvision's real ResNet code.

What it does
    1. ``pip download --no-deps --only-binary=:all: torchvision==0.28.0`` into a temporary
       folder (0.28.0 is the release that pins ``torch==2.13.0``, the torch this project uses).
    2. Reads ONLY ``torchvision/models/resnet.py`` out of the wheel (a zip), into that
       temporary folder. No torchvision source is copied into the repository.
    3. Executes that file with the real torch. torchvision's package ``__init__`` cannot be
       imported here (CUDA-only builds, no GPU), so resnet.py's relative imports
       (``..transforms._presets``, ``..utils``, ``._api``, ``._meta``, ``._utils``) are served by
       minimal stand-in modules placed in ``sys.modules`` for the duration of the run only.
       torchvision's own ``ResNet``, ``BasicBlock``, ``Bottleneck``, ``resnet18`` and ``resnet50``
       run unmodified (with ``weights=None``, ``num_classes=1000``).
    4. For resnet18 and resnet50 it records the ordered ``[key, shape, dtype]`` list of
       ``model.state_dict()``, the parameter count (checked against torchvision's own
       ``ResNet*_Weights.IMAGENET1K_V1.meta["num_params"]``), and the eval-mode logits of the
       model loaded with ``tests/torchvision_reference.deterministic_state_dict(layout)`` on
       ``tests/torchvision_reference.reference_input()``. Logits are stored as the shortest
       decimal that round-trips the float32 value.

Version used: torchvision 0.28.0 (wheel torchvision-0.28.0-cp311-cp311-manylinux_2_28_x86_64.whl),
with torch 2.13.0+cpu.

Re-run (needs pip access to a package index; from the repository root)::

    .venv/bin/python tests/data/make_torchvision_fixture.py

Options: ``--version`` to use another torchvision release, ``--wheel PATH`` to use an
already-downloaded wheel, ``--output PATH`` to write elsewhere. Re-run whenever
``tests/torchvision_reference.py`` changes, since the logits depend on it.
"""

from __future__ import annotations

import argparse
import enum
import glob
import hashlib
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import types
import zipfile
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

TORCHVISION_VERSION = "0.28.0"
RESNET_PATH_IN_WHEEL = "torchvision/models/resnet.py"
MODELS = ("resnet18", "resnet50")
NUM_CLASSES = 1000

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS_DIR = os.path.dirname(HERE)
DEFAULT_OUTPUT = os.path.join(HERE, "torchvision_resnet_layout.json")

# Private package name for the stand-ins, so nothing named ``torchvision`` is ever faked.
_PKG = "_torchvision_standin"

sys.path.insert(0, TESTS_DIR)
from torchvision_reference import (  # noqa: E402
    INPUT_SEED,
    STATE_DICT_SEED,
    deterministic_state_dict,
    reference_input,
)


def download_wheel(version: str, dest: str) -> str:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        f"torchvision=={version}", "-d", dest,
    ]
    subprocess.run(cmd, check=True)
    wheels = glob.glob(os.path.join(dest, f"torchvision-{version}-*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one torchvision {version} wheel in {dest}, found {wheels}")
    return wheels[0]


def extract_resnet_py(wheel: str, dest: str) -> str:
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(RESNET_PATH_IN_WHEEL)
    path = os.path.join(dest, "resnet.py")
    with open(path, "wb") as f:
        f.write(data)
    return path


def _standin_modules() -> dict[str, types.ModuleType]:
    """Minimal replacements for what torchvision/models/resnet.py imports relatively."""

    def module(name: str, package: bool = False, **attrs: Any) -> types.ModuleType:
        mod = types.ModuleType(name)
        if package:
            mod.__path__ = []  # mark as a package so relative imports resolve
        mod.__dict__.update(attrs)
        return mod

    class ImageClassification:  # only referenced via functools.partial in weight metadata
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("transforms stand-in: not available in the fixture generator")

    def _log_api_usage_once(obj: Any) -> None:
        return None

    @dataclass
    class Weights:
        url: str
        transforms: Callable
        meta: dict[str, Any]

    class WeightsEnum(enum.Enum):
        @classmethod
        def verify(cls, obj: Any) -> Any:
            if obj is not None:
                raise RuntimeError("pretrained weights are not supported by the fixture generator")
            return obj

        @property
        def url(self) -> str:
            return self.value.url

        @property
        def transforms(self) -> Callable:
            return self.value.transforms

        @property
        def meta(self) -> dict[str, Any]:
            return self.value.meta

    def register_model(name: str | None = None) -> Callable:
        return lambda fn: fn

    def handle_legacy_interface(**weights: Any) -> Callable:
        return lambda builder: builder

    def _ovewrite_named_param(kwargs: dict[str, Any], param: str, new_value: Any) -> None:
        if param in kwargs:
            if kwargs[param] != new_value:
                raise ValueError(f"The parameter '{param}' expected value {new_value} but got {kwargs[param]}.")
        else:
            kwargs[param] = new_value

    return {
        _PKG: module(_PKG, package=True),
        f"{_PKG}.transforms": module(f"{_PKG}.transforms", package=True),
        f"{_PKG}.transforms._presets": module(
            f"{_PKG}.transforms._presets", ImageClassification=ImageClassification
        ),
        f"{_PKG}.utils": module(f"{_PKG}.utils", _log_api_usage_once=_log_api_usage_once),
        f"{_PKG}.models": module(f"{_PKG}.models", package=True),
        f"{_PKG}.models._api": module(
            f"{_PKG}.models._api", register_model=register_model, Weights=Weights, WeightsEnum=WeightsEnum
        ),
        f"{_PKG}.models._meta": module(
            f"{_PKG}.models._meta", _IMAGENET_CATEGORIES=[f"class_{i}" for i in range(NUM_CLASSES)]
        ),
        f"{_PKG}.models._utils": module(
            f"{_PKG}.models._utils",
            handle_legacy_interface=handle_legacy_interface,
            _ovewrite_named_param=_ovewrite_named_param,
        ),
    }


def load_resnet_module(resnet_py: str) -> types.ModuleType:
    """Execute torchvision's resnet.py with stand-ins present in sys.modules only meanwhile."""
    standins = _standin_modules()
    name = f"{_PKG}.models.resnet"
    saved = {k: sys.modules[k] for k in [*standins, name] if k in sys.modules}
    sys.modules.update(standins)
    try:
        spec = importlib.util.spec_from_file_location(name, resnet_py)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    finally:
        for k in [*standins, name]:
            sys.modules.pop(k, None)
        sys.modules.update(saved)
    return mod


def _f32(x: float) -> float:
    # Shortest decimal that round-trips the float32 value.
    return float(str(np.float32(x)))


def describe_model(resnet_mod: types.ModuleType, name: str) -> dict[str, Any]:
    model = getattr(resnet_mod, name)(weights=None, num_classes=NUM_CLASSES)
    sd = model.state_dict()
    layout = [[k, list(v.shape), str(v.dtype)] for k, v in sd.items()]
    num_params = sum(p.numel() for p in model.parameters())
    weights_enum = getattr(resnet_mod, {"resnet18": "ResNet18_Weights", "resnet50": "ResNet50_Weights"}[name])
    expected = weights_enum.IMAGENET1K_V1.meta["num_params"]
    if num_params != expected:
        raise AssertionError(f"{name}: {num_params} parameters, torchvision metadata says {expected}")

    model.load_state_dict(deterministic_state_dict(layout), strict=True)
    model.eval()
    with torch.no_grad():
        logits = model(reference_input())
    if not torch.isfinite(logits).all():
        raise AssertionError(f"{name}: non-finite logits")
    return {
        "num_params": num_params,
        "state_dict": layout,
        "logits_shape": list(logits.shape),
        "logits": [[_f32(v) for v in row] for row in logits.tolist()],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default=TORCHVISION_VERSION)
    parser.add_argument("--wheel", help="use this torchvision wheel instead of downloading one")
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="tv_fixture_") as tmp:
        wheel = args.wheel or download_wheel(args.version, tmp)
        resnet_py = extract_resnet_py(wheel, tmp)
        with open(resnet_py, "rb") as f:
            resnet_sha256 = hashlib.sha256(f.read()).hexdigest()
        resnet_mod = load_resnet_module(resnet_py)
        models = {name: describe_model(resnet_mod, name) for name in MODELS}

    torch_version = torch.__version__
    fixture = {
        "torchvision_version": args.version,
        "torchvision_wheel": os.path.basename(wheel),
        "resnet_py_sha256": resnet_sha256,
        "generated_with_torch": torch_version,
        "state_dict_seed": STATE_DICT_SEED,
        "input_seed": INPUT_SEED,
        "input_shape": list(reference_input().shape),
        "models": models,
    }
    with open(args.output, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")
    for name, info in models.items():
        flat = [abs(v) for row in info["logits"] for v in row]
        print(
            f"{name}: {info['num_params']:,} params, {len(info['state_dict'])} state_dict entries, "
            f"max |logit| {max(flat):.4g}, mean |logit| {math.fsum(flat) / len(flat):.4g}"
        )
    print(f"wrote {args.output} ({os.path.getsize(args.output):,} bytes)")


if __name__ == "__main__":
    main()
