"""A dpkit mechanism for one bounded number per user as an audit target: one report per trial."""

from __future__ import annotations

from typing import Any

import numpy as np

from dpkit.audits.ldp.attacks import FamilyAttack, Statistic, numeric_family_attack, numeric_statistic
from dpkit.audits.ldp.targets.base import Target
from dpkit.mechanisms.gaussian import BoundedGaussian

__all__ = ["NumericTarget"]


class NumericTarget(Target):
    """A mechanism on a bounded number (e.g. :class:`~dpkit.mechanisms.BoundedGaussian`), audited at the two ends of
    its range (v1 = lower, v2 = upper: the pair at the sensitivity, as LDP-Auditor's 0 and k - 1).

    ``k`` is only reported (the command line audits the range [0, k - 1]). The likelihood-ratio statistic and the
    guess are the ones registered for the mechanism's class (:func:`~dpkit.audits.ldp.attacks.numeric_statistic`,
    :func:`~dpkit.audits.ldp.attacks.numeric_family_attack`).
    """

    chunk_rows = 1 << 20

    def __init__(self, mechanism: BoundedGaussian, name: str | None = None, k: int | None = None):
        self.mechanism = mechanism
        self.name = name or f"dpkit:{mechanism.name}"
        self.epsilon = float(mechanism.epsilon)
        self.delta = float(mechanism.delta)
        self.v1, self.v2 = mechanism.lower, mechanism.upper
        self.k = int(k) if k is not None else 2

    def sample(self, which: int, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.mechanism.perturb(self._values(which, n, np.float64), rng)

    def statistic(self) -> Statistic:
        return numeric_statistic(self.mechanism, self.v1, self.v2)

    def family_attack(self) -> FamilyAttack | None:
        return numeric_family_attack(self.mechanism, self.v1, self.v2)

    def params(self) -> dict[str, Any]:
        return {"mechanism": repr(self.mechanism)}
