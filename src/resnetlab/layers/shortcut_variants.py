"""How the shortcut and the residual branch combine: the ablations of He et al. 2016, Table 1 (Fig. 2).

Each variant is a module ``merge(shortcut, branch, unit_input) -> tensor`` that replaces the plain sum
``shortcut + branch``. The ``conv1x1`` row of Table 1 is not a merge but shortcut option C.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SHORTCUT_VARIANTS = ("identity", "constant_scaling", "exclusive_gating", "shortcut_only_gating", "conv1x1", "dropout")


class ConstantScaling(nn.Module):
    """y = lambda_s * shortcut + lambda_f * F (Fig. 2b; (0.5, 0.5) gives 12.35% on ResNet-110)."""

    def __init__(self, shortcut_scale: float, branch_scale: float) -> None:
        super().__init__()
        self.shortcut_scale, self.branch_scale = shortcut_scale, branch_scale

    def forward(self, shortcut: torch.Tensor, branch: torch.Tensor, unit_input: torch.Tensor) -> torch.Tensor:
        return self.shortcut_scale * shortcut + self.branch_scale * branch

    def extra_repr(self) -> str:
        return f"shortcut_scale={self.shortcut_scale}, branch_scale={self.branch_scale}"


class _Gate(nn.Module):
    """g(x) = sigmoid(1x1 conv(x) + b): one gate value per output channel and position."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, gate_bias: float) -> None:
        super().__init__()
        self.gate = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=True)
        self.gate_bias = gate_bias
        self.reset_gate_bias()

    def reset_gate_bias(self) -> None:
        """The bias sets where the gate starts: very negative b means g ~ 0, a near-identity shortcut."""
        nn.init.constant_(self.gate.bias, self.gate_bias)

    def extra_repr(self) -> str:
        return f"gate_bias={self.gate_bias}"


class ExclusiveGating(_Gate):
    """y = (1 - g(x)) * shortcut + g(x) * F (Fig. 2c, as in Highway networks)."""

    def forward(self, shortcut: torch.Tensor, branch: torch.Tensor, unit_input: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.gate(unit_input))
        return (1.0 - gate) * shortcut + gate * branch


class ShortcutOnlyGating(_Gate):
    """y = (1 - g(x)) * shortcut + F (Fig. 2d)."""

    def forward(self, shortcut: torch.Tensor, branch: torch.Tensor, unit_input: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.gate(unit_input))
        return (1.0 - gate) * shortcut + branch


class ShortcutDropout(nn.Module):
    """y = dropout(shortcut) + F (Fig. 2f; ratio 0.5 fails to train ResNet-110)."""

    def __init__(self, ratio: float) -> None:
        super().__init__()
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"shortcut dropout ratio must be in [0, 1), got {ratio}")
        self.ratio = ratio

    def forward(self, shortcut: torch.Tensor, branch: torch.Tensor, unit_input: torch.Tensor) -> torch.Tensor:
        return F.dropout(shortcut, self.ratio, self.training) + branch

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}"


def check_merge_settings(variant: str, shortcut_scale: float | None = None, branch_scale: float | None = None,
                         gate_bias: float | None = None, dropout: float | None = None) -> None:
    """ValueError unless ``variant`` is known and gets exactly the settings it uses."""
    if variant not in SHORTCUT_VARIANTS:
        raise ValueError(f"shortcut_variant must be one of {SHORTCUT_VARIANTS}, got {variant!r}")
    needs = {
        "constant_scaling": {"shortcut_scale": shortcut_scale, "branch_scale": branch_scale},
        "exclusive_gating": {"gate_bias": gate_bias},
        "shortcut_only_gating": {"gate_bias": gate_bias},
        "dropout": {"shortcut_dropout": dropout},
    }.get(variant, {})
    given = {"shortcut_scale": shortcut_scale, "branch_scale": branch_scale, "gate_bias": gate_bias,
             "shortcut_dropout": dropout}
    stray = sorted(name for name, value in given.items() if value is not None and name not in needs)
    if stray:
        raise ValueError(f"{stray} do not apply to shortcut_variant={variant!r}")
    missing = sorted(name for name, value in needs.items() if value is None)
    if missing:
        raise ValueError(f"shortcut_variant={variant!r} needs {missing}")


def make_merge(
    variant: str,
    in_channels: int,
    out_channels: int,
    stride: int,
    shortcut_scale: float | None = None,
    branch_scale: float | None = None,
    gate_bias: float | None = None,
    dropout: float | None = None,
) -> nn.Module | None:
    """The merge module of one unit for a Table 1 variant; None means the plain sum."""
    check_merge_settings(variant, shortcut_scale, branch_scale, gate_bias, dropout)
    if variant == "constant_scaling":
        return ConstantScaling(shortcut_scale, branch_scale)
    if variant == "exclusive_gating":
        return ExclusiveGating(in_channels, out_channels, stride, gate_bias)
    if variant == "shortcut_only_gating":
        return ShortcutOnlyGating(in_channels, out_channels, stride, gate_bias)
    if variant == "dropout":
        return ShortcutDropout(dropout)
    return None  # identity; conv1x1 is shortcut option C, chosen by the builder
