"""Learning-rate schedules: the papers' values at chosen iterations, warm-ups, purity, and config validation."""

import math
import random

import pytest

from resnetlab.schedules import (
    RESNET_CIFAR_ITERATIONS,
    RESNET_CIFAR_MILESTONES,
    RESNET_WARMUP_MIN_STEPS,
    STOCHASTIC_DEPTH_CIFAR_EPOCHS,
    STOCHASTIC_DEPTH_CIFAR_MILESTONE_EPOCHS,
    LRSchedule,
    cosine_lr,
    epochs_to_iterations,
    iterations_per_epoch,
    resnet_cifar_schedule,
    step_lr,
    stochastic_depth_cifar_schedule,
    warmup_lr,
)
from resnetlab.training.warmup import ErrorThresholdWarmup, make_error_warmup

# He et al. 2015 CIFAR: 0.1 until 32k, 0.01 until 48k, 0.001 until the stop at 64k.
PAPER_STEP_VALUES = {0: 0.1, 31_999: 0.1, 32_000: 0.01, 47_999: 0.01, 48_000: 0.001, 63_999: 0.001}


@pytest.mark.parametrize("step, expected", sorted(PAPER_STEP_VALUES.items()))
def test_step_lr_matches_the_resnet_cifar_recipe(step, expected):
    assert step_lr(step, 0.1, RESNET_CIFAR_MILESTONES) == pytest.approx(expected, rel=1e-12)
    assert resnet_cifar_schedule().lr(step) == pytest.approx(expected, rel=1e-12)


def test_resnet_cifar_constants():
    assert RESNET_CIFAR_MILESTONES == (32_000, 48_000) and RESNET_CIFAR_ITERATIONS == 64_000
    # ~epochs 82 / 123 / 164 at 391 iterations per epoch (50k images, batch 128).
    assert iterations_per_epoch(50_000, 128) == 391 and iterations_per_epoch(50_000, 128, drop_last=True) == 390
    assert [round(m / 391) for m in (*RESNET_CIFAR_MILESTONES, RESNET_CIFAR_ITERATIONS)] == [82, 123, 164]


def test_stochastic_depth_epoch_milestones_at_391_iterations_per_epoch():
    assert epochs_to_iterations(STOCHASTIC_DEPTH_CIFAR_MILESTONE_EPOCHS, 391) == (97_750, 146_625)
    schedule = stochastic_depth_cifar_schedule(391)
    assert schedule.milestones == (97_750, 146_625)
    assert schedule.total_steps == STOCHASTIC_DEPTH_CIFAR_EPOCHS * 391 == 195_500
    assert schedule.lr(97_749) == pytest.approx(0.1)
    assert schedule.lr(97_750) == pytest.approx(0.01)
    assert schedule.lr(146_625) == pytest.approx(0.001)
    assert schedule.lr(195_499) == pytest.approx(0.001)


def test_cosine_endpoints_and_midpoint():
    assert cosine_lr(0, 0.1, 1000) == pytest.approx(0.1)
    assert cosine_lr(500, 0.1, 1000) == pytest.approx(0.05)
    assert cosine_lr(1000, 0.1, 1000) == pytest.approx(0.0, abs=1e-15)
    assert cosine_lr(500, 0.1, 1000, final_lr=0.02) == pytest.approx(0.06)
    assert cosine_lr(5000, 0.1, 1000, final_lr=0.02) == pytest.approx(0.02)  # held after the end
    schedule = LRSchedule(name="cosine", total_steps=1000)
    assert [schedule.lr(s) for s in (0, 250, 500, 1000)] == pytest.approx(
        [0.1, 0.05 * (1 + math.cos(math.pi / 4)), 0.05, 0.0], abs=1e-15)


def test_linear_warmup_values_then_the_main_schedule():
    schedule = LRSchedule(warmup="linear", warmup_steps=100, warmup_lr=0.0)
    assert [schedule.lr(s) for s in (0, 25, 50, 99, 100, 31_999, 32_000)] == pytest.approx(
        [0.0, 0.025, 0.05, 0.099, 0.1, 0.1, 0.01])
    from_start = LRSchedule(warmup="linear", warmup_steps=10, warmup_lr=0.01)
    assert [from_start.lr(s) for s in (0, 5, 10)] == pytest.approx([0.01, 0.055, 0.1])


