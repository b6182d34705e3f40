"""When attack results say nothing about epsilon: the check every estimator runs before it estimates.

An estimate of epsilon is a statement about the attack's test, through its false-positive rate FP / N and its
false-negative rate FN / P. The data say nothing about epsilon when

* there are no samples at all, or no member samples (P = TP + FN = 0), or no non-member samples (N = TN + FP = 0):
  one of the two rates is then not observed, and any interval for epsilon comes from the prior (Bayesian) or is the
  trivial [0, inf] (Clopper-Pearson, Jeffreys);
* the test is constant: it guessed "member" for every sample (TN + FN = 0) or for none (TP + FP = 0), as a
  threshold test on constant scores does. Such a test has FPR = 1, FNR = 0 (or the reverse) whatever the mechanism,
  so it cannot tell a private mechanism from a leaky one. The joint-Beta posterior of such counts still puts its
  mass near the corner (1, 0) of the rate square, where eps_hat is the log of a ratio of two vanishing rates, and
  would report an interval such as (0.08, 7.9) from the prior alone.

Decision: every estimator (:func:`~dpkit.audits.bayesian.bayesian_interval`, :class:`~dpkit.audits.bayesian.
EpsilonPosterior`, :func:`~dpkit.audits.intervals.clopper_pearson`, :func:`~dpkit.audits.intervals.jeffreys`, and
through them the score and canary estimators) raises :class:`InsufficientEvidenceError` (a ``ValueError``) naming
the problem instead of returning such an interval. ``EpsilonPosterior(..., allow_no_evidence=True)`` still gives
the prior's law of epsilon, for studying the prior itself.
"""

from __future__ import annotations

from dpkit.audits.counts import AttackCounts

__all__ = ["InsufficientEvidenceError", "evidence_problem", "require_evidence"]


class InsufficientEvidenceError(ValueError):
    """The attack results carry no evidence about epsilon (no samples of one kind, or a constant test)."""


def evidence_problem(counts: AttackCounts) -> str | None:
    """Why ``counts`` say nothing about epsilon, or None when they can (see the module docstring)."""
    c = counts
    where = f"TP={c.tp} FP={c.fp} TN={c.tn} FN={c.fn}"
    if c.total == 0:
        return f"there are no attack results ({where}): nothing to estimate epsilon from"
    if c.positives == 0:
        return (
            f"there are no member samples (TP + FN = 0; {where}): the false-negative rate, hence epsilon, is not "
            "observed"
        )
    if c.negatives == 0:
        return (
            f"there are no non-member samples (TN + FP = 0; {where}): the false-positive rate, hence epsilon, is not "
            "observed"
        )
    if c.tn + c.fn == 0:
        return (
            f"the attack guessed 'member' for every sample ({where}): a constant test (e.g. a threshold on constant "
            "scores) says nothing about epsilon"
        )
    if c.tp + c.fp == 0:
        return (
            f"the attack guessed 'non-member' for every sample ({where}): a constant test (e.g. a threshold on "
            "constant scores) says nothing about epsilon"
        )
    return None


def require_evidence(counts: AttackCounts) -> AttackCounts:
    """``counts`` if they carry evidence about epsilon; else :class:`InsufficientEvidenceError` naming the problem."""
    if not isinstance(counts, AttackCounts):
        raise TypeError(f"counts must be an AttackCounts, got {type(counts).__name__}")
    problem = evidence_problem(counts)
    if problem is not None:
        raise InsufficientEvidenceError(f"no evidence about epsilon: {problem}")
    return counts
