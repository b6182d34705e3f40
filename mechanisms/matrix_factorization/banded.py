"""Column-normalized banded strategies: any lower-triangular C with b_hat nonzero diagonals, columns of norm 1.

Choquette-Choo, Ganesh, McMahan, Rush, Steinke & Thakurta 2023, "(Amplified) Banded Matrix Factorization: A unified
approach to private training" (arXiv 2306.08153). If one example's steps are at least b_hat apart (b_hat-min-
separation, or fixed-epoch with b >= b_hat) their columns of C never share a row, so with unit columns the squared
sensitivity is exactly the number of participations k, for any signs. With cyclic Poisson sampling the mechanism
is also amplified: it has the privacy of DP-SGD over ceil(n / b_hat) steps (Thm. 4; see
:func:`~dpkit.mechanisms.matrix_factorization.accounting.amplified_banded_event`). b_hat = 1 is DP-SGD.

Parameters: ``params[j, r]`` is C[j + r, j] before its column is normalized (entries past row n - 1 are unused), as
in jax-privacy's ``banded.ColumnNormalizedBanded``. Noise streams in b_hat - 1 vectors (forward substitution).
:func:`optimize_banded` minimizes the mean error with scipy's L-BFGS and analytic gradients, using LAPACK's
triangular band solver (O(n^2 b_hat) per evaluation), starting from the optimal banded Toeplitz strategy.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
from scipy import optimize
from scipy.linalg import lapack

from dpkit.mechanisms.matrix_factorization._checks import check_count, check_steps
from dpkit.mechanisms.matrix_factorization._threads import blas_threads
from dpkit.mechanisms.matrix_factorization.participation import Participation
from dpkit.mechanisms.matrix_factorization.sensitivity import Sensitivity, banded_sensitivity, sensitivity_from_gram
from dpkit.mechanisms.matrix_factorization.strategy import Strategy, register_kind
from dpkit.mechanisms.matrix_factorization.streaming import BandedRecurrence, NoisingRecurrence
from dpkit.mechanisms.matrix_factorization.toeplitz import optimize_banded_toeplitz, square_root_coef
from dpkit.mechanisms.matrix_factorization.workload import Workload

__all__ = ["ColumnNormalizedBanded", "banded_mean_loss", "optimize_banded"]


def _valid_mask(n: int, bands: int) -> np.ndarray:
    return (np.arange(n)[:, None] + np.arange(bands)[None, :]) < n


def _normalized(params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(column entries divided by their norms, the norms)."""
    norms = np.linalg.norm(params, axis=1)
    return params / norms[:, None], norms


@register_kind
@dataclasses.dataclass(frozen=True, eq=False)
class ColumnNormalizedBanded(Strategy):
    """C[j + r, j] = params[j, r] / ||params[j, :]|| for 0 <= r < bands (each column has unit norm)."""

    params: np.ndarray
    label: str = ""
    kind: ClassVar[str] = "column-normalized-banded"

    def __post_init__(self) -> None:
        p = np.array(self.params, dtype=np.float64)
        if p.ndim != 2 or p.shape[0] < 1 or not 1 <= p.shape[1] <= p.shape[0]:
            raise ValueError(f"params must have shape (n, bands) with 1 <= bands <= n, got {p.shape}")
        if not np.all(np.isfinite(p)):
            raise ValueError("params must be finite")
        p = np.where(_valid_mask(*p.shape), p, 0.0)
        if np.any(p[:, 0] == 0):
            raise ValueError(
                f"params[:, 0] (the diagonal of C) must be nonzero, got 0 in column {np.flatnonzero(p[:, 0] == 0)[0]}"
            )
        p.setflags(write=False)
        object.__setattr__(self, "params", p)

    @classmethod
    def from_banded_toeplitz(cls, n: int, coef) -> ColumnNormalizedBanded:
        """The banded Toeplitz matrix with first column ``coef`` (bands = len(coef)), columns normalized."""
        n = check_steps("n", n)
        coef = np.asarray(coef, dtype=np.float64)
        if not 1 <= coef.shape[0] <= n:
            raise ValueError(f"coef must have between 1 and n={n} entries (bands), got {coef.shape[0]}")
        return cls(np.tile(coef, (n, 1)))

    @classmethod
    def default(cls, n: int, bands: int) -> ColumnNormalizedBanded:
        """The square root's first ``bands`` coefficients, columns normalized."""
        return cls.from_banded_toeplitz(n, square_root_coef(check_count("bands", bands, minimum=1)))

    @property
    def n(self) -> int:  # type: ignore[override]
        return int(self.params.shape[0])

    @property
    def bands(self) -> int | None:
        return int(self.params.shape[1])

    @property
    def noise_memory(self) -> int:
        return int(self.params.shape[1]) - 1

    def describe(self) -> str:
        return self.label or f"banded(bands={self.bands})"

    def column_entries(self) -> np.ndarray:
        """(n, bands): entry [j, r] = C[j + r, j] after normalization."""
        return _normalized(self.params)[0]

    def strategy_matrix(self) -> np.ndarray:
        n, b = self.params.shape
        cols = self.column_entries()
        C = np.zeros((n, n))
        j, r = np.nonzero(_valid_mask(n, b))
        C[j + r, j] = cols[j, r]
        return C

    def noising_matrix(self) -> np.ndarray:
        return _band_solve(self.column_entries(), np.eye(self.n))

    def per_query_error(self, workload: Workload | None = None) -> np.ndarray:
        workload = self._workload(workload)
        B = workload.multiply(self.noising_matrix())
        return np.einsum("ij,ij->i", B, B)

    def sensitivity(self, participation: Participation | None = None) -> Sensitivity:
        participation = self._participation(participation)
        bands = self.params.shape[1]
        if bands <= participation.separation(self.n):
            return banded_sensitivity(np.ones(self.n), bands, participation)
        C = self.strategy_matrix()
        return sensitivity_from_gram(C.T @ C, participation)

    def noising_recurrence(self) -> NoisingRecurrence:
        n, b = self.params.shape
        cols = self.column_entries()
        rows = np.zeros((n, b))
        for r in range(b):
            rows[r:, r] = cols[: n - r, r]  # rows[t, r] = C[t, t - r]
        return BandedRecurrence(rows, n)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": self.params.tolist(), "label": self.label}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnNormalizedBanded:
        return cls(np.asarray(data["params"], dtype=np.float64), str(data.get("label", "")))


