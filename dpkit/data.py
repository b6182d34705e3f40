"""Exact Poisson sampling for DP-SGD: every example joins each batch independently with probability q.

:class:`PoissonBatchSampler` draws one batch per step with a single vectorized ``torch.rand(N) < q``; batch
sizes follow Binomial(N, q) and may be 0 (the loader then yields an empty, correctly shaped batch: a valid
step that releases only noise). The randomness of batch ``t`` is a function of (seed, t) only, so a resumed
run draws exactly the batches the uninterrupted run would have (:mod:`dpkit.seeding`). In secure mode each
batch is drawn from a generator seeded from the operating system's CSPRNG.

Data-parallel training (:class:`DistributedPoissonBatchSampler`): the dataset is partitioned into ``world_size``
contiguous ranges (process ``r`` owns the indices ``i`` with ``floor(i * world_size / N) == r``); every process
draws the same global mask from the shared seed and keeps the indices it owns, so each example is in a step's
global batch with probability q, independently, and is processed by exactly one process: the global batches are
the single-process batches, whatever the number of processes.

:class:`PoissonDataLoader` remembers the batch it yielded last and how many examples were drawn for it
(:class:`DrawnBatch`): the per-sample gradient engine checks every step that it clips over exactly those examples.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
from collections.abc import Iterator, Sized
from typing import Any, cast

import torch
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.data import DataLoader, IterableDataset, Sampler
from torch.utils.data.dataloader import default_collate

from dpkit.accountants.validation import check_count, check_probability
from dpkit.seeding import SAMPLER_STREAM, check_seed, check_seeded_state, derive_seed, new_seed


class PoissonBatchSampler(Sampler[list[int]]):
    """Yields ``steps_per_epoch`` Poisson batches per pass (index lists), continuing from ``position``."""

    def __init__(
        self,
        num_samples: int,
        sample_rate: float,
        steps_per_epoch: int,
        *,
        seed: int | None = None,
        secure: bool = False,
    ):
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a whole number >= 1, got {num_samples!r}")
        sample_rate = check_probability("sample_rate", sample_rate)
        if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be a whole number >= 1, got {steps_per_epoch!r}")
        seed, secure = _check_seed_and_secure(seed, secure)
        self.num_samples = num_samples
        self.sample_rate = sample_rate
        self.steps_per_epoch = steps_per_epoch
        self.secure = secure
        self.seed = None if self.secure else (new_seed() if seed is None else seed)
        self.position = 0  # batches drawn so far (over all epochs)
        self._generator = torch.Generator()
        # Set by PoissonDataLoader: where an iteration records the size of each batch it draws, in order.
        self.drawn_sizes: collections.deque[int] | None = None

    def __len__(self) -> int:
        return self.steps_per_epoch

    def draw(self, index: int) -> list[int]:
        """The indices of batch number ``index`` (>= 0)."""
        index = check_count("index", index, minimum=0)
        if self.secure:
            seed = new_seed()
        elif self.seed is None:
            raise RuntimeError("a seeded sampler needs a seed (its state was loaded without one)")
        else:
            seed = derive_seed(self.seed, SAMPLER_STREAM, index)
        self._generator.manual_seed(seed)
        mask = torch.rand(self.num_samples, generator=self._generator) < self.sample_rate
        return mask.nonzero().squeeze(1).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        return self._batches(self.drawn_sizes)  # the sizes' queue of the iteration that starts now

    def _batches(self, sizes: collections.deque[int] | None) -> Iterator[list[int]]:
        end = self._iteration_end()
        while self.position < end:
            batch = self.draw(self.position)
            self.position += 1
            if sizes is not None:
                sizes.append(len(batch))
            yield batch

    def _iteration_end(self) -> int:
        """Where an iteration that starts now stops: the end of the current epoch (after a resume mid-epoch), else
        of a whole one."""
        return (self.position // self.steps_per_epoch + 1) * self.steps_per_epoch

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "position": self.position, "secure": self.secure}

    def check_state(self, state: Any, name: str = "sampler state") -> tuple[int | None, int]:
        """``(seed, position)`` of a :meth:`state_dict` output for this sampler (a clear error otherwise)."""
        seed = check_seeded_state(name, state, ("seed", "position", "secure"), self.secure)
        return seed, check_count(f"{name}.position", state["position"], minimum=0)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore seed and position (validated first: a refused state changes nothing)."""
        self.seed, self.position = self.check_state(state)