def test_linear_warmup_ends_where_a_cosine_continues():
    schedule = LRSchedule(name="cosine", total_steps=1000, warmup="linear", warmup_steps=100, warmup_lr=0.0)
    assert schedule.lr(99) < schedule.lr(100) == pytest.approx(cosine_lr(100, 0.1, 1000))
    assert schedule.lr(100) - schedule.lr(99) == pytest.approx(cosine_lr(100, 0.1, 1000) / 100)


def test_constant_warmup_then_the_main_schedule():
    # Huang et al.'s ResNet-1202 recipe: lr 0.01 for the first 10 epochs, then 0.1.
    schedule = LRSchedule(warmup="constant", warmup_steps=3910, warmup_lr=0.01)
    assert [schedule.lr(s) for s in (0, 3909, 3910, 32_000)] == pytest.approx([0.01, 0.01, 0.1, 0.01])
    assert warmup_lr(5, lambda step: 1.0, 10, 0.5, kind="constant") == 0.5


def test_error_threshold_warmup_returns_to_the_step_schedule():
    schedule = resnet_cifar_schedule(error_threshold_warmup=True)
    tracker = make_error_warmup(schedule)
    errors = [0.9] * 400 + [0.79] + [0.5] * 99  # the error first falls below 80% at iteration 400
    lrs = []
    for step, error in enumerate(errors):
        lrs.append(schedule.lr(step, tracker.warmup_done_at))
        tracker.update(step, error)
    assert tracker.warmup_done_at == 400
    assert set(lrs[:401]) == {0.01}  # iteration 400 ran before its error was known
    assert lrs[401] == pytest.approx(0.1)  # right after the threshold: back to the base lr
    assert lrs[401:] == pytest.approx([0.1] * 99)
    # Later the step schedule, never stuck at 0.01 (the known bug): 0.01 here comes from the first milestone.
    for step, expected in PAPER_STEP_VALUES.items():
        if step > 400:
            assert schedule.lr(step, tracker.warmup_done_at) == pytest.approx(expected)
    assert schedule.lr(31_999, tracker.warmup_done_at) == pytest.approx(0.1)


def test_error_threshold_warmup_before_the_threshold_and_its_cap():
    schedule = resnet_cifar_schedule(error_threshold_warmup=True)
    assert schedule.lr(0) == schedule.lr(10_000) == 0.01  # still warming up: None
    tracker = ErrorThresholdWarmup(max_steps=400)
    for step in range(400):
        tracker.update(step, 0.95)
    assert tracker.warmup_done_at == 399  # the cap ends it even if the error never falls
    capped = LRSchedule(warmup="error_threshold", warmup_steps=400)
    assert capped.lr(399) == 0.01 and capped.lr(400) == pytest.approx(0.1)  # the cap also holds without the tracker


def test_error_threshold_warmup_lasts_at_least_its_floor():
    # He et al. 2015: lr 0.01 "until the training error is below 80% (about 400 iterations)". A low error
    # before iteration 400 does not end the warm-up; the first low error from then on does.
    tracker = ErrorThresholdWarmup()
    assert tracker.min_steps == RESNET_WARMUP_MIN_STEPS == 400
    for step in range(RESNET_WARMUP_MIN_STEPS - 1):
        assert tracker.update(step, 0.5) is None
    assert tracker.update(RESNET_WARMUP_MIN_STEPS - 1, 0.5) == 399  # the 400th iteration: ran at 0.01, the last
    schedule = resnet_cifar_schedule(error_threshold_warmup=True)
    assert schedule.lr(399, tracker.warmup_done_at) == 0.01 and schedule.lr(400, 399) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="only applies to the error_threshold"):
        LRSchedule(warmup="linear", warmup_steps=10, warmup_min_steps=5)
    with pytest.raises(ValueError, match="beyond the cap"):
        LRSchedule(warmup="error_threshold", warmup_steps=100)


