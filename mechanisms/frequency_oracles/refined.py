"""ASR-MSE refined protocols: ASS, AUE, ALH, ATHE (Arcolezi and Gambs, "Revisiting Locally Differentially Private
Protocols: Towards Better Trade-offs in Privacy, Utility, and Attack Resistance", arXiv 2503.01482).

Each keeps its base protocol's client and server (SS, unary encoding, local hashing, THE) and chooses the one free
parameter that minimizes

    J = w_asr E[ASR] + w_mse MSE,        w_asr + w_mse = 1 (the weights are renormalized)

over a grid (the reference code's grids; ties go to the first grid point). E[ASR] is the closed-form success of
the Bayes attack on one report (:mod:`.asr`), MSE the per-user variance V* (n = 1):

==========  ===============  ========================================  ================================================
protocol    parameter        grid                                      constraint
==========  ===============  ========================================  ================================================
ASS         omega            1, ..., k - 2                             p, q of subset selection
AUE         p                100 points of [0.5, 0.999999]             q = p/(e^eps (1 - p) + p): epsilon exactly tight
ALH         g                2, ..., max(k, round(e^eps) + 1)          p = e^eps/(e^eps + g - 1), q* = 1/g
ATHE        theta            100 points of [0.5, 1]                    p*, q* of THE's threshold
==========  ===============  ========================================  ================================================

With ``w_asr = 0`` (w_mse = 1) each is exactly its base protocol: SS's omega = rint(k/(e^eps + 1)), OUE's p = 1/2,
OLH's g = round(e^eps) + 1, THE's variance-optimal theta (a grid's minimizer of V* can differ from the base's
rounding rule at a few epsilons; dpkit returns the base itself).

Guarantee: every choice of the parameter is a valid parameter of the base protocol, so each refined protocol is
epsilon-LDP (delta = 0) for one user's value under replacement, exactly like its base (the choice depends on
(k, epsilon, weights) only, never on data). The tests check it by enumerating the output distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from dpkit.mechanisms import hashing
from dpkit.mechanisms._validation import check_domain, check_epsilon, set_fields
from dpkit.mechanisms.frequency_oracles import asr
from dpkit.mechanisms.frequency_oracles.histogram_encoding import THE, optimal_theta, the_variance_per_user
from dpkit.mechanisms.frequency_oracles.local_hashing import LocalHashing
from dpkit.mechanisms.frequency_oracles.subset_selection import SubsetSelection
from dpkit.mechanisms.frequency_oracles.unary_encoding import UnaryEncoding

__all__ = ["AsrMseRefined", "ASS", "AUE", "ALH", "ATHE", "REFINED_PROTOCOLS", "pareto_frontier", "check_weights"]


def check_weights(w_asr: object, w_mse: object) -> tuple[float, float]:
    """(w_asr, w_mse) renormalized to sum 1: both finite and >= 0, not both 0."""
    ws = []
    for name, value in (("w_asr", w_asr), ("w_mse", w_mse)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        ws.append(float(value))
    total = ws[0] + ws[1]
    if total <= 0:
        raise ValueError(f"w_asr + w_mse must be > 0, got w_asr={w_asr!r}, w_mse={w_mse!r}")
    return ws[0] / total, ws[1] / total


class AsrMseRefined:
    """What the four refined protocols share: the weights, the grid table and the choice of the parameter.

    A subclass defines ``parameter`` (the name of its free parameter), ``grid()`` -> (values, ASR, MSE) arrays over
    its grid, and ``base_value()`` (its base protocol's parameter, used when ``w_asr == 0``).
    """

    k: int
    epsilon: float
    w_asr: float
    w_mse: float
    parameter: ClassVar[str] = ""

    def __post_init__(self) -> None:
        """Check (k, epsilon) and the weights. A protocol whose parameter is a dataclass field (ALH's g, ATHE's
        theta) stores its choice there, then runs its base protocol's checks; the others derive it on first use."""
        w_asr, w_mse = check_weights(self.w_asr, self.w_mse)
        set_fields(self, k=check_domain("k", self.k), epsilon=check_epsilon("epsilon", self.epsilon))
        set_fields(self, w_asr=w_asr, w_mse=w_mse)
        if self.parameter in {f.name for f in fields(self)}:  # type: ignore[arg-type]  # subclasses are dataclasses
            value = self._choose()
            set_fields(self, **{self.parameter: value.item() if hasattr(value, "item") else value})
            super().__post_init__()  # type: ignore[misc]  # the base protocol's (next in the MRO)

    def grid(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(parameter values, closed-form ASR, per-user MSE) over the protocol's grid."""
        raise NotImplementedError

    def base_value(self) -> Any:
        raise NotImplementedError

    def objective(self) -> tuple[np.ndarray, np.ndarray]:
        """(parameter values, J = w_asr ASR + w_mse MSE) over the grid."""
        values, a, m = self.grid()
        return values, self.w_asr * a + self.w_mse * m

    def _choose(self) -> Any:
        if self.w_asr == 0:
            return self.base_value()
        values, j = self.objective()
        return values[int(np.argmin(j))]  # the first grid point on ties (strict <, as the reference code)

    def expected_asr(self) -> float:
        """The closed-form attack success rate of one report at the chosen parameter."""
        return float(asr.expected_asr(self))  # type: ignore[arg-type]  # every subclass is a FrequencyOracle

    def mse(self) -> float:
        """The per-user variance V* (n = 1) at the chosen parameter."""
        return float(self.variance(1))  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ASS(AsrMseRefined, SubsetSelection):
    """ASS: subset selection whose subset size omega minimizes w_asr ASR + w_mse V* over 1..k - 2 (SS at
    w_asr = 0). epsilon-LDP like SS. ASR = E/(omega E + k - omega)."""

    k: int
    epsilon: float
    w_asr: float = 0.5
    w_mse: float = 0.5
    name = "ASS"
    parameter = "omega"

    def grid(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k, e = self.k, math.exp(self.epsilon)
        w = np.arange(1, max(k - 1, 2), dtype=np.float64)
        p = w * e / (w * e + k - w)
        q = (w * e * (w - 1) + (k - w) * w) / ((k - 1) * (w * e + k - w))
        return w.astype(np.int64), asr.subset_selection_asr(k, self.epsilon, w), q * (1 - q) / (p - q) ** 2

    def base_value(self) -> int:
        return SubsetSelection(self.k, self.epsilon).omega

    @cached_property
    def omega(self) -> int:
        return int(self._choose())


@dataclass(frozen=True)
class AUE(AsrMseRefined, UnaryEncoding):
    """AUE: unary encoding on the epsilon-tight curve q = p/(e^eps (1 - p) + p), p chosen on 100 points of
    [0.5, 0.999999] (OUE, p = 1/2, at w_asr = 0). epsilon-LDP exactly: p (1 - q)/((1 - p) q) = e^eps."""

    k: int
    epsilon: float
    w_asr: float = 0.5
    w_mse: float = 0.5
    name = "AUE"
    parameter = "p"

    @staticmethod
    def tight_q(p: Any, epsilon: float) -> Any:
        """q = p/(e^eps (1 - p) + p): the q that makes unary encoding exactly epsilon-LDP for this p."""
        return p / (math.exp(epsilon) * (1 - p) + p)

    def grid(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = np.linspace(0.5, 0.999999, 100)
        q = self.tight_q(p, self.epsilon)
        return p, asr.unary_asr(self.k, p, q), q * (1 - q) / (p - q) ** 2

    def base_value(self) -> float:
        return 0.5

    @cached_property
    def p(self) -> float:
        return float(self._choose())

    @cached_property
    def q(self) -> float:
        return float(self.tight_q(self.p, self.epsilon))


@dataclass(frozen=True)
class ALH(AsrMseRefined, LocalHashing):
    """ALH: local hashing whose number of buckets g minimizes w_asr ASR + w_mse V* over 2..max(k, round(e^eps) + 1)
    (OLH at w_asr = 0). epsilon-LDP like local hashing (GRR over [g] given the hash). ASR: the paper's closed form
    E/((E + g - 1) max(k/g, 1)) (:func:`~dpkit.mechanisms.frequency_oracles.asr.local_hashing_asr`).

    The grid holds every g up to 2^16 and, beyond, 4096 geometrically spaced values up to the bound (at most
    2^32 - 1, the hash range): bounded memory at any epsilon (the bound is about e^eps); g only trades utility
    against the attack, every g is epsilon-LDP."""

    k: int
    epsilon: float
    g: int = field(init=False, default=0)
    w_asr: float = 0.5
    w_mse: float = 0.5
    name = "ALH"
    parameter = "g"

    DENSE_GRID: ClassVar[int] = 2**16

    def grid(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        e = math.exp(self.epsilon)
        top = min(max(self.k, round(e) + 1), hashing.MAX_BUCKETS)
        g = np.arange(2, min(top, self.DENSE_GRID) + 1)
        if top > self.DENSE_GRID:
            g = np.union1d(g, np.unique(np.round(np.geomspace(self.DENSE_GRID, top, 4096)).astype(np.int64)))
        gf = g.astype(np.float64)
        mse = (1.0 + gf / math.expm1(self.epsilon)) ** 2 / (gf - 1)  # (e - 1 + g)^2 / ((e - 1)^2 (g - 1)), no overflow
        return g, asr.local_hashing_asr(self.k, self.epsilon, gf), mse

    def base_value(self) -> int:
        return int(round(math.exp(self.epsilon))) + 1


@dataclass(frozen=True)
class ATHE(AsrMseRefined, THE):
    """ATHE: THE whose threshold theta minimizes w_asr ASR + w_mse V* on 100 points of [0.5, 1] (THE's
    variance-optimal theta at w_asr = 0). The client is SHE's, so the guarantee is SHE's: epsilon-LDP."""

    k: int
    epsilon: float
    theta: float | None = field(init=False, default=None)
    w_asr: float = 0.5
    w_mse: float = 0.5
    name = "ATHE"
    parameter = "theta"

    def grid(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        theta = np.linspace(0.5, 1.0, 100)
        p, q = asr.the_support_probabilities(self.epsilon, theta)
        mse = np.array([the_variance_per_user(float(t), self.epsilon) for t in theta])
        return theta, asr.unary_asr(self.k, p, q), mse

    def base_value(self) -> float:
        return optimal_theta(self.epsilon)


REFINED_PROTOCOLS: dict[str, type[AsrMseRefined]] = {"ASS": ASS, "AUE": AUE, "ALH": ALH, "ATHE": ATHE}


def pareto_frontier(
    protocol: str | type[AsrMseRefined], k: int, epsilon: float, weights: Any = None
) -> list[dict[str, float]]:
    """The ASR-MSE trade-off of one refined protocol at (k, epsilon), one row per weight.

    ``weights``: the values of w_mse to try (default 21 points of [0, 1]; w_asr = 1 - w_mse). Each row holds
    ``w_mse``, the chosen ``parameter``, its ``asr`` and ``mse`` and whether it is ``pareto`` optimal among the grid
    (no grid point has both a smaller ASR and a smaller MSE). Every minimizer of a positive weighting is Pareto
    optimal; the rows trace the frontier's convex hull from least ASR (w_mse = 0) to least MSE (w_mse = 1).
    """
    cls = REFINED_PROTOCOLS[protocol] if isinstance(protocol, str) else protocol
    ws = np.linspace(0.0, 1.0, 21) if weights is None else np.asarray(weights, dtype=np.float64)
    rows = []
    for w in ws:
        proto: Any = cls(k, epsilon, w_asr=1.0 - float(w), w_mse=float(w))  # type: ignore[call-arg]
        _, a, m = proto.grid()
        a_i, m_i = proto.expected_asr(), proto.mse()
        dominated = bool(np.any((a < a_i - 1e-15) & (m < m_i - 1e-15)))
        rows.append(
            {
                "w_mse": float(w),
                "parameter": float(getattr(proto, cls.parameter)),
                "asr": a_i,
                "mse": m_i,
                "pareto": not dominated,
            }
        )
    return rows
