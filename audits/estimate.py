"""One entry point for the epsilon estimators: ``estimate_epsilon(counts, method=...)``."""

from __future__ import annotations

from dpkit.audits.bayesian import DEFAULT_GRID_SIZE, DEFAULT_MAX_EPS, bayesian_interval
from dpkit.audits.counts import AttackCounts
from dpkit.audits.intervals import clopper_pearson, jeffreys
from dpkit.audits.results import EpsilonEstimate

__all__ = ["METHODS", "canonical_method", "estimate_all", "estimate_epsilon"]

METHODS = ("bayes", "clopper-pearson", "jeffreys")
_ALIASES = {
    "bayes": "bayes",
    "bayesian": "bayes",
    "joint-beta": "bayes",
    "joint-dirichlet": "bayes",  # the same posterior (Dirichlet neutrality)
    "clopper-pearson": "clopper-pearson",
    "cp": "clopper-pearson",
    "beta": "clopper-pearson",
    "jeffreys": "jeffreys",
}


def canonical_method(method: str) -> str:
    """The canonical name of ``method`` (aliases: joint-beta, joint-dirichlet -> bayes; cp, beta -> clopper-pearson)."""
    key = str(method).lower().replace("_", "-")
    if key not in _ALIASES:
        raise ValueError(f"method must be one of {', '.join(METHODS)} (or 'all'), got {method!r}")
    return _ALIASES[key]


def estimate_epsilon(
    counts: AttackCounts,
    method: str = "bayes",
    alpha: float = 0.05,
    delta: float = 0.0,
    sided: str = "two-sided",
    *,
    grid_size: int = DEFAULT_GRID_SIZE,
    max_eps: float = DEFAULT_MAX_EPS,
) -> EpsilonEstimate:
    """Epsilon estimate from attack counts with the chosen method (see :data:`METHODS`)."""
    name = canonical_method(method)
    if name == "bayes":
        return bayesian_interval(counts, alpha, delta, sided, grid_size=grid_size, max_eps=max_eps)
    if name == "clopper-pearson":
        return clopper_pearson(counts, alpha, delta, sided)
    return jeffreys(counts, alpha, delta, sided)


def estimate_all(counts: AttackCounts, methods=METHODS, **kwargs) -> dict[str, EpsilonEstimate]:
    """``{method: estimate}`` for several methods ("all" = every method)."""
    if isinstance(methods, str):
        methods = METHODS if methods == "all" else (methods,)
    return {canonical_method(m): estimate_epsilon(counts, m, **kwargs) for m in methods}
