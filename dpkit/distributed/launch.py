"""Start a few torch.distributed processes on this machine and collect what each returns (tests, examples).

``run_processes(fn, world_size, args)`` spawns ``world_size`` processes; process ``rank`` initializes the default
process group (a file store in a fresh temporary folder, so no port is needed) and returns ``fn(rank, world_size,
*args)``. It never hangs: the process group's collectives time out, and after ``timeout`` seconds the processes
it started are killed and ``TimeoutError`` is raised. An exception in any process is raised here
(``torch.multiprocessing.ProcessRaisedException``, with the remote traceback). For real runs use ``torchrun``
with :func:`dpkit.distributed.process_group`.

``fn`` must be importable by name (a module-level function), as the processes are started with ``spawn``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dpkit.accountants.validation import check_count, check_positive
from dpkit.distributed.comm import init_process_group

__all__ = ["run_processes"]


def _entry(rank, fn, world_size, args, backend, folder, timeout, threads) -> None:
    torch.set_num_threads(threads)
    init_process_group(
        backend,
        init_method=f"file://{folder}/store",
        rank=rank,
        world_size=world_size,
        timeout_seconds=timeout,
    )
    try:
        result = fn(rank, world_size, *args)
        torch.save(result, Path(folder) / f"result_{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_processes(
    fn: Callable[..., Any],
    world_size: int,
    args: Sequence[Any] = (),
    *,
    backend: str = "gloo",
    timeout: float = 120.0,
    threads_per_process: int = 1,
) -> list[Any]:
    """``[fn(0, world_size, *args), ..., fn(world_size - 1, world_size, *args)]``, each run in its own process."""
    world_size = check_count("world_size", world_size, minimum=1)
    timeout = check_positive("timeout", timeout)
    threads = check_count("threads_per_process", threads_per_process, minimum=1)
    folder = tempfile.mkdtemp(prefix="dpkit-dist-")
    try:
        ctx = mp.start_processes(
            _entry,
            args=(fn, world_size, tuple(args), backend, folder, timeout, threads),
            nprocs=world_size,
            join=False,
            start_method="spawn",
        )
        deadline = time.monotonic() + timeout
        try:
            while not ctx.join(timeout=max(0.1, deadline - time.monotonic())):
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"{world_size} processes running {fn.__name__} did not finish in {timeout} s")
        finally:
            for p in ctx.processes:  # only the processes started above
                if p.is_alive():
                    p.kill()
                p.join()
        return [torch.load(Path(folder) / f"result_{r}.pt", weights_only=False) for r in range(world_size)]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
