"""Data loaders for correlated-noise (matrix-factorization) training: batches that follow a participation schema.

The sensitivity of a matrix-factorization mechanism depends on the steps in which one example may contribute
(:mod:`dpkit.mechanisms.matrix_factorization.participation`), so the loader must draw exactly that participation.
Both loaders here split the dataset once into ``groups`` disjoint groups and give step t examples of group
``t mod groups`` only. Each example joins a group independently and uniformly at random (seeded, one draw per
example, like Poisson sampling's): adding or removing an example leaves every other example's steps as they were,
which is what the sensitivity under add/remove neighbours assumes (a balanced split, e.g. a shuffled partition into
equal parts, would move other examples too). Group sizes therefore vary around N / groups (an empty group is a
valid step that adds only noise); the optimizer divides by the constant N / groups, never by a batch's size.

* fixed epochs (``sample_rate=None``): step t is the whole group t mod b, so example i contributes at steps
  g, g + b, g + 2b, ... of its group g: the (k, b) fixed-epoch schema (Choquette-Choo et al. 2023, arXiv
  2211.06530), contained in b-min-separation with k = ceil(n / b) participations;
* cyclic Poisson (``sample_rate=q``): every example of group t mod b_hat joins step t independently with
  probability q (Choquette-Choo et al. 2023, arXiv 2306.08153, Sec. 4): b_hat-min-separated, and for a
  b_hat-banded strategy amplified by sampling (:func:`~dpkit.mechanisms.matrix_factorization.amplified_banded_event`).

The run has exactly ``steps`` = n steps (the strategy's n): iterating past them raises an error (the noise, and so
the privacy guarantee, covers no more). One iteration yields ``steps_per_epoch`` batches (fewer at the end of the
run); as with :class:`~dpkit.data.PoissonBatchSampler` the batch of step t depends on (seed, t) only, so a resumed
run draws the batches of the uninterrupted one.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from dpkit.accountants.validation import check_count, check_probability
from dpkit.data import PoissonBatchSampler, PoissonDataLoader, check_map_style, loader_over
from dpkit.seeding import SAMPLER_STREAM, derive_seed

__all__ = ["CyclicBatchSampler", "fixed_epoch_loader", "cyclic_poisson_loader"]

PARTITION_STREAM = 2  # seeds the split of the data into groups (SAMPLER_STREAM = 0 and NOISE_STREAM = 1 elsewhere)


class CyclicBatchSampler(PoissonBatchSampler):
    """Step t draws from group ``t mod groups`` of a fixed seeded split (each example's group drawn independently):
    the whole group (``sample_rate=None``) or each of its examples with probability ``sample_rate``; ``steps``
    batches in all."""

    def __init__(
        self,
        num_samples: int,
        groups: int,
        steps: int,
        *,
        sample_rate: float | None = None,
        steps_per_epoch: int | None = None,
        seed: int | None = None,
    ):
        num_samples = check_count("num_samples", num_samples, minimum=1)
        groups = check_count("groups", groups, minimum=1)
        if groups > num_samples:
            raise ValueError(f"groups must be in [1, len(dataset)={num_samples}] (no group may be empty), got {groups}")
        steps = check_count("steps", steps, minimum=1)
        rate = 1.0 if sample_rate is None else check_probability("sample_rate", sample_rate)
        per_epoch = groups if steps_per_epoch is None else check_count("steps_per_epoch", steps_per_epoch, minimum=1)
        super().__init__(num_samples, rate, per_epoch, seed=seed)
        self.groups = groups
        self.steps = steps
        self.poisson = sample_rate is not None
        self._members: list[torch.Tensor] | None = None
        self._members_seed: int | None = None

    def members(self, group: int) -> torch.Tensor:
        """The indices of group ``group`` (a function of the seed only)."""
        if self.seed is None:
            raise RuntimeError("a seeded sampler needs a seed (its state was loaded without one)")
        if self._members is None or self._members_seed != self.seed:
            g = torch.Generator().manual_seed(derive_seed(self.seed, PARTITION_STREAM, 0))
            group_of = torch.randint(self.groups, (self.num_samples,), generator=g)  # one draw per example
            order = torch.argsort(group_of, stable=True)  # indices ascending within each group
            counts = torch.bincount(group_of, minlength=self.groups).tolist()
            self._members = list(order.split(counts))
            self._members_seed = self.seed
        return self._members[group]

    def draw(self, index: int) -> list[int]:
        index = check_count("index", index, minimum=0)
        if index >= self.steps:
            raise RuntimeError(
                f"all {self.steps} steps of the run were drawn: the correlated noise (and so the privacy guarantee) "
                f"was built for n={self.steps} steps and covers no more"
            )
        members = self.members(index % self.groups)
        if not self.poisson:
            return members.tolist()
        assert self.seed is not None
        self._generator.manual_seed(derive_seed(self.seed, SAMPLER_STREAM, index))
        mask = torch.rand(members.numel(), generator=self._generator) < self.sample_rate
        return members[mask].tolist()

    def _iteration_end(self) -> int:
        if self.position >= self.steps:
            self.draw(self.position)  # the clear error: the run is over
        return min(super()._iteration_end(), self.steps)


def fixed_epoch_loader(
    data_loader: DataLoader, steps_per_epoch: int, steps: int, *, seed: int | None = None
) -> PoissonDataLoader:
    """(k, b) fixed epochs over ``data_loader``'s dataset: b = ``steps_per_epoch`` fixed batches of N / b examples
    on average, visited in the same order every epoch, ``steps`` = k b steps in all."""
    n = check_map_style(data_loader)
    return loader_over(data_loader, CyclicBatchSampler(n, steps_per_epoch, steps, seed=seed))


def cyclic_poisson_loader(
    data_loader: DataLoader,
    groups: int,
    sample_rate: float,
    steps: int,
    *,
    steps_per_epoch: int | None = None,
    seed: int | None = None,
) -> PoissonDataLoader:
    """Cyclic Poisson sampling: ``groups`` = b_hat fixed groups, step t samples group t mod b_hat with probability
    ``sample_rate`` per example (expected batch size ``sample_rate`` x N / b_hat), ``steps`` steps in all."""
    n = check_map_style(data_loader)
    sampler = CyclicBatchSampler(n, groups, steps, sample_rate=sample_rate, steps_per_epoch=steps_per_epoch, seed=seed)
    return loader_over(data_loader, sampler)
