"""Unary encoding twice (RAPPOR style): L-SUE (basic RAPPOR), L-OUE, L-OSUE, L-SOUE."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np
from scipy.optimize import brentq

from dpkit.mechanisms._memory import allocate
from dpkit.mechanisms.bernoulli import bernoulli_rows_packed_where, unary_perturb
from dpkit.mechanisms.channels import enumerate_bit_vectors, unary_output_probabilities
from dpkit.mechanisms.frequency_oracles.unary_encoding import BitVectorReports
from dpkit.mechanisms.longitudinal.base import TwoRoundProtocol, UserParams

__all__ = ["LUE", "LSUE", "LOUE", "LOSUE", "LSOUE"]

_TINY = 1e-15


def _ue_eps(p1: float, q1: float, p2: float, q2: float) -> float:
    """The loss of one report of UE (p1, q1) followed by UE (p2, q2)."""
    P = p1 * p2 + (1 - p1) * q2
    Q = q1 * p2 + (1 - q1) * q2
    return math.log(P * (1 - Q) / (Q * (1 - P)))


@dataclass(frozen=True)
class LUE(BitVectorReports, TwoRoundProtocol):
    """Unary encoding twice (RAPPOR style; Erlingsson et al. CCS'14, Arcolezi et al. DCN 2022): PRR bits (p1, q1) at
    eps_perm memoized per value, IRR bits (p2, q2).

    Round 1: ``first`` in {'SUE', 'OUE'}; round 2: symmetric (p2 + q2 = 1) or p2 = 1/2, with q2 solved so that one
    report is exactly eps_1-LDP. Reports: bool (n, k). Use the named subclasses (each names its variant in its class
    statement: ``class LSUE(LUE, name="L-SUE", first="SUE", symmetric_second=True)``). A user's sequence of reports
    with m distinct values is m eps_perm-LDP. P = p1 p2 + (1 - p1) q2, Q = q1 p2 + (1 - q1) q2 per bit.
    Memory of a report round: the (n, k) reports and the PRR bits packed (n k / 8 bytes), plus one block.
    """

    k: int
    eps_perm: float
    eps_1: float
    name = "L-UE"
    first: ClassVar[str] = "SUE"
    symmetric_second: ClassVar[bool] = True
    default_chunk = 1 << 14

    def __init_subclass__(cls, *, name: str = "", first: str = "", symmetric_second: bool | None = None, **kw):
        """A named variant: its name, first round ('SUE' or 'OUE') and second round (symmetric or p2 = 1/2)."""
        super().__init_subclass__(**kw)
        if name:
            cls.name = name
        if first:
            cls.first = first
        if symmetric_second is not None:
            cls.symmetric_second = symmetric_second

    def __post_init__(self) -> None:
        self._set_k_budgets()
        eps_max = _ue_eps(self.p1, self.q1, *self._second(_TINY))
        if not self.eps_1 < eps_max:
            raise ValueError(
                f"eps_1 must be in (0, {eps_max:.6g}) for {self.name} at eps_perm={self.eps_perm}, got {self.eps_1!r}"
            )

    def _second(self, q2: float) -> tuple[float, float]:
        return (1 - q2, q2) if self.symmetric_second else (0.5, q2)

    @cached_property
    def n_keys(self) -> int:
        return self.k

    @cached_property
    def _round1(self) -> tuple[float, float]:
        if self.first == "SUE":
            h = math.exp(self.eps_perm / 2)
            return h / (h + 1), 1 / (h + 1)
        return 0.5, 1 / (math.exp(self.eps_perm) + 1)

    @cached_property
    def _round2(self) -> tuple[float, float]:
        p1, q1 = self._round1
        q2 = brentq(
            lambda q: _ue_eps(p1, q1, *self._second(q)) - self.eps_1, _TINY, 0.5 - 1e-15, xtol=1e-15, rtol=1e-15
        )
        return self._second(q2)

    def first_round(self, keys: np.ndarray, users: UserParams, rng: np.random.Generator) -> np.ndarray:
        out = allocate(f"{self.name}(k={self.k}).perturb", (len(keys), self.k), bool)
        return np.packbits(unary_perturb(keys, self.k, self.p1, self.q1, rng, out=out), axis=1)  # bits exactly (p1, q1)

    def second_round(self, payload: np.ndarray, users: UserParams, rng: np.random.Generator) -> np.ndarray:
        out = allocate(f"{self.name}(k={self.k}).perturb", (len(payload), self.k), bool)
        return bernoulli_rows_packed_where(payload, self.k, self.q2, self.p2, rng, out=out)

    def check_payload(self, name: str, payload: np.ndarray) -> np.ndarray:
        """The memoized PRR bit vectors, packed: uint8 (m, ceil(k / 8))."""
        width = -(-self.k // 8)
        if payload.dtype != np.uint8 or payload.ndim != 2 or payload.shape[1] != width:
            raise ValueError(
                f"{name} must be uint8 rows of {width} bytes (packed bits), got {payload.dtype} {payload.shape}"
            )
        return payload

    def output_probabilities(self, value: int) -> np.ndarray:
        """P(report | value) of one report for every bit vector (k <= 16), bits independent with P / Q."""
        return unary_output_probabilities(enumerate_bit_vectors(self.k), value, self.p_star, self.q_star)

    def channel_matrix(self) -> np.ndarray:
        return np.stack([self.output_probabilities(v) for v in range(self.k)])

    def first_round_matrix(self) -> np.ndarray:
        outs = enumerate_bit_vectors(self.k)
        return np.stack([unary_output_probabilities(outs, v, self.p1, self.q1) for v in range(self.k)])


class LSUE(LUE, name="L-SUE", first="SUE", symmetric_second=True):
    """L-SUE = basic RAPPOR: SUE then symmetric UE."""


class LOUE(LUE, name="L-OUE", first="OUE", symmetric_second=False):
    """L-OUE: OUE then OUE-shaped (p2 = 1/2) IRR."""


class LOSUE(LUE, name="L-OSUE", first="OUE", symmetric_second=True):
    """L-OSUE: OUE then symmetric UE (the best UE chain; V* equals OUE's at eps_1)."""


class LSOUE(LUE, name="L-SOUE", first="SUE", symmetric_second=False):
    """L-SOUE: SUE then p2 = 1/2."""
