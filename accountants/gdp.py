"""Gaussian differential privacy (mu-GDP) of a run: the mu of the Gaussian test the run is as hard as.

mu-GDP (Dong, Roth, Su, "Gaussian differential privacy", JRSS-B 2022, arXiv:1905.02383) says that telling the
neighbouring datasets apart is at least as hard as telling N(0, 1) from N(mu, 1): every test at false-positive
rate alpha has false-negative rate at least Phi(Phi^-1(1 - alpha) - mu). It is equivalent to
(epsilon, delta_mu(epsilon))-DP for every epsilon >= 0 with
``delta_mu(epsilon) = Phi(-epsilon/mu + mu/2) - e^epsilon Phi(-epsilon/mu - mu/2)`` (their Corollary 2.13).

:func:`gdp_mu` reads mu off a ledger:

* Gaussian mechanisms (noise multiplier sigma; tree aggregation: sigma / sqrt(depth)) are exactly (1/sigma)-GDP,
  and GDP composes exactly: mu = sqrt(sum_i mu_i^2) (their Corollary 3.3).
* epsilon-DP mechanisms (pure DP, randomized response, Laplace with epsilon = 1/scale, discrete Laplace, the
  exponential mechanism, permute-and-flip, (epsilon, 0)-DP) are mu-GDP with mu = 2 Phi^-1(e^eps / (1 + e^eps)), the
  smallest such mu (the Gaussian trade-off curve must pass below randomized response's kink; convexity does the
  rest). Composing them by GDP is valid but can be loose.
* Poisson-subsampled Gaussians: **an approximation, not a bound.** The central limit theorem of Bu, Dong, Long, Su
  ("Deep learning with Gaussian differential privacy", Harvard Data Science Review 2020, Theorem 5) gives
  mu = q sqrt(T (e^{1/sigma^2} - 1)) for T steps as T -> infinity with q sqrt(T) fixed. The result is flagged
  ``exact=False``. Measured against the PLD accountant (DP-SGD, q = 0.01, sigma = 1): at T = 10,000 steps
  (mu = 1.31) the CLT's delta at epsilon = 1 and 3 is within 3% of the PLD's; at T = 1,000 (mu = 0.41) it is
  1.8e-3 against 2.6e-3 at epsilon = 1 and 6e-14 against 9e-10 at epsilon = 3; at T = 100 it is 3e-16 against
  7e-7 at epsilon = 1. So the CLT can under-state the privacy loss by orders of magnitude (few steps, the
  tails); at q = 0.1 it over-states it. Use the PLD accountant for guarantees; use mu to compare runs.

Anything else (zCDP, discrete Gaussian, (epsilon, delta) with delta > 0, mixtures, sampling without or with
replacement, groups, repeat-and-select, Poisson sampling of other mechanisms or under replace-one) raises
``UnsupportedEventError`` naming the event and why.
"""

from __future__ import annotations

import dataclasses
import math

from dpkit.accountants.accountant import PrivacyAccountant
from dpkit.accountants.errors import UnsupportedEventError
from dpkit.accountants.events import (
    DpEvent,
    NeighbouringRelation,
    NonPrivateEvent,
    NoOpEvent,
    PoissonSampledEvent,
    SingleEpochTreeAggregationEvent,
    flatten,
    run_length,
)
from dpkit.accountants.rdp import _effective_gaussian_sigma, _pure_of_atom
from dpkit.accountants.validation import check_delta, check_nonnegative

__all__ = ["GaussianDP", "gdp_mu", "gdp_delta", "pure_dp_to_gdp_mu"]


def gdp_delta(mu: float, epsilon: float) -> float:
    """delta_mu(epsilon) = Phi(-epsilon/mu + mu/2) - e^epsilon Phi(-epsilon/mu - mu/2) (0 for mu = 0)."""
    from scipy.special import log_ndtr, ndtr

    if mu == 0:
        return 0.0
    if math.isinf(mu):
        return 1.0
    a, b = -epsilon / mu + mu / 2.0, -epsilon / mu - mu / 2.0
    value = float(ndtr(a)) - math.exp(epsilon + float(log_ndtr(b)))
    return min(1.0, max(0.0, value))