class DistributedPoissonBatchSampler(PoissonBatchSampler):
    """Process ``rank``'s part of the global Poisson batches (see the module docs): the batches of a
    :class:`PoissonBatchSampler` with the same seed, restricted to the indices ``[ceil(rank N / W),
    ceil((rank + 1) N / W))`` (``W = world_size``). The state (seed, position) is that of the global sampler, so a
    checkpoint resumes on any number of processes. In secure mode each process draws its mask from its own OS
    CSPRNG seed: the examples it owns are still included independently with probability q."""

    def __init__(
        self,
        num_samples: int,
        sample_rate: float,
        steps_per_epoch: int,
        *,
        rank: int,
        world_size: int,
        seed: int | None = None,
        secure: bool = False,
    ):
        world_size = check_count("world_size", world_size, minimum=1)
        rank = check_count("rank", rank, minimum=0, maximum=world_size - 1)
        super().__init__(num_samples, sample_rate, steps_per_epoch, seed=seed, secure=secure)
        self.rank = rank
        self.world_size = world_size
        # first index of each process's range: ceil(r N / W) = -((-r N) // W)
        self.start = -((-rank * num_samples) // world_size)
        self.stop = -((-(rank + 1) * num_samples) // world_size)

    def draw(self, index: int) -> list[int]:
        """This process's indices of global batch number ``index``."""
        batch = super().draw(index)
        lo = bisect.bisect_left(batch, self.start)
        return batch[lo : bisect.bisect_left(batch, self.stop, lo)]


class EmptyBatchCollate:
    """Wraps a collate function so that an empty index list gives a 0-length batch shaped like a real one."""

    def __init__(self, collate_fn, dataset):
        self.collate_fn = collate_fn if collate_fn is not None else default_collate
        self.dataset = dataset

    def __call__(self, batch):
        if len(batch) > 0:
            return self.collate_fn(batch)
        proto = self.collate_fn([self.dataset[0]])
        return tree_map(lambda x: x[:0], proto)


@dataclasses.dataclass(frozen=True)
class DrawnBatch:
    """A batch :class:`PoissonDataLoader` yielded: ``size`` examples were drawn for it, and ``tensors`` are the
    tensors it yielded (the leaves of the collated batch). ``examples_first``: the collate function is torch's
    default one, which stacks the examples along dimension 0 of every tensor."""

    size: int
    tensors: tuple[torch.Tensor, ...]
    examples_first: bool

    def example_dim(self, t: torch.Tensor) -> int | None:
        """The dimension of yielded tensor ``t`` that indexes the examples, where it is known: dimension 0 under
        the default collate function, else the only dimension of ``t`` whose size is the batch size."""
        if self.examples_first:
            return 0 if t.dim() > 0 and t.shape[0] == self.size else None
        dims = [d for d, n in enumerate(t.shape) if n == self.size]
        return dims[0] if len(dims) == 1 else None

    def moved_examples(self, x: torch.Tensor) -> tuple[torch.Tensor, int] | None:
        """``(yielded tensor, its example dimension)`` if ``x`` is a view of a yielded tensor whose first
        dimension is not the examples' dimension (e.g. ``batch.transpose(0, 1)``), else None (also when ``x`` is
        computed from the batch rather than a view of it: then nothing can be said).

        A view of a yielded tensor ``Y`` keeps the examples first iff its first dimension has the stride of
        ``Y``'s example dimension (a slice of the examples keeps it too: the step's size check speaks of those).
        Batches of one example (nothing to move) are never reported."""
        if self.size < 2 or not x.dim() or x.layout != torch.strided:
            return None
        ptr = x.untyped_storage().data_ptr()
        for y in self.tensors:
            if y.layout != torch.strided or y.untyped_storage().data_ptr() != ptr or y.device != x.device:
                continue
            dim = self.example_dim(y)
            if dim is not None and y.stride(dim) != 0 and x.stride(0) != y.stride(dim):
                return y, dim
        return None


class PoissonDataLoader(DataLoader):
    """A ``DataLoader`` over Poisson batches (built by :func:`poisson_data_loader`) that remembers, in
    :attr:`drawn_batch`, the batch it yielded last and how many examples were drawn for it."""

    batch_sampler: PoissonBatchSampler

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.drawn_batch: DrawnBatch | None = None

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]  # a generator over the stock iterator
        sizes: collections.deque[int] = collections.deque()
        self.batch_sampler.drawn_sizes = sizes  # this iteration's sampler records into it (workers prefetch)
        return self._yield(super().__iter__(), sizes)

    def _yield(self, batches: Iterator[Any], sizes: collections.deque[int]) -> Iterator[Any]:
        examples_first = (
            isinstance(self.collate_fn, EmptyBatchCollate) and self.collate_fn.collate_fn is default_collate
        )
        for batch in batches:  # in the order drawn (the DataLoader yields batches in order)
            tensors = tuple(x for x in tree_flatten(batch)[0] if isinstance(x, torch.Tensor))
            self.drawn_batch = DrawnBatch(sizes.popleft(), tensors, examples_first)
            yield batch


def check_map_style(data_loader) -> int:
    """The dataset size of a loader whose sampler can be replaced by Poisson sampling (else a clear error)."""
    if not isinstance(data_loader, DataLoader):
        raise TypeError(
            f"data_loader must be a torch.utils.data.DataLoader, got {type(data_loader).__name__}; its "
            "sampler is "
            "replaced by Poisson sampling"
        )
    dataset = data_loader.dataset
    if isinstance(dataset, IterableDataset):
        raise TypeError(
            f"data_loader.dataset is an IterableDataset ({type(dataset).__name__}); Poisson sampling needs a "
            "map-style dataset (with __len__ and __getitem__) so each example can be drawn independently"
        )
    try:
        n = len(cast(Sized, dataset))
    except TypeError:
        raise TypeError(
            f"data_loader.dataset ({type(dataset).__name__}) has no len(); Poisson sampling needs a "
            "map-style "
            "dataset with __len__ and __getitem__"
        ) from None
    if n < 1:
        raise ValueError(f"data_loader.dataset must not be empty, got len(dataset)={n}")
    return n


def expected_batch_size(data_loader: DataLoader) -> int:
    """The loader's batch size (or, with a custom batch sampler, dataset size / number of batches)."""
    n = len(cast(Sized, data_loader.dataset))
    if data_loader.batch_size is not None:
        return min(int(data_loader.batch_size), n)
    return max(1, round(n / max(len(data_loader), 1)))


def poisson_data_loader(
    data_loader: DataLoader,
    *,
    sample_rate: float | None = None,
    seed: int | None = None,
    secure: bool = False,
    shard: tuple[int, int] | None = None,
) -> DataLoader:
    """A loader over the same dataset drawing Poisson batches (rate ``sample_rate``, default batch_size / N).

    One pass yields round(1 / q) batches (an epoch in expectation). Workers, pinning and the collate function
    of ``data_loader`` are kept; ``drop_last`` and ``shuffle`` have no meaning under Poisson sampling.
    ``shard=(rank, world_size)``: process ``rank``'s part of the global batches
    (:class:`DistributedPoissonBatchSampler`; ``batch_size`` is then the expected global batch size).
    """
    n = check_map_style(data_loader)
    q = expected_batch_size(data_loader) / n if sample_rate is None else check_probability("sample_rate", sample_rate)
    seed, secure = _check_seed_and_secure(seed, secure)
    steps = steps_per_epoch(q)
    sampler: PoissonBatchSampler
    if shard is None:
        sampler = PoissonBatchSampler(n, q, steps, seed=seed, secure=secure)
    else:
        rank, world_size = shard
        sampler = DistributedPoissonBatchSampler(
            n, q, steps, seed=seed, secure=secure, rank=rank, world_size=world_size
        )
    return loader_over(data_loader, sampler)


def loader_over(data_loader: DataLoader, sampler: PoissonBatchSampler) -> PoissonDataLoader:
    """A :class:`PoissonDataLoader` over ``data_loader``'s dataset whose batches ``sampler`` draws (workers, pinning
    and the collate function of ``data_loader`` are kept)."""
    kwargs: dict[str, Any] = {}
    if data_loader.num_workers > 0:
        kwargs["prefetch_factor"] = data_loader.prefetch_factor
        kwargs["persistent_workers"] = data_loader.persistent_workers
    return PoissonDataLoader(
        data_loader.dataset,
        batch_sampler=sampler,
        num_workers=data_loader.num_workers,
        collate_fn=EmptyBatchCollate(data_loader.collate_fn, data_loader.dataset),
        pin_memory=data_loader.pin_memory,
        timeout=data_loader.timeout,
        worker_init_fn=data_loader.worker_init_fn,
        multiprocessing_context=data_loader.multiprocessing_context,
        # A private generator: creating an iterator draws a worker base seed from it, and must not consume the
        # global torch RNG (a resumed run creates one more iterator than the uninterrupted run).
        generator=torch.Generator().manual_seed(sampler.seed if sampler.seed is not None else new_seed()),
        pin_memory_device=data_loader.pin_memory_device,
        **kwargs,
    )


def _check_seed_and_secure(seed: object, secure: object) -> tuple[int | None, bool]:
    """A seed (None: fresh) and the secure flag; a secure sampler cannot be seeded."""
    if not isinstance(secure, bool):
        raise TypeError(f"secure must be True or False, got {secure!r}")
    checked = check_seed("seed", seed, optional=True)
    if secure and checked is not None:
        raise ValueError(f"seed must be None with secure=True (batches come from the OS CSPRNG), got {seed!r}")
    return checked, secure


def steps_per_epoch(sample_rate: float) -> int:
    return max(1, round(1 / sample_rate))


__all__ = [
    "DistributedPoissonBatchSampler",
    "DrawnBatch",
    "EmptyBatchCollate",
    "PoissonBatchSampler",
    "PoissonDataLoader",
    "check_map_style",
    "expected_batch_size",
    "loader_over",
    "poisson_data_loader",
    "steps_per_epoch",
]
