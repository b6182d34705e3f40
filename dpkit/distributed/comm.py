"""Communication between agents: one interface, two carriers (torch.distributed ranks, or one process).

Distributed algorithms in dpkit are written once against :class:`Communicator`. A communicator holds some of the
``num_agents`` agents (nodes, clients) locally, in the order ``local_agents``; per-agent tensors carry the local
agents along their first dimension.

* :class:`TorchCommunicator`: one agent per rank of a ``torch.distributed`` process group (gloo on CPU, NCCL on
  GPUs; launch with ``torchrun`` and :func:`process_group`). Collectives and point-to-point messages go through
  torch.distributed; nothing here is a home-made message loop.
* :class:`SimulatedCommunicator`: every agent in this process, vectorized (agent tensors are ``[num_agents, ...]``).
  Given the same seeds it computes the same numbers as the multi-process run, up to floating-point summation order
  (the gossip average is a matrix product here and an ordered sum of received vectors there).

Reductions that decide the iterates (the average over agents) are done by gathering every agent's tensor and
summing in agent order on every rank, so all ranks hold bit-identical iterates and the simulation sums the same
numbers in the same order. A gather costs ``num_agents`` x the message size per rank; an all-reduce would be
cheaper but sums in an order that depends on the backend.

Seeds that agents share (correlated noise) are agreed once at set-up by :meth:`Communicator.share_seeds`: the
group's lowest-numbered agent (its owner) draws the seed and sends it to the other members point-to-point.
torch.distributed does not encrypt its messages: in a deployment where an eavesdropper can read the network, run
the set-up exchange over an authenticated, encrypted channel (or a key agreement), because privacy against that
eavesdropper rests on the shared seeds staying secret.
"""

from __future__ import annotations

import abc
import contextlib
import datetime
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from dpkit.accountants.validation import check_count, check_positive

__all__ = [
    "Communicator",
    "SimulatedCommunicator",
    "TorchCommunicator",
    "default_backend",
    "init_process_group",
    "process_group",
]


class Communicator(abc.ABC):
    """How a group of agents exchanges tensors. ``local_agents`` are the agents whose rows this process holds."""

    num_agents: int
    local_agents: tuple[int, ...]

    @abc.abstractmethod
    def all_gather(self, local: torch.Tensor) -> torch.Tensor:
        """Every agent's row: ``local`` is ``[len(local_agents), ...]``, the result ``[num_agents, ...]``."""

    @abc.abstractmethod
    def gossip(self, local: torch.Tensor, weights: np.ndarray) -> torch.Tensor:
        """One mixing step: row ``i`` of the result is ``sum_j weights[i, j] * x_j`` for each local agent ``i``.

        ``weights`` is the ``[num_agents, num_agents]`` mixing matrix, symmetric, known to every agent; agent ``i``
        receives ``x_j`` only from the agents ``j`` with ``weights[i, j] != 0``.
        """

    @abc.abstractmethod
    def share_seeds(self, groups: Sequence[Sequence[int]], make_seed: Callable[[int], int]) -> dict[int, int]:
        """Agree on one secret seed per group of agents; returns ``{group index: seed}`` for the groups that contain
        a local agent. The owner (lowest agent of group ``k``) calls ``make_seed(k)`` and sends it to the others."""

    @abc.abstractmethod
    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """``obj`` as held by agent ``src`` (picklable), on every agent."""

    def mean(self, local: torch.Tensor) -> torch.Tensor:
        """Average over all agents of the rows, summed in agent order (identical on every rank)."""
        return self.all_gather(local).sum(dim=0) / self.num_agents


class SimulatedCommunicator(Communicator):
    """All ``num_agents`` agents live in this process; per-agent tensors are ``[num_agents, ...]``."""

    def __init__(self, num_agents: int):
        self.num_agents = check_count("num_agents", num_agents, minimum=1)
        self.local_agents = tuple(range(self.num_agents))

    def all_gather(self, local: torch.Tensor) -> torch.Tensor:
        if local.shape[0] != self.num_agents:
            raise ValueError(f"local must have {self.num_agents} rows (one per agent), got shape {tuple(local.shape)}")
        return local

    def gossip(self, local: torch.Tensor, weights: np.ndarray) -> torch.Tensor:
        w = torch.as_tensor(np.asarray(weights), dtype=local.dtype, device=local.device)
        return (w @ local.reshape(self.num_agents, -1)).reshape(local.shape)

    def share_seeds(self, groups: Sequence[Sequence[int]], make_seed: Callable[[int], int]) -> dict[int, int]:
        return {k: int(make_seed(k)) for k, members in enumerate(groups) if len(members)}

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        return obj


