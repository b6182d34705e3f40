"""L2 sensitivity of a strategy matrix C under a participation schema (per unit clip norm).

One example contributes a gradient g_i (||g_i|| <= 1) at each step i of one pattern pi of the schema; C G then
moves by sum_{i in pi} C[:, i] g_i^T, whose squared Frobenius norm is sum_{i, j in pi} X[i, j] <g_i, g_j> with the
Gram matrix X = C^T C. The sensitivity is the largest such norm (add/remove neighbours; double it for replace-one).

Exact values, and where they hold:

* single participation: the largest column norm of C;
* X element-wise non-negative on a pattern: sum_{i, j in pi} X[i, j] (all g_i equal; Choquette-Choo et al. 2023,
  arXiv 2211.06530, the reduction from vector to scalar contributions);
* X zero between any two steps of a pattern (e.g. a b_hat-banded C with b_hat <= the separation b, or a dense
  fixed-epoch optimum): sum_{i in pi} X[i, i], maximized over min-separated patterns by the O(n k) dynamic program
  "VecSens" (Choquette-Choo et al. 2023, arXiv 2306.08153, Alg. 3);
* a lower-triangular Toeplitz C with non-negative, non-increasing coefficients: the pattern 0, b, 2b, ...
  (Kalinin & Lampert 2024, arXiv 2405.13763, Thm. 2); see :func:`toeplitz.minsep_sensitivity_squared`.

Elsewhere a sound upper bound: max_pi sum_{i, j in pi} |X[i, j]| (arXiv 2306.08153, Eq. 5), for min-separation
bounded by running the dynamic program on each row of |X| and again on the row maxima (Alg. 4). A
:class:`Sensitivity` says which one it is: ``exact`` is True only when the bound is attained by some pair of
neighbouring datasets (checked by evaluating a lower bound: all-equal or orthogonal contributions on a pattern).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from dpkit.mechanisms.matrix_factorization.participation import (
    FixedEpoch,
    MinSeparation,
    Participation,
    SingleParticipation,
)

__all__ = [
    "Sensitivity",
    "single_participation_sensitivity",
    "max_participation_for_linear_fn",
    "minsep_sensitivity_upper_bound_squared",
    "fixed_epoch_sensitivity_squared",
    "banded_sensitivity",
    "sensitivity_from_gram",
]

_RTOL = 1e-12


@dataclasses.dataclass(frozen=True)
class Sensitivity:
    """L2 sensitivity per unit clip norm; ``exact`` False means a sound upper bound (never an estimate)."""

    value: float
    exact: bool
    method: str

    @property
    def squared(self) -> float:
        return self.value**2

    def to_dict(self) -> dict[str, object]:
        return {"value": self.value, "exact": self.exact, "method": self.method}


def single_participation_sensitivity(C: np.ndarray) -> float:
    """max_j ||C[:, j]||_2 (exact)."""
    return float(np.sqrt(np.max(np.sum(np.asarray(C, dtype=np.float64) ** 2, axis=0))))


def _vecsens_rows(x: np.ndarray, min_sep: int, k: int) -> np.ndarray:
    """VecSens (below) on every row of x at once, keeping only the final value per row: O(rows n k)."""
    n = x.shape[1]
    best = np.zeros((x.shape[0], n + min_sep))
    for _ in range(k):
        take = x + best[:, min_sep : min_sep + n]
        best[:, :n] = np.maximum(np.maximum.accumulate(take[:, ::-1], axis=1)[:, ::-1], 0.0)
    return best[:, 0]


def _vecsens(x: np.ndarray, min_sep: int, k: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The VecSens program on the last axis of x: per round m = 1..k, (take_m, best_m).

    best_m[i] = the best sum over at most m indices >= i with gaps >= min_sep (0 for none);
    take_m[i] = x[i] + best_{m-1}[i + min_sep] (index i taken).
    """
    n = x.shape[-1]
    best = np.zeros(x.shape[:-1] + (n + min_sep,))
    takes, bests = [], []
    for _ in range(k):
        take = x + best[..., min_sep : min_sep + n]
        best = np.zeros_like(best)
        best[..., :n] = np.maximum(np.maximum.accumulate(take[..., ::-1], axis=-1)[..., ::-1], 0.0)
        takes.append(take)
        bests.append(best)
    return takes, bests


