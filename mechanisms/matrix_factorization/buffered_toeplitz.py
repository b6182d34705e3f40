"""Buffered linear Toeplitz (BLT) strategies: Toeplitz C whose noise streams from m buffers.

c_0 = 1 and c_t = sum_{i<m} output_scale_i buf_decay_i^(t-1) for t >= 1 (Dvijotham, McMahan, Pillutla, Steinke &
Thakurta 2024, "Efficient and Near-Optimal Noise Generation for Streaming Differential Privacy", arXiv 2404.16706;
McMahan, Pillutla et al. 2024, "A Hassle-free Algorithm for Private Learning in Practice: Don't Use Tree
Aggregation, Use BLTs", arXiv 2408.08868). Its generating function is the rational function
prod_i (1 - theta_hat_i x) / prod_i (1 - theta_i x) (theta = buf_decay), so C^{-1} is the BLT with buffer decays
theta_hat, and the noise (C^{-1} Z)_t needs m buffers of the model's size (:class:`~.streaming.BufferRecurrence`).

Optimization (:func:`optimize_blt`) parameterizes a BLT by its 2m decays interlaced,
1 > theta_1 > theta_hat_1 > theta_2 > ... > theta_hat_m > 0. Then every output_scale is positive and
sum_i output_scale_i = sum_i (theta_i - theta_hat_i) < 1, so the coefficients are positive and decreasing: the
Toeplitz sensitivity formula is exact for every participation schema (min-separation, fixed-epoch), and the loss
sensitivity^2 x error is optimized for the schema with scipy's L-BFGS and analytic gradients (O(n m) per step).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np
from scipy import optimize

from dpkit.mechanisms.matrix_factorization._checks import check_count, check_error, check_steps, check_vector
from dpkit.mechanisms.matrix_factorization._threads import blas_threads
from dpkit.mechanisms.matrix_factorization.participation import Participation, SingleParticipation, as_min_separation
from dpkit.mechanisms.matrix_factorization.strategy import register_kind
from dpkit.mechanisms.matrix_factorization.streaming import BufferRecurrence, NoisingRecurrence
from dpkit.mechanisms.matrix_factorization.toeplitz import (
    ToeplitzLike,
    error_and_grad,
    inverse_coef,
    minsep_sum_squared_and_grad,
    toeplitz_workload_coef,
)
from dpkit.mechanisms.matrix_factorization.workload import Workload

__all__ = ["BufferedToeplitz", "output_scale_from_decays", "blt_log_loss", "optimize_blt"]


def output_scale_from_decays(buf_decay: np.ndarray, inv_buf_decay: np.ndarray) -> np.ndarray:
    """omega_i = prod_k (theta_i - theta_hat_k) / prod_{k != i} (theta_i - theta_k): the BLT with decays theta whose
    inverse has decays theta_hat (partial fractions of prod (1 - theta_hat x) / prod (1 - theta x); arXiv 2404.16706,
    Lemma 5.2)."""
    th = np.asarray(buf_decay, dtype=np.float64)
    thh = np.asarray(inv_buf_decay, dtype=np.float64)
    num = np.prod(th[:, None] - thh[None, :], axis=1)
    diff = th[:, None] - th[None, :]
    np.fill_diagonal(diff, 1.0)
    return num / np.prod(diff, axis=1)


def _coefs(theta: np.ndarray, omega: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Toeplitz coefficients [1, sum_i omega_i theta_i^(t-1)] and the powers matrix P[t, i] = theta_i^t (t < n-1)."""
    powers = theta[None, :] ** np.arange(n - 1)[:, None] if theta.size else np.zeros((n - 1, 0))
    return np.concatenate([[1.0], powers @ omega]), powers


