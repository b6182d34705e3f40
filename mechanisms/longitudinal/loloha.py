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
from dpkit.mechanisms.longitudinal.base import UserParams
from dpkit.mechanisms.longitudinal.grr import GRRChain, check_calibration

__all__ = ["LOLOHA", "loloha_optimal_g"]


def loloha_optimal_g(eps_perm: float, alpha: float) -> int:
    """OLOLOHA's g* (Arcolezi et al. EDBT'23): the stationary point of V*(g), rounded, at least 2.

    With E = e^eps_perm and A = e^(alpha eps_perm): g* = (sqrt(D) - E^2 + 6 E - 6 A + 1) / (6 (E - A)),
    D = E^4 - 14 E^2 - 12 E^2 A^2 + 12 E A + 12 E^3 A + 1; for large eps_perm g* ~ A + 1 (OLH's g at eps_1). The
    formula as written loses every digit to cancellation (sqrt(D) ~ E^2) and overflows (E^4) once eps_perm passes
    ~ 25; there it is evaluated divided through by E^2 (sqrt(D) - E^2 = (D - E^4) / (sqrt(D) + E^2)), exactly
    the same function, finite for every eps_perm <= 700.
    """
    e = eps_perm
    if e <= 20.0:
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
    # divided by E^2 (the bracket) and by E (numerator and denominator): every exponent below is <= alpha e
    r, inv = math.exp((alpha - 1) * e), math.exp(-e)  # A / E, 1 / E
    excess = -14 * inv**2 - 12 * r**2 + 12 * r * inv**2 + 12 * r + inv**4  # D / E^4 - 1
    head = (-14 * inv - 12 * math.exp((2 * alpha - 1) * e) + 12 * r * inv + 12 * math.exp(alpha * e) + inv**3) / (
        math.sqrt(max(1 + excess, 0.0)) + 1
    )  # E^2 (sqrt(D) / E^2 - 1) / E
    g = (head + 6 - 6 * r + inv) / (6 * (1 - r))
    return max(2, int(round(g))) if g < 2.0**63 else 2**63


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
        self._set_k_budgets(hashing.MAX_DOMAIN, calibration=check_calibration(self.calibration))
        eps_perm, eps_1 = self.eps_perm, self.eps_1
        if self.g:
            g = check_domain("g", self.g, maximum=hashing.MAX_BUCKETS)
        else:
            g = loloha_optimal_g(eps_perm, eps_1 / eps_perm)
            if g > hashing.MAX_BUCKETS:
                raise ValueError(
                    f"eps_1 must be at most about {hashing.MAX_OLH_EPSILON:.4g} for LOLOHA with the optimal g (it is "
                    f"about e^eps_1 + 1 and must be below 2^32), got eps_1={eps_1!r} at eps_perm={eps_perm!r}: give g "
                    "explicitly (e.g. g=2, BiLOLOHA)"
                )
        set_fields(self, g=g)

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
