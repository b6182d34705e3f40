"""Generalized randomized response (k-RR, direct encoding) and its vectorized client primitive."""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import ArrayLike

from dpkit.accountants import DpEvent, RandomizedResponseEvent
from dpkit.mechanisms._validation import check_report_array, check_values
from dpkit.mechanisms.base import PQOracle
from dpkit.mechanisms.channels import grr_channel

__all__ = ["GRR", "RandomizedResponseOracle", "grr_perturb", "grr_pq"]


def grr_pq(epsilon: float, k: int) -> tuple[float, float]:
    """(p, q) of k-ary randomized response at epsilon: p = e^eps/(e^eps + k - 1), q = 1/(e^eps + k - 1)."""
    e = math.exp(epsilon)
    return e / (e + k - 1), 1.0 / (e + k - 1)


def grr_perturb(values: np.ndarray, k: int, p: float, rng: np.random.Generator) -> np.ndarray:
    """k-ary randomized response: keep v w.p. p, else a uniform value of [k] minus {v} (exact, vectorized)."""
    n = values.shape[0]
    keep = rng.random(n) < p
    other = rng.integers(0, k - 1, size=n)
    other += other >= values
    return np.where(keep, values, other)


class RandomizedResponseOracle(PQOracle):
    """A pure protocol whose channel is m-ary randomized response over its ``m = _outputs()`` outputs (GRR: the k
    values; local hashing: the g buckets of the hashed value): p = e^eps/(e^eps + m - 1), q = 1/(e^eps + m - 1)
    (:func:`grr_pq`). The approximate variants (:class:`~dpkit.mechanisms.frequency_oracles.approximate.AGRR`, ...)
    move p and q over the same outputs."""

    @abstractmethod
    def _outputs(self) -> int:
        """m: the number of outputs of the randomized response."""

    @cached_property
    def p(self) -> float:
        """P(the randomized response keeps its input)."""
        return grr_pq(self.epsilon, self._outputs())[0]

    @cached_property
    def q(self) -> float:
        """P(the randomized response moves its input to a given other output)."""
        return grr_pq(self.epsilon, self._outputs())[1]


@dataclass(frozen=True)
class GRR(RandomizedResponseOracle):
    """Generalized randomized response (k-RR, direct encoding; Kairouz et al. 2016, Wang et al. USENIX Sec'17).

    Client: report v w.p. p = e^eps/(e^eps + k - 1), else a uniform other value (each w.p. q = 1/(e^eps + k - 1)).
    epsilon-LDP for one user's value under replacement; ``privacy_event()`` is ``RandomizedResponseEvent(eps, k)``.
    Reports: int64 (n,) in [0, k).
    """

    k: int
    epsilon: float
    name = "GRR"

    def __post_init__(self) -> None:
        self._set_k_epsilon()

    def _outputs(self) -> int:
        return self.k

    def _perturb(self, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return grr_perturb(values, self.k, self.p, rng)

    def _check_reports(self, reports: ArrayLike) -> np.ndarray:
        r = check_report_array("reports", reports, kinds="iu", shape_tail=(), expected=f"GRR reports in [0, {self.k})")
        return check_values("reports", r, self.k)

    def _support_counts(self, reports: np.ndarray) -> np.ndarray:
        return np.bincount(reports, minlength=self.k).astype(np.int64)

    def output_probabilities(self, value: int) -> np.ndarray:
        """P(report = y | value) for y in [0, k)."""
        out = np.full(self.k, self.q)
        out[value] = self.p
        return out

    def channel_matrix(self) -> np.ndarray:
        return grr_channel(self.k, self.p, self.q)

    def privacy_event(self) -> DpEvent:
        return RandomizedResponseEvent(self.epsilon, self.k)