def pure_dp_to_gdp_mu(epsilon: float) -> float:
    """Smallest mu such that every epsilon-DP mechanism is mu-GDP: 2 Phi^-1(e^eps / (1 + e^eps))."""
    from scipy.special import ndtri

    return -2.0 * float(ndtri(1.0 / (1.0 + math.exp(epsilon)))) if epsilon < 700 else math.inf


@dataclasses.dataclass(frozen=True)
class GaussianDP:
    """A mu-GDP statement; ``exact`` is False when mu comes from the central limit theorem (an approximation)."""

    mu: float
    exact: bool

    def delta(self, epsilon: float) -> float:
        """delta of the equivalent (epsilon, delta)-DP statement at ``epsilon`` >= 0."""
        return gdp_delta(self.mu, check_nonnegative("epsilon", epsilon))

    def epsilon(self, delta: float) -> float:
        """Smallest epsilon >= 0 with delta_mu(epsilon) <= delta, for delta in (0, 1)."""
        delta = check_delta("delta", delta)
        if self.mu == 0 or gdp_delta(self.mu, 0.0) <= delta:
            return 0.0
        if math.isinf(self.mu):
            return math.inf
        from scipy.optimize import brentq

        hi = 1.0
        while gdp_delta(self.mu, hi) > delta:
            hi *= 2.0
        return float(brentq(lambda e: gdp_delta(self.mu, e) - delta, 0.0, hi, xtol=1e-12, rtol=1e-12))


def _atom_mu_squared(event: DpEvent, count: int, relation: NeighbouringRelation) -> tuple[float, bool]:
    """(mu^2 of ``count`` runs of the atom, exact?)."""
    if isinstance(event, NoOpEvent):
        return 0.0, True
    if isinstance(event, NonPrivateEvent):
        return math.inf, True
    sigma = _effective_gaussian_sigma(event)
    if sigma is not None:
        return count / (sigma * sigma), True
    if isinstance(event, SingleEpochTreeAggregationEvent):
        return count * event.depth / event.noise_multiplier**2, True
    eps = _pure_of_atom(event)
    if math.isfinite(eps):
        return count * pure_dp_to_gdp_mu(eps) ** 2, True
    if isinstance(event, PoissonSampledEvent):
        inner_sigma = _effective_gaussian_sigma(event.event)
        if inner_sigma is not None and event.sampling_probability == 1.0:
            return count / inner_sigma**2, True
        if inner_sigma is not None and relation is not NeighbouringRelation.REPLACE_ONE:
            q = event.sampling_probability
            x = 1.0 / inner_sigma**2
            growth = math.expm1(x) if x < 700 else math.inf
            return q * q * count * growth, False
        if inner_sigma is not None:
            raise UnsupportedEventError(
                f"gdp_mu cannot state {event!r} as GDP: the central limit theorem of Bu-Dong-Long-Su is for "
                "add/remove neighbours"
            )
    raise UnsupportedEventError(
        f"gdp_mu cannot state {event!r} as GDP: only Gaussian mechanisms (exact), epsilon-DP mechanisms (exact "
        "conversion) and Poisson-subsampled Gaussians (central-limit approximation) have a mu"
    )


def gdp_mu(source: DpEvent | PrivacyAccountant) -> GaussianDP:
    """mu-GDP of an event or of an accountant's ledger (its neighbouring relation; events: add/remove).

    See the module docstring for what is exact and what is the central-limit approximation (``exact=False``).
    """
    if isinstance(source, PrivacyAccountant):
        event, relation = source.ledger, source.neighbouring_relation
    elif isinstance(source, DpEvent):
        event, relation = source, NeighbouringRelation.ADD_OR_REMOVE
    else:
        raise TypeError(f"source must be a DpEvent or a PrivacyAccountant, got {source!r}")
    total, exact = 0.0, True
    for atom, count in run_length(flatten(event)):
        mu2, atom_exact = _atom_mu_squared(atom, count, relation)
        total += mu2
        exact = exact and atom_exact
    return GaussianDP(mu=math.sqrt(total), exact=exact)
