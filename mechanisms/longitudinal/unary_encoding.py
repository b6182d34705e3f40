"""Unary encoding twice (RAPPOR style): L-SUE (basic RAPPOR), L-OUE, L-OSUE, L-SOUE."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np
from scipy.optimize import brentq

from dpkit.mechanisms._validation import check_domain, set_fields
from dpkit.mechanisms.base import PureFrequencyOracle
from dpkit.mechanisms.bernoulli import bernoulli_matrix, unary_perturb
from dpkit.mechanisms.channels import enumerate_bit_vectors, unary_output_probabilities
from dpkit.mechanisms.frequency_oracles.unary_encoding import BitVectorReports
from dpkit.mechanisms.longitudinal.base import LongitudinalProtocol, UserParams, check_eps_pair

__all__ = ["LUE", "LSUE", "LOUE", "LOSUE", "LSOUE"]

_TINY = 1e-15


def _ue_eps(p1: float, q1: float, p2: float, q2: float) -> float:
    """The loss of one report of UE (p1, q1) followed by UE (p2, q2)."""
    P = p1 * p2 + (1 - p1) * q2
    Q = q1 * p2 + (1 - q1) * q2
    return math.log(P * (1 - Q) / (Q * (1 - P)))


@dataclass(frozen=True)
class LUE(BitVectorReports, LongitudinalProtocol, PureFrequencyOracle):
    """Unary encoding twice (RAPPOR style; Erlingsson et al. CCS'14, Arcolezi et al. DCN 2022): PRR bits (p1, q1) at
    eps_perm memoized per value, IRR bits (p2, q2).

    Round 1: ``first`` in {'SUE', 'OUE'}; round 2: symmetric (p2 + q2 = 1) or p2 = 1/2, with q2 solved so that one
    report is exactly eps_1-LDP. Reports: bool (n, k). Use the named subclasses. A user's sequence of reports with
    m distinct values is m eps_perm-LDP. P = p1 p2 + (1 - p1) q2, Q = q1 p2 + (1 - q1) q2 per bit.
    """

    k: int
    eps_perm: float
    eps_1: float
    name = "L-UE"
    first: ClassVar[str] = "SUE"
    symmetric_second: ClassVar[bool] = True
    default_chunk = 1 << 14

    def __post_init__(self) -> None:
        k = check_domain("k", self.k)
        eps_perm, eps_1 = check_eps_pair(self.eps_perm, self.eps_1)
        set_fields(self, k=k, eps_perm=eps_perm, eps_1=eps_1)
        eps_max = _ue_eps(self.p1, self.q1, *self._second(_TINY))
        if not eps_1 < eps_max:
            raise ValueError(
                f"eps_1 must be in (0, {eps_max:.6g}) for {self.name} at eps_perm={eps_perm}, got {self.eps_1!r}"
            )

    def _second(self, q2: float) -> tuple[float, float]:
        return (1 - q2, q2) if self.symmetric_second else (0.5, q2)

    @cached_property
    def epsilon(self) -> float:
        return self.eps_1

    @cached_property
    def n_keys(self) -> int:
        return self.k

    @cached_property
    def _round1(self) -> tuple[float, float]:
        if self.first == "SUE":
            h = math.exp(self.eps_perm / 2)
            return h / (h + 1), 1 / (h + 1)
        return 0.5, 1 / (math.exp(self.eps_perm) + 1)

    @property
    def p1(self) -> float:
        return self._round1[0]

    @property
    def q1(self) -> float:
        return self._round1[1]

    @cached_property
    def _round2(self) -> tuple[float, float]:
        p1, q1 = self._round1
        q2 = brentq(
            lambda q: _ue_eps(p1, q1, *self._second(q)) - self.eps_1, _TINY, 0.5 - 1e-15, xtol=1e-15, rtol=1e-15
        )
        return self._second(q2)

    @property
    def p2(self) -> float:
        return self._round2[0]

    @property
    def q2(self) -> float:
        return self._round2[1]

    @cached_property
    def p_star(self) -> float:
        return self.p1 * self.p2 + (1 - self.p1) * self.q2

    @cached_property
    def q_star(self) -> float:
        return self.q1 * self.p2 + (1 - self.q1) * self.q2

    def first_round(self, keys: np.ndarray, users: UserParams, rng: np.random.Generator) -> np.ndarray:
        return np.packbits(unary_perturb(keys, self.k, self.p1, self.q1, rng), axis=1)  # bits exactly (p1, q1)

    def second_round(self, payload: np.ndarray, users: UserParams, rng: np.random.Generator) -> np.ndarray:
        prr = np.unpackbits(payload, axis=1, count=self.k).view(bool)
        return bernoulli_matrix(prr.shape, self.q2, rng, where=prr, prob_where=self.p2)

    def output_probabilities(self, value: int) -> np.ndarray:
        """P(report | value) of one report for every bit vector (k <= 16), bits independent with P / Q."""
        return unary_output_probabilities(enumerate_bit_vectors(self.k), value, self.p_star, self.q_star)

    def channel_matrix(self) -> np.ndarray:
        return np.stack([self.output_probabilities(v) for v in range(self.k)])

    def first_round_matrix(self) -> np.ndarray:
        outs = enumerate_bit_vectors(self.k)
        return np.stack([unary_output_probabilities(outs, v, self.p1, self.q1) for v in range(self.k)])


@dataclass(frozen=True)
class LSUE(LUE):
    """L-SUE = basic RAPPOR: SUE then symmetric UE."""

    name = "L-SUE"
    first = "SUE"
    symmetric_second = True


@dataclass(frozen=True)
class LOUE(LUE):
    """L-OUE: OUE then OUE-shaped (p2 = 1/2) IRR."""

    name = "L-OUE"
    first = "OUE"
    symmetric_second = False


@dataclass(frozen=True)
class LOSUE(LUE):
    """L-OSUE: OUE then symmetric UE (the best UE chain; V* equals OUE's at eps_1)."""

    name = "L-OSUE"
    first = "OUE"
    symmetric_second = True


@dataclass(frozen=True)
class LSOUE(LUE):
    """L-SOUE: SUE then p2 = 1/2."""

    name = "L-SOUE"
    first = "SUE"
    symmetric_second = False
