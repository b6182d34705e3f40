"""LOLOHA (Arcolezi, Pinzon, Palamidessi, Gambs, EDBT'23): local hashing with memoization on the hashed value."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import ArrayLike

from dpkit.mechanisms import hashing
from dpkit.mechanisms._validation import check_domain, check_nonnegative_ints, set_fields
from dpkit.mechanisms.frequency_oracles.grr import grr_perturb
from dpkit.mechanisms.longitudinal.base import UserParams, check_eps_pair
from dpkit.mechanisms.longitudinal.grr import GRRChain, check_calibration

__all__ = ["LOLOHA", "loloha_optimal_g"]


def loloha_optimal_g(eps_perm: float, alpha: float) -> int:
    """OLOLOHA's g* (Arcolezi et al. EDBT'23): the stationary point of V*(g), rounded, at least 2.

    It grows like e^eps_perm / 6: beyond eps_perm ~ 23 it exceeds the 2^32 - 1 buckets of the hash family, and
    beyond ~ 177 its formula overflows float64; both give a ValueError naming eps_perm."""
    e = eps_perm
    if e > 170.0:  # e^(4 eps_perm) overflows; g* is then astronomically beyond 2^32 anyway
        raise ValueError(
            f"eps_perm={eps_perm!r} is too large for OLOLOHA's optimal g (it exceeds 2^32 - 1 hash buckets): "
            "give g explicitly (e.g. g=2, BiLOLOHA)"
        )
    disc = (
        math.exp(4 * e)
        - 14 * math.exp(2 * e)
        - 12 * math.exp(2 * e * (alpha + 1))
        + 12 * math.exp(e * (alpha + 1))
        + 12 * math.exp(e * (alpha + 3))
        + 1
    )
    num = math.sqrt(max(disc, 0.0)) - math.exp(2 * e) + 6 * math.exp(e) - 6 * math.exp(alpha * e) + 1
    return max(2, int(round(num / (6 * (math.exp(e) - math.exp(alpha * e))))))


@dataclass(frozen=True)
class LOLOHA(GRRChain):
    """LOLOHA (Arcolezi, Pinzon, Palamidessi, Gambs, EDBT'23): local hashing with memoization on the hash.

    Each user draws one hash function for all collections (the universal family of :mod:`dpkit.mechanisms.hashing`);
    the PRR (GRR over [g] at eps_perm) is memoized per *hashed* value, so a user spends at most g * eps_perm over
    any number of reports and any value changes. ``g=0`` picks OLOLOHA's optimal g for alpha = eps_1/eps_perm;
    BiLOLOHA is g = 2. Server: support {v : H(v) = y}, q* = 1/g. Reports: uint64 (n, 3) rows (a, b, y).
    ``calibration='exact'`` calibrates the IRR so a report is exactly eps_1-LDP (the paper's is conservative
    for g > 2).
    """

    k: int
    eps_perm: float
    eps_1: float
    g: int = 0
    calibration: str = "paper"
    name = "LOLOHA"
    default_chunk = 1 << 16

    def __post_init__(self) -> None:
        k = check_domain("k", self.k, maximum=hashing.MAX_DOMAIN)
        eps_perm, eps_1 = check_eps_pair(self.eps_perm, self.eps_1)
        if self.g:
            g = check_domain("g", self.g, maximum=hashing.MAX_BUCKETS)
        else:
            g = loloha_optimal_g(eps_perm, eps_1 / eps_perm)
            if g > hashing.MAX_BUCKETS:
                raise ValueError(
                    f"eps_perm={eps_perm!r} is too large for OLOLOHA's optimal g ({g} > 2^32 - 1 hash buckets): "
                    "give g explicitly (e.g. g=2, BiLOLOHA)"
                )
        check_calibration(self.calibration)
        set_fields(self, k=k, eps_perm=eps_perm, eps_1=eps_1, g=g)

    @cached_property
    def n_keys(self) -> int:
        return self.g

    @cached_property
    def q_star(self) -> float:
        return 1.0 / self.g

    def init_users(self, n: int, rng: np.random.Generator) -> UserParams:
        a, b = hashing.draw_hash_params(n, rng)
        return {"a": a, "b": b}

    def user_param_shapes(self, n: int) -> dict[str, tuple[int, ...]]:
        return {"a": (n,), "b": (n,)}  # each user's hash function

    def check_user_params(self, prefix: str, params: dict[str, np.ndarray], n: int) -> UserParams:
        users = super().check_user_params(prefix, params, n)
        return {
            name: check_nonnegative_ints(prefix + name, arr, "uint64 hash parameters") for name, arr in users.items()
        }

    def memo_key(self, values: np.ndarray, users: UserParams) -> np.ndarray:
        return hashing.hash_values(users["a"], users["b"], values, self.g)

    def second_round(self, payload: np.ndarray, users: UserParams, rng: np.random.Generator) -> np.ndarray:
        y = grr_perturb(payload[:, 0], self.g, self.p2, rng)
        return np.stack([users["a"], users["b"], y.astype(np.uint64)], axis=1)

    def _check_reports(self, reports: ArrayLike) -> np.ndarray:
        return hashing.check_hash_reports("reports", reports, self.g)

    def _support_counts(self, reports: np.ndarray) -> np.ndarray:
        return hashing.support_counts(reports[:, 0], reports[:, 1], reports[:, 2], self.g, self.k)

    def hashed_channel_matrix(self) -> np.ndarray:
        """P(y | hashed value) over [g] x [g] for one report; given the hash, this is the whole channel."""
        return self.chain_matrix()

    def channel_matrix(self, a: int, b: int) -> np.ndarray:
        """P(y | value, hash (a, b)) for one report, k x g."""
        h = hashing.hash_values(np.uint64(a), np.uint64(b), np.arange(self.k), self.g)
        return self.hashed_channel_matrix()[h]

    def max_privacy_spent(self) -> float:
        """The bound over any number of reports: g * eps_perm."""
        return self.g * self.eps_perm
