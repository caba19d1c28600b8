"""One epoch of training: the step at the schedule's learning rate, the NaN guard, the epoch's bookkeeping, and
the stop flag that SIGINT/SIGTERM raise so a run stops at an exact, checkpointed position.

The step's numbers (loss, misclassified images) are read on the host every step where that costs nothing (the
CPU) or something acts on each one; on a GPU every `DEFERRED_SYNC_STEPS` steps, so the device never idles while
Python waits for it (`host_sync_interval`).
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass

import torch

from resnetlab.training.finetune import set_training_mode
from resnetlab.training.trainer import Run, TrainingDiverged, TrainingInterrupted, TrainState


class StopFlag:
    """Set by SIGINT/SIGTERM so the current step finishes and a checkpoint is written at the exact position."""

    def __init__(self) -> None:
        self.raised: str | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave the default handling
                pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.raised is not None:  # a second signal: stop at once
            raise KeyboardInterrupt
        self.raised = signal.Signals(signum).name

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# CUDA steps between reads of the loss on the host: a read waits for the GPU to finish every queued kernel, so
# reading every step would leave it idle while Python prepares the next one. The NaN check then names the exact
# iteration a few steps late; nothing is saved in between, so the last good checkpoint stays as it was.
DEFERRED_SYNC_STEPS = 25


def host_sync_interval(run: Run, probes: bool) -> int:
    """Steps between host reads of the step's numbers. 1 (the loss is checked before each update) where a read
    costs nothing (the CPU computes synchronously) or something acts on every step's numbers: the
    error-threshold warm-up, probes, a stop vote across processes."""
    if (run.device.type == "cpu" or probes or run.warmup is not None or run.distributed.world_size > 1):
        return 1
    return DEFERRED_SYNC_STEPS


@dataclass
class StepResult:
    """One iteration's numbers, summed over the ranks; ``loss_sum`` and ``wrong`` stay on the device (tensors)
    until `settle` reads them."""

    iteration: int
    lr: float
    loss_sum: float | torch.Tensor  # summed over the global batch
    wrong: int | torch.Tensor  # misclassified images of the global batch
    images: int
    stop_requested: bool  # a stop signal reached some rank

    @property
    def loss(self) -> float:
        return self.loss_sum / self.images


def _diverged(iteration: int, loss: float, epoch: int, lr: float) -> TrainingDiverged:
    return TrainingDiverged(f"loss became {loss} at iteration {iteration} (epoch {epoch}, lr {lr:g}); the last good "
                            "checkpoint is kept: lower train.lr or add a warm-up")


def train_step(run: Run, images: torch.Tensor, labels: torch.Tensor, stop: StopFlag,
               deferred: bool = False) -> StepResult:
    """One iteration at the schedule's learning rate; advances the position. Unless ``deferred``, the loss is
    read at once and a non-finite one refused before the update; deferred, `settle` checks it later."""
    state = run.state
    lr = run.schedule.lr(state.iteration, run.warmup.warmup_done_at if run.warmup is not None else None)
    for group in run.optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)  # the backbone's share when fine-tuning
    result: list[StepResult] = []

    def inspect(loss: torch.Tensor, logits: torch.Tensor) -> None:
        wrong = (logits.detach().argmax(1) != labels).sum()
        if deferred:
            result.append(StepResult(state.iteration, lr, loss.detach() * len(labels), wrong, len(labels),
                                     stop.raised is not None))
            return
        # Summed over ranks (one small all-reduce), so that the NaN check, the warm-up rule and a stop request
        # act at the same step on every rank; in one process these are the batch's own numbers.
        loss_sum, wrong, count, votes = run.distributed.sum(
            [loss.item() * len(labels), int(wrong), len(labels), float(stop.raised is not None)])
        if not math.isfinite(loss_sum / count):
            raise _diverged(state.iteration, loss_sum / count, state.epoch + 1, lr)
        result.append(StepResult(state.iteration, lr, loss_sum, int(wrong), int(count), bool(votes)))

    run.step(state.iteration, images, labels, inspect)
    state.iteration += 1
    state.batch += 1
    return result[0]


def settle(run: Run, results: list[StepResult]) -> None:
    """Read the deferred steps' numbers in one transfer, refuse the first non-finite loss, and count them."""
    deferred = [r for r in results if isinstance(r.loss_sum, torch.Tensor)]
    if deferred:
        values = torch.stack([torch.stack([r.loss_sum.float(), r.wrong.float()]) for r in deferred]).tolist()
        for r, (loss_sum, wrong) in zip(deferred, values):
            r.loss_sum, r.wrong = loss_sum, int(wrong)
    for r in results:
        if not math.isfinite(r.loss):
            raise _diverged(r.iteration, r.loss, run.state.epoch + 1, r.lr)
        record_step(run, r)


def record_step(run: Run, result: StepResult) -> None:
    """Count the step in the epoch's totals and the warm-up's window."""
    state = run.state
    state.epoch_seen += result.images
    state.epoch_loss_sum += result.loss_sum
    state.epoch_wrong += result.wrong
    if run.warmup is not None:
        run.warmup.observe(result.iteration, result.wrong / result.images)


def train_one_epoch(run: Run, stop: StopFlag, on_step=None, stop_at_iteration: int | None = None,
                    sync_every: int = 1) -> dict:
    """Train from the state's (epoch, batch) to the epoch's end, the run's last iteration, or a stop request
    (`TrainingInterrupted`). ``on_step(state, loss, batch_error)`` runs after each step is counted, off the
    epoch's clock; ``sync_every`` steps share one read of their numbers on the host (`host_sync_interval`)."""
    state = run.state
    set_training_mode(run.model, run.frozen)
    pending: list[StepResult] = []
    clock = time.perf_counter()

    def count_pending() -> None:
        nonlocal clock
        settle(run, pending)
        state.epoch_seconds += time.perf_counter() - clock
        if on_step is not None:
            for result in pending:
                on_step(state, result.loss, result.wrong / result.images)
        pending.clear()
        clock = time.perf_counter()

    for images, labels in run.data.train.batches(state.epoch, state.batch):
        result = train_step(run, images, labels, stop, deferred=sync_every > 1)
        pending.append(result)
        finished = state.iteration >= run.total_iterations
        stopping = result.stop_requested or (stop_at_iteration is not None and state.iteration >= stop_at_iteration)
        if len(pending) < sync_every and not (finished or stopping):
            continue
        count_pending()
        if finished:
            break
        if stopping:
            raise TrainingInterrupted(stop.raised or ("stopped on another rank" if result.stop_requested else
                                                      f"stop_at_iteration={stop_at_iteration}"))
    count_pending()  # the epoch's last steps, when it ended between two reads
    seen = max(state.epoch_seen, 1)
    return {"train_loss": state.epoch_loss_sum / seen, "train_error": state.epoch_wrong / seen,
            "images_per_second": state.epoch_seen / state.epoch_seconds if state.epoch_seconds > 0 else None,
            "epoch_seconds": state.epoch_seconds, "lr": run.optimizer.param_groups[-1]["lr"]}  # the schedule's


def start_next_epoch(state: TrainState) -> None:
    state.epoch, state.batch = state.epoch + 1, 0
    state.epoch_seen, state.epoch_loss_sum, state.epoch_wrong, state.epoch_seconds = 0, 0.0, 0, 0.0
