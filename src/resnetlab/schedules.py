"""Learning-rate schedules as pure functions of the global iteration (0-based), warm-up included.

Every function here maps (step, settings) to a learning rate and keeps no state, so a resumed run, a plot or a test
gets the same value for the same step in any order of calls. The one rule that depends on training, the ResNet-110 /
1202 warm-up ("lr 0.01 until the training error falls below 80%, then back to 0.1"), is made pure by passing the step
at which the error first fell below the threshold (`warmup_done_at`); `resnetlab.training.warmup` holds the small
piece of state that records that step and goes into the checkpoint.

Milestones and step counts are in iterations (optimizer steps); `epochs_to_iterations` converts epoch recipes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Callable, Sequence

# He et al. 2015, CIFAR-10: lr 0.1, divided by 10 at 32k and 48k iterations, stop at 64k (batch 128).
RESNET_CIFAR_BASE_LR = 0.1
RESNET_CIFAR_MILESTONES = (32_000, 48_000)
RESNET_CIFAR_ITERATIONS = 64_000
# ResNet-110 / 1202: lr 0.01 until the training error (a fraction, not %) is below 0.8, about 400 iterations.
RESNET_WARMUP_LR = 0.01
RESNET_WARMUP_ERROR_THRESHOLD = 0.8
# ... and the warm-up lasts at least this many iterations ("about 400" in the paper): a window mean of the first
# few dozen batches can dip below 80% by chance long before the net is ready for lr 0.1.
RESNET_WARMUP_MIN_STEPS = 400
# Iterations whose mean batch training error the trainer compares with the threshold (one batch is too noisy).
WARMUP_ERROR_WINDOW = 50

# Huang et al. 2016, CIFAR: 500 epochs, lr 0.1 divided by 10 at epochs 250 and 375.
STOCHASTIC_DEPTH_CIFAR_EPOCHS = 500
STOCHASTIC_DEPTH_CIFAR_MILESTONE_EPOCHS = (250, 375)

SCHEDULE_NAMES = ("step", "cosine", "constant")
WARMUP_KINDS = ("none", "linear", "constant", "error_threshold")

MainSchedule = Callable[[int], float]


def check_step(step: int) -> None:
    if step < 0:
        raise ValueError(f"step must be >= 0 (0-based iteration), got {step}")


def step_lr(step: int, base_lr: float, milestones: Sequence[int], gamma: float = 0.1) -> float:
    """base_lr * gamma ** (number of milestones <= step): the papers' piecewise-constant schedule."""
    check_step(step)
    passed = sum(1 for milestone in milestones if milestone <= step)
    return base_lr * gamma**passed


def cosine_lr(step: int, base_lr: float, total_steps: int, final_lr: float = 0.0) -> float:
    """Half a cosine from base_lr at step 0 to final_lr at step total_steps; final_lr after that."""
    check_step(step)
    progress = min(step, total_steps) / total_steps
    return final_lr + 0.5 * (base_lr - final_lr) * (1.0 + math.cos(math.pi * progress))


def iterations_per_epoch(num_images: int, batch_size: int, drop_last: bool = False) -> int:
    """Optimizer steps in one pass over num_images (50k images at batch 128: 391, the last batch partial)."""
    if num_images <= 0 or batch_size <= 0:
        raise ValueError(f"num_images and batch_size must be > 0, got {num_images} and {batch_size}")
    return num_images // batch_size if drop_last else math.ceil(num_images / batch_size)


def epochs_to_iterations(epochs: Sequence[float], iterations_per_epoch: int) -> tuple[int, ...]:
    """Epoch milestones as iteration milestones: the step that starts each epoch (epoch 250 at 391/epoch: 97750)."""
    if iterations_per_epoch <= 0:
        raise ValueError(f"iterations_per_epoch must be > 0, got {iterations_per_epoch}")
    return tuple(round(epoch * iterations_per_epoch) for epoch in epochs)


def warmup_lr(step: int, main: MainSchedule, warmup_steps: int, start_lr: float, kind: str = "linear") -> float:
    """The first warmup_steps iterations replaced by a warm-up, main(step) afterwards.

    kind ``"constant"`` holds start_lr; ``"linear"`` ramps from start_lr at step 0 to main(warmup_steps) (the base lr
    for a step schedule), so the lr is continuous where the main schedule takes over. The main schedule keeps
    counting global steps: the warm-up shortens its first phase, it does not shift its milestones.
    """
    check_step(step)
    if step >= warmup_steps:
        return main(step)
    if kind == "constant":
        return start_lr
    if kind == "linear":
        return start_lr + (main(warmup_steps) - start_lr) * step / warmup_steps
    raise ValueError(f"warm-up kind must be 'linear' or 'constant', got {kind!r}")


