"""Argument checks for the audits package; errors name the parameter, its value and the allowed range.

Every helper takes ``(name, value, ...)``. Scalars reuse :mod:`dpkit.accountants.validation`; the array checks are
specific to attack data.
"""

from __future__ import annotations

import numpy as np

from dpkit.accountants.validation import check_count, check_probability

__all__ = ["check_alpha", "check_audit_delta", "check_count", "check_labels", "check_same_length", "check_scores"]


def check_alpha(name: str, value) -> float:
    """A significance level in (0, 1)."""
    return check_probability(name, value, open_low=True, open_high=True)


def check_audit_delta(name: str, value) -> float:
    """The delta of the (epsilon, delta) statement being estimated, in [0, 1) (0 is pure DP)."""
    return check_probability(name, value, open_low=False, open_high=True)


def _as_1d(name: str, values) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got 0 entries")
    return arr


def check_labels(name: str, values) -> np.ndarray:
    """A non-empty 1-D array of 0/1 (or bool) labels, returned as bool."""
    arr = _as_1d(name, values)
    if arr.dtype == bool:
        return arr
    if not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must hold 0/1 or booleans, got dtype {arr.dtype}")
    bad = ~np.isin(arr, (0, 1))
    if bad.any():
        raise ValueError(f"{name} must hold only 0/1 or booleans, got {arr[bad][0]!r} at index {int(np.argmax(bad))}")
    return arr.astype(bool)


def check_scores(name: str, values) -> np.ndarray:
    """A non-empty 1-D array of finite real scores, returned as float64."""
    arr = _as_1d(name, values)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = arr.astype(float)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{name} must be finite, got {arr[bad][0]!r} at index {int(np.argmax(bad))}")
    return arr


def check_same_length(**arrays: np.ndarray) -> None:
    """All arrays have the same length; the error lists each name with its length."""
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise ValueError(f"arrays must have the same length: {desc}")