def _band_solve(cols: np.ndarray, rhs: np.ndarray, transpose: bool = False) -> np.ndarray:
    """C^{-1} rhs (or C^{-T} rhs) for the banded lower-triangular C given by its column entries (LAPACK dtbtrs)."""
    ab = np.ascontiguousarray(cols.T)  # LAPACK lower band storage: ab[r, j] = C[j + r, j]
    x, info = lapack.dtbtrs(ab, rhs, uplo="L", trans="T" if transpose else "N")
    if info != 0:
        raise np.linalg.LinAlgError(f"banded triangular solve failed (LAPACK info={info})")
    return x


def banded_mean_loss(params: np.ndarray, workload: Workload) -> tuple[float, np.ndarray]:
    """Mean error ||A C^{-1}||_F^2 / n of the column-normalized banded C and its gradient in ``params``.

    dL/dC = -(2/n) B^T B C^{-T} with B = A C^{-1}, evaluated on the band only (O(n^2 b_hat)), then through the
    column normalization.
    """
    n, bands = params.shape
    cols, norms = _normalized(params)
    Y = _band_solve(cols, np.eye(n))
    B = workload.multiply(Y)
    loss = float(np.einsum("ij,ij->", B, B)) / n
    Bt = np.ascontiguousarray(B.T)
    Z = _band_solve(cols, Bt)  # C^{-1} B^T
    g = np.zeros((n, bands))
    for j in range(n):  # g[j, r] = (B^T B C^{-T})[j + r, j]; B is lower triangular, so only t >= j contributes
        end = min(n, j + bands)
        g[j, : end - j] = Bt[j:end, j:] @ Z[j, j:]
    g *= -2.0 / n
    g = (g - cols * np.sum(g * cols, axis=1, keepdims=True)) / norms[:, None]
    return loss, np.where(_valid_mask(n, bands), g, 0.0)


def optimize_banded(
    n: int,
    bands: int,
    *,
    workload: Workload | None = None,
    init: ColumnNormalizedBanded | None = None,
    max_iterations: int = 200,
    threads: int | None = 1,
) -> ColumnNormalizedBanded:
    """The column-normalized ``bands``-banded strategy minimizing the mean error (L-BFGS, analytic gradients).

    Starts from the optimal banded Toeplitz strategy (for Toeplitz workloads) or the truncated square root.
    ``threads``: BLAS threads while optimizing (None: unchanged).
    """
    n = check_steps("n", n)
    bands = check_count("bands", bands, minimum=1)
    if bands > n:
        raise ValueError(f"bands must be in [1, n={n}], got {bands}")
    workload = Workload(n) if workload is None else workload
    if workload.n != n:
        raise ValueError(f"workload.n must equal n={n}, got {workload.n}")
    if init is None:
        if workload.toeplitz_coef() is not None:
            init = ColumnNormalizedBanded.from_banded_toeplitz(
                n, optimize_banded_toeplitz(n, bands, workload=workload, threads=threads).coef
            )
        else:
            init = ColumnNormalizedBanded.default(n, bands)
    if init.params.shape != (n, bands):
        raise ValueError(f"init must have params of shape ({n}, {bands}), got {init.params.shape}")
    if bands == 1:
        return ColumnNormalizedBanded(np.ones((n, 1)), "banded(bands=1)")
    mask = _valid_mask(n, bands)
    x0 = _normalized(init.params)[0][mask]

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        p = np.zeros((n, bands))
        p[mask] = x
        loss, g = banded_mean_loss(p, workload)
        return loss, g[mask]

    with blas_threads(threads):
        res = optimize.minimize(
            fun,
            x0,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": max_iterations, "maxcor": 20, "gtol": 1e-10, "ftol": 1e-13},
        )
    p = np.zeros((n, bands))
    p[mask] = res.x
    return ColumnNormalizedBanded(_normalized(p)[0], f"banded(bands={bands})")
