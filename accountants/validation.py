"""Argument checks with errors that name the parameter, its value and the allowed range.

Every check in dpkit takes ``(name, value, ...)`` in that order and returns the normalized value.
"""

from __future__ import annotations

import math
from numbers import Integral, Real


def _as_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    return float(value)  # NaN fails every range check below, so its error states the range


def check_positive(name: str, value: object, *, allow_inf: bool = False) -> float:
    """``value`` in (0, inf) (or (0, inf] with ``allow_inf``)."""
    v = _as_float(name, value)
    if not v > 0 or (math.isinf(v) and not allow_inf):
        rng = "(0, inf]" if allow_inf else "(0, inf)"
        raise ValueError(f"{name} must be in {rng}, got {value!r}")
    return v


def check_range(name: str, value: object, low: float, high: float) -> float:
    """``value`` in the closed interval [low, high] (limits beyond which the arithmetic would overflow)."""
    v = _as_float(name, value)
    if not low <= v <= high:
        raise ValueError(f"{name} must be in [{low:g}, {high:g}], got {value!r}")
    return v


def check_nonnegative(name: str, value: object) -> float:
    """``value`` in [0, inf)."""
    v = _as_float(name, value)
    if not (0 <= v < math.inf):
        raise ValueError(f"{name} must be in [0, inf), got {value!r}")
    return v


def check_probability(name: str, value: object, *, open_low: bool = True, open_high: bool = False) -> float:
    """``value`` in the unit interval; by default (0, 1] (a sampling probability)."""
    v = _as_float(name, value)
    low_ok = v > 0 if open_low else v >= 0
    high_ok = v < 1 if open_high else v <= 1
    if not (low_ok and high_ok):
        rng = ("(" if open_low else "[") + "0, 1" + (")" if open_high else "]")
        raise ValueError(f"{name} must be in {rng}, got {value!r}")
    return v


def check_delta(name: str, value: object) -> float:
    """A privacy parameter delta in (0, 1)."""
    return check_probability(name, value, open_low=True, open_high=True)


def check_count(name: str, value: object, *, minimum: int = 0, maximum: int | None = None) -> int:
    """A whole number >= ``minimum`` (and <= ``maximum`` if given)."""
    rng = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
    if isinstance(value, bool) or not isinstance(value, Integral):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise TypeError(f"{name} must be a whole number {rng}, got {value!r}")
    n = int(value)
    if n < minimum or (maximum is not None and n > maximum):
        raise ValueError(f"{name} must be a whole number {rng}, got {value!r}")
    return n