@register_kind
@dataclasses.dataclass(frozen=True, eq=False)
class BufferedToeplitz(ToeplitzLike):
    """BLT strategy over ``n`` steps: ``buf_decay`` theta_i and ``output_scale`` omega_i (m buffers each)."""

    buf_decay: np.ndarray
    output_scale: np.ndarray
    n: int
    kind: ClassVar[str] = "blt"

    def __post_init__(self) -> None:
        n = check_steps("n", self.n)
        th = check_vector("buf_decay", self.buf_decay, min_length=0)
        om = check_vector("output_scale", self.output_scale, length=th.shape[0], min_length=0)
        if np.any(np.abs(th) > 1):
            raise ValueError(f"buf_decay must be in [-1, 1] (a stable buffer), got {th[np.abs(th) > 1][0]!r}")
        order = np.argsort(-th, kind="stable")
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "buf_decay", check_vector("buf_decay", th[order], min_length=0))
        object.__setattr__(self, "output_scale", check_vector("output_scale", om[order], min_length=0))

    @classmethod
    def from_buf_decay_pair(cls, buf_decay, inv_buf_decay, n: int) -> BufferedToeplitz:
        """The BLT whose buffers decay by ``buf_decay`` and whose inverse's decay by ``inv_buf_decay``."""
        th = check_vector("buf_decay", buf_decay, min_length=0)
        thh = check_vector("inv_buf_decay", inv_buf_decay, length=th.shape[0], min_length=0)
        return cls(th, output_scale_from_decays(th, thh), n)

    @property
    def buffers(self) -> int:
        return int(self.buf_decay.shape[0])

    @property
    def noise_memory(self) -> int:
        return self.buffers

    def describe(self) -> str:
        return f"blt(buffers={self.buffers})"

    def toeplitz_coef(self) -> np.ndarray:
        return _coefs(self.buf_decay, self.output_scale, self.n)[0]

    def _inverse_eigenvalues(self) -> np.ndarray:
        vals = np.linalg.eigvals(np.diag(self.buf_decay) - np.outer(self.output_scale, np.ones(self.buffers)))
        return vals[np.argsort(-vals.real)]

    def inverse_buf_decay(self) -> np.ndarray:
        """theta_hat: the eigenvalues of diag(theta) - omega 1^T, the buffer decays of C^{-1}'s BLT (real ones)."""
        if self.buffers == 0:
            return np.zeros(0)
        vals = self._inverse_eigenvalues()
        if np.max(np.abs(vals.imag)) > 1e-12 * max(1.0, float(np.max(np.abs(vals)))):
            raise ValueError(f"C^{{-1}} is not a real BLT: its buffer decays are complex ({vals})")
        return vals.real

    def inverse(self) -> BufferedToeplitz:
        """C^{-1} as a BLT (same n); needs real, distinct inverse decays (true for every optimized BLT)."""
        thh = self.inverse_buf_decay()
        return BufferedToeplitz(thh, output_scale_from_decays(thh, self.buf_decay), self.n)

    def noising_coef(self) -> np.ndarray:
        """C^{-1}'s coefficients: in closed form from the inverse BLT when it is well conditioned, else by
        solving the triangular Toeplitz system (O(n m))."""
        if self.buffers:
            vals = self._inverse_eigenvalues()
            gaps = np.abs(np.diff(np.sort(vals.real)))
            real = np.max(np.abs(vals.imag)) <= 1e-12 * max(1.0, float(np.max(np.abs(vals))))
            if real and (gaps.size == 0 or gaps.min() > 1e-9):
                inv = _coefs(vals.real, output_scale_from_decays(vals.real, self.buf_decay), self.n)[0]
                if np.all(np.isfinite(inv)):
                    return inv
        return inverse_coef(self.toeplitz_coef(), self.n)

    def noising_recurrence(self) -> NoisingRecurrence:
        return BufferRecurrence(self.buf_decay, self.output_scale, self.n)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "n": self.n,
            "buf_decay": self.buf_decay.tolist(),
            "output_scale": self.output_scale.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BufferedToeplitz:
        return cls(
            np.asarray(data["buf_decay"], dtype=np.float64),
            np.asarray(data["output_scale"], dtype=np.float64),
            int(data["n"]),
        )


# ---- optimization ------------------------------------------------------------------------------------------------

_V_BOUNDS = (-30.0, 8.0)  # s_j = exp(-sum_{i<=j} e^{v_i}): 1 - s down to ~1e-13, gaps never collapse in float64


def _decays(v: np.ndarray) -> np.ndarray:
    return np.exp(-np.cumsum(np.exp(v)))


