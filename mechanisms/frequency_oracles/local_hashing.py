"""Local hashing: BLH (g = 2) and OLH (g = round(e^eps) + 1), with the universal family of mechanisms.hashing."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import ArrayLike

from dpkit.accountants import DpEvent, RandomizedResponseEvent
from dpkit.mechanisms import hashing
from dpkit.mechanisms._validation import check_domain, set_fields
from dpkit.mechanisms.frequency_oracles.grr import RandomizedResponseOracle, grr_perturb

__all__ = ["LocalHashing", "BLH", "OLH"]


@dataclass(frozen=True)
class LocalHashing(RandomizedResponseOracle):
    """Local hashing with ``g`` buckets (Wang et al. USENIX Sec'17; BLH: g = 2; OLH: g = round(e^eps) + 1).

    Client: draw a hash function H from the universal family of :mod:`dpkit.mechanisms.hashing` (two uniform 64-bit
    parameters), h = H(v) in [0, g), report (a, b, GRR_g(h)) with GRR at epsilon over [g]. The server's support is
    {v : H(v) = y}, with p* = e^eps/(e^eps + g - 1) and q* = 1/g (hash collisions).
    epsilon-LDP for one user's value under replacement: the hash function is drawn independently of the value and,
    given it, the output is g-ary randomized response of H(v). Reports: uint64 (n, 3), rows (a, b, y).
    """

    k: int
    epsilon: float
    g: int = 0  # 0 = OLH's optimal g
    name = "LH"
    default_chunk = 1 << 16

    def __post_init__(self) -> None:
        self._set_k_epsilon(hashing.MAX_DOMAIN)
        g = (
            check_domain("g", self.g, maximum=hashing.MAX_BUCKETS)
            if self.g
            else hashing.optimal_g(self.epsilon, self.name)
        )
        set_fields(self, g=g)

    def _outputs(self) -> int:
        """g: GRR over [g] reports the hashed value (p = P(y = H(v)), q = P(y = a given other bucket))."""
        return self.g

    @cached_property
    def q_star(self) -> float:
        """1/g: a report (H, y) supports every value that H maps to y."""
        return 1.0 / self.g

    def _perturb(self, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = values.shape[0]
        a, b = hashing.draw_hash_params(n, rng)
        h = hashing.hash_values(a, b, values, self.g)
        y = grr_perturb(h, self.g, self.p, rng)
        return np.stack([a, b, y.astype(np.uint64)], axis=1)

    def _check_reports(self, reports: ArrayLike) -> np.ndarray:
        return hashing.check_hash_reports("reports", reports, self.g)

    def _support_counts(self, reports: np.ndarray) -> np.ndarray:
        return hashing.support_counts(reports[:, 0], reports[:, 1], reports[:, 2], self.g, self.k)

    def hash(self, a: ArrayLike, b: ArrayLike, values: ArrayLike) -> np.ndarray:
        """H_{a,b}(values) in [0, g) (vectorized)."""
        return hashing.hash_values(a, b, values, self.g)

    def output_probabilities(self, value: int, a: int, b: int) -> np.ndarray:
        """P(y | value, hash (a, b)) for y in [0, g): the hash is independent of the value, so epsilon-LDP holds
        iff it holds for every hash function."""
        h = int(self.hash(np.uint64(a), np.uint64(b), np.array([value]))[0])
        out = np.full(self.g, self.q)
        out[h] = self.p
        return out

    def channel_matrix(self, a: int, b: int) -> np.ndarray:
        return np.stack([self.output_probabilities(v, a, b) for v in range(self.k)])

    def privacy_event(self) -> DpEvent:
        return RandomizedResponseEvent(self.epsilon, self.g)


@dataclass(frozen=True)
class BLH(LocalHashing):
    """Binary local hashing (g = 2)."""

    g: int = 2
    name = "BLH"

    def __post_init__(self) -> None:
        if self.g != 2:
            raise ValueError(f"g must be 2 for BLH, got {self.g!r}")
        super().__post_init__()


@dataclass(frozen=True)
class OLH(LocalHashing):
    """Optimized local hashing, g = round(e^eps) + 1 (multi-freq-ldpy's integer g)."""

    g: int = 0
    name = "OLH"