def test_error_threshold_tracker_keeps_the_first_step_and_round_trips():
    tracker = ErrorThresholdWarmup(min_steps=0)
    assert tracker.update(0, 0.9) is None and not tracker.done
    assert tracker.update(1, 0.7) == 1
    assert tracker.update(2, 0.95) == 1 and tracker.update(3, 0.1) == 1  # later errors change nothing
    resumed = ErrorThresholdWarmup(min_steps=0)
    resumed.load_state_dict(tracker.state_dict())
    assert resumed.warmup_done_at == 1 and resumed.done
    fresh = ErrorThresholdWarmup()
    fresh.load_state_dict(ErrorThresholdWarmup().state_dict())
    assert fresh.warmup_done_at is None
    with pytest.raises(ValueError, match="differ"):
        ErrorThresholdWarmup(threshold=0.5, min_steps=0).load_state_dict(tracker.state_dict())
    with pytest.raises(ValueError, match="differ"):
        ErrorThresholdWarmup().load_state_dict(tracker.state_dict())  # another floor
    with pytest.raises(ValueError, match="fraction"):
        tracker.update(4, 80.0)  # a percentage, not a fraction


@pytest.mark.parametrize("schedule", [
    LRSchedule(),
    LRSchedule(name="cosine", warmup="linear", warmup_steps=500, warmup_lr=0.0),
    LRSchedule(warmup="constant", warmup_steps=400),
    LRSchedule(name="constant"),
])
def test_schedules_are_pure_functions_of_the_step(schedule):
    steps = list(range(0, RESNET_CIFAR_ITERATIONS, 997)) + [31_999, 32_000, 47_999, 48_000, 63_999]
    in_order = {step: schedule.lr(step) for step in steps}
    shuffled = steps[:]
    random.Random(0).shuffle(shuffled)
    assert {step: schedule.lr(step) for step in shuffled} == in_order
    assert {step: schedule.lr(step) for step in steps} == in_order


def test_error_threshold_lr_is_pure_given_warmup_done_at():
    schedule = resnet_cifar_schedule(error_threshold_warmup=True)
    steps = [50_000, 3, 401, 400, 0, 32_000, 399]
    first = [schedule.lr(s, 400) for s in steps]
    assert [schedule.lr(s, 400) for s in reversed(steps)] == first[::-1]


def test_config_round_trip():
    schedule = LRSchedule(name="cosine", warmup="linear", warmup_steps=10, milestones=[5, 9])
    assert schedule.milestones == (5, 9)
    assert LRSchedule.from_dict(schedule.to_dict()) == schedule
    with pytest.raises(ValueError, match="unknown lr schedule keys"):
        LRSchedule.from_dict({"base_lr": 0.1, "lr_decay": 0.1})


@pytest.mark.parametrize("settings, message", [
    ({"name": "exponential"}, "schedule name"),
    ({"base_lr": 0.0}, "base_lr"),
    ({"base_lr": float("nan")}, "base_lr"),
    ({"total_steps": 0}, "total_steps"),
    ({"milestones": (0, 10)}, "milestones must be ints > 0"),
    ({"milestones": (48_000, 32_000)}, "strictly increasing"),
    ({"milestones": (32_000, 64_000)}, "never take effect"),
    ({"gamma": 0.0}, "gamma"),
    ({"gamma": 10.0}, "gamma"),
    ({"name": "cosine", "final_lr": 0.5}, "final_lr"),
    ({"warmup": "exponential"}, "warmup must be one of"),
    ({"warmup_steps": -1}, "warmup_steps must be"),
    ({"warmup_steps": 64_000, "warmup": "linear"}, "warmup_steps must be"),
    ({"warmup_steps": 100}, "no effect"),
    ({"warmup": "linear"}, "needs warmup_steps"),
    ({"warmup": "constant", "warmup_steps": 5, "warmup_lr": 0.0}, "never trains"),
    ({"warmup_lr": -0.01}, "warmup_lr"),
    ({"warmup": "error_threshold", "warmup_threshold": 80.0}, "warmup_threshold"),
])
def test_each_bad_config_raises_one_clear_value_error(settings, message):
    with pytest.raises(ValueError, match=message):
        LRSchedule(**settings)


def test_misuse_of_the_step_and_warmup_done_at_raises():
    with pytest.raises(ValueError, match="step must be >= 0"):
        LRSchedule().lr(-1)
    with pytest.raises(ValueError, match="only meaningful"):
        LRSchedule().lr(10, warmup_done_at=5)
    with pytest.raises(ValueError, match="threshold"):
        ErrorThresholdWarmup(threshold=80)
    assert make_error_warmup(LRSchedule()) is None
