"""What the attacks of the distinguishing game are made of: a discrete statistic with its exact law, and guesses.

* :class:`Statistic`: maps every trial (one row of reports) to a code of a small discrete statistic whose exact
  distribution under v1 and v2 follows from the protocol's *claimed* output distribution (or is unknown);
* :data:`FamilyAttack`: LDP-Auditor's guess ``(reports, rng) -> guess == v1`` per trial (a bool array);
* exact pmf helpers (pairs of bits, Laplace bins, trinomial and mixture-binomial counts), the binned statistic of
  a Gaussian shift (:func:`gaussian_shift_statistic`) and :func:`guess_uniform_from_support`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import gammaln, ndtr

__all__ = [
    "Statistic",
    "FamilyAttack",
    "pair_pmf",
    "laplace_cdf",
    "laplace_bin_pmf",
    "HE_EDGES",
    "gaussian_shift_statistic",
    "trinomial_pmf",
    "mixture_binomial_pmf",
    "guess_uniform_from_support",
    "logsumexp_ratio",
]

FamilyAttack = Callable[[np.ndarray, np.random.Generator], np.ndarray]
"""LDP-Auditor's attack: ``(reports of n trials, rng) -> bool array (guess == v1)``, random tie-breaks from rng."""


@dataclass(frozen=True)
class Statistic:
    """A discrete statistic of one trial's reports with its exact distribution under v1 and v2.

    ``codes(reports) -> int array in [0, n_codes)``; ``pmf = (P(code | v1), P(code | v2))`` or None (unknown: the
    game then picks the event on a training split).
    """

    name: str
    n_codes: int
    codes: Callable[[np.ndarray], np.ndarray]
    pmf: tuple[np.ndarray, np.ndarray] | None = None


# ------------------------------------------------------------------------------------------ exact pmf helpers
def _bern(b: np.ndarray, p: float) -> np.ndarray:
    return np.where(b, p, 1 - p)


def pair_pmf(a1: float, b1: float, a2: float, b2: float) -> tuple[np.ndarray, np.ndarray]:
    """Codes 2 x + y of two independent indicator bits (x, y); P(x) = a_i, P(y) = b_i under input i."""
    x = np.array([0, 0, 1, 1], dtype=bool)
    y = np.array([0, 1, 0, 1], dtype=bool)
    return _bern(x, a1) * _bern(y, b1), _bern(x, a2) * _bern(y, b2)


def laplace_cdf(x: ArrayLike, scale: float) -> np.ndarray:
    xa = np.asarray(x, dtype=np.float64)
    return np.where(xa < 0, 0.5 * np.exp(np.minimum(xa, 0) / scale), 1 - 0.5 * np.exp(-np.maximum(xa, 0) / scale))


HE_EDGES = np.array([0.0, 0.25, 0.5, 0.75, 1.0])  # bins: y <= 0 (saturated), 4 interior, y >= 1 (saturated)


def laplace_bin_pmf(mean: float, scale: float) -> np.ndarray:
    """P(bin of mean + Laplace(scale)) over the 6 bins of ``HE_EDGES``."""
    cdf = np.concatenate([[0.0], laplace_cdf(HE_EDGES - mean, scale), [1.0]])
    return np.diff(cdf)


def gaussian_shift_statistic(
    name: str, standardize: Callable[[np.ndarray], np.ndarray], mean1: float, mean2: float, step: float = 0.05
) -> Statistic:
    """The bin of a statistic z = ``standardize(reports)`` that is N(mean1, 1) under v1 and N(mean2, 1) under v2.

    The likelihood ratio of z is monotone, so a prefix of bins in likelihood-ratio order is a threshold test on z:
    the Neyman-Pearson test of the two Gaussians (up to the bin width ``step``). Bins of width ``step`` cover both
    means and 9 standard deviations beyond them; the two outer bins are the tails. Tail masses are computed on
    the side away from the mean, so that tiny masses keep their relative precision.
    """
    reach = max(abs(mean1), abs(mean2)) + 9.0
    edges = np.linspace(-reach, reach, int(math.ceil(2 * reach / step)) + 1)

    def pmf(mean: float) -> np.ndarray:
        x = np.concatenate([[-np.inf], edges, [np.inf]]) - mean
        lower = np.diff(ndtr(x))  # accurate below the mean
        upper = -np.diff(ndtr(-x))  # accurate above it
        return np.where(x[1:] <= 0, lower, upper)

    def codes(r: np.ndarray) -> np.ndarray:
        return np.digitize(standardize(r), edges)

    return Statistic(name, len(edges) + 1, codes, (pmf(mean1), pmf(mean2)))


def trinomial_pmf(tau: int, a: float, b: float) -> np.ndarray:
    """P(c1, c2) for tau draws with P(class 1) = a, P(class 2) = b, (tau + 1) x (tau + 1) (zero if c1 + c2 > tau)."""
    c1, c2 = np.meshgrid(np.arange(tau + 1), np.arange(tau + 1), indexing="ij")
    r = tau - c1 - c2
    ok = r >= 0
    rest = max(1.0 - a - b, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = (
            gammaln(tau + 1)
            - gammaln(c1 + 1)
            - gammaln(c2 + 1)
            - gammaln(np.maximum(r, 0) + 1)
            + _xlogy(c1, a)
            + _xlogy(c2, b)
            + _xlogy(np.maximum(r, 0), rest)
        )
    return np.where(ok, np.exp(logp), 0.0)


def _xlogy(x: ArrayLike, p: float) -> np.ndarray:
    xa = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(xa == 0, 0.0, xa * np.log(p) if p > 0 else -np.inf)


def mixture_binomial_pmf(tau: int, w: float, p_hi: float, p_lo: float) -> np.ndarray:
    """P(c) of c ~ Bin(tau, p_hi) w.p. w else Bin(tau, p_lo), c in [0, tau]."""
    from scipy.stats import binom  # scipy.stats is slow to import: only when a longitudinal audit needs it

    c = np.arange(tau + 1)
    return w * binom.pmf(c, tau, p_hi) + (1 - w) * binom.pmf(c, tau, p_lo)


def guess_uniform_from_support(
    in_v1: np.ndarray, support_size: ArrayLike, k: int, rng: np.random.Generator
) -> np.ndarray:
    """guess == v1 for "x_hat uniform on the support set, uniform on [k] if the set is empty" (LDP-Auditor)."""
    u = rng.random(len(in_v1))
    size = np.asarray(support_size)
    return np.where(size > 0, in_v1 & (u * np.maximum(size, 1) < 1), u * k < 1)


def logsumexp_ratio(p1: np.ndarray, p2: np.ndarray) -> float:
    """max ln p1/p2 over codes with p1 > 0 (the largest loss the statistic can show)."""
    live = p1 > 0
    if (p2[live] == 0).any():
        return math.inf
    return float(np.max(np.log(p1[live]) - np.log(p2[live])))
