"""Privacy of an MF run, as ``dpkit.accountants`` events (so calibration, budgets and every accountant apply).

Unit of privacy: one example (record). Neighbouring relation: add/remove one example (replace-one: see below).
Each of the example's gradients is clipped to L2 norm ``clip_norm`` at the steps its participation schema allows.

* Without sampling (fixed or shuffled order with a known schema; Choquette-Choo et al. 2023, arXiv 2211.06530):
  releasing C G + Z with Z ~ N(0, (sigma clip_norm sens(C))^2) per entry, sens(C) the strategy's sensitivity under
  the schema, is ONE Gaussian mechanism with noise multiplier sigma: ``GaussianEvent(sigma)``
  (:func:`mf_event`). Training then adds ``sigma clip_norm sens(C) (C^{-1} Z)_t`` to step t's gradient sum
  (:func:`noise_stddev`). Everything the model reveals is post-processing of C G + Z (adaptively chosen
  gradients are fine for lower-triangular C; Denisov et al. 2022). Replace-one doubles the sensitivity:
  ``mf_event(sigma, neighbouring_relation="replace_one")`` is ``GaussianEvent(sigma / 2)``.
* Banded strategies with cyclic Poisson sampling (Choquette-Choo et al. 2023, arXiv 2306.08153, Thm. 4): the data
  are split into b_hat groups; at step t each example of group t mod b_hat joins independently with probability
  q. With a b_hat-banded C whose columns have norm at most 1 and noise std sigma clip_norm (max column norm), the
  run has the privacy of DP-SGD with rate q, noise multiplier sigma and ceil(n / b_hat) steps
  (:func:`amplified_banded_event`; b_hat = 1 is exactly DP-SGD). Add/remove neighbours only (Poisson sampling).
"""

from __future__ import annotations

import math

from dpkit.accountants import DpEvent, GaussianEvent, NeighbouringRelation, dpsgd_event
from dpkit.accountants.validation import check_positive, check_probability
from dpkit.mechanisms.matrix_factorization.strategy import Strategy

__all__ = ["mf_event", "amplified_banded_event", "noise_stddev"]


def mf_event(
    noise_multiplier: float, *, neighbouring_relation: NeighbouringRelation | str = "add_or_remove"
) -> DpEvent:
    """A whole MF run with noise std ``noise_multiplier x clip_norm x sensitivity`` on C G: one Gaussian mechanism."""
    sigma = check_positive("noise_multiplier", noise_multiplier)
    relation = NeighbouringRelation.parse(neighbouring_relation)
    return GaussianEvent(sigma if relation is NeighbouringRelation.ADD_OR_REMOVE else sigma / 2)


def amplified_banded_event(strategy: Strategy, noise_multiplier: float, sampling_probability: float) -> DpEvent:
    """Cyclic-Poisson-sampled banded MF = DP-SGD(q, sigma) over ceil(n / bands) steps (arXiv 2306.08153, Thm. 4).

    The noise std must be ``noise_multiplier x clip_norm x`` the strategy's largest column norm
    (``strategy.sensitivity(SingleParticipation())``; 1 for column-normalized strategies).
    """
    if not isinstance(strategy, Strategy):
        raise TypeError(f"strategy must be a Strategy, got {strategy!r}")
    bands = strategy.bands
    if bands is None:
        raise ValueError(
            f"strategy must be banded for amplification by cyclic Poisson sampling, got {strategy.describe()} "
            "(all n diagonals nonzero)"
        )
    sigma = check_positive("noise_multiplier", noise_multiplier)
    q = check_probability("sampling_probability", sampling_probability)
    return dpsgd_event(sigma, q, math.ceil(strategy.n / bands))


def noise_stddev(noise_multiplier: float, clip_norm: float, sensitivity: float) -> float:
    """Standard deviation of Z's entries: sigma x clip_norm x sens(C)."""
    return (
        check_positive("noise_multiplier", noise_multiplier)
        * check_positive("clip_norm", clip_norm)
        * check_positive("sensitivity", sensitivity)
    )