def error_threshold_lr(step: int, main: MainSchedule, warmup_done_at: int | None, warmup_lr: float,
                       max_warmup_steps: int | None = None) -> float:
    """He et al.'s ResNet-110 warm-up: warmup_lr up to and including step warmup_done_at, main(step) after it.

    warmup_done_at is the iteration whose training error first fell below the threshold (None: not yet). That
    iteration itself already ran at warmup_lr; the next one runs at the main schedule's value, never at warmup_lr
    again. max_warmup_steps, if given, ends the warm-up at that step whatever the error.
    """
    check_step(step)
    warm = warmup_done_at is None or step <= warmup_done_at
    if max_warmup_steps is not None and step >= max_warmup_steps:
        warm = False
    return warmup_lr if warm else main(step)


MAIN_SETTING_NAMES = ("schedule name", "milestones", "gamma")
WARMUP_SETTING_NAMES = ("warmup", "warmup_steps", "warmup_lr", "warmup_threshold")


def check_main_settings(name: str, milestones: Sequence[int], gamma: float,
                        names: Sequence[str] = MAIN_SETTING_NAMES) -> None:
    """ValueError unless the main schedule's settings can work; the config and `LRSchedule` both ask here, each
    naming the settings its own way (``names``: of name, milestones, gamma)."""
    name_key, milestones_key, gamma_key = names
    if name not in SCHEDULE_NAMES:
        raise ValueError(f"{name_key} must be one of {', '.join(SCHEDULE_NAMES)}; got {name!r}")
    if any(isinstance(m, bool) or not isinstance(m, int) or m <= 0 for m in milestones):
        raise ValueError(f"{milestones_key} must be ints > 0, got {list(milestones)}")
    if any(later <= earlier for earlier, later in zip(milestones, milestones[1:])):
        raise ValueError(f"{milestones_key} must be strictly increasing, got {list(milestones)}")
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"{gamma_key} must be in (0, 1], got {gamma}")


def check_warmup_floor(kind: str, min_steps: int, steps: int, key: str = "warmup_min_steps",
                       steps_key: str = "warmup_steps") -> None:
    """ValueError unless an error-threshold warm-up's floor works: an int >= 0, within the cap, and left at its
    default by the other kinds (which never read it)."""
    if isinstance(min_steps, bool) or not isinstance(min_steps, int) or min_steps < 0:
        raise ValueError(f"{key} must be an int >= 0, got {min_steps!r}")
    if kind != "error_threshold" and min_steps != RESNET_WARMUP_MIN_STEPS:
        raise ValueError(f"{key}={min_steps} only applies to the error_threshold warm-up, not {kind!r}; remove it")
    if kind == "error_threshold" and steps and min_steps > steps:
        raise ValueError(f"{key}={min_steps} is beyond the cap {steps_key}={steps}; lower one of them")


def check_warmup_settings(kind: str, steps: int, lr: float, threshold: float,
                          names: Sequence[str] = WARMUP_SETTING_NAMES) -> None:
    """ValueError unless a warm-up's settings can work and each one given has an effect (``names``: of kind,
    steps, lr, threshold in the caller's terms)."""
    kind_key, steps_key, lr_key, threshold_key = names
    if kind not in WARMUP_KINDS:
        raise ValueError(f"{kind_key} must be one of {', '.join(WARMUP_KINDS)}; got {kind!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"{steps_key} must be an int >= 0, got {steps!r}")
    if kind == "none" and steps != 0:
        raise ValueError(f"{steps_key}={steps} has no effect with {kind_key}=none; set it to 0")
    if kind in ("linear", "constant") and steps == 0:
        raise ValueError(f"{kind_key}={kind} needs {steps_key} > 0")
    if not (math.isfinite(lr) and lr >= 0.0):
        raise ValueError(f"{lr_key} must be a finite number >= 0, got {lr}")
    if kind in ("constant", "error_threshold") and lr == 0.0:
        raise ValueError(f"{kind_key}={kind} at {lr_key}=0 never trains; use a value > 0")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"{threshold_key} is a training error fraction in (0, 1), got {threshold}")


