"""BLAS threads for the optimizers.

Their linear algebra is either tiny (n x buffers, n x bands) or one n x n eigendecomposition per step; multi-
threaded BLAS gains little there and, on a CPU shared with other work, loses badly (several times slower with two
OpenBLAS threads than with one on a busy two-core machine: see benchmarks/README.md). So the optimizers run BLAS
single-threaded unless asked otherwise."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from threadpoolctl import threadpool_limits

from dpkit.mechanisms.matrix_factorization._checks import check_count

__all__ = ["blas_threads"]


@contextlib.contextmanager
def blas_threads(threads: int | None) -> Iterator[None]:
    """Limit BLAS to ``threads`` threads inside the block (None: leave the current setting)."""
    if threads is None:
        yield
        return
    with threadpool_limits(limits=check_count("threads", threads, minimum=1), user_api="blas"):
        yield