class TorchCommunicator(Communicator):
    """One agent per rank of an initialized torch.distributed process group (agent ``i`` is rank ``i``).

    ``gossip_mode``: ``"p2p"`` (default) sends each agent's vector to its neighbours only (``batch_isend_irecv``);
    ``"all_gather"`` gathers every vector (simpler, more traffic; the neighbours' rows are the same numbers).
    """

    def __init__(self, group: dist.ProcessGroup | None = None, *, gossip_mode: str = "p2p"):
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "TorchCommunicator needs an initialized process group (see dpkit.distributed.process_group)"
            )
        if gossip_mode not in ("p2p", "all_gather"):
            raise ValueError(f"gossip_mode must be 'p2p' or 'all_gather', got {gossip_mode!r}")
        self.group = group
        self.gossip_mode = gossip_mode
        self.rank = dist.get_rank(group)
        self.num_agents = dist.get_world_size(group)
        self.local_agents = (self.rank,)
        # NCCL moves CUDA tensors only: messages travel on this rank's GPU and come back on the caller's device.
        nccl = dist.get_backend(group) == "nccl"
        self.device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")

    def _global(self, rank: int) -> int:
        return rank if self.group is None else dist.get_global_rank(self.group, rank)

    def all_gather(self, local: torch.Tensor) -> torch.Tensor:
        if local.shape[0] != 1:
            raise ValueError(f"local must have 1 row (this rank's agent), got shape {tuple(local.shape)}")
        sent = local.to(self.device).contiguous()
        parts = [torch.empty_like(sent) for _ in range(self.num_agents)]
        dist.all_gather(parts, sent, group=self.group)
        return torch.cat(parts, dim=0).to(local.device)

    def gossip(self, local: torch.Tensor, weights: np.ndarray) -> torch.Tensor:
        w = np.asarray(weights)
        i = self.rank
        if self.gossip_mode == "all_gather":
            rows = self.all_gather(local)
        else:
            rows = torch.zeros((self.num_agents, *local.shape[1:]), dtype=local.dtype, device=local.device)
            rows[i] = local[0]
            neighbours = [j for j in range(self.num_agents) if j != i and w[i, j] != 0]
            send = local[0].to(self.device).contiguous()
            ops = [dist.P2POp(dist.isend, send, self._global(j), self.group) for j in neighbours]
            recv = {j: torch.empty_like(send) for j in neighbours}
            ops += [dist.P2POp(dist.irecv, recv[j], self._global(j), self.group) for j in neighbours]
            if ops:
                for req in dist.batch_isend_irecv(ops):
                    req.wait()
            for j in neighbours:
                rows[j] = recv[j].to(local.device)
        out = torch.zeros_like(local[0])
        for j in range(self.num_agents):  # ordered sum over the non-zero weights of row i
            if w[i, j] != 0:
                out.add_(rows[j], alpha=float(w[i, j]))
        return out.unsqueeze(0)

    def share_seeds(self, groups: Sequence[Sequence[int]], make_seed: Callable[[int], int]) -> dict[int, int]:
        ops, mine, pending = [], {}, {}
        for k, members in enumerate(groups):
            members = sorted(set(int(m) for m in members))
            if not members or self.rank not in members:
                continue
            owner = members[0]
            if self.rank == owner:
                mine[k] = int(make_seed(k))
                value = torch.tensor([mine[k]], dtype=torch.int64, device=self.device)
                for j in members[1:]:
                    ops.append(dist.P2POp(dist.isend, value, self._global(j), self.group, tag=k))
            else:
                pending[k] = torch.empty(1, dtype=torch.int64, device=self.device)
                ops.append(dist.P2POp(dist.irecv, pending[k], self._global(owner), self.group, tag=k))
        if ops:
            for req in dist.batch_isend_irecv(ops):
                req.wait()
        mine.update({k: int(t.item()) for k, t in pending.items()})
        return mine

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        box = [obj if self.rank == src else None]
        dist.broadcast_object_list(box, src=self._global(src), group=self.group)
        return box[0]


# --------------------------------------------------------------------------------------------- process groups
def default_backend() -> str:
    """``"nccl"`` when CUDA and NCCL are available, else ``"gloo"``."""
    if torch.cuda.is_available() and dist.is_nccl_available():
        return "nccl"
    return "gloo"


def init_process_group(
    backend: str | None = None,
    *,
    init_method: str | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    timeout_seconds: float = 300.0,
) -> None:
    """Initialize the default process group (``env://`` as set by torchrun unless ``init_method`` is given).

    Every collective then fails with an error after ``timeout_seconds`` instead of waiting forever for a rank
    that died. With NCCL each rank uses the GPU ``LOCAL_RANK``.
    """
    backend = default_backend() if backend is None else backend
    timeout = datetime.timedelta(seconds=check_positive("timeout_seconds", timeout_seconds))
    kwargs: dict[str, Any] = {"backend": backend, "timeout": timeout}
    if init_method is not None:
        kwargs["init_method"] = init_method
    if rank is not None:
        kwargs["rank"] = check_count("rank", rank)
    if world_size is not None:
        kwargs["world_size"] = check_count("world_size", world_size, minimum=1)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(**kwargs)


@contextlib.contextmanager
def process_group(backend: str | None = None, **kwargs: Any) -> Iterator[None]:
    """Context manager: initialize the default process group if needed, and destroy it on exit if it made it."""
    created = not dist.is_initialized()
    if created:
        init_process_group(backend, **kwargs)
    try:
        yield
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()
