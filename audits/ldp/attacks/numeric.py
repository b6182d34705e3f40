"""Attacks on one report of a mechanism for a bounded number, registered per mechanism class.

:func:`numeric_statistic` (the likelihood-ratio statistic) and :func:`numeric_family_attack` (the maximum-likelihood
guess) dispatch on the mechanism's class, as the frequency-oracle attacks do. Inputs v1 and v2 are numbers of the
mechanism's range (the game uses its two ends). A new numeric mechanism adds one registration of each.

Bounded Gaussian: the privacy loss ln P(y | v1) / P(y | v2) is linear in y, so the code bins (y - (v1 + v2)/2) / sigma
(a Gaussian shift, N(-+|v2 - v1| / (2 sigma), 1)); the guess is the maximum-likelihood value of the range,
clip(y, lower, upper), and the test event is "guess = v1".
"""

from __future__ import annotations

from functools import singledispatch

import numpy as np

from dpkit.audits.ldp.attacks.statistic import FamilyAttack, Statistic, gaussian_shift_statistic
from dpkit.mechanisms.gaussian import BoundedGaussian

__all__ = ["numeric_statistic", "numeric_family_attack"]


@singledispatch
def numeric_statistic(mechanism: object, v1: float, v2: float) -> Statistic:
    """The likelihood-ratio statistic of one report of ``mechanism`` (its claimed model) for the inputs v1, v2."""
    raise TypeError(f"no likelihood-ratio statistic for {type(mechanism).__name__}")


@numeric_statistic.register(BoundedGaussian)
def _bounded_gaussian_statistic(mechanism: BoundedGaussian, v1: float, v2: float) -> Statistic:
    mid, sigma = (v1 + v2) / 2.0, mechanism.sigma

    def standardize(r: np.ndarray) -> np.ndarray:
        return (r - mid) / sigma

    return gaussian_shift_statistic(
        "bin of (y - (v1 + v2)/2) / sigma", standardize, (v1 - mid) / sigma, (v2 - mid) / sigma
    )


@singledispatch
def numeric_family_attack(mechanism: object, v1: float, v2: float) -> FamilyAttack | None:
    """The guess of the input from one report, returning guess == v1 per trial (None: no attack registered)."""
    return None


@numeric_family_attack.register(BoundedGaussian)
def _bounded_gaussian_attack(mechanism: BoundedGaussian, v1: float, v2: float) -> FamilyAttack:
    lo, hi = mechanism.lower, mechanism.upper
    return lambda r, rng: np.clip(r, lo, hi) == v1
