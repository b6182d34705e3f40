"""Level-sampled clients as audit targets: range queries (flat, HH, HaarHRR), PEM, TAP, and the report families of
TreeHist and SFP. A trial runs the protocol's real client (``perturb``) on one user's value and keeps the tuple of
per-level reports of one report family."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from dpkit.audits.ldp.attacks.level_sampled import level_family_attack, level_statistic
from dpkit.audits.ldp.attacks.statistic import FamilyAttack, Statistic
from dpkit.audits.ldp.targets.base import Target, rows_per_chunk

__all__ = ["LevelTarget"]


class LevelTarget(Target):
    """One report family of a level-sampled protocol.

    ``sample(values, rng)`` runs the real client on ``values`` and returns this family's per-level report arrays;
    ``levels``: (level client, node of v1, node of v2) per level, the claimed model; ``epsilon``: the claim for
    this family (the protocol's epsilon, or its share for a family of a composed protocol); ``width``: cells of
    one report (for the chunk size).
    """

    def __init__(
        self,
        name: str,
        sample: Callable[[np.ndarray, np.random.Generator], Sequence[np.ndarray]],
        levels: Sequence[tuple[Any, int, int]],
        *,
        epsilon: float,
        k: int,
        v1: int,
        v2: int,
        dtype: Any = np.int64,
        width: int = 4,
        params: dict[str, Any] | None = None,
    ):
        self.name, self._sample, self.levels = name, sample, tuple(levels)
        self.epsilon, self.k, self.v1, self.v2 = float(epsilon), int(k), v1, v2
        self._dtype, self._params = dtype, dict(params or {})
        self.chunk_rows = rows_per_chunk(width)

    def sample(self, which: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        return tuple(self._sample(self._values(which, n, self._dtype), rng))

    def statistic(self) -> Statistic:
        return level_statistic(self.levels)

    def family_attack(self) -> FamilyAttack | None:
        return level_family_attack(self.levels)

    def params(self) -> dict[str, Any]:
        return self._params
