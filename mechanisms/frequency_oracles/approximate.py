"""Approximate-LDP variants of GRR, SUE and local hashing: AGRR, ASUE, ABLH and AOLH, each (epsilon, delta)-LDP.

Each is its pure family's client and server (same reports, same unbiased estimator and variance formulas) with
the probabilities moved so that the channel's delta at epsilon,

    delta(epsilon) = max over v, v' of  sum_y max(0, P(y | v) - e^epsilon P(y | v')),

is exactly the declared delta (Wang et al., "Local differential privacy for data collection and analysis",
Neurocomputing 2021; the variants LDP-Auditor audits, Arcolezi and Gambs, PoPETs 2024). With E = e^epsilon:

* AGRR: p = (E + (k - 1) delta) / (E + k - 1), q = (1 - p) / (k - 1) = (1 - delta) / (E + k - 1), so p - E q = delta;
* ASUE: p = (E - sqrt(E (1 - delta) + delta)) / (E - 1), q = 1 - p, the root of p^2 - E q^2 = delta (the pair of
  bits (v, v') is the only difference between two inputs);
* ABLH / AOLH: a hash H into [g] (as BLH / OLH), then AGRR over [g]. ABLH: g = 2. AOLH: the g that minimizes the
  approximate variance (E - 1 + g)^2 / ((g - 1)(E - 1 + g delta)^2), the smaller root of
  delta g^2 - (E - 1)(1 - 3 delta) g + (E - 1)(E + 1 - 2 delta) = 0, rounded (LDP-Auditor's closed form, written
  here without its cancellation: g = 2 (E - 1)(E + 1 - 2 delta) / (A + B), A = (E - 1)(1 - 3 delta),
  B = sqrt((E - 1)(1 - delta)(E - 1 - (9 E - 1) delta))); it is OLH's g at delta -> 0 and needs
  delta <= (E - 1) / (9 E - 1) (beyond, the variance decreases in g without a minimum: pass ``g``).

Each channel is in fact pure epsilon'-LDP with epsilon' = ln(p / q) > epsilon (AGRR, ABLH, AOLH: k-ary or g-ary
randomized response; ASUE: two independent binary randomized responses with ratio p / q), which is exactly
(epsilon, delta)-LDP: ``privacy_event()`` describes that channel (``RandomizedResponseEvent(ln(p/q), k or g)``, for
ASUE ``SelfComposedEvent(RandomizedResponseEvent(ln(p/q), 2), 2)``), so an accountant's delta at epsilon is the
declared delta. delta = 0 gives back GRR, SUE, BLH and OLH.

Guarantee of every class: (epsilon, delta)-LDP for one user's value in [0, k) under replacement by any other value
(unit of privacy: one user's value). ``delta`` is a keyword-only field in [0, 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

from dpkit.accountants import DpEvent, RandomizedResponseEvent, SelfComposedEvent
from dpkit.accountants.validation import check_probability
from dpkit.mechanisms._validation import check_epsilon, set_fields
from dpkit.mechanisms.frequency_oracles.grr import GRR, RandomizedResponseOracle
from dpkit.mechanisms.frequency_oracles.local_hashing import LocalHashing
from dpkit.mechanisms.frequency_oracles.unary_encoding import UnaryEncoding

__all__ = [
    "ApproximateLdp",
    "ApproximateRandomizedResponse",
    "AGRR",
    "ASUE",
    "ApproximateLocalHashing",
    "ABLH",
    "AOLH",
    "aolh_g",
    "check_ldp_delta",
]


def check_ldp_delta(name: str, value: object) -> float:
    """The delta of an approximate-LDP protocol: in [0, 1)."""
    return check_probability(name, value, open_low=False, open_high=True)


def _ratio_epsilon(p: float, q: float) -> float:
    """ln(p / q): the pure-LDP epsilon of a randomized response that keeps w.p. p and moves to each other w.p. q."""
    return math.log(p) - math.log(q)


class ApproximateLdp:
    """What every (epsilon, delta) variant adds to its pure family: the keyword-only ``delta``, checked in [0, 1)
    before the family's own parameters and stored as a float after them (placed before the family in the bases)."""

    delta: float

    def __post_init__(self) -> None:
        delta = check_ldp_delta("delta", self.delta)
        super().__post_init__()  # type: ignore[misc]
        set_fields(self, delta=delta)


class ApproximateRandomizedResponse(ApproximateLdp, RandomizedResponseOracle):
    """AGRR's probabilities over ``m = _outputs()`` outputs (k for AGRR, g for local hashing), mixed in before the
    pure family: p = (e^eps + (m - 1) delta)/(e^eps + m - 1), q = (1 - delta)/(e^eps + m - 1), so p - e^eps q = delta;
    the channel is m-ary randomized response at ln(p / q), which is its ``privacy_event()``."""

    @cached_property
    def p(self) -> float:
        e = math.exp(self.epsilon)
        return (e + (self._outputs() - 1) * self.delta) / (e + self._outputs() - 1)

    @cached_property
    def q(self) -> float:
        return (1.0 - self.delta) / (math.exp(self.epsilon) + self._outputs() - 1)

    @cached_property
    def pure_epsilon(self) -> float:
        """ln(p / q): the channel's pure-LDP epsilon (> epsilon when delta > 0)."""
        return _ratio_epsilon(self.p, self.q)

    def privacy_event(self) -> DpEvent:
        return RandomizedResponseEvent(self.pure_epsilon, self._outputs())


