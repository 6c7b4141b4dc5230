"""The process world from torchrun's or SLURM's environment, and the collectives training needs.

Under N processes each takes batch/N images of every global batch. The loss normalizer is the global batch's
positive count (all-reduced) divided by N, and DistributedDataParallel averages gradients over the N processes,
so every update equals the one a single process makes on the whole batch.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

# A rank that dies leaves the others waiting in a collective; they give up after this long with an error.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=10)


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world_from_env(env=os.environ) -> World:
    """torchrun sets RANK/LOCAL_RANK/WORLD_SIZE; under ``srun`` (one task per GPU) SLURM's step variables say the
    same. The batch step's own SLURM_NTASKS is not a world: only a step's tasks are processes of one run."""
    if "WORLD_SIZE" in env:
        return World(int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env["WORLD_SIZE"]))
    tasks = env.get("SLURM_STEP_NUM_TASKS")
    if tasks and int(tasks) > 1 and "SLURM_PROCID" in env:
        return World(int(env["SLURM_PROCID"]), int(env.get("SLURM_LOCALID", 0)), int(tasks))
    return World()


def _port(env=os.environ) -> str:
    """A rendezvous port per SLURM job, so two multi-GPU jobs on one node do not meet on the same one."""
    job = env.get("SLURM_JOB_ID")
    return str(29500 + int(job) % 20000) if job and job.isdigit() else "29500"


def init_distributed(world: World) -> torch.device:
    """Join the process group when there is more than one process; return this process's device (its own GPU,
    whether SLURM shows each task all the node's GPUs or only its own)."""
    if torch.cuda.is_available():
        device = torch.device("cuda", world.local_rank if torch.cuda.device_count() > 1 else 0)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world.size > 1 and not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", os.environ.get("SLURM_LAUNCH_NODE_IPADDR", "127.0.0.1"))
        os.environ.setdefault("MASTER_PORT", _port())
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo",
            rank=world.rank,
            world_size=world.size,
            timeout=COLLECTIVE_TIMEOUT,
        )
    return device


def global_normalizer(local_positives: torch.Tensor) -> torch.Tensor:
    """The MultiBox normalizer under N processes: positives of the global batch (at least 1) / N."""
    total = local_positives.detach().to(torch.float32).clone()
    dist.all_reduce(total)
    return total.clamp(min=1) / dist.get_world_size()


def global_terms(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A criterion's terms for the whole global batch, in one collective: each ``loss_*`` averaged over the
    processes (their sum over processes is the global loss times N), every count (``num_pos*``) summed."""
    keys = sorted(values)
    stacked = torch.stack([values[k].detach().to(torch.float32) for k in keys])
    dist.all_reduce(stacked)
    size = dist.get_world_size()
    return {k: v / size if k.startswith("loss_") else v for k, v in zip(keys, stacked.unbind())}


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every process if it is true on any (a stop signal reaching one rank stops all at the same step)."""
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


__all__ = [
    "COLLECTIVE_TIMEOUT",
    "World",
    "any_rank",
    "global_normalizer",
    "global_terms",
    "init_distributed",
    "world_from_env",
]
