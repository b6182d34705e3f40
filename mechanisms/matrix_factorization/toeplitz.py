"""Lower-triangular Toeplitz strategies: square root, nu-DP-FTRL, banded Toeplitz (optimized), and their tools.

A Toeplitz C is its first column c (the strategy coefficients); C^{-1} is Toeplitz too (the noising coefficients).
Everything here costs O(n x bands) or O(n log n), never an n x n matrix, for Toeplitz workloads.

* Square-root factorization (Fichtenberger, Henzinger & Upadhyay 2023, arXiv 2202.11205): A = C C for prefix sums,
  c_t = binom(2t, t) / 4^t (generating function (1 - x)^(-1/2)); optimal Toeplitz strategy for max error under
  single participation (Dvijotham et al. 2024, arXiv 2404.16706). Its max error equals its sensitivity^2,
  sum_{t<n} c_t^2 = (ln n + gamma + 4 ln 2) / pi + O(1/n).
* nu-DP-FTRL (Choquette-Choo et al. 2024, "Correlated Noise Provably Beats Independent Noise for Differentially
  Private Learning", arXiv 2310.06771): c_t = (1 - nu)^t binom(2t, t) / 4^t, nu in [0, 1) (nu = 0: square root);
  the noising coefficients are (-1)^t binom(1/2, t) (1 - nu)^t, and sum_t c_t^2 stays bounded as n grows.
* Banded Toeplitz (McKenna 2024, "Scaling up the Banded Matrix Factorization Mechanism", arXiv 2405.15913):
  b_hat free coefficients optimized by L-BFGS with analytic gradients (:func:`optimize_banded_toeplitz`).

Sensitivity: exact for non-negative, non-increasing coefficients under min-separation and fixed-epoch
participation (worst case: participations exactly b apart from step 0; Kalinin & Lampert 2024, arXiv 2405.13763,
Thm. 2), exact for banded C with b_hat <= the separation, a sound upper bound otherwise.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import math
from typing import Any, ClassVar

import numpy as np
from scipy import optimize, signal

from dpkit.mechanisms.matrix_factorization._checks import check_count, check_error, check_steps, check_vector
from dpkit.mechanisms.matrix_factorization._threads import blas_threads
from dpkit.mechanisms.matrix_factorization.participation import Participation, as_min_separation
from dpkit.mechanisms.matrix_factorization.sensitivity import Sensitivity, banded_sensitivity, sensitivity_from_gram
from dpkit.mechanisms.matrix_factorization.strategy import Strategy, register_kind
from dpkit.mechanisms.matrix_factorization.streaming import BandedRecurrence, NoisingRecurrence, RowRecurrence
from dpkit.mechanisms.matrix_factorization.workload import Workload

__all__ = [
    "materialize_lower_triangular",
    "inverse_coef",
    "multiply",
    "square_root_coef",
    "square_root_noising_coef",
    "nu_dp_ftrl_coef",
    "per_query_error",
    "is_nonnegative_nonincreasing",
    "minsep_sensitivity_squared",
    "minsep_sum_squared_and_grad",
    "error_and_grad",
    "toeplitz_workload_coef",
    "ToeplitzLike",
    "ToeplitzStrategy",
    "banded_toeplitz_log_loss",
    "optimize_banded_toeplitz",
]

_MONOTONE_RTOL = 1e-12
_GRAM_LIMIT = 4096  # largest n for which a dense Gram-matrix bound is also tried


def _pad(coef: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n)
    m = min(n, coef.shape[0])
    out[:m] = coef[:m]
    return out


def materialize_lower_triangular(coef, n: int | None = None) -> np.ndarray:
    """The n x n lower-triangular Toeplitz matrix with first column ``coef`` (zero-padded or truncated to n)."""
    coef = np.asarray(coef, dtype=np.float64)
    n = coef.shape[0] if n is None else n
    c = _pad(coef, n)
    idx = np.arange(n)[:, None] - np.arange(n)[None, :]
    return np.where(idx >= 0, c[np.clip(idx, 0, None)], 0.0)


def inverse_coef(coef, n: int | None = None) -> np.ndarray:
    """First column of C^{-1} for the lower-triangular Toeplitz C with first column ``coef`` (O(n x len(coef)))."""
    coef = np.asarray(coef, dtype=np.float64)
    n = coef.shape[0] if n is None else n
    if coef[0] == 0:
        raise ValueError("coef[0] must be nonzero (C must be invertible)")
    impulse = np.zeros(n)
    impulse[0] = 1.0
    return signal.lfilter([1.0], np.trim_zeros(coef[:n], "b"), impulse)


def multiply(lhs, rhs, n: int | None = None) -> np.ndarray:
    """First column of the product of two lower-triangular Toeplitz matrices (truncated convolution)."""
    lhs = np.asarray(lhs, dtype=np.float64)
    rhs = np.asarray(rhs, dtype=np.float64)
    n = max(lhs.shape[0], rhs.shape[0]) if n is None else n
    return _pad(signal.convolve(lhs[:n], rhs[:n]), n)


def square_root_coef(n: int) -> np.ndarray:
    """c_t = binom(2t, t) / 4^t = prod_{j<=t} (2j - 1) / (2j), t < n: C with C C = prefix sums."""
    n = check_steps("n", n)
    j = np.arange(1, n)
    return np.concatenate([[1.0], np.cumprod((2 * j - 1) / (2 * j))])


def square_root_noising_coef(n: int) -> np.ndarray:
    """First column of C^{-1} for the square root: d_t = c_t - c_{t-1} (generating function (1 - x)^(1/2))."""
    c = square_root_coef(n)
    return np.concatenate([[1.0], c[1:] - c[:-1]])


def _check_nu(nu) -> float:
    if isinstance(nu, bool) or not isinstance(nu, (int, float, np.floating)) or not 0 <= float(nu) < 1:
        raise ValueError(f"nu must be in [0, 1), got {nu!r}")
    return float(nu)


def nu_dp_ftrl_coef(n: int, nu: float) -> np.ndarray:
    """c_t = (1 - nu)^t binom(2t, t) / 4^t (nu-DP-FTRL's strategy coefficients), nu in [0, 1)."""
    nu = _check_nu(nu)
    return square_root_coef(n) * (1.0 - nu) ** np.arange(n)


def per_query_error(*, noising_coef, n: int | None = None, workload_coef=None) -> np.ndarray:
    """e_t = sum_{s<=t} b_s^2 where b = A's first column convolved with C^{-1}'s (prefix sums: cumsum)."""
    d = np.asarray(noising_coef, dtype=np.float64)
    n = d.shape[0] if n is None else n
    d = _pad(d, n)
    if workload_coef is None:
        b = np.cumsum(d)
    else:
        b = _pad(signal.convolve(np.asarray(workload_coef, dtype=np.float64)[:n], d), n)
    return np.cumsum(b * b)


def is_nonnegative_nonincreasing(coef, rtol: float = _MONOTONE_RTOL) -> bool:
    """c_t >= 0 and c_{t+1} <= c_t for all t (up to ``rtol`` x c_0 for rounding)."""
    c = np.asarray(coef, dtype=np.float64)
    tol = rtol * abs(c[0])
    return bool(np.all(c >= -tol) and np.all(np.diff(c) <= tol))


def minsep_sum_squared_and_grad(c: np.ndarray, n: int, min_sep: int, k: int) -> tuple[float, np.ndarray]:
    """||v||^2 for v = sum_{m<k} S^{m b} c (participations at 0, b, ..., (k-1) b) and its gradient in c, O(n)."""
    pad = (-n) % min_sep
    blocks = np.concatenate([_pad(c, n), np.zeros(pad)]).reshape(-1, min_sep)
    csum = np.cumsum(blocks, axis=0)
    v = csum.copy()
    v[k:] -= csum[:-k]
    v = v.ravel()[:n]
    gv = np.concatenate([2.0 * v, np.zeros(pad)]).reshape(-1, min_sep)
    rsum = np.cumsum(gv[::-1], axis=0)[::-1]
    g = rsum.copy()
    g[:-k] -= rsum[k:]
    return float(v @ v), g.ravel()[:n]


def error_and_grad(
    noising_coef: np.ndarray, n: int, error: str, workload_coef: np.ndarray | None = None
) -> tuple[float, np.ndarray]:
    """Mean or max (= last) per-query error of a Toeplitz noising matrix and its gradient in ``noising_coef``.

    b = A's first column convolved with d (prefix sums, ``workload_coef=None``: cumsum(d)); e_t = sum_{s<=t} b_s^2,
    so mean_t e_t = sum_t (n - t) b_t^2 / n and max_t e_t = sum_t b_t^2.
    """
    d = noising_coef
    b = np.cumsum(d) if workload_coef is None else signal.convolve(workload_coef, d)[:n]
    if error == "mean":
        weights = (n - np.arange(n)) / n
        err = float(weights @ (b * b))
        gb = 2.0 * weights * b
    else:
        err = float(b @ b)
        gb = 2.0 * b
    gd = np.cumsum(gb[::-1])[::-1] if workload_coef is None else signal.convolve(gb[::-1], workload_coef)[:n][::-1]
    return err, gd


def minsep_sensitivity_squared(strategy_coef, n: int, min_sep: int = 1, max_participations: int | None = None) -> float:
    """Exact squared sensitivity of a Toeplitz C with non-negative, non-increasing coefficients.

    Covers b-min-separation with at most k participations and (k, b) fixed-epoch participation (its patterns include
    the worst one, 0, b, ..., (k-1) b); Kalinin & Lampert 2024 (arXiv 2405.13763), Thm. 2. Raises ValueError for
    other coefficients (the formula does not apply; ``ToeplitzStrategy.sensitivity`` then returns a sound bound).
    """
    c = np.asarray(strategy_coef, dtype=np.float64)
    n = check_steps("n", n)
    min_sep = check_count("min_sep", min_sep, minimum=1)
    if min_sep > n:
        raise ValueError(f"min_sep must be in [1, n={n}], got {min_sep}")
    fit = math.ceil(n / min_sep)
    k = (
        fit
        if max_participations is None
        else min(fit, check_count("max_participations", max_participations, minimum=1))
    )
    if not is_nonnegative_nonincreasing(c[:n]):
        raise ValueError(
            "strategy_coef must be non-negative and non-increasing for the exact Toeplitz sensitivity formula "
            f"(got first violation at index {_first_violation(c[:n])}); use ToeplitzStrategy.sensitivity for a sound "
            "upper bound"
        )
    return minsep_sum_squared_and_grad(np.maximum.accumulate(np.abs(c[:n])[::-1])[::-1], n, min_sep, k)[0]


def _first_violation(c: np.ndarray) -> int:
    bad = np.flatnonzero((c < 0) | (np.concatenate([[False], np.diff(c) > 0])))
    return int(bad[0]) if bad.size else -1


class ToeplitzLike(Strategy):
    """Shared implementation for strategies whose C is lower-triangular Toeplitz."""

    @abc.abstractmethod
    def toeplitz_coef(self) -> np.ndarray:
        """C's first column (length n)."""

    def noising_coef(self) -> np.ndarray:
        """C^{-1}'s first column (length n)."""
        return inverse_coef(self.toeplitz_coef(), self.n)

    def strategy_matrix(self) -> np.ndarray:
        return materialize_lower_triangular(self.toeplitz_coef(), self.n)

    def noising_matrix(self) -> np.ndarray:
        return materialize_lower_triangular(self.noising_coef(), self.n)

    def per_query_error(self, workload: Workload | None = None) -> np.ndarray:
        workload = self._workload(workload)
        w = workload.toeplitz_coef()
        if w is None:
            return super().per_query_error(workload)
        return per_query_error(
            noising_coef=self.noising_coef(), n=self.n, workload_coef=None if workload.is_prefix_sum else w
        )

    def sensitivity(self, participation: Participation | None = None) -> Sensitivity:
        participation = self._participation(participation)
        c = self.toeplitz_coef()
        sep, k = as_min_separation(participation, self.n)
        if is_nonnegative_nonincreasing(c):
            s2 = minsep_sensitivity_squared(c, self.n, sep, k)
            return Sensitivity(math.sqrt(s2), True, "toeplitz, non-negative non-increasing (Kalinin & Lampert 2024)")
        bands = self.bands
        if bands is not None and bands <= sep:
            cum = np.cumsum(c[:bands] ** 2)
            col = cum[np.minimum(bands, self.n - np.arange(self.n)) - 1]  # column j keeps min(bands, n - j) entries
            return banded_sensitivity(col, bands, participation)
        # A sound upper bound: the projection of |c| onto non-increasing sequences dominates |C^T C| entry-wise.
        proj = np.maximum.accumulate(np.abs(c)[::-1])[::-1]
        bound = Sensitivity(
            math.sqrt(minsep_sum_squared_and_grad(proj, self.n, sep, k)[0]),
            False,
            "toeplitz: upper bound via |c| made non-increasing",
        )
        if self.n <= _GRAM_LIMIT:
            C = self.strategy_matrix()
            gram = sensitivity_from_gram(C.T @ C, participation)
            if gram.exact or gram.value < bound.value:
                return gram
        return bound


@register_kind
@dataclasses.dataclass(frozen=True, eq=False)
class ToeplitzStrategy(ToeplitzLike):
    """Lower-triangular Toeplitz C with first column ``coef`` (length <= n, zero-padded): banded if shorter than n."""

    coef: np.ndarray
    n: int
    label: str = "toeplitz"
    kind: ClassVar[str] = "toeplitz"

    def __post_init__(self) -> None:
        n = check_steps("n", self.n)
        coef = check_vector("coef", self.coef)
        if coef.shape[0] > n:
            raise ValueError(f"coef must have at most n={n} entries (bands <= n), got {coef.shape[0]}")
        if coef[0] == 0:
            raise ValueError("coef[0] must be nonzero (C must be invertible)")
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "coef", coef)

    @classmethod
    def square_root(cls, n: int) -> ToeplitzStrategy:
        """The square-root factorization of prefix sums (Fichtenberger et al. 2023)."""
        return cls(square_root_coef(n), n, "sqrt")

    @classmethod
    def nu_dp_ftrl(cls, n: int, nu: float) -> ToeplitzStrategy:
        """nu-DP-FTRL (Choquette-Choo et al. 2024), nu in [0, 1); nu = 0 is the square root."""
        nu = _check_nu(nu)
        return cls(nu_dp_ftrl_coef(n, nu), n, f"nu-dp-ftrl(nu={nu:g})")

    @classmethod
    def banded_square_root(cls, n: int, bands: int) -> ToeplitzStrategy:
        """The square root's first ``bands`` coefficients (Kalinin & Lampert 2024, arXiv 2405.13763)."""
        n = check_steps("n", n)
        bands = _check_bands(bands, n)
        return cls(square_root_coef(bands), n, f"banded-sqrt(bands={bands})")

    @property
    def bands(self) -> int | None:
        nz = np.flatnonzero(self.coef)
        b = int(nz[-1]) + 1
        return b if b < self.n or self.n == 1 else None

    def describe(self) -> str:
        return self.label

    def toeplitz_coef(self) -> np.ndarray:
        return _pad(self.coef, self.n)

    def noising_coef(self) -> np.ndarray:
        return inverse_coef(self.coef, self.n)

    def noising_recurrence(self) -> NoisingRecurrence:
        bands = self.bands
        if bands is not None:
            return BandedRecurrence(self.coef[None, :bands], self.n)
        d = self.noising_coef()
        key = "toeplitz:" + hashlib.sha256(self.coef.tobytes()).hexdigest()
        return RowRecurrence(lambda t: d[t::-1], self.n, key=key)

    @property
    def noise_memory(self) -> int:
        bands = self.bands
        return 0 if bands is None else bands - 1

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "n": self.n, "coef": self.coef.tolist(), "label": self.label}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToeplitzStrategy:
        return cls(np.asarray(data["coef"], dtype=np.float64), int(data["n"]), str(data.get("label", "toeplitz")))


