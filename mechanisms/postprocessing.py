"""Post-processing of frequency estimates: consistency (clip, Norm-Sub, simplex projection) and IBU / EM.

The unbiased estimators of the frequency oracles can be negative and need not sum to 1. Post-processing makes them
consistent (non-negative, summing to 1) at the price of a bias; it reads only the estimate or the aggregated state,
so the privacy guarantee is unchanged (post-processing of an epsilon-LDP output is epsilon-LDP).

* :func:`clip_normalize`: clip at 0 and rescale (multi-freq-ldpy's ``MI``);
* :func:`norm_sub`: Norm-Sub (Wang et al., NDSS'20);
* :func:`project_simplex`: the Euclidean projection onto the simplex (Duchi et al. 2008);
* :func:`ibu`, :func:`ibu_structured`, :func:`em_channel`: iterative Bayesian update (Agrawal-Aggarwal 2001) on a
  channel with p on the diagonal and q elsewhere, on a block-structured channel, or on any channel given as two
  operators;
* :func:`postprocess`: the dispatcher behind ``estimate(state, postprocess=...)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "clip_normalize",
    "norm_sub",
    "ibu",
    "ibu_structured",
    "em_channel",
    "project_simplex",
    "postprocess",
    "check_postprocess",
    "POSTPROCESS",
]

POSTPROCESS = ("clip", "norm-sub", "ibu")


def _finite(name: str, values: ArrayLike, ndim: int | None = 1) -> np.ndarray:
    """A non-empty float array of finite entries (of ``ndim`` dimensions if given)."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be an array of numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if (ndim is not None and arr.ndim != ndim) or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty {ndim}-dimensional array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, found NaN or inf")
    return arr


def clip_normalize(f: ArrayLike) -> np.ndarray:
    """Clip negatives to 0 and rescale to sum 1 (multi-freq-ldpy's ``MI``); unchanged if nothing is positive."""
    g = np.clip(_finite("f", f), 0.0, None)
    s = g.sum()
    return g / s if s > 0 else g


def norm_sub(f: ArrayLike, target: float = 1.0, tol: float = 1e-12, max_iter: int = 10_000) -> np.ndarray:
    """Norm-Sub (Wang et al., NDSS'20): zero the negatives, shift the positives equally until the sum is ``target``.

    If nothing is positive the uniform distribution (scaled to ``target``) is returned (privmdr's guard).
    """
    g = _finite("f", f).copy()
    for _ in range(max_iter):
        g[g < 0] = 0.0
        pos = g > 0
        npos = int(pos.sum())
        if npos == 0:
            return np.full_like(g, target / g.size)
        gap = target - g.sum()
        if abs(gap) <= tol and (g >= 0).all():
            break
        g[pos] += gap / npos
        if (g >= 0).all() and abs(target - g.sum()) <= tol:
            break
    return g


def ibu(obs: ArrayLike, p: float, q: float, n_iter: int = 10_000, tol: float = 1e-12) -> np.ndarray:
    """Iterative Bayesian update (EM) on the channel with ``p`` on the diagonal and ``q`` elsewhere.

    ``obs`` are support counts; columns of the channel and ``obs`` are normalized to sum 1. Exact (the MLE) for
    GRR; a heuristic for UE, SS, LH and HR, as in multi-freq-ldpy.
    """
    obs = _finite("obs", obs)
    for name, x in (("p", p), ("q", q)):
        if not 0 <= x <= 1:  # NaN fails too
            raise ValueError(f"{name} must be a probability in [0, 1], got {x!r}")
    k = obs.size
    tot = obs.sum()
    if tot <= 0:
        return np.full(k, 1.0 / k)
    obs = np.clip(obs, 0, None) / max(np.clip(obs, 0, None).sum(), 1e-300)
    col = p + (k - 1) * q  # column sum of the channel
    pn, qn = p / col, q / col
    f = np.full(k, 1.0 / k)
    for _ in range(n_iter):
        af = qn * f.sum() + (pn - qn) * f  # A f with A = qn * 11^T + (pn - qn) I
        ratio = np.divide(obs, af, out=np.zeros_like(obs), where=af > 0)
        new = f * (qn * ratio.sum() + (pn - qn) * ratio)  # f * A^T ratio
        s = new.sum()
        if s > 0:
            new /= s
        if np.max(np.abs(new - f)) < tol:
            f = new
            break
        f = new
    return f


