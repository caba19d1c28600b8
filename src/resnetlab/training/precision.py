"""The arithmetic a run trains in: ``train.precision`` ``auto`` (the default), ``fp32`` or ``bf16``.

``bf16`` runs the forward pass under `torch.autocast` with bfloat16 (the backward follows it); weights,
optimizer state, BN running statistics and the loss stay float32. It pays only where the hardware has bf16 units:
an Intel Xeon with AMX-BF16 (Sapphire Rapids and later) multiplies bf16 matrices several times faster than
float32; a CPU with the AVX512-BF16 dot-product instructions but no AMX (AMD EPYC Zen 4) about 3x faster
(383 vs 129 GFLOP/s, and ResNet-56 trains 1.5x faster: docs/performance.md); while a CPU with neither (AMD EPYC
Zen 3, AVX2) runs bf16 far slower than float32 (`resnetlab bench` prints both matmul rates of the machine it runs
on). ``auto`` picks bf16 exactly where it is fast: a CPU whose capabilities, as torch reports them, include
AMX-BF16 or AVX512-BF16, or a CUDA GPU with bf16 support.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")
FROM_CONFIG = "set in the config"  # the reason of a precision the config fixed (not auto, not overridden)
# ... and of one that `resnetlab reproduce --precision` set for a sitting: the runs keep their names and saved
# configs (a run resumed elsewhere without the option goes back to its config's setting), so each stretch's
# records say which it was.
PRECISION_OPTION = "set with --precision"


@dataclass(frozen=True)
class PrecisionChoice:
    """What a run trains in, and why."""

    precision: str  # fp32 | bf16: what the run uses
    setting: str  # auto | fp32 | bf16: what the config asked for, or `--precision` in its place
    reason: str  # why, in a few words (the device's bf16 units)

    def describe(self) -> str:
        how = (f"auto: {self.reason}" if self.setting == "auto"
               else "train.precision" if self.reason == FROM_CONFIG else self.reason)
        return f"precision {self.precision} ({how})"

    def to_dict(self) -> dict:
        return asdict(self)


def cpu_capabilities() -> dict:
    """The CPU features torch detected (``amx_bf16``, ``avx512_bf16``, ...); /proc/cpuinfo's flags where this
    torch cannot say."""
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        return dict(get())
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return {flag: True for flag in flags}


def fast_bf16(device: torch.device) -> tuple[bool, str]:
    """Whether ``device`` multiplies bf16 faster than float32, and the reason in a few words."""
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
        return supported, f"{torch.cuda.get_device_name(device)} {'has' if supported else 'lacks'} bf16 support"
    if device.type == "cpu":
        capabilities = cpu_capabilities()
        if capabilities.get("amx_bf16"):
            return True, "the CPU has AMX-BF16 units"
        if capabilities.get("avx512_bf16"):
            return True, "the CPU has AVX512-BF16 instructions"
        return False, "the CPU has neither AMX-BF16 nor AVX512-BF16, where bf16 runs slower than float32"
    return False, f"no bf16 speed rule for {device.type} devices"


def resolve_precision(setting: str, device: str | torch.device = "cpu", source: str = FROM_CONFIG) -> PrecisionChoice:
    """``train.precision`` for ``device``: ``auto`` becomes bf16 where it is fast (`fast_bf16`), else fp32;
    ``source`` says where a fixed setting came from (the config, or an option that overrides it)."""
    if setting not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {setting!r}")
    if setting != "auto":
        return PrecisionChoice(setting, setting, source)
    fast, reason = fast_bf16(torch.device(device))
    return PrecisionChoice("bf16" if fast else "fp32", "auto", reason)