def _check_bands(bands, n: int) -> int:
    bands = check_count("bands", bands, minimum=1)
    if bands > n:
        raise ValueError(f"bands must be in [1, n={n}], got {bands}")
    return bands


def toeplitz_workload_coef(workload: Workload | None, n: int) -> np.ndarray | None:
    """The first column of a Toeplitz workload for the Toeplitz losses (None for prefix sums, the fast path).

    Raises ValueError for a workload of another size or with a learning-rate schedule (not Toeplitz).
    """
    workload = Workload(n) if workload is None else workload
    if workload.n != n:
        raise ValueError(f"workload.n must equal n={n}, got {workload.n}")
    w = workload.toeplitz_coef()
    if w is None:
        raise ValueError("workload must be Toeplitz (a constant learning rate) for a Toeplitz or BLT strategy")
    return None if workload.is_prefix_sum else w


def banded_toeplitz_log_loss(
    tail: np.ndarray, n: int, error: str = "mean", workload_coef: np.ndarray | None = None
) -> tuple[float, np.ndarray]:
    """log(||c||^2 x error(c)) for c = [1, *tail] and its gradient in ``tail`` (single participation loss).

    error(c) is the mean (or max = last) per-query error of B = A C^{-1}; the gradient uses the adjoint of the
    triangular Toeplitz solve: d(error)/dc_j = -sum_t u_t d_{t-j} with d = C^{-1} e_0 and u = C^{-T} d(error)/dd.
    """
    c = np.concatenate([[1.0], np.asarray(tail, dtype=np.float64)])
    impulse = np.zeros(n)
    impulse[0] = 1.0
    d = signal.lfilter([1.0], c, impulse)
    err, gd = error_and_grad(d, n, error, workload_coef)
    u = signal.lfilter([1.0], c, gd[::-1])[::-1]
    gc = -signal.convolve(u[::-1], d)[:n][::-1][: c.shape[0]]
    norm2 = float(c @ c)
    grad = 2.0 * c / norm2 + gc / err
    return math.log(norm2 * err), grad[1:]


