"""Strategies by name, for the command line and configuration files: ``make_strategy("blt", n, ...)``.

A new family is one builder function plus one :func:`register_strategy` call. Every builder takes ``n``, the
participation schema and the workload, and its own options by keyword.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dpkit.mechanisms.matrix_factorization.banded import optimize_banded
from dpkit.mechanisms.matrix_factorization.buffered_toeplitz import optimize_blt
from dpkit.mechanisms.matrix_factorization.dense import optimize_dense
from dpkit.mechanisms.matrix_factorization.identity import Identity
from dpkit.mechanisms.matrix_factorization.participation import Participation, SingleParticipation
from dpkit.mechanisms.matrix_factorization.strategy import Strategy
from dpkit.mechanisms.matrix_factorization.toeplitz import ToeplitzStrategy, optimize_banded_toeplitz
from dpkit.mechanisms.matrix_factorization.workload import Workload

__all__ = ["register_strategy", "make_strategy", "available_strategies"]

Builder = Callable[..., Strategy]
_BUILDERS: dict[str, Builder] = {}


def register_strategy(name: str, builder: Builder) -> None:
    """Make ``builder(n, participation, workload, **options) -> Strategy`` available as ``name``."""
    if name in _BUILDERS:
        raise ValueError(f"strategy {name!r} is already registered")
    _BUILDERS[name] = builder


def available_strategies() -> list[str]:
    return sorted(_BUILDERS)


def make_strategy(
    name: str,
    n: int,
    *,
    participation: Participation | None = None,
    workload: Workload | None = None,
    **options: Any,
) -> Strategy:
    """Build (optimizing where the family is optimized) the strategy ``name`` for ``n`` steps."""
    builder = _BUILDERS.get(name)
    if builder is None:
        raise ValueError(f"strategy must be one of {available_strategies()}, got {name!r}")
    participation = SingleParticipation() if participation is None else participation
    workload = Workload(n) if workload is None else workload
    return builder(n, participation, workload, **options)


def _dp_sgd(n: int, participation: Participation, workload: Workload) -> Strategy:
    return Identity(n)


def _sqrt(n: int, participation: Participation, workload: Workload) -> Strategy:
    return ToeplitzStrategy.square_root(n)


def _nu(n: int, participation: Participation, workload: Workload, *, nu: float) -> Strategy:
    return ToeplitzStrategy.nu_dp_ftrl(n, nu)


def _banded_toeplitz(
    n: int, participation: Participation, workload: Workload, *, bands: int, error: str = "mean"
) -> Strategy:
    return optimize_banded_toeplitz(n, bands, error=error, workload=workload)


def _banded(
    n: int, participation: Participation, workload: Workload, *, bands: int, max_iterations: int = 200
) -> Strategy:
    return optimize_banded(n, bands, workload=workload, max_iterations=max_iterations)


def _blt(
    n: int,
    participation: Participation,
    workload: Workload,
    *,
    buffers: int | None = None,
    error: str = "mean",
    max_buffers: int = 8,
) -> Strategy:
    return optimize_blt(n, participation, error=error, buffers=buffers, max_buffers=max_buffers, workload=workload)


def _dense(n: int, participation: Participation, workload: Workload) -> Strategy:
    return optimize_dense(n, participation, workload=workload)


register_strategy("dp-sgd", _dp_sgd)
register_strategy("sqrt", _sqrt)
register_strategy("nu-dp-ftrl", _nu)
register_strategy("banded-toeplitz", _banded_toeplitz)
register_strategy("banded", _banded)
register_strategy("blt", _blt)
register_strategy("dense", _dense)
