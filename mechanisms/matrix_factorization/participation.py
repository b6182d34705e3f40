"""Participation schemas: in which steps one example (the unit of privacy) may contribute a gradient.

The sensitivity of a strategy matrix C is a maximum over the index sets a single example may occupy
(Choquette-Choo et al. 2023, "Multi-Epoch Matrix Factorization Mechanisms for Private Machine Learning",
arXiv 2211.06530; and "(Amplified) Banded Matrix Factorization", arXiv 2306.08153):

* :class:`SingleParticipation`: every example is used in at most one step (one pass, one epoch);
* :class:`FixedEpoch` ``(k, b)``: n = k b steps, data split into b batches visited in the same order every epoch,
  so example i contributes exactly at steps {i, i + b, ..., i + (k - 1) b} for one i in [0, b);
* :class:`MinSeparation` ``(b, k)``: any steps at least b apart, at most k of them (federated / shuffled settings).

Every schema is checked against the number of steps ``n`` with :meth:`Participation.check` before use.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterator

from dpkit.mechanisms.matrix_factorization._checks import check_count, check_steps

__all__ = ["Participation", "SingleParticipation", "FixedEpoch", "MinSeparation", "as_min_separation"]


@dataclasses.dataclass(frozen=True)
class Participation:
    """Base class of participation schemas."""

    def check(self, n: int) -> int:
        """Validate the schema against ``n`` steps; returns ``n``."""
        return check_steps("n", n)

    def participations(self, n: int) -> int:
        """The largest number of steps one example can take part in."""
        raise NotImplementedError

    def separation(self, n: int) -> int:
        """The smallest gap j - i between two steps i < j of one example (n when it cannot participate twice)."""
        raise NotImplementedError

    def patterns(self, n: int) -> Iterator[tuple[int, ...]]:
        """Every maximal index set one example may occupy (exponentially many for min-separation; tests only)."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class SingleParticipation(Participation):
    """Each example contributes to at most one step."""

    def participations(self, n: int) -> int:
        self.check(n)
        return 1

    def separation(self, n: int) -> int:
        return self.check(n)

    def patterns(self, n: int) -> Iterator[tuple[int, ...]]:
        return ((i,) for i in range(self.check(n)))

    def describe(self) -> str:
        return "single participation"


@dataclasses.dataclass(frozen=True)
class FixedEpoch(Participation):
    """(k, b) fixed-epoch order: ``epochs`` = k passes of ``steps_per_epoch`` = b steps, n = k b.

    Example i (i in [0, b)) contributes exactly at steps i, i + b, ..., i + (k - 1) b.
    """

    epochs: int
    steps_per_epoch: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "epochs", check_count("epochs", self.epochs, minimum=1))
        object.__setattr__(self, "steps_per_epoch", check_count("steps_per_epoch", self.steps_per_epoch, minimum=1))

    def check(self, n: int) -> int:
        n = check_steps("n", n)
        if self.epochs * self.steps_per_epoch != n:
            raise ValueError(
                f"FixedEpoch needs epochs x steps_per_epoch == n, got epochs={self.epochs} x "
                f"steps_per_epoch={self.steps_per_epoch} = {self.epochs * self.steps_per_epoch} != n={n}"
            )
        return n

    def participations(self, n: int) -> int:
        self.check(n)
        return self.epochs

    def separation(self, n: int) -> int:
        self.check(n)
        return self.steps_per_epoch if self.epochs > 1 else n

    def patterns(self, n: int) -> Iterator[tuple[int, ...]]:
        self.check(n)
        b = self.steps_per_epoch
        return (tuple(range(i, n, b)) for i in range(b))

    def describe(self) -> str:
        return f"fixed-epoch (k={self.epochs}, b={self.steps_per_epoch})"


@dataclasses.dataclass(frozen=True)
class MinSeparation(Participation):
    """b-min-separation: any steps at least ``min_sep`` = b apart, at most ``max_participations`` = k of them.

    ``max_participations=None`` allows as many as fit: ceil(n / b).
    """

    min_sep: int
    max_participations: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "min_sep", check_count("min_sep", self.min_sep, minimum=1))
        k = self.max_participations
        if k is not None:
            object.__setattr__(self, "max_participations", check_count("max_participations", k, minimum=1))

    def check(self, n: int) -> int:
        n = check_steps("n", n)
        if self.min_sep > n:
            raise ValueError(f"min_sep must be in [1, n={n}], got {self.min_sep}")
        return n

    def participations(self, n: int) -> int:
        n = self.check(n)
        fit = math.ceil(n / self.min_sep)
        return fit if self.max_participations is None else min(fit, self.max_participations)

    def separation(self, n: int) -> int:
        n = self.check(n)
        return self.min_sep if self.participations(n) > 1 else n

    def patterns(self, n: int) -> Iterator[tuple[int, ...]]:
        k = self.participations(n)
        b = self.min_sep
        for size in range(1, k + 1):
            for combo in itertools.combinations(range(n), size):
                if all(j - i >= b for i, j in itertools.pairwise(combo)):
                    yield combo

    def describe(self) -> str:
        k = "any" if self.max_participations is None else self.max_participations
        return f"min-separation (b={self.min_sep}, k={k})"


def as_min_separation(participation: Participation, n: int) -> tuple[int, int]:
    """(separation b, participations k) of the min-separation schema that contains ``participation``'s patterns.

    Single participation is (n, 1); (k, b) fixed-epoch is contained in (b, k) min-separation.
    """
    return participation.separation(n), participation.participations(n)
