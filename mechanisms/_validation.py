"""Input checks for the LDP protocols: every error names the parameter, its value and the allowed range.

Every check takes ``(name, value, ...)`` and returns the normalized value; it raises before any work or state
change, with a one-line message.

Privacy parameters: :data:`MAX_EPSILON` is the one limit every protocol shares. e^epsilon overflows float64 beyond
epsilon = 709.78, and the protocols' formulas (p = e^eps / (e^eps + k - 1), amplifications ln(d (e^eps - 1) + 1),
...) must stay finite, so an epsilon above 700 is refused by name. (Already beyond epsilon ~ 37 a randomized
response's keep probability rounds to 1 in float64: such a report is in effect not randomized.)
"""

from __future__ import annotations

import dataclasses
from numbers import Integral, Real
from typing import Any

import numpy as np

from dpkit.accountants.validation import check_count, check_probability, check_range
from dpkit.mechanisms import _memory

__all__ = [
    "MAX_EPSILON",
    "check_epsilon",
    "check_domain",
    "check_rng",
    "check_seed",
    "check_chunk_size",
    "check_values",
    "check_report_array",
    "check_bits",
    "check_distinct_rows",
    "check_nonnegative_ints",
    "check_count",
    "check_probability",
    "check_range",
    "set_fields",
    "set_domain_epsilon",
]

MAX_EPSILON = 700.0  # e^700 ~ 1e304: the largest round epsilon whose e^epsilon (times a domain size) stays finite


def check_epsilon(name: str, value) -> float:
    """A privacy parameter in (0, MAX_EPSILON]; NaN, inf, booleans and non-numbers are rejected."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number in (0, {MAX_EPSILON:g}], got {value!r} ({type(value).__name__})")
    v = float(value)
    if not 0 < v <= MAX_EPSILON:  # NaN fails too
        raise ValueError(
            f"{name} must be in (0, {MAX_EPSILON:g}] (e^{name} overflows float64 beyond about 709.78), got {value!r}"
        )
    return v


def check_domain(name: str, value, minimum: int = 2, maximum: int = 2**32) -> int:
    """A domain size: a whole number in [minimum, maximum]."""
    v = check_count(name, value, minimum=minimum)
    if v > maximum:
        raise ValueError(f"{name} must be a whole number in [{minimum}, {maximum}], got {value!r}")
    return v


def check_rng(rng) -> np.random.Generator:
    """The randomness of a client: a ``numpy.random.Generator`` (a seed or a legacy ``RandomState`` is refused)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    return rng


def check_seed(name: str, value) -> int:
    """A seed for ``numpy.random.default_rng`` / ``SeedSequence``: a whole number >= 0."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be a whole number >= 0 (a seed), got {value!r} ({type(value).__name__})")
    if value < 0:
        raise ValueError(f"{name} must be a whole number >= 0 (a seed), got {value!r}")
    return int(value)


def check_chunk_size(name: str, value) -> int | None:
    """Users per chunk: None (the protocol's default) or a whole number >= 1 (0 and negatives are refused)."""
    return None if value is None else check_count(name, value, minimum=1)


def check_values(name: str, values, k: int, ndim: int = 1) -> np.ndarray:
    """Users' values: an integer array of the given ndim with every entry in [0, k). Returns an int64 array.

    An empty input (of any numeric dtype, e.g. ``[]``) is an empty int64 array: no user, no report.
    """
    arr = np.asarray(values)
    if arr.size == 0 and arr.dtype.kind in "iuf" and arr.ndim == ndim:
        return arr.astype(np.int64)
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
    if arr.size == 0 and arr.dtype.kind == "f" and "f" not in kinds and arr.ndim == 1 + len(shape_tail):
        arr = arr.astype(np.int64)  # an empty list: no report
    if arr.dtype.kind not in kinds:
        raise TypeError(f"{name} must be {expected}, got dtype {arr.dtype}")
    tail_ok = arr.ndim == 1 + len(shape_tail) and all(
        t is None or s == t for s, t in zip(arr.shape[1:], shape_tail, strict=False)
    )
    if not tail_ok:
        want = "(n" + "".join(f", {t if t is not None else '*'}" for t in shape_tail) + ")"
        raise ValueError(f"{name} must have shape {want} ({expected}), got shape {arr.shape}")
    return arr


def check_bits(name: str, arr: np.ndarray) -> np.ndarray:
    """Bits: a bool array, or an integer one whose entries are all 0 or 1 (two reductions, no temporary)."""
    if arr.dtype != bool and arr.size:
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi > 1:
            raise ValueError(f"{name} must be bits (0 or 1), got {int(lo if lo < 0 else hi)}")
    return arr


def check_distinct_rows(name: str, arr: np.ndarray, k: int) -> np.ndarray:
    """Every row of the (n, w) array of items in [0, k) lists w distinct items (a subset, not a multiset): the items
    of a chunk of rows are marked in a (rows, k) bool table, whose number of marks must be rows * w."""
    n, w = arr.shape
    if w < 2 or n == 0:
        return arr
    rows = min(n, _memory.chunk_rows(k + 8 * w, _memory.CACHE_BYTES))
    seen, idx = np.empty(rows * k, dtype=bool), np.empty((rows, w), dtype=np.int64)
    offsets = (np.arange(rows, dtype=np.int64) * k)[:, None]
    for s, e in _memory.row_chunks(n, k + 8 * w, _memory.CACHE_BYTES):
        m = e - s
        marks = seen[: m * k]
        marks.fill(False)
        marks[np.add(arr[s:e], offsets[:m], out=idx[:m])] = True
        if np.count_nonzero(marks) != m * w:
            srt = np.sort(arr[s:e], axis=1)
            i = s + int(np.flatnonzero((srt[:, 1:] == srt[:, :-1]).any(axis=1))[0])
            raise ValueError(f"{name}[{i}] must list {w} distinct items (a subset), got {arr[i].tolist()[:10]}")
    return arr


def check_nonnegative_ints(name: str, arr: np.ndarray, what: str) -> np.ndarray:
    """Integers read as uint64 (e.g. hash parameters): a signed array must hold no negative entry. Returns uint64."""
    if arr.dtype != np.uint64:
        if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
            raise ValueError(f"{name} must be non-negative ({what}), got {int(arr.min())}")
        arr = arr.astype(np.uint64)
    return arr


def set_domain_epsilon(obj: Any, field: str = "k", maximum: int = 2**32, **more: object) -> None:
    """The ``__post_init__`` of a (domain, epsilon) protocol: its domain size (the field ``field``: 'k', 'domain')
    in [2, maximum], its ``epsilon`` in the shared range, and ``more`` normalized fields, checked then stored."""
    size = check_domain(field, getattr(obj, field), maximum=maximum)
    set_fields(obj, **{field: size}, epsilon=check_epsilon("epsilon", obj.epsilon), **more)


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
