"""Attack results as a confusion matrix: the input of every epsilon estimator.

A distinguishing (membership-inference) game run n times yields counts: "positive" means the challenge bit was 1
(the target/canary was in the training set). P = TP + FN positives, N = TN + FP negatives,
FPR = FP / N and FNR = FN / P.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from dpkit.audits._checks import check_count, check_labels, check_same_length

__all__ = ["AttackCounts"]


@dataclasses.dataclass(frozen=True)
class AttackCounts:
    """Confusion matrix of a membership-inference attack (all whole numbers >= 0)."""

    tp: int
    fp: int
    tn: int
    fn: int

    def __post_init__(self):
        for name in ("tp", "fp", "tn", "fn"):
            object.__setattr__(self, name, check_count(name, getattr(self, name)))

    @classmethod
    def from_guesses(cls, is_member, guess) -> AttackCounts:
        """Counts from arrays of the true bit (``is_member``) and the attack's guess (both 0/1 or bool)."""
        b = check_labels("is_member", is_member)
        g = check_labels("guess", guess)
        check_same_length(is_member=b, guess=g)
        return cls(tp=int(np.sum(b & g)), fp=int(np.sum(~b & g)), tn=int(np.sum(~b & ~g)), fn=int(np.sum(b & ~g)))

    @property
    def positives(self) -> int:
        return self.tp + self.fn

    @property
    def negatives(self) -> int:
        return self.tn + self.fp

    @property
    def total(self) -> int:
        return self.positives + self.negatives

    @property
    def fpr(self) -> float:
        """FP / N (NaN without negatives)."""
        return self.fp / self.negatives if self.negatives else float("nan")

    @property
    def fnr(self) -> float:
        """FN / P (NaN without positives)."""
        return self.fn / self.positives if self.positives else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
