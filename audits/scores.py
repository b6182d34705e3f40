"""From attack scores to epsilon: choosing the decision threshold without fooling yourself.

An attack outputs a score per sample (higher = "member"); the test is ``score >= threshold``. Picking the
threshold that looks best on the same samples used for the interval is a multiple-comparison error: the
reported lower bound is then biased upwards (the reference code, ``compute_privacy_curve_lo_hi``, maximises
epsilon over all ROC thresholds on the same samples and does not correct for it). Two sound options:

* ``selection="holdout"`` (default): choose the threshold on a random calibration split, estimate on the rest.
  The threshold is independent of the evaluation samples, so the interval keeps its level; the price is that
  only the evaluation split counts towards n.
* ``selection="best"``: consider ``num_thresholds`` candidate thresholds (quantiles of the pooled scores, chosen
  without looking at the labels) and compute every interval at significance alpha / K (Bonferroni). All K hold
  simultaneously with probability >= 1 - alpha, so the selected one does too, whichever is selected. The cost
  is stated in the result (``comparisons`` = K, ``per_test_alpha`` = alpha / K): wider intervals as K grows.
  For the Bayesian method the same correction is applied to the credible level (a heuristic there).

The threshold is selected by a smoothed plug-in estimate (eps_hat at (FP + 1/2)/(N + 1), (FN + 1/2)/(P + 1)),
which is finite and ranks attacks worse than random by their complement. Thresholds at or below the smallest score
are never candidates: they make the constant test "everyone is a member", which says nothing about epsilon
(:mod:`dpkit.audits.evidence`). So constant scores, and a held-out evaluation split whose test turns out constant
or lacks members or non-members, raise :class:`~dpkit.audits.evidence.InsufficientEvidenceError`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dpkit.accountants.validation import check_count, check_probability
from dpkit.audits._checks import check_labels, check_same_length, check_scores
from dpkit.audits.counts import AttackCounts
from dpkit.audits.epsilon_from_tests import epsilon_from_rates
from dpkit.audits.estimate import estimate_epsilon
from dpkit.audits.evidence import InsufficientEvidenceError
from dpkit.audits.results import EpsilonEstimate

__all__ = ["counts_at_threshold", "estimate_from_scores", "SELECTIONS"]

SELECTIONS = ("holdout", "best")


def _check(is_member, scores) -> tuple[np.ndarray, np.ndarray]:
    b = check_labels("is_member", is_member)
    s = check_scores("scores", scores)
    check_same_length(is_member=b, scores=s)
    return b, s


def counts_at_threshold(is_member, scores, threshold: float) -> AttackCounts:
    """Counts of the test ``score >= threshold``."""
    b, s = _check(is_member, scores)
    return AttackCounts.from_guesses(b, s >= threshold)


def _counts_matrix(b: np.ndarray, s: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(K, 4) array of (TP, FP, TN, FN) for each threshold, vectorized with sorted scores."""
    pos = np.sort(s[b])
    neg = np.sort(s[~b])
    tp = pos.size - np.searchsorted(pos, thresholds, side="left")
    fp = neg.size - np.searchsorted(neg, thresholds, side="left")
    return np.stack([tp, fp, neg.size - fp, pos.size - tp], axis=1)


def _smoothed_eps(c: np.ndarray, delta: float) -> np.ndarray:
    tp, fp, tn, fn = c.T.astype(float)
    fpr = (fp + 0.5) / (fp + tn + 1.0)
    fnr = (fn + 0.5) / (fn + tp + 1.0)
    return epsilon_from_rates(fpr, fnr, delta)


def _candidates(s: np.ndarray, num: int | None, where: str) -> np.ndarray:
    """Candidate thresholds above the smallest score (at or below it the test is constant: no evidence)."""
    uniq = np.unique(s)
    if uniq.size < 2:
        raise InsufficientEvidenceError(
            f"no evidence about epsilon: the {s.size} scores {where} are all equal ({float(uniq[0]):.6g}), so every "
            "threshold test is constant"
        )
    if num is not None and num < uniq.size:
        uniq = np.unique(np.quantile(s, (np.arange(num) + 0.5) / num, method="inverted_cdf"))
    return uniq[uniq > s.min()]


def estimate_from_scores(
    is_member,
    scores,
    *,
    method: str = "bayes",
    alpha: float = 0.05,
    delta: float = 0.0,
    sided: str = "two-sided",
    selection: str = "holdout",
    holdout_fraction: float = 0.5,
    num_thresholds: int | None = 20,
    seed: int = 0,
    **estimator_kwargs,
) -> EpsilonEstimate:
    """Epsilon estimate of the threshold test on ``scores`` (see the module docstring for ``selection``).

    ``num_thresholds`` caps the candidate thresholds (None = every distinct score; for ``"best"`` it is the
    Bonferroni K). ``extra`` of the result records the threshold, the selection, the number of comparisons, the
    per-test significance and the sample sizes used.
    """
    b, s = _check(is_member, scores)
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    if num_thresholds is not None:
        num_thresholds = check_count("num_thresholds", num_thresholds, minimum=1)
    check_probability("alpha", alpha, open_low=True, open_high=True)
    if selection == "holdout":
        frac = check_probability("holdout_fraction", holdout_fraction, open_low=True, open_high=True)
        n = b.size
        n_cal = int(round(frac * n))
        if n_cal < 1 or n_cal > n - 1:
            raise ValueError(
                f"holdout_fraction={holdout_fraction!r} leaves an empty split of the {n} samples; "
                "need at least one calibration and one evaluation sample"
            )
        perm = np.random.default_rng(seed).permutation(n)
        cal, ev = perm[:n_cal], perm[n_cal:]
        cands = _candidates(s[cal], num_thresholds, "of the calibration split")
        best = int(np.argmax(_smoothed_eps(_counts_matrix(b[cal], s[cal], cands), delta)))
        threshold = float(cands[best])
        counts = AttackCounts.from_guesses(b[ev], s[ev] >= threshold)
        per_test_alpha, comparisons, n_used = alpha, 1, int(ev.size)
    else:
        cands = _candidates(s, num_thresholds, "given")
        matrix = _counts_matrix(b, s, cands)
        best = int(np.argmax(_smoothed_eps(matrix, delta)))
        threshold = float(cands[best])
        counts = AttackCounts(*(int(v) for v in matrix[best]))
        comparisons = int(cands.size)
        per_test_alpha, n_used = alpha / comparisons, int(b.size)
    try:
        est = estimate_epsilon(counts, method, per_test_alpha, delta, sided, **estimator_kwargs)
    except InsufficientEvidenceError as err:
        raise InsufficientEvidenceError(
            f"{err} (test: score >= {threshold:.6g}, chosen by selection={selection!r}, counted on {n_used} of "
            f"{b.size} samples)"
        ) from None
    extra = dict(est.extra)
    extra.update(
        threshold=threshold,
        selection=selection,
        comparisons=comparisons,
        per_test_alpha=per_test_alpha,
        samples_used=n_used,
        samples_total=int(b.size),
    )
    return dataclasses.replace(est, alpha=float(alpha), extra=tuple(sorted(extra.items())))