def _omega_jacobians(th: np.ndarray, thh: np.ndarray, om: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d omega_i / d theta_l and d omega_i / d theta_hat_l for omega = output_scale_from_decays(theta, theta_hat)."""
    m = th.shape[0]
    diff = th[:, None] - th[None, :]
    np.fill_diagonal(diff, np.inf)
    dh = th[:, None] - thh[None, :]
    j_th = om[:, None] / diff
    j_th[np.arange(m), np.arange(m)] = om * ((1.0 / dh).sum(axis=1) - (1.0 / diff).sum(axis=1))
    return j_th, -om[:, None] / dh


def _coef_grads(g: np.ndarray, th: np.ndarray, om: np.ndarray, powers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pull dL/dc (length n) back to (dL/domega, dL/dtheta at fixed omega)."""
    g1 = g[1:]
    d_om = powers.T @ g1
    t = np.arange(powers.shape[0], dtype=np.float64)
    dpow = np.zeros_like(powers)
    dpow[1:] = t[1:, None] * powers[:-1]
    return d_om, om * (dpow.T @ g1)


def blt_log_loss(
    v: np.ndarray, n: int, sep: int, k: int, error: str = "mean", workload_coef: np.ndarray | None = None
) -> tuple[float, np.ndarray]:
    """log(sensitivity^2 x error) of the BLT with interlaced decays s = exp(-cumsum(exp(v))) and its gradient in v.

    theta = s[0::2] (C's decays), theta_hat = s[1::2] (C^{-1}'s); sensitivity^2 for participations ``sep`` apart, at
    most ``k`` (exact: the coefficients are positive and decreasing); error = mean or max per-query error.
    """
    s = _decays(np.asarray(v, dtype=np.float64))
    th, thh = s[0::2], s[1::2]
    om, omh = output_scale_from_decays(th, thh), output_scale_from_decays(thh, th)
    c, pw = _coefs(th, om, n)
    d, pwh = _coefs(thh, omh, n)
    s2, gc = minsep_sum_squared_and_grad(c, n, sep, k)
    err, gd = error_and_grad(d, n, error, workload_coef)
    gc /= s2
    gd /= err
    d_om, d_th = _coef_grads(gc, th, om, pw)
    d_omh, d_thh = _coef_grads(gd, thh, omh, pwh)
    j_om_th, j_om_thh = _omega_jacobians(th, thh, om)
    j_omh_thh, j_omh_th = _omega_jacobians(thh, th, omh)
    g_th = d_th + j_om_th.T @ d_om + j_omh_th.T @ d_omh
    g_thh = d_thh + j_om_thh.T @ d_om + j_omh_thh.T @ d_omh
    gs = np.empty_like(s)
    gs[0::2] = g_th
    gs[1::2] = g_thh
    gv = -np.exp(v) * np.cumsum((s * gs)[::-1])[::-1]
    return math.log(s2 * err), gv


def _initial_points(m: int, n: int, previous: np.ndarray | None) -> list[np.ndarray]:
    def from_decays(s: np.ndarray) -> np.ndarray:
        return np.clip(np.log(np.diff(np.concatenate([[0.0], -np.log(s)]))), *_V_BOUNDS)

    points = []
    if previous is not None and previous.size == 2 * (m - 1):
        s = _decays(previous)  # the previous optimum with a fast-decaying buffer pair appended
        points.append(from_decays(np.concatenate([s, [s[-1] * 0.5, s[-1] * 0.25]])))
    for lo, hi in ((2.0, 0.9), (0.5, 0.7)):  # 1 - decays log-spaced in [lo / n, hi]
        one_minus = np.exp(np.linspace(math.log(lo / n), math.log(hi), 2 * m))
        points.append(from_decays(1.0 - one_minus))
    return points


def _fit(m: int, n: int, sep: int, k: int, error: str, wc: np.ndarray | None, previous, max_iterations: int):
    best = None
    for v0 in _initial_points(m, n, previous):
        with np.errstate(all="ignore"):
            res = optimize.minimize(
                blt_log_loss,
                v0,
                args=(n, sep, k, error, wc),
                jac=True,
                method="L-BFGS-B",
                bounds=[_V_BOUNDS] * (2 * m),
                options={"maxiter": max_iterations, "maxcor": 20, "gtol": 1e-10, "ftol": 1e-13},
            )
        if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
            best = res
    return best


def optimize_blt(
    n: int,
    participation: Participation | None = None,
    *,
    error: str = "mean",
    buffers: int | None = None,
    max_buffers: int = 8,
    rtol: float = 1.01,
    workload: Workload | None = None,
    max_iterations: int = 1000,
    threads: int | None = 1,
) -> BufferedToeplitz:
    """The BLT minimizing sensitivity^2 x error (``error`` = 'mean' or 'max') for the participation schema.

    ``buffers=None`` tries 1, 2, ... buffers and keeps adding one while the loss improves by more than a factor
    ``rtol`` (as jax-privacy's ``buffered_toeplitz.optimize``), up to ``max_buffers``; an integer fixes m. Several
    starting points per m (log-spaced decays and the previous m's optimum), L-BFGS-B on the interlaced decays.
    ``threads``: BLAS threads while optimizing (None: unchanged). Under a second at n = 1000 on one core.
    """
    n = check_steps("n", n)
    participation = SingleParticipation() if participation is None else participation
    if not isinstance(participation, Participation):
        raise TypeError(f"participation must be a Participation schema, got {participation!r}")
    participation.check(n)
    error = check_error("error", error)
    max_buffers = check_count("max_buffers", max_buffers, minimum=1)
    if buffers is not None:
        buffers = check_count("buffers", buffers, minimum=0)
    if not rtol >= 1:
        raise ValueError(f"rtol must be in [1, inf), got {rtol!r}")
    wc = toeplitz_workload_coef(workload, n)
    sep, k = as_min_separation(participation, n)
    if n == 1 or buffers == 0:
        return BufferedToeplitz(np.zeros(0), np.zeros(0), n)

    def strategy(v: np.ndarray) -> BufferedToeplitz:
        s = _decays(v)
        return BufferedToeplitz.from_buf_decay_pair(s[0::2], s[1::2], n)

    with blas_threads(threads):
        if buffers is not None:
            return strategy(_fit(buffers, n, sep, k, error, wc, None, max_iterations).x)
        best_v, best_loss, previous = None, math.inf, None
        for m in range(1, max_buffers + 1):
            res = _fit(m, n, sep, k, error, wc, previous, max_iterations)
            if res is None or rtol * math.exp(res.fun) >= best_loss:
                break
            best_v, best_loss, previous = res.x, math.exp(res.fun), res.x
    assert best_v is not None
    return strategy(best_v)