@dataclass(frozen=True)
class LRSchedule:
    """One learning-rate schedule, validated; `lr(step)` is the only entry point the trainer needs.

    Args:
        name: ``"step"`` (base_lr * gamma per milestone passed), ``"cosine"`` (base_lr to final_lr over
            total_steps) or ``"constant"``.
        base_lr: the main schedule's starting learning rate (the papers: 0.1).
        milestones: iterations at which a step schedule multiplies the lr by gamma (the paper: 32k, 48k).
        gamma: factor per milestone (the papers: 0.1).
        total_steps: iterations of the whole run, warm-up included (the paper: 64k); the cosine's length.
        final_lr: the cosine's last value.
        warmup: ``"none"``, ``"linear"`` (ramp from warmup_lr to base_lr over warmup_steps), ``"constant"``
            (warmup_lr for warmup_steps) or ``"error_threshold"`` (warmup_lr until the training error is below
            warmup_threshold, He et al.'s ResNet-110 rule; warmup_steps > 0 caps it).
        warmup_steps: length of a linear / constant warm-up in iterations; cap of an error-threshold one (0: none).
        warmup_lr: start of a linear warm-up, value of a constant or error-threshold one (the paper: 0.01).
        warmup_threshold: training error fraction that ends an error-threshold warm-up (the paper: 0.8).
        warmup_min_steps: iterations an error-threshold warm-up lasts at least (the paper: "about 400").
    """

    name: str = "step"
    base_lr: float = RESNET_CIFAR_BASE_LR
    milestones: tuple[int, ...] = RESNET_CIFAR_MILESTONES
    gamma: float = 0.1
    total_steps: int = RESNET_CIFAR_ITERATIONS
    final_lr: float = 0.0
    warmup: str = "none"
    warmup_steps: int = 0
    warmup_lr: float = RESNET_WARMUP_LR
    warmup_threshold: float = RESNET_WARMUP_ERROR_THRESHOLD
    warmup_min_steps: int = RESNET_WARMUP_MIN_STEPS

    def __post_init__(self) -> None:
        object.__setattr__(self, "milestones", tuple(self.milestones))  # lists from YAML stay hashable and frozen
        check_main_settings(self.name, self.milestones, self.gamma)
        check_warmup_settings(self.warmup, self.warmup_steps, self.warmup_lr, self.warmup_threshold)
        check_warmup_floor(self.warmup, self.warmup_min_steps, self.warmup_steps)
        if not (math.isfinite(self.base_lr) and self.base_lr > 0.0):
            raise ValueError(f"base_lr must be a finite number > 0, got {self.base_lr}")
        if not (isinstance(self.total_steps, int) and self.total_steps > 0):
            raise ValueError(f"total_steps must be an int > 0, got {self.total_steps!r}")
        if self.name == "step" and self.milestones and self.milestones[-1] >= self.total_steps:
            raise ValueError(f"milestone {self.milestones[-1]} is not before total_steps {self.total_steps}: "
                             "it would never take effect")
        if not 0.0 <= self.final_lr <= self.base_lr:
            raise ValueError(f"final_lr must be in [0, base_lr={self.base_lr}], got {self.final_lr}")
        if self.warmup_steps >= self.total_steps:
            raise ValueError(f"warmup_steps must be below total_steps ({self.total_steps}), got {self.warmup_steps}")

    @classmethod
    def from_dict(cls, settings: dict) -> LRSchedule:
        """Build from a config dict; unknown keys are an error, not silently ignored."""
        unknown = sorted(set(settings) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown lr schedule keys {unknown}; allowed: {sorted(f.name for f in fields(cls))}")
        return cls(**settings)

    def to_dict(self) -> dict:
        return {**asdict(self), "milestones": list(self.milestones)}

    def main_lr(self, step: int) -> float:
        """The schedule without its warm-up."""
        if self.name == "step":
            return step_lr(step, self.base_lr, self.milestones, self.gamma)
        if self.name == "cosine":
            return cosine_lr(step, self.base_lr, self.total_steps, self.final_lr)
        check_step(step)
        return self.base_lr

    def lr(self, step: int, warmup_done_at: int | None = None) -> float:
        """Learning rate of iteration `step` (0-based); warmup_done_at only for an error-threshold warm-up."""
        if warmup_done_at is not None and self.warmup != "error_threshold":
            raise ValueError(f"warmup_done_at is only meaningful with warmup 'error_threshold', not {self.warmup!r}")
        if self.warmup in ("linear", "constant"):
            return warmup_lr(step, self.main_lr, self.warmup_steps, self.warmup_lr, self.warmup)
        if self.warmup == "error_threshold":
            return error_threshold_lr(step, self.main_lr, warmup_done_at, self.warmup_lr, self.warmup_steps or None)
        return self.main_lr(step)


def resnet_cifar_schedule(error_threshold_warmup: bool = False) -> LRSchedule:
    """He et al.'s CIFAR schedule; with the ResNet-110 / 1202 warm-up if asked."""
    return LRSchedule(warmup="error_threshold" if error_threshold_warmup else "none")


def stochastic_depth_cifar_schedule(iterations_per_epoch: int) -> LRSchedule:
    """Huang et al.'s CIFAR schedule (500 epochs, /10 at 250 and 375) in iterations."""
    return LRSchedule(
        milestones=epochs_to_iterations(STOCHASTIC_DEPTH_CIFAR_MILESTONE_EPOCHS, iterations_per_epoch),
        total_steps=STOCHASTIC_DEPTH_CIFAR_EPOCHS * iterations_per_epoch,
    )
