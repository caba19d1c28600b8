"""Stochastic depth (Huang et al. 2016): whole residual branches dropped during training.

The per-block survival probabilities come from one function, `survival_probabilities`; the gate of one
block is a `DropPath` module. In ``batch`` mode the block asks `DropPath.skip_branch()` *before* computing
its branch, so a dropped branch costs nothing, forward or backward (the paper's time saving).

Activation checkpointing runs a unit's forward twice; `record_gates` and `replay_gates` make the second run
repeat the batch-mode decisions of the first instead of drawing new ones (see `resnetlab.models.checkpointing`).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import asdict, dataclass

import torch
from torch import nn

SURVIVAL_RULES = ("linear", "uniform")
DROP_MODES = ("batch", "row")
DROP_SCALINGS = ("test", "train")


@dataclass(frozen=True)
class StochasticDepth:
    """Settings of stochastic depth for one network.

    Args:
        p_last: survival probability p_L of the last residual block (the paper: 0.5). 1.0 disables dropping.
        rule: ``"linear"`` (p_l = 1 - l/L (1 - p_L), the paper) or ``"uniform"`` (p_l = p_L for every block).
        mode: ``"batch"`` (one draw per block per mini-batch, the paper; a dropped branch is not computed)
            or ``"row"`` (one draw per sample, as timm's drop path; computes every branch, saves no time).
        scaling: ``"test"`` (the paper: the branch is multiplied by p_l at test time) or ``"train"``
            (the branch is divided by p_l during training and left alone at test time).
    """

    p_last: float = 0.5
    rule: str = "linear"
    mode: str = "batch"
    scaling: str = "test"

    def __post_init__(self) -> None:
        if not 0.0 < self.p_last <= 1.0:
            raise ValueError(f"stochastic_depth.p_last must be in (0, 1], got {self.p_last}")
        for field, value, allowed in (
            ("rule", self.rule, SURVIVAL_RULES),
            ("mode", self.mode, DROP_MODES),
            ("scaling", self.scaling, DROP_SCALINGS),
        ):
            if value not in allowed:
                raise ValueError(f"stochastic_depth.{field} must be one of {allowed}, got {value!r}")

    @classmethod
    def coerce(cls, value: StochasticDepth | dict | float | None) -> StochasticDepth | None:
        """Accept the settings as a dataclass, a dict of its fields, a bare p_L, or None (off)."""
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(asdict(cls())))
            if unknown:
                raise ValueError(f"unknown stochastic_depth keys {unknown}; allowed: {sorted(asdict(cls()))}")
            return cls(**value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return cls(p_last=float(value))
        raise TypeError(f"stochastic_depth must be a StochasticDepth, dict, float or None, got {type(value).__name__}")


def survival_probabilities(num_blocks: int, p_last: float, rule: str = "linear") -> list[float]:
    """Survival probability p_l of residual blocks l = 1..L (Huang et al. 2016, Eq. 4)."""
    if num_blocks < 1:
        raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
    if rule == "linear":
        return [1.0 - (block / num_blocks) * (1.0 - p_last) for block in range(1, num_blocks + 1)]
    if rule == "uniform":
        return [p_last] * num_blocks
    raise ValueError(f"survival rule must be one of {SURVIVAL_RULES}, got {rule!r}")


class DropPath(nn.Module):
    """The gate of one residual branch.

    A block calls `skip_branch()` first; when it returns True the branch must not be computed. Otherwise
    the block computes its branch and passes it through `forward`, which applies the row mask and the
    scaling convention. With ``survival_prob == 1`` both are no-ops, so an undropped net is unchanged.
    """

    def __init__(self, survival_prob: float = 1.0, mode: str = "batch", scaling: str = "test") -> None:
        super().__init__()
        if not 0.0 < survival_prob <= 1.0:
            raise ValueError(f"survival_prob must be in (0, 1], got {survival_prob}")
        if mode not in DROP_MODES or scaling not in DROP_SCALINGS:
            raise ValueError(f"mode must be in {DROP_MODES} and scaling in {DROP_SCALINGS}, got {mode!r}, {scaling!r}")
        self.survival_prob = survival_prob
        self.mode = mode
        self.scaling = scaling
        # Generator for the batch-mode draws; None means torch's default CPU generator. Distributed runs
        # give every rank the same generator state so a block is dropped on all ranks at once.
        self.generator: torch.Generator | None = None
        self.last_kept: bool = True  # whether the most recent batch-mode draw kept the branch

    @property
    def active(self) -> bool:
        return self.survival_prob < 1.0

    def skip_branch(self) -> bool:
        """Draw this block's batch-mode gate; True means: drop it, do not compute the branch."""
        if not (self.training and self.active and self.mode == "batch"):
            self.last_kept = True
            return False
        session = _GATE_SESSION.get()
        if isinstance(session, _GateReplay):
            if self.generator is None:
                # Checkpointing restored the default generator's state before this rerun: drawing (and
                # ignoring) keeps its stream in step for any later random op of the rerun.
                self._draw()
            self.last_kept = session.next(self)
        else:
            self.last_kept = self._draw()
            if session is not None:
                session.record(self, self.last_kept)
        return not self.last_kept

    def _draw(self) -> bool:
        # Drawn on the CPU so that deciding costs no device synchronisation.
        return bool(torch.rand((), generator=self.generator) < self.survival_prob)

    def forward(self, branch: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return branch
        if self.training:
            if self.mode == "row":
                keep_shape = (branch.shape[0],) + (1,) * (branch.ndim - 1)
                branch = branch * branch.new_empty(keep_shape).bernoulli_(self.survival_prob)
            return branch / self.survival_prob if self.scaling == "train" else branch
        return branch * self.survival_prob if self.scaling == "test" else branch

    def extra_repr(self) -> str:
        return f"survival_prob={self.survival_prob:.4f}, mode={self.mode}, scaling={self.scaling}"


class GateTape:
    """The batch-mode decisions of the gates run inside `record_gates`, in order for each gate."""

    def __init__(self) -> None:
        self.decisions: dict[DropPath, list[bool]] = {}  # modules hash by identity

    def record(self, gate: DropPath, kept: bool) -> None:
        self.decisions.setdefault(gate, []).append(kept)


class _GateReplay:
    """One replay of a `GateTape`: hands every gate its recorded decisions back, in order."""

    def __init__(self, tape: GateTape) -> None:
        self._pending = {gate: deque(kept) for gate, kept in tape.decisions.items()}

    def next(self, gate: DropPath) -> bool:
        pending = self._pending.get(gate)
        if not pending:
            raise RuntimeError("a stochastic-depth gate was drawn more often on the rerun than in the recorded "
                               "forward pass, so its decision cannot be replayed")
        return pending.popleft()


# The gate session of the current thread / task: None (draw), a GateTape (draw and record) or a _GateReplay.
_GATE_SESSION: ContextVar[GateTape | _GateReplay | None] = ContextVar("resnetlab_gate_session", default=None)


@contextlib.contextmanager
def record_gates(tape: GateTape) -> Iterator[GateTape]:
    """Batch-mode gates run inside draw as usual and record each decision on ``tape``."""
    token = _GATE_SESSION.set(tape)
    try:
        yield tape
    finally:
        _GATE_SESSION.reset(token)


@contextlib.contextmanager
def replay_gates(tape: GateTape) -> Iterator[None]:
    """Batch-mode gates run inside take the decisions recorded on ``tape`` (each replay starts over)
    instead of drawing: a dedicated ``generator`` is left untouched."""
    token = _GATE_SESSION.set(_GateReplay(tape))
    try:
        yield
    finally:
        _GATE_SESSION.reset(token)


def set_gate_generator(model: nn.Module, generator: torch.Generator | None) -> int:
    """Make every batch-mode gate of ``model`` draw from ``generator``; returns the number of gates.

    The trainer reseeds this generator from (seed, iteration) every step, so the gates are a pure function
    of the step: a resumed run redraws them exactly, and every distributed rank drops the same units.
    """
    gates = [module for module in model.modules() if isinstance(module, DropPath)]
    for gate in gates:
        gate.generator = generator
    return len(gates)


def has_batch_gates(model: nn.Module) -> bool:
    """Whether ``model`` has an active batch-mode gate: a Python decision per unit per step, which breaks a
    whole-model compiled graph at every unit and leaves a dropped unit's parameters without a gradient (DDP must
    know)."""
    return any(isinstance(module, DropPath) and module.active and module.mode == "batch" for module in model.modules())
