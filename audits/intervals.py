"""Frequentist baselines: epsilon intervals from Clopper-Pearson or Jeffreys intervals for FPR and FNR.

Prior work (Jagielski et al. 2020, Nasr et al. 2021): take an interval for each rate, each at significance
alpha / 2 so that by the union bound both hold jointly with probability >= 1 - alpha, and map the corners of the
rectangle through :func:`~dpkit.audits.epsilon_from_tests.epsilon_from_rates`. eps_hat decreases in both rates below
the anti-diagonal FPR + FNR = 1 and increases above it, so its extremes over the rectangle are at the corners
(FNR_lo, FPR_lo) and (FNR_hi, FPR_hi); the minimum is 0 when the rectangle crosses the anti-diagonal.

Clopper-Pearson per-rate intervals are exact (conservative), so the epsilon interval has coverage >= 1 - alpha.
The Jeffreys interval (Beta(k + 1/2, n - k + 1/2) quantiles, lower end 0 at k = 0 and upper end 1 at k = n)
is approximate: its coverage is close to, not guaranteed above, the nominal level.

Counts without evidence about epsilon (no member or no non-member sample, or a constant test) raise
:class:`~dpkit.audits.evidence.InsufficientEvidenceError` rather than return the trivial interval [0, inf].
"""

from __future__ import annotations

from scipy import special

from dpkit.audits._checks import check_alpha, check_audit_delta
from dpkit.audits.counts import AttackCounts
from dpkit.audits.epsilon_from_tests import epsilon_from_rates
from dpkit.audits.evidence import require_evidence
from dpkit.audits.results import EpsilonEstimate

__all__ = ["clopper_pearson", "jeffreys", "rate_interval", "epsilon_interval_from_rates", "plug_in_epsilon", "SIDES"]

SIDES = ("two-sided", "lower")


def rate_interval(k: int, n: int, alpha: float, method: str = "clopper-pearson") -> tuple[float, float]:
    """Two-sided interval at significance ``alpha`` for a binomial proportion, k successes out of n.

    ``n == 0`` gives the uninformative [0, 1].
    """
    if n == 0:
        return 0.0, 1.0
    if method == "clopper-pearson":
        lo = 0.0 if k == 0 else float(special.betaincinv(k, n - k + 1, alpha / 2))
        hi = 1.0 if k == n else float(special.betaincinv(k + 1, n - k, 1 - alpha / 2))
    elif method == "jeffreys":
        lo = 0.0 if k == 0 else float(special.betaincinv(k + 0.5, n - k + 0.5, alpha / 2))
        hi = 1.0 if k == n else float(special.betaincinv(k + 0.5, n - k + 0.5, 1 - alpha / 2))
    else:
        raise ValueError(f"method must be 'clopper-pearson' or 'jeffreys', got {method!r}")
    return lo, hi


def epsilon_interval_from_rates(
    fpr_interval: tuple[float, float], fnr_interval: tuple[float, float], delta: float
) -> tuple[float, float]:
    """Range of eps_hat over the rectangle fpr_interval x fnr_interval."""
    (fpr_l, fpr_r), (fnr_l, fnr_r) = fpr_interval, fnr_interval
    e_l = epsilon_from_rates(fpr_l, fnr_l, delta)
    e_r = epsilon_from_rates(fpr_r, fnr_r, delta)
    straddles = (fnr_r > 1 - fpr_r) != (fnr_l > 1 - fpr_l)
    lower = 0.0 if straddles else min(e_l, e_r)
    return float(lower), float(max(e_l, e_r))


def plug_in_epsilon(counts: AttackCounts, delta: float = 0.0) -> float:
    """eps_hat at the observed rates FP/N and FN/P (NaN if there are no positives or no negatives)."""
    if counts.positives == 0 or counts.negatives == 0:
        return float("nan")
    return float(epsilon_from_rates(counts.fpr, counts.fnr, delta))


def _frequentist(method: str, counts: AttackCounts, alpha: float, delta: float, sided: str) -> EpsilonEstimate:
    alpha = check_alpha("alpha", alpha)
    delta = check_audit_delta("delta", delta)
    if sided not in SIDES:
        raise ValueError(f"sided must be one of {SIDES}, got {sided!r}")
    require_evidence(counts)
    # A one-sided lower bound at alpha is the lower end of the two-sided interval at 2 alpha.
    a = min(2 * alpha, 1.0 - 1e-12) if sided == "lower" else alpha
    fpr_i = rate_interval(counts.fp, counts.negatives, a / 2, method)
    fnr_i = rate_interval(counts.fn, counts.positives, a / 2, method)
    lower, upper = epsilon_interval_from_rates(fpr_i, fnr_i, delta)
    if sided == "lower":
        upper = float("inf")
    extra = (("fpr_interval", list(fpr_i)), ("fnr_interval", list(fnr_i)))
    return EpsilonEstimate(method, plug_in_epsilon(counts, delta), lower, upper, alpha, delta, counts, sided, extra)


def clopper_pearson(counts: AttackCounts, alpha: float = 0.05, delta: float = 0.0, sided: str = "two-sided"):
    """Epsilon interval from Clopper-Pearson intervals for FPR and FNR (each at alpha / 2; coverage >= 1 - alpha)."""
    return _frequentist("clopper-pearson", counts, alpha, delta, sided)


def jeffreys(counts: AttackCounts, alpha: float = 0.05, delta: float = 0.0, sided: str = "two-sided"):
    """Epsilon interval from Jeffreys intervals for FPR and FNR (each at alpha / 2; approximate coverage)."""
    return _frequentist("jeffreys", counts, alpha, delta, sided)
