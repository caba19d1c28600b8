"""The state of He et al.'s error-threshold warm-up (ResNet-110/1202: lr 0.01 until the training error falls
below 80%, for at least about 400 iterations): the step at which it ended, found from the training errors,
checkpointed with the run. `resnetlab.schedules` turns that step into learning rates, statelessly."""

from __future__ import annotations

from resnetlab.schedules import (
    RESNET_WARMUP_ERROR_THRESHOLD,
    RESNET_WARMUP_LR,
    RESNET_WARMUP_MIN_STEPS,
    WARMUP_ERROR_WINDOW,
    LRSchedule,
    check_step,
)


class ErrorThresholdWarmup:
    """Records the first iteration whose training error is below `threshold`; checkpointed with the run.

    The trainer calls `observe(step, batch_error)` after each training iteration: the warm-up keeps the errors of
    the last ``window`` iterations and compares their mean with the threshold (`update` takes an error that is
    already averaged). Pass `warmup_done_at` to `LRSchedule.lr`. `state_dict` holds everything, the window
    included, so a resumed run ends its warm-up at the same step.
    """

    def __init__(self, threshold: float = RESNET_WARMUP_ERROR_THRESHOLD, warmup_lr: float = RESNET_WARMUP_LR,
                 max_steps: int | None = None, window: int = WARMUP_ERROR_WINDOW,
                 min_steps: int = RESNET_WARMUP_MIN_STEPS) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold is a training error fraction in (0, 1), got {threshold}")
        if not warmup_lr > 0.0:
            raise ValueError(f"warmup_lr must be > 0, got {warmup_lr}")
        if max_steps is not None and max_steps <= 0:
            raise ValueError(f"max_steps must be > 0 or None, got {max_steps}")
        self.threshold = threshold
        self.warmup_lr = warmup_lr
        self.max_steps = max_steps
        self.window = window
        self.min_steps = min_steps  # the warm-up ends no earlier than after this many iterations
        self.recent_errors: list[float] = []  # batch training errors of the last `window` iterations
        self.warmup_done_at: int | None = None

    @property
    def done(self) -> bool:
        return self.warmup_done_at is not None

    def update(self, step: int, train_error: float) -> int | None:
        """Record `step` if it is the first with train_error < threshold once `min_steps` iterations have run (or
        the last before max_steps)."""
        check_step(step)
        if not 0.0 <= train_error <= 1.0:
            raise ValueError(f"train_error is a fraction in [0, 1], got {train_error}")
        if self.warmup_done_at is None:
            hit_cap = self.max_steps is not None and step + 1 >= self.max_steps
            if (train_error < self.threshold and step + 1 >= self.min_steps) or hit_cap:
                self.warmup_done_at = step
        return self.warmup_done_at

    def observe(self, step: int, batch_error: float) -> int | None:
        """Add one iteration's batch training error to the window and `update` with the window's mean."""
        self.recent_errors = (self.recent_errors + [batch_error])[-self.window:]
        if self.warmup_done_at is None:
            self.update(step, sum(self.recent_errors) / len(self.recent_errors))
        return self.warmup_done_at

    def state_dict(self) -> dict:
        return {"threshold": self.threshold, "warmup_lr": self.warmup_lr, "max_steps": self.max_steps,
                "window": self.window, "min_steps": self.min_steps, "recent_errors": list(self.recent_errors),
                "warmup_done_at": self.warmup_done_at}

    def load_state_dict(self, state: dict) -> None:
        # Checkpoints older than a setting carry none: they resume with this run's value.
        settings = (state["threshold"], state["warmup_lr"], state["max_steps"], state.get("window", self.window),
                    state.get("min_steps", self.min_steps))
        if settings != (self.threshold, self.warmup_lr, self.max_steps, self.window, self.min_steps):
            raise ValueError(f"checkpointed warm-up settings {state} differ from this run's {self.state_dict()}")
        self.recent_errors = list(state.get("recent_errors", []))
        self.warmup_done_at = state["warmup_done_at"]


def make_error_warmup(schedule: LRSchedule) -> ErrorThresholdWarmup | None:
    """The state an error-threshold warm-up needs (None for the other kinds), built from the schedule's settings."""
    if schedule.warmup != "error_threshold":
        return None
    return ErrorThresholdWarmup(schedule.warmup_threshold, schedule.warmup_lr, schedule.warmup_steps or None,
                                min_steps=schedule.warmup_min_steps)
