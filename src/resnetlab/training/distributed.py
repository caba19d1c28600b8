"""Data-parallel training on torch.distributed, started by torchrun: one process per GPU (or CPU worker).

`torchrun --nproc-per-node N -m resnetlab train CONFIG` sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous
address for each process; `init_distributed` reads them and joins the group (NCCL on CUDA, gloo on the CPU).
The rules, so that N processes train the run one process would:

- ``train.batch_size`` is the global batch: each rank takes its ``batch_size / N`` slice of every global batch,
  in the one seeded order all ranks share, and the learning rate is the config's as it stands (the gradient
  DDP averages is the gradient of the global batch's mean loss, as in one process). A larger global batch
  needs a larger ``train.lr`` by the linear scaling rule of Goyal et al. 2017 (lr x k for batch x k, with a
  warm-up), which the config states explicitly rather than resnetlab applying it silently.
- The stochastic-depth gates are drawn from a generator seeded by (seed, iteration) on every rank, so every
  rank drops the same units in a step and each saves their time.
- Loss, error and stop requests are summed over ranks every step (one small all-reduce), so the warm-up rule,
  the NaN check and a Ctrl-C act on every rank at the same step; evaluation splits are sharded and summed.
- Only rank 0 writes the run folder (config, logs, checkpoints); a resume reads the same checkpoint on all ranks.
"""

from __future__ import annotations

import datetime
import gc
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from resnetlab.errors import UsageError
from resnetlab.layers.stochastic_depth import has_batch_gates
from resnetlab.layers.sync_batchnorm import convert_to_all_reduce_bn

TIMEOUT_MINUTES = 30  # a collective waiting longer than this means a rank died: fail instead of hanging


@dataclass(frozen=True)
class Distributed:
    """This process's place in the group; ``enabled`` is False for a plain single-process run (no torchrun).

    Under torchrun even one process joins a group and trains through DDP, so ``--nproc-per-node 1`` runs the
    same code path (and NCCL) as N processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    enabled: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self) -> tuple[int, int]:
        return self.rank, self.world_size

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum over ranks (float64 on the CPU for gloo, on the GPU for NCCL)."""
        if not self.enabled:
            return list(values)
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def broadcast(self, value):
        """Rank 0's ``value`` on every rank (a picklable object: a path, a message)."""
        if not self.enabled:
            return value
        holder = [value]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


SINGLE = Distributed()


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def init_distributed(device: str) -> tuple[Distributed, str]:
    """Join the process group torchrun describes (a no-op without torchrun); returns it and this rank's device.

    ``device`` is the config's: ``cuda`` becomes ``cuda:LOCAL_RANK``, and NCCL is used; ``cpu`` uses gloo.
    """
    if not launched_by_torchrun():
        return SINGLE, device
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    kind = torch.device(device).type
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device cuda under torchrun, but this machine has no CUDA GPU; use --device cpu")
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    elif kind != "cpu":
        raise UsageError(f"distributed training runs on cuda (NCCL) or cpu (gloo), not {device}")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if kind == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=TIMEOUT_MINUTES))
    return Distributed(rank, world_size, local_rank, enabled=True), device


def shutdown_distributed(context: Distributed, wait_for_all: bool = True) -> None:
    """Leave the group. ``wait_for_all``: first a barrier, so that no rank takes the group down while another
    still has a collective in flight (seen as an occasional SIGABRT of a gloo rank at exit); skipped after an
    error, when another rank may be gone and the barrier would wait out the timeout. The collection releases
    DDP's reducer, which holds the group and its finished work, while the interpreter is fully alive."""
    if context.enabled and dist.is_initialized():
        if wait_for_all:
            dist.barrier()
        gc.collect()
        dist.destroy_process_group()


def check_global_batch(batch_size: int, context: Distributed) -> int:
    """The per-rank batch: the global ``train.batch_size`` split evenly over the ranks."""
    per_rank, rest = divmod(batch_size, context.world_size)
    if rest or per_rank < 2:
        raise UsageError(f"train.batch_size={batch_size} (the global batch) must split into equal parts of at "
                         f"least 2 images over {context.world_size} processes; use a multiple of "
                         f"{context.world_size}")
    return per_rank


def wrap_for_training(model: torch.nn.Module, context: Distributed, device: torch.device,
                      sync_bn: bool) -> torch.nn.Module:
    """Batch norm over the global batch when asked (torch's SyncBatchNorm on GPUs, our all-reduce BN on CPU
    processes, where torch's does not run), then DistributedDataParallel; the model itself when not distributed."""
    if not context.enabled:
        return model
    if sync_bn:
        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            model = convert_to_all_reduce_bn(model)
    # A dropped unit's parameters get no gradient in that step: DDP must be told that parameters may go
    # unused. Every rank drops the same units, so the skipped all-reduce is skipped everywhere.
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=has_batch_gates(model),
        broadcast_buffers=not sync_bn)