@dataclass(frozen=True)
class AGRR(ApproximateRandomizedResponse, GRR):
    """Approximate GRR: keep v w.p. p = (e^eps + (k - 1) delta)/(e^eps + k - 1), else a uniform other value.

    (epsilon, delta)-LDP for one user's value under replacement (exactly: p - e^eps q = delta); the channel is GRR at
    epsilon' = ln((e^eps + (k - 1) delta)/(1 - delta)), and ``privacy_event()`` is
    ``RandomizedResponseEvent(epsilon', k)``. Reports, estimator and variance: GRR's with this (p, q).
    """

    delta: float = field(kw_only=True)
    name = "AGRR"


@dataclass(frozen=True)
class ASUE(ApproximateLdp, UnaryEncoding):
    """Approximate SUE: bit v ~ Bern(p), every other bit ~ Bern(q), q = 1 - p,
    p = (e^eps - sqrt(e^eps (1 - delta) + delta))/(e^eps - 1).

    (epsilon, delta)-LDP for one user's value under replacement (exactly: p^2 - e^eps q^2 = delta); two inputs differ
    in two independent bits, each a binary randomized response at epsilon_bit = ln(p / q), so ``privacy_event()`` is
    ``SelfComposedEvent(RandomizedResponseEvent(epsilon_bit, 2), 2)`` (pure 2 epsilon_bit). Reports, estimator and
    variance: unary encoding's with this (p, q).
    """

    delta: float = field(kw_only=True)
    name = "ASUE"

    @cached_property
    def p(self) -> float:
        e = math.exp(self.epsilon)
        return (e - math.sqrt(e * (1.0 - self.delta) + self.delta)) / math.expm1(self.epsilon)

    @cached_property
    def q(self) -> float:
        e = math.exp(self.epsilon)
        return (math.sqrt(e * (1.0 - self.delta) + self.delta) - 1.0) / math.expm1(self.epsilon)

    @cached_property
    def pure_epsilon(self) -> float:
        """2 ln(p / q): the channel's pure-LDP epsilon."""
        return 2.0 * _ratio_epsilon(self.p, self.q)

    def privacy_event(self) -> DpEvent:
        return SelfComposedEvent(RandomizedResponseEvent(_ratio_epsilon(self.p, self.q), 2), 2)


def aolh_g(epsilon: float, delta: float) -> int:
    """AOLH's hash range: the rounded variance-minimizing g (see the module docstring); OLH's g at delta = 0."""
    epsilon = check_epsilon("epsilon", epsilon)
    delta = check_ldp_delta("delta", delta)
    c = math.expm1(epsilon)
    e = c + 1.0
    limit = c / (9.0 * e - 1.0)
    if delta > limit:
        raise ValueError(
            f"delta must be in [0, {limit:.6g}] for AOLH's optimal g at epsilon={epsilon:g} (beyond it the variance "
            f"has no minimum in g); pass g explicitly, got {delta!r}"
        )
    a = c * (1.0 - 3.0 * delta)
    b = math.sqrt(c * (1.0 - delta) * (c - (9.0 * e - 1.0) * delta))
    return max(2, int(round(2.0 * c * (e + 1.0 - 2.0 * delta) / (a + b))))


@dataclass(frozen=True)
class ApproximateLocalHashing(ApproximateRandomizedResponse, LocalHashing):
    """Approximate local hashing: H uniform from the universal family, h = H(v) in [g], then AGRR over [g]: keep h
    w.p. p = (e^eps + (g - 1) delta)/(e^eps + g - 1), else a uniform other bucket. ``g = 0``: AOLH's g.

    (epsilon, delta)-LDP for one user's value under replacement: the hash is drawn independently of the value and,
    given it, the output is AGRR over [g] of H(v) (delta exactly when H(v) != H(v')); ``privacy_event()`` is
    ``RandomizedResponseEvent(ln(p/q), g)``. Support, estimator (q* = 1/g) and variance: local hashing's.
    """

    delta: float = field(kw_only=True)
    name = "ALH"

    def __post_init__(self) -> None:
        if not self.g:  # AOLH's g, from the checked delta (checked first, as in every variant)
            set_fields(self, g=aolh_g(self.epsilon, check_ldp_delta("delta", self.delta)))
        super().__post_init__()


@dataclass(frozen=True)
class ABLH(ApproximateLocalHashing):
    """Approximate binary local hashing (g = 2)."""

    g: int = 2
    name = "ABLH"

    def __post_init__(self) -> None:
        if self.g != 2:
            raise ValueError(f"g must be 2 for ABLH, got {self.g!r}")
        super().__post_init__()


@dataclass(frozen=True)
class AOLH(ApproximateLocalHashing):
    """Approximate optimized local hashing: g = :func:`aolh_g` (epsilon, delta) unless given."""

    g: int = 0
    name = "AOLH"
