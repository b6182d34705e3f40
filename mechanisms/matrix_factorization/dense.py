"""Dense strategies: an explicit n x n C, and the optimal one for single or (k, b) fixed-epoch participation.

The optimum (Denisov et al. 2022, arXiv 2202.08312; Choquette-Choo et al. 2023, arXiv 2211.06530) solves, over the
Gram matrix X = C^T C,

    minimize tr(A^T A X^{-1}) / n   s.t.  X > 0,  X[i, j] = 0 for i != j in one pattern,  sum_{i in pi} X[i, i] = 1,

so that every pattern's squared sensitivity is exactly 1 for any signs (columns of one example's steps are
orthogonal). We solve its Lagrange dual, which has one multiplier per pattern for the diagonal and one per pair of
steps in a pattern: with M the (block-structured, positive definite) multiplier matrix, the inner minimum is at
X(M) = A^T (A M A^T)^{-1/2} A and the dual function is 2 tr((A M A^T)^{1/2}) - sum of the diagonal multipliers
(concave; its gradient is the constraint violation of X(M)). M is parameterized per pattern as
mu_c N_c N_c^T with N_c's rows normalized (positive definite by construction), and maximized with scipy's L-BFGS:
b (1 + k^2) variables and one symmetric eigendecomposition per evaluation, instead of a first-order method on the
n^2 / 2 entries of X. The result is projected exactly onto the constraints and C is the reverse Cholesky factor
(lower triangular, C^T C = X). The dual value is a lower bound on the optimal loss, so the gap certifies optimality.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np
from scipy import linalg, optimize

from dpkit.mechanisms.matrix_factorization._checks import check_count, check_square_lower
from dpkit.mechanisms.matrix_factorization._threads import blas_threads
from dpkit.mechanisms.matrix_factorization.participation import FixedEpoch, Participation, SingleParticipation
from dpkit.mechanisms.matrix_factorization.strategy import Strategy, register_kind
from dpkit.mechanisms.matrix_factorization.workload import Workload

__all__ = ["DenseStrategy", "strategy_from_gram", "optimize_dense", "DenseDual"]


@register_kind
@dataclasses.dataclass(frozen=True, eq=False)
class DenseStrategy(Strategy):
    """An explicit lower-triangular, invertible strategy matrix ``C``."""

    C: np.ndarray
    label: str = "dense"
    kind: ClassVar[str] = "dense"

    def __post_init__(self) -> None:
        object.__setattr__(self, "C", check_square_lower("C", self.C))

    @property
    def n(self) -> int:  # type: ignore[override]
        return int(self.C.shape[0])

    def describe(self) -> str:
        return self.label

    def strategy_matrix(self) -> np.ndarray:
        return np.array(self.C)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "C": self.C.tolist(), "label": self.label}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DenseStrategy:
        return cls(np.asarray(data["C"], dtype=np.float64), str(data.get("label", "dense")))


def strategy_from_gram(X: np.ndarray) -> np.ndarray:
    """The lower-triangular C with C^T C = X (reverse Cholesky: C = J chol(J X J)^T J, J the flip)."""
    X = np.asarray(X, dtype=np.float64)
    L = np.linalg.cholesky(X[::-1, ::-1])
    return np.ascontiguousarray(L.T[::-1, ::-1])


class DenseDual:
    """The dual of the dense problem for ``epochs`` = k fixed-epoch patterns of ``n`` = k b steps (k = 1: single).

    Variables x = [log mu (b), G (b x k x k)] (G omitted for k = 1); ``value_and_grad(x)`` returns the negated dual
    value / n and gradient (for minimization), ``violation`` the constraint violation of the last X(M).
    """

    def __init__(self, n: int, epochs: int, workload: Workload) -> None:
        self.n, self.k, self.b = n, epochs, n // epochs
        self.workload = workload
        self.patterns = np.arange(n).reshape(self.k, self.b).T  # (b, k)
        self.violation = math.inf
        self._prefix = workload.is_prefix_sum
        self._A = None if self._prefix else workload.matrix()

    def initial(self) -> np.ndarray:
        """M = mu I with the best scalar mu: mu = (tr((A A^T)^{1/2}) / b)^2."""
        AAt = self._sandwich(np.eye(self.n))
        tr = float(np.sqrt(np.clip(linalg.eigvalsh(AAt), 0, None)).sum())
        mu = np.full(self.b, math.log((tr / self.b) ** 2))
        if self.k == 1:
            return mu
        return np.concatenate([mu, np.tile(np.eye(self.k), (self.b, 1, 1)).ravel()])

    def _sandwich(self, M: np.ndarray) -> np.ndarray:
        if self._prefix:
            return np.cumsum(np.cumsum(M, axis=0), axis=1)
        assert self._A is not None
        return self._A @ M @ self._A.T

    def _blocks(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        mu = np.exp(x[: self.b])
        if self.k == 1:
            ones = np.ones((self.b, 1, 1))
            return mu, ones, ones, ones
        G = x[self.b :].reshape(self.b, self.k, self.k)
        norms = np.linalg.norm(G, axis=2, keepdims=True)
        N = G / norms
        return mu, G, norms, N

    def multiplier(self, x: np.ndarray) -> np.ndarray:
        mu, _, _, N = self._blocks(x)
        blocks = mu[:, None, None] * (N @ N.transpose(0, 2, 1))
        M = np.zeros((self.n, self.n))
        p = self.patterns
        M[p[:, :, None], p[:, None, :]] = blocks
        return M

    def _factor(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(eigenvalues w, V = A^T U diag(w^{-1/4})) of A M A^T = U diag(w) U^T, so X(M) = V V^T."""
        K = self._sandwich(self.multiplier(x))
        w, U = linalg.eigh((K + K.T) / 2, driver="evd", overwrite_a=True, check_finite=False)
        w = np.maximum(w, w[-1] * 1e-15)
        AtU = np.cumsum(U[::-1], axis=0)[::-1] if self._prefix else self.workload.multiply_transpose(U)
        return w, AtU * w**-0.25

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        mu, G, norms, N = self._blocks(x)
        w, V = self._factor(x)
        dual = 2.0 * float(np.sqrt(w).sum()) - float(mu.sum())
        Vb = V[self.patterns]  # (b, k, n)
        Xi = Vb @ Vb.transpose(0, 2, 1)  # X(M) on each pattern
        NNt = N @ N.transpose(0, 2, 1)
        g_mu = (Xi * NNt).sum(axis=(1, 2)) - 1.0
        off = Xi - Xi * np.eye(self.k)
        self.violation = float(max(np.abs(np.trace(Xi, axis1=1, axis2=2) - 1.0).max(), np.abs(off).max()))
        grad = [g_mu * mu]
        if self.k > 1:
            gN = 2.0 * mu[:, None, None] * (Xi @ N)
            grad.append(((gN - N * (gN * N).sum(axis=2, keepdims=True)) / norms).ravel())
        return -dual / self.n, -np.concatenate(grad) / self.n

    def gram(self, x: np.ndarray) -> np.ndarray:
        """X(M) projected onto the constraints: off-diagonals within a pattern zeroed, each pattern's diagonal
        rescaled (symmetrically, so X stays positive definite) to sum to 1."""
        _, V = self._factor(x)
        X = V @ V.T
        X = (X + X.T) / 2
        p = self.patterns
        diag = np.diag(X).copy()
        X[p[:, :, None], p[:, None, :]] = 0.0
        X[np.arange(self.n), np.arange(self.n)] = diag
        scale = np.empty(self.n)
        scale[p] = (1.0 / np.sqrt(diag[p].sum(axis=1)))[:, None]
        return X * scale[:, None] * scale[None, :]


