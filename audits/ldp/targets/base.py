"""What every audit target provides to the game (:class:`Target`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from dpkit.audits.ldp.attacks import FamilyAttack, Statistic

__all__ = ["Target", "DEFAULT_TRIALS", "rows_per_chunk"]

DEFAULT_TRIALS = 1_000_000
_CELLS = 1 << 22  # report cells per chunk (bounds memory at a few tens of MB)


def rows_per_chunk(width: int) -> int:
    """Trials per chunk for reports of ``width`` cells per trial (at least 256)."""
    return max(256, _CELLS // max(int(width), 1))


class Target:
    """Base class of the audit targets.

    A target knows its claimed guarantee (``epsilon``, ``delta``), its domain ``k``, the input pair (``v1``,
    ``v2``; LDP-Auditor's 0 and k - 1), how to draw ``n`` trials of reports for v1 (``which = 0``) or v2
    (``which = 1``) by running the *real* randomizer (``sample``), and which tests apply: a likelihood-ratio
    :class:`~dpkit.audits.ldp.attacks.Statistic` (``statistic()``, exact distribution under the claimed model, or
    None) and LDP-Auditor's family attack (``family_attack()``, or None). Trials are drawn ``chunk_rows`` at a time.
    """

    name: str = "target"
    k: int
    epsilon: float
    delta: float = 0.0
    v1: Any = 0
    v2: Any = 1
    default_trials: int = DEFAULT_TRIALS
    chunk_rows: int = 1 << 16
    reference_epsilon: float | None = None  # a weaker claim to report findings against (RS+FD tuple scope)
    note: str = ""

    def sample(self, which: int, n: int, rng: np.random.Generator) -> Any:
        raise NotImplementedError

    def _value(self, which: int) -> Any:
        """The input of a trial: ``v1`` (``which = 0``) or ``v2`` (``which = 1``)."""
        return self.v1 if which == 0 else self.v2

    def _values(self, which: int, n: int, dtype: Any) -> np.ndarray:
        """The inputs of ``n`` trials of one user each: ``n`` copies of ``_value(which)`` (a number, or a row such as
        a tuple of attributes: then an (n, d) array)."""
        value = self._value(which)
        return np.full((n, *np.shape(value)), value, dtype=dtype)

    def statistic(self) -> Statistic | None:
        return None

    def family_attack(self) -> FamilyAttack | None:
        return None

    def params(self) -> dict[str, Any]:
        return {}
