"""The identity strategy C = I: DP-SGD (independent noise every step), the baseline every factorization beats.

Prefix sums: e_t = t + 1, mean error (n + 1) / 2, max error n; sensitivity^2 = k for k participations.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np

from dpkit.mechanisms.matrix_factorization._checks import check_steps
from dpkit.mechanisms.matrix_factorization.participation import Participation
from dpkit.mechanisms.matrix_factorization.sensitivity import Sensitivity
from dpkit.mechanisms.matrix_factorization.strategy import Strategy, register_kind
from dpkit.mechanisms.matrix_factorization.streaming import IdentityRecurrence, NoisingRecurrence
from dpkit.mechanisms.matrix_factorization.workload import Workload

__all__ = ["Identity"]


@register_kind
@dataclasses.dataclass(frozen=True)
class Identity(Strategy):
    """C = I over ``n`` steps (DP-SGD)."""

    n: int
    kind: ClassVar[str] = "identity"

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", check_steps("n", self.n))

    @property
    def bands(self) -> int | None:
        return 1

    def describe(self) -> str:
        return "dp-sgd"

    def strategy_matrix(self) -> np.ndarray:
        return np.eye(self.n)

    def noising_matrix(self) -> np.ndarray:
        return np.eye(self.n)

    def per_query_error(self, workload: Workload | None = None) -> np.ndarray:
        workload = self._workload(workload)
        if workload.learning_rates is None and workload.momentum == 0:
            return np.arange(1, self.n + 1, dtype=np.float64)
        return super().per_query_error(workload)

    def sensitivity(self, participation: Participation | None = None) -> Sensitivity:
        participation = self._participation(participation)
        k = participation.participations(self.n)
        return Sensitivity(math.sqrt(k), True, "identity: sqrt(participations)")

    def noising_recurrence(self) -> NoisingRecurrence:
        return IdentityRecurrence(self.n)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "n": self.n}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Identity:
        return cls(int(data["n"]))