def optimize_banded_toeplitz(
    n: int,
    bands: int,
    *,
    error: str = "mean",
    workload: Workload | None = None,
    init=None,
    max_iterations: int = 2000,
    threads: int | None = 1,
) -> ToeplitzStrategy:
    """The ``bands``-banded Toeplitz strategy minimizing the ``error`` ('mean' or 'max') loss, with ||c|| = 1.

    The loss is single-participation, and the same up to the constant k for k participations at least ``bands``
    steps apart (columns then never overlap; Choquette-Choo et al. 2023, arXiv 2306.08153), so the result serves
    every such schema. L-BFGS (scipy) over c_1..c_{bands-1} with c_0 = 1, from the square root's coefficients.
    ``threads``: BLAS threads while optimizing (None: unchanged).
    """
    n = check_steps("n", n)
    bands = _check_bands(bands, n)
    error = check_error("error", error)
    wc = toeplitz_workload_coef(workload, n)
    if bands == 1:
        return ToeplitzStrategy(np.ones(1), n, "banded-toeplitz(bands=1)")
    x0 = square_root_coef(bands) if init is None else check_vector("init", init, length=bands)
    if x0[0] <= 0:
        raise ValueError(f"init[0] must be positive, got {x0[0]!r}")
    x0 = np.asarray(x0[1:] / x0[0])
    with blas_threads(threads):
        res = optimize.minimize(
            banded_toeplitz_log_loss,
            x0,
            args=(n, error, wc),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": max_iterations, "maxcor": 30, "gtol": 1e-12, "ftol": 1e-15},
        )
    c = np.concatenate([[1.0], res.x])
    return ToeplitzStrategy(c / np.linalg.norm(c), n, f"banded-toeplitz(bands={bands}, error={error})")
