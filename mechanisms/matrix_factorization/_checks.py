"""Input checks for the matrix-factorization package: every error names the parameter, its value and the range."""

from __future__ import annotations

import numpy as np

from dpkit.accountants.validation import check_count, check_probability

__all__ = ["check_count", "check_probability", "check_steps", "check_error", "check_vector", "check_square_lower"]

ERRORS = ("mean", "max")


def check_steps(name: str, value) -> int:
    """A number of steps (iterations) n >= 1."""
    return check_count(name, value, minimum=1)


def check_error(name: str, value) -> str:
    """Which reduction of the per-query error a strategy is optimized for: ``'mean'`` or ``'max'``."""
    if value not in ERRORS:
        raise ValueError(f"{name} must be one of {ERRORS}, got {value!r}")
    return str(value)


def check_vector(name: str, value, *, length: int | None = None, min_length: int = 1) -> np.ndarray:
    """A finite 1-D float64 array (a copy, made read-only)."""
    arr = np.array(value, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-dimensional array, got shape {arr.shape}")
    if length is not None and arr.shape[0] != length:
        raise ValueError(f"{name} must have length {length}, got {arr.shape[0]}")
    if arr.shape[0] < min_length:
        raise ValueError(f"{name} must have at least {min_length} entries, got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got non-finite entries at {np.flatnonzero(~np.isfinite(arr))[:5]}")
    arr.setflags(write=False)
    return arr


def check_square_lower(name: str, value, *, invertible: bool = True) -> np.ndarray:
    """A finite square lower-triangular float64 matrix (a read-only copy), with a nonzero diagonal if invertible."""
    arr = np.array(value, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] < 1:
        raise ValueError(f"{name} must be a square n x n matrix with n >= 1, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    upper = np.triu(arr, 1)
    if np.any(upper != 0):
        i, j = np.argwhere(upper != 0)[0]
        raise ValueError(
            f"{name} must be lower triangular (a step's noise may only depend on earlier steps), "
            f"got {name}[{i}, {j}] = {arr[i, j]!r}"
        )
    if invertible and np.any(np.diag(arr) == 0):
        raise ValueError(
            f"{name} must have a nonzero diagonal (be invertible), got a zero at {np.flatnonzero(np.diag(arr) == 0)[0]}"
        )
    arr.setflags(write=False)
    return arr
