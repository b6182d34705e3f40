"""Privacy audits: estimate epsilon from membership-inference attacks; audit LDP randomizers (:mod:`audits.ldp`).

Run an attack that guesses, for each sample, whether a target was in the training set; count its errors;
turn the counts into an estimate of epsilon to set against what the accountants report.

* :mod:`audits.counts`: :class:`AttackCounts` (TP, FP, TN, FN), from numbers or from arrays of guesses.
* :mod:`audits.epsilon_from_tests`: eps_hat(FPR, FNR; delta), the hypothesis-testing region (vectorized).
* :mod:`audits.intervals`: Clopper-Pearson and Jeffreys baselines (confidence intervals for epsilon).
* :mod:`audits.bayesian`: the joint-Beta posterior of epsilon (Zanella-Beguelin et al. 2023), computed by an
  exact, fast 1-D quadrature: :class:`EpsilonPosterior` (cdf, quantiles, density) and :func:`bayesian_interval`.
* :mod:`audits.scores`: from (is_member, score) arrays, with the threshold chosen on a held-out split or the
  best threshold with a Bonferroni correction.
* :mod:`audits.canaries`: several canaries per trained model (a heuristic; read its caveat).
* :mod:`audits.estimate`: :func:`estimate_epsilon` dispatching on ``method``.
* :mod:`audits.estimate_cli`: the ``dpkit estimate-eps`` and ``dpkit mia-run`` commands.
* :mod:`audits.ldp`: the LDP-Auditor distinguishing game (``dpkit audit-ldp``).

Every estimate is an :class:`EpsilonEstimate` (frozen; ``to_dict()``).
"""

from audits.bayesian import EpsilonPosterior, bayesian_interval
from audits.canaries import CanaryGameResult, canary_game
from audits.counts import AttackCounts
from audits.epsilon_from_tests import epsilon_from_rates, region_lower, region_upper
from audits.estimate import METHODS, estimate_all, estimate_epsilon
from audits.intervals import clopper_pearson, jeffreys
from audits.results import EpsilonEstimate
from audits.scores import counts_at_threshold, estimate_from_scores

__all__ = [
    "METHODS",
    "AttackCounts",
    "CanaryGameResult",
    "EpsilonEstimate",
    "EpsilonPosterior",
    "bayesian_interval",
    "canary_game",
    "clopper_pearson",
    "counts_at_threshold",
    "epsilon_from_rates",
    "estimate_all",
    "estimate_epsilon",
    "estimate_from_scores",
    "jeffreys",
    "region_lower",
    "region_upper",
]
