"""Epsilon estimates as data: a frozen dataclass per estimate, with ``to_dict()``."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from dpkit.audits.counts import AttackCounts

__all__ = ["EpsilonEstimate"]


@dataclasses.dataclass(frozen=True)
class EpsilonEstimate:
    """An estimate of epsilon from attack results.

    ``lower``/``upper`` bound a two-sided interval at significance ``alpha`` (confidence or credible level
    1 - alpha) for the epsilon of the attack's test at ``delta``; with ``sided == "lower"`` only ``lower`` is
    informative (a one-sided bound at level 1 - alpha) and ``upper`` is inf. ``point`` is the method's point
    estimate (plug-in for the frequentist methods, posterior median for the Bayesian one). ``extra`` holds
    method-specific numbers as sorted (name, value) pairs.
    """

    method: str
    point: float
    lower: float
    upper: float
    alpha: float
    delta: float
    counts: AttackCounts
    sided: str = "two-sided"
    extra: tuple[tuple[str, Any], ...] = ()

    @property
    def width(self) -> float:
        return self.upper - self.lower

    def contains(self, epsilon: float) -> bool:
        return self.lower <= epsilon <= self.upper

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "point": self.point,
            "lower": self.lower,
            "upper": self.upper,
            "alpha": self.alpha,
            "delta": self.delta,
            "sided": self.sided,
            "counts": self.counts.to_dict(),
        }
        out.update(dict(self.extra))
        return out


def json_number(x: float) -> float | str:
    """JSON has no infinity or NaN: those become the strings "inf" / "nan" (``float()`` reads them back)."""
    return x if math.isfinite(x) else str(x)
