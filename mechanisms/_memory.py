"""Memory bounds of the LDP clients and servers: chunks of rows, and a clear error when an output cannot fit.

A client's ``perturb`` returns one report row per user, so its output grows with n; everything else it allocates
(random keys, masks, indices) is computed in chunks of rows of about :data:`CHUNK_BYTES` bytes of temporaries,
through :func:`row_chunks` (the hook the tests observe). Where the output itself (e.g. n x k bits of unary encoding
for a large k) is larger than the memory available, :func:`allocate` raises :class:`ReportsTooLarge` naming n, k
and the bytes needed, and points to ``perturb_aggregate``, which never holds the reports of all users.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

__all__ = [
    "CHUNK_BYTES",
    "CACHE_BYTES",
    "ReportsTooLarge",
    "chunk_rows",
    "row_chunks",
    "available_memory",
    "check_fits",
    "allocate",
    "perturb_aggregate_hint",
]

CHUNK_BYTES = 64 << 20  # temporaries per chunk of rows
CACHE_BYTES = 2 << 20  # chunks of a pass that reuses its buffers (faster while they stay in cache)
_HEADROOM = 64 << 20  # what the client needs beside its output (chunk temporaries, the values)


class ReportsTooLarge(MemoryError):
    """The reports of a client call do not fit in the memory available (one line: n, k, bytes, what to use)."""


def chunk_rows(row_bytes: int, budget: int | None = None) -> int:
    """Rows per chunk: temporaries of ``row_bytes`` bytes per row, about ``budget`` (default CHUNK_BYTES) bytes per
    chunk, at least one row."""
    return max(1, (CHUNK_BYTES if budget is None else budget) // max(int(row_bytes), 1))


def row_chunks(n: int, row_bytes: int, budget: int | None = None) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive chunks of the rows [0, n), each of ``chunk_rows(row_bytes, budget)`` rows or
    fewer."""
    size = chunk_rows(row_bytes, budget)
    for start in range(0, n, size):
        yield start, min(n, start + size)


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.3g} GB"


def _nbytes(shape: tuple[int, ...], dtype) -> int:
    need = np.dtype(dtype).itemsize
    for size in shape:
        need *= int(size)
    return need


def _too_large(what: str, shape: tuple[int, ...], dtype, reason: str, hint: str) -> ReportsTooLarge:
    n = int(shape[0]) if shape else 1
    cols = " x ".join(str(int(s)) for s in shape[1:]) or "1"
    return ReportsTooLarge(
        f"{what}: the reports of n={n} users are an array of {n} x {cols} {np.dtype(dtype).name} "
        f"({_gb(_nbytes(shape, dtype))}), {reason}; {hint or 'perturb fewer users at a time'}"
    )


def check_fits(what: str, shape: tuple[int, ...], dtype, hint: str = "") -> None:
    """Raise :class:`ReportsTooLarge` if an output of ``shape`` and ``dtype`` (plus a chunk's temporaries) is
    larger than the memory available. Checked before the work: on Linux a too large allocation can succeed and the
    process be killed later, when the pages are touched."""
    avail = available_memory()
    if avail is not None and _nbytes(shape, dtype) + _HEADROOM > avail:
        raise _too_large(what, shape, dtype, f"more than the {_gb(avail)} of memory available", hint)


def allocate(what: str, shape: tuple[int, ...], dtype, hint: str = "") -> np.ndarray:
    """``np.empty(shape, dtype)`` for the output of ``what`` (e.g. 'OUE(k=1000).perturb'), after
    :func:`check_fits`; an allocation that fails anyway raises :class:`ReportsTooLarge` too."""
    check_fits(what, shape, dtype, hint)
    try:
        return np.empty(shape, dtype=dtype)
    except MemoryError:
        raise _too_large(what, shape, dtype, "which could not be allocated", hint) from None


def perturb_aggregate_hint(name: str) -> str:
    """The advice of a too large client output."""
    return (
        f"{name}.perturb_aggregate(values, rng) gives the server state without holding the reports, "
        "or perturb fewer users at a time"
    )