def optimize_dense(
    n: int,
    participation: Participation | None = None,
    *,
    workload: Workload | None = None,
    tol: float = 1e-6,
    max_iterations: int = 1000,
    threads: int | None = 1,
) -> DenseStrategy:
    """The optimal dense strategy (mean error) for single or (k, b) fixed-epoch participation; sensitivity 1.

    Stops when X(M) violates the constraints by at most ``tol`` (or L-BFGS converges). O(n^3) per iteration
    (one eigendecomposition); tens of iterations at n = 1000 (timings: benchmarks/README.md). ``threads``: BLAS threads
    (None: unchanged; more threads help only on an otherwise idle machine).
    """
    participation = SingleParticipation() if participation is None else participation
    if isinstance(participation, SingleParticipation):
        epochs = 1
        n = participation.check(n)
    elif isinstance(participation, FixedEpoch):
        n = participation.check(n)
        epochs = participation.epochs
    else:
        raise ValueError(
            "participation must be SingleParticipation or FixedEpoch for the dense optimum, got "
            f"{participation!r} (for min-separation use a banded or BLT strategy)"
        )
    max_iterations = check_count("max_iterations", max_iterations, minimum=1)
    workload = Workload(n) if workload is None else workload
    if workload.n != n:
        raise ValueError(f"workload.n must equal n={n}, got {workload.n}")
    dual = DenseDual(n, epochs, workload)

    def stop(intermediate_result: optimize.OptimizeResult) -> None:
        if dual.violation <= tol:
            raise StopIteration

    with blas_threads(threads):
        res = optimize.minimize(
            dual.value_and_grad,
            dual.initial(),
            jac=True,
            method="L-BFGS-B",
            callback=stop,
            options={"maxiter": max_iterations, "maxcor": 30, "gtol": 1e-14, "ftol": 1e-15},
        )
        C = strategy_from_gram(dual.gram(res.x))
    label = "dense" if epochs == 1 else f"dense(k={epochs})"
    return DenseStrategy(C, label)
