"""The processes of a distributed run (``trainer=ddp``), as the rest of the code needs them.

Lightning's DDP strategy starts the processes and the process group (gloo on CPU, nccl on
GPU); nothing here schedules or talks to processes on its own. These helpers only ask
``torch.distributed`` who this process is and call its collectives, and answer for a
single process (world size 1, rank 0, no collective) when no process group is running,
so that every caller works unchanged in a plain run and in the unit tests.

Before Lightning has started the process group, the rank comes from the environment the
launcher set: ``RANK``, or ``NODE_RANK`` and ``LOCAL_RANK`` (Lightning's launcher), so a
run can decide at its start which process writes the run folder's files.
"""

from __future__ import annotations

import os
from typing import Any

import torch.distributed as dist


def _group_running() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of processes of the run (1 without a process group)."""
    return dist.get_world_size() if _group_running() else 1


def is_rank_zero() -> bool:
    """Whether this process writes the run's files (``metrics.json``, CSVs, ``failed.json``):
    rank 0 of the process group, or before it runs, the process the launcher's environment
    names rank 0 (``RANK``, else ``NODE_RANK`` and ``LOCAL_RANK``; none of them in a plain run)."""
    if _group_running():
        return dist.get_rank() == 0
    if "RANK" in os.environ:
        return int(os.environ["RANK"]) == 0
    return int(os.environ.get("NODE_RANK", 0)) == 0 and int(os.environ.get("LOCAL_RANK", 0)) == 0


def stream_name(stream: str, rank: int) -> str:
    """The name of a random stream in process ``rank``: rank 0 keeps ``stream`` (a
    single-process run's draws), rank ``r > 0`` draws from ``stream/rank<r>``."""
    return stream if rank == 0 else f"{stream}/rank{rank}"


def all_gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj``, by rank (``[obj]`` in a single process). A collective:
    every process must call it. Tensors in ``obj`` should be on the CPU (they are pickled)."""
    if world_size() == 1:
        return [obj]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier() -> None:
    """Wait for every process (nothing in a single process)."""
    if world_size() > 1:
        dist.barrier()
