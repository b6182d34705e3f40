"""Input checks for the LDP protocols: every error names the parameter, its value and the allowed range."""

from __future__ import annotations

import dataclasses

import numpy as np

from dpkit.accountants.validation import check_count, check_positive, check_probability

__all__ = [
    "check_epsilon",
    "check_domain",
    "check_rng",
    "check_values",
    "check_report_array",
    "check_count",
    "check_probability",
    "set_fields",
]


def check_epsilon(name: str, value) -> float:
    """A finite privacy parameter in (0, inf); NaN, inf, booleans and non-numbers are rejected."""
    return check_positive(name, value)


def check_domain(name: str, value, minimum: int = 2, maximum: int = 2**32) -> int:
    """A domain size: a whole number in [minimum, maximum]."""
    v = check_count(name, value, minimum=minimum)
    if v > maximum:
        raise ValueError(f"{name} must be a whole number in [{minimum}, {maximum}], got {value!r}")
    return v


def check_rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    return rng


def check_values(name: str, values, k: int, ndim: int = 1) -> np.ndarray:
    """Users' values: an integer array of the given ndim with every entry in [0, k). Returns an int64 array."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu":
        raise TypeError(
            f"{name} must be an integer array with entries in [0, {k}), got dtype {arr.dtype} "
            "(encode categories as integer codes first)"
        )
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-dimensional array, got shape {arr.shape}")
    if arr.size:
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi >= k:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{name} must be in [0, {k}), got {int(bad)}")
    return arr.astype(np.int64, copy=False)


def check_report_array(name: str, reports, *, kinds: str, shape_tail: tuple, expected: str) -> np.ndarray:
    """Reports of a protocol: dtype kind in ``kinds`` and shape (n, *shape_tail) (None in the tail = any)."""
    arr = np.asarray(reports)
    if arr.dtype.kind not in kinds:
        raise TypeError(f"{name} must be {expected}, got dtype {arr.dtype}")
    tail_ok = arr.ndim == 1 + len(shape_tail) and all(
        t is None or s == t for s, t in zip(arr.shape[1:], shape_tail, strict=False)
    )
    if not tail_ok:
        want = "(n" + "".join(f", {t if t is not None else '*'}" for t in shape_tail) + ")"
        raise ValueError(f"{name} must have shape {want} ({expected}), got shape {arr.shape}")
    return arr


def set_fields(obj: object, **values: object) -> None:
    """Store validated, normalized values of declared fields of a frozen dataclass, from its ``__post_init__``.

    A frozen dataclass's generated ``__init__`` stores its fields with ``object.__setattr__``; this does the same
    for the values ``__post_init__`` checked (e.g. ``k`` as an int, ``epsilon`` as a float, a default resolved to
    its value), and only for declared fields: everything derived from the fields is a ``functools.cached_property``.
    """
    names = {f.name for f in dataclasses.fields(obj)}  # type: ignore[arg-type]
    for name, value in values.items():
        if name not in names:
            raise AttributeError(f"{type(obj).__name__} has no field {name!r} (derived values are cached properties)")
        object.__setattr__(obj, name, value)
