"""Privacy audits: estimate epsilon from membership-inference attacks; audit LDP randomizers (:mod:`dpkit.audits.ldp`).

Run an attack that guesses, for each sample, whether a target was in the training set; count its errors;
turn the counts into an estimate of epsilon to set against what the accountants report.

* :mod:`dpkit.audits.counts`: :class:`AttackCounts` (TP, FP, TN, FN), from numbers or from arrays of guesses.
* :mod:`dpkit.audits.evidence`: counts that say nothing about epsilon (no members, no non-members, a constant
  test) raise :class:`InsufficientEvidenceError` in every estimator instead of returning the prior's interval.
* :mod:`dpkit.audits.epsilon_from_tests`: eps_hat(FPR, FNR; delta), the hypothesis-testing region (vectorized).
* :mod:`dpkit.audits.intervals`: Clopper-Pearson and Jeffreys baselines (confidence intervals for epsilon).
* :mod:`dpkit.audits.bayesian`: the joint-Beta posterior of epsilon (Zanella-Beguelin et al. 2023), computed by an
  exact, fast 1-D quadrature: :class:`EpsilonPosterior` (cdf, quantiles, density) and :func:`bayesian_interval`.
* :mod:`dpkit.audits.scores`: from (is_member, score) arrays, with the threshold chosen on a held-out split or the
  best threshold with a Bonferroni correction.
* :mod:`dpkit.audits.canaries`: several canaries per trained model (a heuristic; read its caveat).
* :mod:`dpkit.audits.estimate`: :func:`estimate_epsilon` dispatching on ``method``.
* :mod:`dpkit.audits.ldp`: the LDP-Auditor distinguishing game.

The commands ``dpkit estimate-eps``, ``dpkit mia-run`` (with the membership-inference harness that trains models
with dpkit) and ``dpkit audit-ldp`` live in the application layer, :mod:`dpkit.cli`.

Every estimate is an :class:`EpsilonEstimate` (frozen; ``to_dict()``).
"""

from dpkit.audits.bayesian import EpsilonPosterior, bayesian_interval
from dpkit.audits.canaries import CanaryGameResult, canary_game
from dpkit.audits.counts import AttackCounts
from dpkit.audits.epsilon_from_tests import epsilon_from_rates, region_lower, region_upper
from dpkit.audits.estimate import METHODS, estimate_all, estimate_epsilon
from dpkit.audits.evidence import InsufficientEvidenceError, evidence_problem, require_evidence
from dpkit.audits.intervals import clopper_pearson, jeffreys
from dpkit.audits.results import EpsilonEstimate
from dpkit.audits.scores import counts_at_threshold, estimate_from_scores

__all__ = [
    "METHODS",
    "AttackCounts",
    "CanaryGameResult",
    "EpsilonEstimate",
    "EpsilonPosterior",
    "InsufficientEvidenceError",
    "bayesian_interval",
    "canary_game",
    "clopper_pearson",
    "counts_at_threshold",
    "epsilon_from_rates",
    "estimate_all",
    "estimate_epsilon",
    "estimate_from_scores",
    "evidence_problem",
    "jeffreys",
    "region_lower",
    "region_upper",
    "require_evidence",
]