def em_channel(
    obs: ArrayLike,
    forward: Callable[[np.ndarray], np.ndarray],
    adjoint: Callable[[np.ndarray], np.ndarray],
    k: int,
    n_iter: int = 10_000,
    tol: float = 1e-12,
) -> np.ndarray:
    """IBU / EM (Agrawal-Aggarwal 2001) for a channel given as two operators, vectorized over the aggregated state.

    ``obs``: the observed output distribution (any shape; clipped at 0 and normalized to sum 1);
    ``forward(f)`` = A f, the output distribution predicted by the value distribution ``f`` (length k);
    ``adjoint(w)`` = A^T w, back to length k. The columns of A (one per value) must sum to 1 over the outputs.
    Iterates f <- f * A^T(obs / A f) from the uniform f until max |change| < ``tol`` or ``n_iter`` iterations.
    For a channel that is the exact law of the state this converges to the maximum-likelihood estimate on the
    probability simplex.
    """
    seen = np.clip(_finite("obs", obs, None), 0, None)
    tot = seen.sum()
    if not tot > 0:
        return np.full(k, 1.0 / k)
    obs = seen / tot
    f = np.full(k, 1.0 / k)
    for _ in range(n_iter):
        af = forward(f)
        ratio = np.divide(obs, af, out=np.zeros_like(obs), where=af > 0)
        new = f * adjoint(ratio)
        s = new.sum()
        if s > 0:
            new /= s
        if np.max(np.abs(new - f)) < tol:
            return new
        f = new
    return f


def ibu_structured(
    obs: ArrayLike, base: ArrayLike, diag: ArrayLike, n_iter: int = 10_000, tol: float = 1e-12
) -> np.ndarray:
    """IBU on a channel with m blocks of k outputs each: A[(b, y), u] = base[b, y] + diag[b, y] [y == u].

    ``obs``, ``base`` and ``diag`` broadcast to shape (m, k) (or are length-k vectors, m = 1). Each column of A (one
    per value u) is divided by its sum, so A is a channel (exactly when its columns already sum to 1; otherwise a
    per-value normalization, as :func:`ibu` does for unary encoding). O(m k) per iteration.

    ``ibu(obs, p, q)`` is the case m = 1, base = q, diag = p - q. Other instances: RS+FD's per-attribute channel
    including the fake-data mixture (base = a0, diag = a1 - a0), dBitFlipPM's bucketized channel (two blocks: the
    bits 1 and 0 of each sampled bucket).
    """
    obs = np.atleast_2d(_finite("obs", obs, None))
    base_ = np.broadcast_to(np.atleast_2d(np.asarray(base, dtype=np.float64)), obs.shape)
    diag_ = np.broadcast_to(np.atleast_2d(np.asarray(diag, dtype=np.float64)), obs.shape)
    k = obs.shape[1]
    if (base_ < 0).any() or (base_ + diag_ < 0).any():
        raise ValueError("the channel must have non-negative entries (base >= 0 and base + diag >= 0)")
    cs = base_.sum() + diag_.sum(axis=0)  # column sums
    if not (cs > 0).all():
        raise ValueError("every column of the channel must have a positive sum")

    def forward(f: np.ndarray) -> np.ndarray:
        g = f / cs
        return base_ * g.sum() + diag_ * g

    def adjoint(w: np.ndarray) -> np.ndarray:
        return (np.sum(base_ * w) + np.sum(diag_ * w, axis=0)) / cs

    return em_channel(obs, forward, adjoint, k, n_iter, tol)


def project_simplex(f: ArrayLike) -> np.ndarray:
    """Euclidean projection onto the probability simplex: max(f - theta, 0) with theta so that the sum is 1.

    Exact, O(k log k) (sort-based; Held, Wolfe and Crowder 1974, Duchi et al. 2008). It is the maximum-likelihood
    point of the simplex when the estimate is Gaussian around f with the same variance for every item.
    """
    v = _finite("f", f)
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    idx = np.arange(1, v.size + 1)
    rho = int(np.flatnonzero(u - css / idx > 0)[-1])
    return np.maximum(v - css[rho] / (rho + 1), 0.0)


def check_postprocess(method: str | None) -> str | None:
    """None, 'none', 'clip', 'norm-sub' (or 'norm_sub') or 'ibu'."""
    if method is None or method in ("none", "norm_sub") or method in POSTPROCESS:
        return method
    raise ValueError(f"postprocess must be one of None, {', '.join(repr(m) for m in POSTPROCESS)}, got {method!r}")


def postprocess(
    f: np.ndarray,
    method: str | None,
    *,
    counts: np.ndarray | None = None,
    p: float | None = None,
    q: float | None = None,
) -> np.ndarray:
    """Apply ``method`` (None or 'none': unchanged; 'clip', 'norm-sub' or 'ibu') to the unbiased estimate ``f``.

    'ibu' needs the support ``counts`` and the support probabilities ``p`` (own value) and ``q`` (other values).
    """
    if method is None or method == "none":
        return f
    if method == "clip":
        return clip_normalize(f)
    if method in ("norm-sub", "norm_sub"):
        return norm_sub(f)
    if method == "ibu":
        if counts is None or p is None or q is None:
            raise ValueError("postprocess='ibu' needs a protocol with support probabilities (p*, q*)")
        return ibu(counts, p, q)
    raise ValueError(f"postprocess must be one of None, {', '.join(repr(m) for m in POSTPROCESS)}, got {method!r}")
