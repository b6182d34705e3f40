"""Data-parallel DP-SGD on torch.distributed: one logical Poisson batch per step, split over the processes.

``PrivacyEngine.make_private`` takes a model wrapped in ``torch.nn.parallel.DistributedDataParallel`` (DDP) and
then trains with :class:`DataParallelDPOptimizer`. One step, on each of the ``W`` processes (ranks):

1. **Batch.** The rank's part of the global Poisson batch (:class:`dpkit.data.DistributedPoissonBatchSampler`):
   every rank draws the same global mask from the shared seed and keeps the examples of its contiguous range of
   the dataset, so each example is in the step's batch with probability q, independently, exactly once across
   the ranks. The loader's ``batch_size`` is the *global* expected batch size (q = batch_size / N, as in the
   single-process run), not a per-rank one.
2. **Clip locally.** The per-sample engine clips each of the rank's examples and sums them: clipping happens
   before any reduction. DDP's own gradient all-reduce is switched off (``require_backward_grad_sync = False``);
   it could only reduce unclipped gradients, and the engine forms no parameter gradient in the backward pass for
   it to reduce anyway. DDP still broadcasts rank 0's parameters when it is built (identical start) and buffers
   at each forward.
3. **Noise once.** The seeded noise of the step is the flat vector the single-process run would draw; it is made
   of blocks of 65,536 values (:mod:`dpkit.noise`), and rank ``r`` draws the blocks ``j`` with ``j % W == r``
   and zeros elsewhere. Every coordinate gets noise from exactly one rank, with the full std ``sigma C`` (divided
   by the global expected batch size), and the noise work is shared. With ``secure_rng=True`` each rank draws its
   blocks from its own OS CSPRNG.
4. **One all-reduce** (sum) of the flat buffer (clipped sums / B + noise shards), with four counters appended
   (ranks refusing the step, ranks that failed, non-finite examples, examples), so every rank applies the same
   update and agrees on the step's outcome: a budget check that refuses on any rank, or an error on any rank
   before the reduction (a missing backward pass, a foreign gradient), raises on every rank (no rank waits
   forever for the others), before anything changes.

Guarantee: the released iterates are those of single-process DP-SGD with the same q, sigma and C on the union
of the ranks' data (the same seeded batches and noise; equal up to floating-point summation order), so each
step is ``PoissonSampledEvent(q, GaussianEvent(sigma))`` and epsilon is that of the single-process run
(add/remove-one-example neighbours, unit: one example). Trust model, as Opacus's ``DistributedDPOptimizer``:
the ranks trust one another (they exchange un-noised partial sums); the guarantee holds against anyone who sees
the model or the updates, not against a rank. torch.distributed does not encrypt messages: run across machines
on a private network.

Non-finite examples contribute zero on the rank that holds them, and the count over all ranks is reported on
every rank. ``last_clipped.norms`` holds this rank's examples' norms only. Checkpoints (``save_checkpoint``):
rank 0 writes the file (the unwrapped module's state, so it loads into a 1-process run too, and the torch RNG
state of every rank); every rank reads it on resume (the path must be visible to all ranks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from dpkit.accountants import BudgetExceededError, DpEvent
from dpkit.checkpoint import check_rng_state
from dpkit.distributed.comm import TorchCommunicator
from dpkit.grad_sample.engine import ClippedSum
from dpkit.optimizer import DPOptimizer, StepLedger

__all__ = ["DataParallel", "DataParallelDPOptimizer"]

# counters appended to the reduced buffer
_REFUSED, _FAILED, _NONFINITE, _EXAMPLES = range(4)
_COUNTERS = 4
_PACKABLE = (torch.float32, torch.float64)  # counters stay exact (< 2**24) in these dtypes


class DataParallel:
    """The process group of a DDP-wrapped model and what data-parallel DP-SGD needs from it."""

    def __init__(self, ddp: DistributedDataParallel):
        self.ddp = ddp
        self.comm = TorchCommunicator(ddp.process_group)
        self.group = ddp.process_group
        self.rank = self.comm.rank
        self.world_size = self.comm.num_agents
        self._grad_sync = ddp.require_backward_grad_sync

    @property
    def shard(self) -> tuple[int, int]:
        return self.rank, self.world_size

    def optimizer(self, optimizer: torch.optim.Optimizer, **kwargs: Any) -> DataParallelDPOptimizer:
        """The DP optimizer of this group around ``optimizer`` (``kwargs`` as for :class:`DPOptimizer`)."""
        return DataParallelDPOptimizer(optimizer, parallel=self, **kwargs)

    def attach(self) -> None:
        """Switch DDP's gradient all-reduce off (the DP optimizer reduces clipped sums instead)."""
        self.ddp.require_backward_grad_sync = False

    def detach(self) -> None:
        self.ddp.require_backward_grad_sync = self._grad_sync

    # ----------------------------------------------------------------- agreement
    def all_gather_object(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.group)
        return out

    def agree(self, what: str, local: dict[str, Any] | BaseException) -> None:
        """Every rank passes its settings (or the error it met): raises the same error on every rank if any rank
        failed or a setting differs from rank 0's; returns on every rank otherwise."""
        mine = _describe(local) if isinstance(local, BaseException) else local
        everyone = self.all_gather_object(mine)
        if isinstance(local, BaseException):
            raise local
        _raise_failures(everyone, what)
        reference = everyone[0]
        for r, theirs in enumerate(everyone):
            for key in reference:
                if theirs.get(key) != reference[key]:
                    raise ValueError(
                        f"{what}: rank {r} has {key}={theirs.get(key)!r} but rank 0 has {key}={reference[key]!r}; "
                        "every rank must call it with the same settings"
                    )

    def agree_seed(self, seed: int | None, given: bool, secure: bool) -> int | None:
        """The seed every rank uses: rank 0's (seeds given explicitly must be equal on every rank)."""
        everyone = self.all_gather_object((seed if given else None, seed, secure))
        secures = {s for _, _, s in everyone}
        given_seeds = {g for g, _, _ in everyone if g is not None}
        if len(secures) > 1:
            raise ValueError(f"secure_rng differs between ranks: {[s for _, _, s in everyone]}")
        if len(given_seeds) > 1 or (given_seeds and any(g is None for g, _, _ in everyone)):
            raise ValueError(
                f"PrivacyEngine seeds differ between ranks ({[g for g, _, _ in everyone]}): give every rank the "
                "same seed (or none: rank 0's fresh seed is shared)"
            )
        return everyone[0][1]

    # ----------------------------------------------------------------- checkpoints
    def rng_states(self) -> torch.Tensor:
        """``[world_size, n]``: the global torch RNG state of every rank (row ``r`` is rank ``r``'s)."""
        return self.comm.all_gather(torch.get_rng_state().unsqueeze(0))

    def checkpoint_rng_state(self, data: dict[str, Any]) -> torch.Tensor:
        """This rank's torch RNG state in a checkpoint: its row of ``torch_rng_ranks`` when the checkpoint was
        written by as many ranks, else the (already checked) ``torch_rng``. Raises ``ValueError`` if malformed."""
        ranks = data.get("torch_rng_ranks")
        if ranks is None:
            return data["torch_rng"]
        if not isinstance(ranks, torch.Tensor) or ranks.dim() != 2:
            raise ValueError("torch_rng_ranks must be a [ranks, n] tensor of torch RNG states")
        if ranks.shape[0] != self.world_size:
            return data["torch_rng"]
        mine = ranks[self.rank].clone()  # a row view would hand torch its storage offset: copy it
        check_rng_state(mine)
        return mine

    def on_rank0(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on rank 0 only; every rank returns when it has finished, or raises its error."""
        error: dict[str, Any] | None = None
        if self.rank == 0:
            try:
                fn()
            except Exception as e:  # reported to every rank, then re-raised here
                self.comm.broadcast_object(_describe(e), src=0)
                raise
        outcome = self.comm.broadcast_object(error, src=0)
        if outcome is not None:
            raise RuntimeError(f"rank 0 failed: {outcome['type']}: {outcome['message']}")


def _describe(error: BaseException) -> dict[str, Any]:
    return {"error": True, "type": type(error).__name__, "message": str(error).strip().splitlines()[0][:300]}


def _raise_failures(everyone: list[Any], what: str) -> None:
    for r, item in enumerate(everyone):
        if isinstance(item, dict) and item.get("error"):
            raise RuntimeError(f"{what} failed on rank {r}: {item['type']}: {item['message']}")


class _DeferredCheck:
    """The ledger seen by the optimizer: a refused budget check is kept until every rank has heard of it."""

    def __init__(self, ledger: StepLedger):
        self.ledger = ledger
        self.refusal: BudgetExceededError | None = None

    def check_step(self, event: DpEvent) -> None:
        self.refusal = None
        try:
            self.ledger.check_step(event)
        except BudgetExceededError as e:
            self.refusal = e

    def record_step(self, event: DpEvent) -> None:
        self.ledger.record_step(event)


class DataParallelDPOptimizer(DPOptimizer):
    """DP-SGD step of a data-parallel run (see the module docs): local clipped sums, each noise block drawn by
    one rank, one all-reduce. Same arguments as :class:`~dpkit.optimizer.DPOptimizer` plus ``parallel``;
    ``expected_batch_size`` and ``sample_rate`` are the global ones."""

    def __init__(self, optimizer: torch.optim.Optimizer, *, parallel: DataParallel, **kwargs: Any):
        ledger = kwargs.pop("ledger", None)
        super().__init__(optimizer, ledger=None if ledger is None else _DeferredCheck(ledger), **kwargs)
        self.parallel = parallel
        first = self.params[0]
        flat = all(p.dtype == first.dtype and p.device == first.device for p in self.params)
        self._size = sum(p.numel() for p in self.params)
        self._packed_layout = flat and first.dtype in _PACKABLE  # counters travel in the gradient buffer
        self._packed: torch.Tensor | None = None
        self._pending: RuntimeError | None = None

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, rank={self.parallel.rank}, world_size={self.parallel.world_size})"

    # ----------------------------------------------------------------- stages of DPOptimizer.pre_step
    def _check_foreign_grads(self) -> None:
        self._pending = None
        try:
            super()._check_foreign_grads()
        except RuntimeError as e:  # raised on every rank after the reduction
            self._pending = e

    def _flat_buffer(self) -> torch.Tensor | None:
        if not self._packed_layout:
            return super()._flat_buffer()
        first = self.params[0]
        self._packed = torch.empty(self._size + _COUNTERS, dtype=first.dtype, device=first.device)
        return self._packed[: self._size]

    def _fill_noise(self, buf: torch.Tensor, std: float) -> None:
        self.noise.fill_(buf, std, self.steps_taken, shard=self.parallel.shard)

    def _draw_noise(self, grads, std: float) -> list[torch.Tensor]:
        return self.noise.draw(grads, std, self.steps_taken, shard=self.parallel.shard)

    def _noisy_clipped_mean(self) -> tuple[ClippedSum, list[torch.Tensor]]:
        """This rank's clipped sum and noise shard (divided by the global expected batch size), summed over the
        ranks; the counters decide on every rank whether the step goes ahead."""
        refusal = self.ledger.refusal if isinstance(self.ledger, _DeferredCheck) else None
        error: BaseException | None = self._pending
        clipped: ClippedSum | None = None
        grads: list[torch.Tensor] = []
        self._packed = None
        if error is None:
            try:
                clipped, grads = super()._noisy_clipped_mean()
            except Exception as e:  # raised on every rank after the reduction
                error = e
        counters = [0.0] * _COUNTERS
        counters[_REFUSED] = float(refusal is not None)
        counters[_FAILED] = float(error is not None)
        if clipped is not None:
            counters[_NONFINITE], counters[_EXAMPLES] = float(clipped.nonfinite), float(clipped.batch_size)
        totals = self._all_reduce(counters, grads if error is None else None)
        if totals[_FAILED] or totals[_REFUSED]:
            self._raise_agreed(error if error is not None else refusal)
        assert clipped is not None
        result = ClippedSum(
            grads,
            batch_size=int(totals[_EXAMPLES]),
            norms=clipped.norms,
            flat=clipped.flat,
            nonfinite=int(totals[_NONFINITE]),
        )
        return result, grads

    def _all_reduce(self, counters: list[float], grads: list[torch.Tensor] | None) -> list[float]:
        """Sum the counters and (unless this rank failed) the gradients over the ranks; the summed counters."""
        group = self.parallel.group
        if self._packed_layout:
            first = self.params[0]
            packed = self._packed
            if grads is None or packed is None:  # this rank failed: it still takes part, with zeros
                packed = torch.zeros(self._size + _COUNTERS, dtype=first.dtype, device=first.device)
            packed[self._size :] = torch.tensor(counters, dtype=packed.dtype)
            dist.all_reduce(packed, group=group)
            return packed[self._size :].tolist()
        stats = torch.tensor(counters, dtype=torch.float64, device=self.parallel.comm.device)
        dist.all_reduce(stats, group=group)
        totals = stats.tolist()
        if not (totals[_FAILED] or totals[_REFUSED]) and grads is not None:
            for g in grads:  # parameters of several dtypes or devices: one reduction each
                dist.all_reduce(g, group=group)
        return totals

    def _raise_agreed(self, mine: BaseException | None) -> None:
        """Every rank raises: its own error if it had one, else the first other rank's (as the same type for a
        refused budget check)."""
        everyone = self.parallel.all_gather_object(None if mine is None else _describe(mine))
        if mine is not None:
            raise mine
        first = next(r for r, item in enumerate(everyone) if item is not None)
        item = everyone[first]
        refused = item["type"] == BudgetExceededError.__name__
        text = f"step {self.steps_taken} {'refused' if refused else 'failed'} on rank {first}: {item['message']}"
        if refused:
            nan = float("nan")
            raise BudgetExceededError(text, epsilon=nan, target_epsilon=nan, delta=nan)
        raise RuntimeError(f"{text} ({item['type']})")
