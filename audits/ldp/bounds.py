"""Clopper-Pearson bounds, the epsilon lower bound of a distinguishing test, the measurable cap, event selection.

A test is an event S of the randomizer's output fixed before the trials are looked at. (epsilon, delta)-LDP gives
P[M(v1) in S] <= e^epsilon P[M(v2) in S] + delta for every S, so with TPR = P[S | v1], FPR = P[S | v2]

    epsilon >= ln((TPR - delta) / FPR).

With N trials per input, TP ~ Bin(N, TPR) and FP ~ Bin(N, FPR). At confidence c for a family of ``m`` tests every
one-sided Clopper-Pearson quantile is taken at level beta = (1 - c) / (2 m): by the union bound over the 2 m
quantiles, every reported lower bound holds simultaneously with probability >= c, so the maximum over the tests
is a valid lower bound at confidence c.

LDP-Auditor (Arcolezi and Gambs, PoPETs 2024) passes alpha/2 to a two-sided interval, i.e. beta = alpha/4 with one
test; with ``confidence = 1 - alpha/2`` and ``m = 1`` the numbers here are identical (``ldp_auditor_epsilon``
spells it out).

The measurable cap is the largest lower bound N trials can ever show (TP = N, FP = 0):
ln((beta^(1/N) - delta) / (1 - beta^(1/N))), about ln(N / ln(1/beta)); 12.0252 for N = 1e6, beta = 0.0025.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import betaincinv

from dpkit.accountants.validation import check_count, check_probability

__all__ = [
    "side_level",
    "cp_lower",
    "cp_upper",
    "epsilon_lower_bound",
    "measurable_cap",
    "ldp_auditor_epsilon",
    "choose_event",
]


def side_level(confidence: float, n_tests: int = 1) -> float:
    """The one-sided level beta of every Clopper-Pearson quantile: (1 - confidence) / (2 n_tests)."""
    confidence = check_probability("confidence", confidence, open_low=True, open_high=True)
    n_tests = check_count("n_tests", n_tests, minimum=1)
    return (1.0 - confidence) / (2.0 * n_tests)


def cp_lower(x, n, beta: float):
    """One-sided (1 - beta) Clopper-Pearson lower bound on a binomial proportion: Beta^-1(beta; x, n - x + 1)."""
    x = np.asarray(x, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        out = betaincinv(np.maximum(x, 1e-300), n - x + 1, beta)
    return np.where(x <= 0, 0.0, out)


def cp_upper(x, n, beta: float):
    """One-sided (1 - beta) Clopper-Pearson upper bound: Beta^-1(1 - beta; x + 1, n - x)."""
    x = np.asarray(x, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        out = betaincinv(x + 1, np.maximum(n - x, 1e-300), 1.0 - beta)
    return np.where(x >= n, 1.0, out)


def epsilon_lower_bound(tp, fp, n, *, beta: float, delta: float = 0.0):
    """ln((TPR_lo - delta) / FPR_hi), vectorized; -inf when TPR_lo <= delta (the test shows nothing)."""
    lo = cp_lower(tp, n, beta) - delta
    hi = cp_upper(fp, n, beta)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(lo > 0, np.log(np.maximum(lo, 1e-300)) - np.log(hi), -np.inf)
    return out if np.ndim(out) else float(out)


def measurable_cap(n: int, *, beta: float, delta: float = 0.0) -> float:
    """The largest epsilon lower bound ``n`` trials per input can show (TP = n, FP = 0)."""
    return float(epsilon_lower_bound(n, 0, n, beta=beta, delta=delta))


def ldp_auditor_epsilon(tp: int, fp: int, n: int, alpha: float = 0.01, delta: float = 0.0) -> float:
    """LDP-Auditor's exact number: statsmodels' two-sided 'beta' interval at alpha/2, i.e. quantiles at alpha/4."""
    return float(epsilon_lower_bound(tp, fp, n, beta=alpha / 4, delta=delta))


def choose_event(p1, p2, n: int, *, beta: float, delta: float = 0.0) -> tuple[np.ndarray, float]:
    """Neyman-Pearson event from the exact distribution of a discrete statistic: no data are used.

    ``p1[c]`` and ``p2[c]`` are P(code c | v1) and P(code c | v2). Codes are sorted by decreasing likelihood ratio
    p1/p2 (the Neyman-Pearson order); the event is the prefix {ratio >= t} whose *expected* lower bound
    ``epsilon_lower_bound(n TPR, n FPR)`` is largest. The choice depends only on the model and n, never on the
    trials, so evaluating it on the trials gives an unbiased, valid bound. Returns (bool mask over codes, expected
    bound).
    """
    p1 = np.asarray(p1, dtype=np.float64)
    p2 = np.asarray(p2, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        llr = np.log(p1) - np.log(p2)
    llr = np.where(p1 > 0, np.where(p2 > 0, llr, np.inf), -np.inf)  # impossible under v1: last
    order = np.argsort(-llr, kind="stable")
    # group codes of equal ratio (an NP threshold takes all of them or none)
    sorted_llr = llr[order]
    tpr = np.cumsum(p1[order])
    fpr = np.cumsum(p2[order])
    same_next = np.zeros(len(order), dtype=bool)
    same_next[:-1] = np.isclose(sorted_llr[:-1], sorted_llr[1:], rtol=1e-12, atol=1e-12)
    cut = ~same_next & (sorted_llr > -np.inf)
    if not cut.any():
        return np.zeros(len(p1), dtype=bool), -math.inf
    idx = np.flatnonzero(cut)
    expected = epsilon_lower_bound(
        np.floor(n * np.minimum(tpr[idx], 1.0)), np.ceil(n * np.minimum(fpr[idx], 1.0)), n, beta=beta, delta=delta
    )
    expected = np.atleast_1d(expected)
    best = int(idx[int(np.argmax(expected))])
    mask = np.zeros(len(p1), dtype=bool)
    mask[order[: best + 1]] = True
    return mask, float(np.max(expected))
