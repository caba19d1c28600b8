"""What a result was measured on: versions, git commit, CPU/GPU, threads. Saved in every run folder."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from resnetlab.training.precision import cpu_capabilities


def git_commit(path: str | Path = ".") -> str | None:
    """The commit of the resnetlab checkout (with ``-dirty`` for local changes), or None outside git."""
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_version(name: str) -> str | None:
    """The installed version of a distribution (no import needed), or None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def describe_environment(seed: int | None = None) -> dict:
    """A JSON-ready description of the machine and software."""
    cuda = torch.cuda.is_available()
    return {
        "resnetlab": package_version("resnetlab"),
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "onnxruntime": package_version("onnxruntime"),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        # bf16 matrix units and bf16 dot-product instructions: what train.precision=auto reads
        "cpu_amx_bf16": bool(cpu_capabilities().get("amx_bf16")),
        "cpu_avx512_bf16": bool(cpu_capabilities().get("avx512_bf16")),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda if cuda else None,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "seed": seed,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def bf16_units(environment: dict) -> str:
    """The bf16 hardware of a recorded machine as a suffix for its name: ' (AMX-BF16)', ' (AVX512-BF16, no AMX)',
    ' (no bf16 units)'; ' (no AMX-BF16)' for records older than the AVX512-BF16 field, '' where none says."""
    if environment.get("cpu_amx_bf16"):
        return " (AMX-BF16)"
    if "cpu_avx512_bf16" not in environment:
        return "" if environment.get("cpu_amx_bf16") is None else " (no AMX-BF16)"
    return " (AVX512-BF16, no AMX)" if environment["cpu_avx512_bf16"] else " (no bf16 units)"


def describe_machine(environment: dict | None = None) -> str:
    """One line naming the machine and software of ``environment`` (default: this process's), for benchmark
    output and reports."""
    env = environment if environment is not None else describe_environment()
    gpus = env.get("gpus") or []
    return (f"{env.get('cpu')}{bf16_units(env)}, {env.get('cpu_count')} CPUs, {env.get('torch_threads')} torch threads"
            + (f", GPU {', '.join(gpus)}" if gpus else "")
            + f"; torch {env.get('torch')}, Python {env.get('python')}")


ENVIRONMENT_FILE = "environment.json"


def record_environment(run_dir: str | Path, seed: int, precision: dict, world_size: int,
                       resumed_at: int | None = None) -> None:
    """Write the run folder's ``environment.json`` at the start of a run; a resume appends this machine to its
    ``resumed`` list with the iteration it went on from, since a run interrupted on one machine may finish on
    another (in another precision, at another commit)."""
    path = Path(run_dir) / ENVIRONMENT_FILE
    environment = describe_environment(seed)
    environment.update(world_size=world_size, precision=precision)
    if resumed_at is not None:
        try:
            started = json.loads(path.read_text())
        except (OSError, ValueError):  # lost or cut short: the resume still trains, its machine is recorded
            started = {"seed": seed, "unrecorded": True}
        environment = {**started, "resumed": [*started.get("resumed", []), {**environment, "at_iteration": resumed_at}]}
    temporary = path.with_name(f".{ENVIRONMENT_FILE}.tmp")
    temporary.write_text(json.dumps(environment, indent=2))
    temporary.replace(path)


def training_segments(environment: dict) -> list[dict]:
    """The machines whose training the run's weights hold, in order: the one that started it (from iteration 0),
    then each that resumed it (``at_iteration``). A resume from an iteration at or before an earlier resume's
    (killed before its next checkpoint) replaces that one: its work was lost."""
    if not environment:
        return []
    first = {key: value for key, value in environment.items() if key != "resumed"}
    segments = [{**first, "at_iteration": 0}]
    for resume in environment.get("resumed", []):
        while len(segments) > 1 and segments[-1]["at_iteration"] >= resume["at_iteration"]:
            segments.pop()
        segments.append(resume)
    return segments