def max_participation_for_linear_fn(x, min_sep: int, max_participations: int) -> tuple[float, tuple[int, ...]]:
    """max over index sets pi (gaps >= min_sep, |pi| <= max_participations) of sum_{i in pi} x[i], and a maximizer.

    The dynamic program F[i, m] = max(x[i] + F[i + b, m - 1], F[i + 1, m]) of Choquette-Choo et al. 2023
    (arXiv 2306.08153, Alg. 3 "VecSens"), O(n k) time.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    takes, best = _vecsens(x, min_sep, max_participations)
    value = float(best[-1][0])
    pattern: list[int] = []
    i, m = 0, max_participations
    while m > 0 and i < n:
        if takes[m - 1][i] > 0 and takes[m - 1][i] >= best[m - 1][i + 1]:
            pattern.append(i)
            i += min_sep
            m -= 1
        else:
            i += 1
    return value, tuple(pattern)


def minsep_sensitivity_upper_bound_squared(X: np.ndarray, min_sep: int, max_participations: int) -> float:
    """Sound upper bound on the squared min-separation sensitivity of any C with C^T C = X (arXiv 2306.08153, Alg. 4).

    Row r's best pattern sum of |X[r, :]|, then the best pattern sum of those row maxima: O(n^2 k).
    """
    absx = np.abs(np.asarray(X, dtype=np.float64))
    row_max = _vecsens_rows(absx, min_sep, max_participations)
    value, _ = max_participation_for_linear_fn(row_max, min_sep, max_participations)
    return value


def fixed_epoch_sensitivity_squared(X: np.ndarray, epochs: int) -> tuple[float, float]:
    """(upper, lower) bounds on the squared (k, b) fixed-epoch sensitivity from X = C^T C (n = k b).

    upper = max_i sum_{j, l in pi_i} |X[j, l]| (sound); lower = max_i max(sum X[pi_i, pi_i], trace X[pi_i, pi_i])
    (all-equal and orthogonal contributions). They coincide when every X[pi_i, pi_i] is non-negative or diagonal.
    """
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    b = n // epochs
    idx = np.arange(n).reshape(epochs, b).T  # row i: the pattern pi_i
    blocks = X[idx[:, :, None], idx[:, None, :]]  # (b, k, k)
    upper = float(np.abs(blocks).sum(axis=(1, 2)).max())
    lower = float(max(blocks.sum(axis=(1, 2)).max(), np.trace(blocks, axis1=1, axis2=2).max()))
    return upper, lower


def banded_sensitivity(column_norms_squared: np.ndarray, bands: int, participation: Participation) -> Sensitivity:
    """Exact sensitivity of a ``bands``-banded lower-triangular C when bands <= the schema's separation.

    Two steps of one example are then >= bands apart, so their columns of C have disjoint supports (X[i, j] = 0)
    and the squared sensitivity is max_pi sum_{i in pi} ||C[:, i]||^2 (VecSens on the column norms).
    """
    norms = np.asarray(column_norms_squared, dtype=np.float64)
    n = norms.shape[0]
    sep, k = participation.separation(n), participation.participations(n)
    if bands > sep:
        raise ValueError(
            f"bands={bands} exceeds the separation {sep} of {participation.describe()}: the columns of C for two "
            "participations overlap and the banded formula does not apply (use sensitivity_from_gram for a bound)"
        )
    if isinstance(participation, FixedEpoch):
        value = float(norms.reshape(participation.epochs, -1).sum(axis=0).max())
    else:
        value, _ = max_participation_for_linear_fn(norms, sep, k)
    return Sensitivity(math.sqrt(value), True, f"banded (bands={bands} <= separation {sep}): column norms")


def _is_banded_gram(X: np.ndarray, sep: int) -> bool:
    n = X.shape[0]
    if sep >= n:
        return True
    i, j = np.triu_indices(n, sep)
    return bool(np.all(X[i, j] == 0))


def sensitivity_from_gram(X: np.ndarray, participation: Participation) -> Sensitivity:
    """Sensitivity of any C with C^T C = X: exact where a formula applies, otherwise a sound upper bound."""
    X = np.asarray(X, dtype=np.float64)
    n = participation.check(X.shape[0])
    diag = np.diag(X)
    if isinstance(participation, SingleParticipation) or participation.participations(n) == 1:
        return Sensitivity(math.sqrt(float(diag.max())), True, "single participation: largest column norm")
    if isinstance(participation, FixedEpoch):
        upper, lower = fixed_epoch_sensitivity_squared(X, participation.epochs)
        exact = upper <= lower * (1 + _RTOL)
        how = "exact" if exact else "upper bound"
        return Sensitivity(math.sqrt(upper), exact, f"fixed-epoch: {how} sum |X| over each pattern")
    if not isinstance(participation, MinSeparation):
        raise TypeError(f"participation must be a Participation schema, got {participation!r}")
    sep, k = participation.separation(n), participation.participations(n)
    if _is_banded_gram(X, sep):
        value, _ = max_participation_for_linear_fn(diag, sep, k)
        return Sensitivity(math.sqrt(value), True, f"min-separation: orthogonal columns {sep} apart (VecSens)")
    row_max = _vecsens_rows(np.abs(X), sep, k)
    upper, row_pattern = max_participation_for_linear_fn(row_max, sep, k)  # Alg. 4
    # Lower bounds: all-equal contributions on the patterns the programs pick, orthogonal ones on the diagonal's.
    diag_value, diag_pattern = max_participation_for_linear_fn(diag, sep, k)
    candidates = [diag_pattern, row_pattern, tuple(range(0, n, sep))[:k]]
    lower = diag_value
    for pi in candidates:
        if pi:
            idx = np.asarray(pi)
            lower = max(lower, float(X[np.ix_(idx, idx)].sum()))
    exact = upper <= lower * (1 + _RTOL)
    how = "exact (bound attained)" if exact else "upper bound"
    return Sensitivity(math.sqrt(upper), exact, f"min-separation: {how}, DP over |X| rows (Alg. 4)")
