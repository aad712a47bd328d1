"""Data-parallel training across processes (torchrun): who this process is, and the few collective
operations the training loop needs beyond DistributedDataParallel's gradient all-reduce.

torchrun starts one process per device and tells each its place through the environment (RANK,
LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT). Every rank holds the same weights, optimizer state and
RNG state; rank 0 alone talks to the store and writes files. A single process is a group of one,
and every operation here is then free.
"""

from __future__ import annotations

import datetime
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from core.errors import BadInput

TORCHRUN_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE")


@dataclass(frozen=True)
class Replicas:
    """This process's place among the training processes of one run."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Replicas":
        """The place torchrun gave this process, or a group of one outside torchrun."""
        env = os.environ if env is None else env
        if not all(name in env for name in TORCHRUN_ENV):
            return cls()
        return cls(int(env["RANK"]), int(env["LOCAL_RANK"]), int(env["WORLD_SIZE"]))

    def device(self, device: torch.device) -> torch.device:
        """The device of this rank: its own GPU (LOCAL_RANK) on CUDA."""
        if device.type == "cuda" and self.distributed:
            if self.local_rank >= torch.cuda.device_count():
                raise BadInput(f"rank {self.rank} needs GPU {self.local_rank} of this node, which sees only "
                               f"{torch.cuda.device_count()} (CUDA_VISIBLE_DEVICES; a worker's --gpus groups)")
            return torch.device("cuda", self.local_rank)
        return device

    def join(self, device: torch.device, timeout_s: float = 600) -> None:
        """Join the process group: NCCL between GPUs, gloo on the CPU."""
        if not self.distributed or dist.is_initialized():
            return
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=timeout_s))

    def leave(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a scalar over all ranks (every rank gets it)."""
        if not self.distributed:
            return value
        total = value.detach().float().clone()
        dist.all_reduce(total)
        return total / self.world_size

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when `flag` is true on any, so all ranks take the same branch."""
        if not self.distributed:
            return flag
        votes = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(votes, op=dist.ReduceOp.MAX)
        return bool(votes.item())

    def from_main(self, obj):
        """Rank 0's `obj`, on every rank (pickled; for state that is not a tensor on every rank)."""
        if not self.distributed:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def usable_cpus() -> int:
    """The CPU cores this process may run on: its affinity mask, which containers and taskset narrow."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def exit_with_agent(poll_s: float = 1.0, agent_pid: int | None = None) -> Callable[[], bool]:
    """End this rank at once when its torchrun agent is gone. torchrun starts each rank in a session
    of its own, so a SIGKILL to the agent's process group (a killed terminal, `kill -9` of the
    command) would leave the ranks training on, unrecorded; a rank that finds itself orphaned dies
    as the agent did, and the run is then judged crashed and resumable.

    `agent_pid` is the parent the rank had when it started (default: its parent now). Many ranks
    on few cores take minutes to import torch; one whose agent died meanwhile would take its new
    parent for the agent and train on, so the entry point notes the parent before any import.

    Returns a test of whether the agent is gone: a rank whose collective broke because a sibling
    ended this way first must end the same way, not record a failure."""
    agent = os.getppid() if agent_pid is None else agent_pid

    def agent_gone() -> bool:
        return os.getppid() != agent

    def watch():
        while not agent_gone():
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-agent", daemon=True).start()
    return agent_gone


def shard(batch: torch.Tensor, replicas: Replicas) -> torch.Tensor:
    """This rank's rows of a tensor drawn for the whole global batch (rank r: the r-th equal slice).

    Drawing the per-sample randomness (timesteps, noise, label dropout) for the global batch on every
    rank and keeping a slice makes N ranks of batch B take the very steps of one process of batch
    N*B, and keeps every rank's RNG in the same state, so rank 0's checkpoint holds all of theirs."""
    if not replicas.distributed:
        return batch
    per_rank = batch.shape[0] // replicas.world_size
    return batch[replicas.rank * per_rank:(replicas.rank + 1) * per_rank]


def use_deterministic_algorithms() -> None:
    """Deterministic kernels on CUDA (cuDNN autotuning off, cuBLAS workspace pinned): bit-exact
    resume and repeat runs, at a cost in speed (BENCHMARKS.md)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True)
