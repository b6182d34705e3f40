"""Renyi differential privacy (RDP) of basic mechanisms, and RDP -> (epsilon, delta) conversion.

Pure, vectorized numpy/scipy functions; every function takes an array of Renyi orders ``alpha > 1`` and
returns one RDP value per order (``D_alpha`` of the worst pair of neighbouring output distributions, in nats).
The accountant built on them is :class:`dpkit.accountants.rdp.RDPAccountant`.

References:

* [M17] I. Mironov. Renyi Differential Privacy. CSF 2017 (arXiv:1702.07476).
* [MTZ19] I. Mironov, K. Talwar, L. Zhang. Renyi Differential Privacy of the Sampled Gaussian Mechanism.
  arXiv:1908.10530, 2019.
* [WBK19] Y.-X. Wang, B. Balle, S. Kasiviswanathan. Subsampled Renyi Differential Privacy and Analytical
  Moments Accountant. AISTATS 2019 (arXiv:1808.00087).
* [BBGHS20] B. Balle, G. Barthe, M. Gaboardi, J. Hsu, T. Sato. Hypothesis Testing Interpretations and Renyi
  Differential Privacy. AISTATS 2020 (arXiv:1905.09982), Theorem 21.
* [CKS20] C. Canonne, G. Kamath, T. Steinke. The Discrete Gaussian for Differential Privacy. NeurIPS 2020
  (arXiv:2004.00010), Proposition 12.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.special import erfcx, gammaln, log_ndtr, logsumexp

from dpkit.accountants._typing import FloatArray, IntArray
from dpkit.accountants.validation import (
    check_count,
    check_delta,
    check_nonnegative,
    check_positive,
    check_probability,
)

__all__ = [
    "DEFAULT_ORDERS",
    "check_orders",
    "rdp_gaussian",
    "rdp_poisson_gaussian",
    "rdp_laplace",
    "rdp_discrete",
    "randomized_response_pair",
    "randomized_response_log_pair",
    "randomized_response_outcome_classes",
    "log_mixture_epsilon",
    "rdp_sampled_without_replacement_gaussian",
    "rdp_to_epsilon",
    "rdp_to_delta",
]

#: Default Renyi orders: 1.1, 1.2, ..., 10.9, then 11, ..., 63, then 64 ... 1024. A superset of the grids of
#: Opacus (1.1..10.9, 12..63) and dp_accounting (1.1..10.9, 11..63, 128, 256, 512, 1024).
DEFAULT_ORDERS: FloatArray = np.array(
    [1 + x / 10.0 for x in range(1, 100)]
    + [float(x) for x in range(11, 64)]
    + [64.0, 80.0, 96.0, 128.0, 160.0, 192.0, 256.0, 384.0, 512.0, 768.0, 1024.0]
)
DEFAULT_ORDERS.flags.writeable = False

#: Series for fractional orders: stop once the last term is below this fraction of the partial sum.
_SERIES_RTOL = 1e-16
#: ... evaluated this many terms at a time (the first block is smaller: most cases converge in it).
_FIRST_CHUNK = 256
_CHUNK = 4096
#: ... and give up (raise) after this many terms.
_MAX_TERMS = 10_000_000
#: Integer orders: binomial sums are evaluated in blocks of this many terms.
_INT_CHUNK = 4096


# --------------------------------------------------------------------------------------------- validation
def check_orders(name: str, orders: npt.ArrayLike) -> FloatArray:
    """Renyi orders ``name`` as a 1-D float array; each must be a finite number > 1."""
    if isinstance(orders, str | bytes):
        raise TypeError(f"{name} must be a sequence of real numbers > 1, got {orders!r}")
    try:
        arr = np.asarray(orders, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of real numbers > 1, got {orders!r}") from None
    arr = np.atleast_1d(arr)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of real numbers > 1, got {orders!r}")
    bad = ~(np.isfinite(arr) & (arr > 1))
    if bad.any():
        raise ValueError(
            f"{name} must be finite real numbers in (1, inf), got {float(arr[bad][0])!r} at index "
            f"{int(np.flatnonzero(bad)[0])}"
        )
    return arr


def _check_rdp(name: str, rdp: npt.ArrayLike, orders: FloatArray) -> FloatArray:
    try:
        arr = np.atleast_1d(np.asarray(rdp, dtype=float))
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of real numbers in [0, inf], got {rdp!r}") from None
    if arr.shape != orders.shape:
        raise ValueError(f"{name} must have one value per order ({orders.size}), got shape {arr.shape}")
    bad = np.isnan(arr) | (arr < 0)
    if bad.any():
        raise ValueError(
            f"{name} must be in [0, inf], got {float(arr[bad][0])!r} at index {int(np.flatnonzero(bad)[0])}"
        )
    return arr


def _check_distribution(name: str, dist: npt.ArrayLike) -> FloatArray:
    try:
        arr = np.asarray(dist, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a 1-D array of probabilities, got {dist!r}") from None
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of probabilities, got {dist!r}")
    bad = ~(np.isfinite(arr) & (arr >= 0))
    if bad.any():
        raise ValueError(
            f"{name} must have entries in [0, 1], got {float(arr[bad][0])!r} at index {int(np.flatnonzero(bad)[0])}"
        )
    total = math.fsum(arr.tolist())
    if abs(total - 1.0) > 1e-9:
        raise ValueError(f"{name} must sum to 1 (within 1e-9), got sum {total!r}")
    return arr


# --------------------------------------------------------------------------------------------- Gaussian
def rdp_gaussian(noise_multiplier: float, orders: npt.ArrayLike = DEFAULT_ORDERS) -> FloatArray:
    """RDP of the Gaussian mechanism, noise std ``noise_multiplier`` x L2 sensitivity: alpha / (2 sigma^2).

    [M17], Proposition 7. Symmetric, so it holds in both directions of any neighbouring relation.
    """
    sigma = check_positive("noise_multiplier", noise_multiplier)
    orders = check_orders("orders", orders)
    return orders / (2.0 * sigma * sigma)


def _log_expm1(x: FloatArray | float) -> FloatArray:
    """``log(exp(x) - 1)`` for x > 0, without overflow."""
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore"):
        return np.where(x > 1.0, x + np.log1p(-np.exp(-np.maximum(x, 1.0))), np.log(np.expm1(np.minimum(x, 1.0))))


def _log_half_erfcx(x: FloatArray) -> FloatArray:
    """``log(0.5 * erfcx(x)) = x^2 + log(0.5 * erfc(x))``, finite for all real x."""
    x = np.asarray(x, dtype=float)
    safe = x > -25.0  # erfcx(-25) ~ 2 e^625 is still representable
    with np.errstate(over="ignore", divide="ignore"):
        direct = np.log(0.5 * erfcx(np.where(safe, x, 0.0)))
        far = x * x + log_ndtr(-math.sqrt(2.0) * np.where(safe, -30.0, x))
    out: FloatArray = np.where(safe, direct, far)
    return out


def _log_a_minus_1_integer(q: float, sigma: float, alphas: FloatArray) -> FloatArray:
    """``log(A_alpha - 1)`` for integer orders (array), via the finite binomial expansion.

    A_alpha = sum_{k=0}^{alpha} C(alpha,k) (1-q)^(alpha-k) q^k exp((k^2-k)/(2 sigma^2)). Since the
    binomial weights sum to one and the k = 0, 1 exponents vanish,
    A_alpha - 1 = sum_{k>=2} C(alpha,k) (1-q)^(alpha-k) q^k (exp((k^2-k)/(2 sigma^2)) - 1),
    a sum of positive terms (no cancellation, accurate even when A_alpha ~ 1).
    """
    a = alphas[:, None]
    log_q, log_1mq = math.log(q), math.log1p(-q)
    kmax = int(alphas.max())
    acc = np.full(alphas.shape, -np.inf)
    for start in range(2, kmax + 1, _INT_CHUNK):
        k = np.arange(start, min(start + _INT_CHUNK, kmax + 1), dtype=float)[None, :]
        valid = k <= a
        with np.errstate(invalid="ignore", divide="ignore"):
            kk = np.where(valid, k, 0.0)
            log_terms = (
                gammaln(a + 1)
                - gammaln(kk + 1)
                - gammaln(a - kk + 1)
                + (a - kk) * log_1mq
                + kk * log_q
                + _log_expm1(np.maximum(kk * kk - kk, 2.0) / (2.0 * sigma * sigma))
            )
        log_terms = np.where(valid, log_terms, -np.inf)
        acc = np.logaddexp(acc, logsumexp(log_terms, axis=1))
    return acc


def _log_abs_binom_sign(a: FloatArray, i: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``log|C(a, i)|`` and the sign of the generalized binomial coefficient C(a, i) = a (a-1)...(a-i+1) / i!.

    ``a`` has shape (n, 1) (orders), ``i`` shape (1, m) (non-negative integers). For integer a and i > a the
    coefficient is 0 (log -inf). Otherwise the number of negative factors a - k (k < i) is
    max(0, i - 1 - floor(a)). For i > a, |C(a, i)| = Gamma(i - a) / (|Gamma(-a)| Gamma(i + 1)) (reflection),
    which is better conditioned for large i.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        above = i > a
        log_abs = np.where(
            above,
            gammaln(np.where(above, i - a, 1.0)) - gammaln(-a) - gammaln(i + 1),
            gammaln(a + 1) - gammaln(i + 1) - gammaln(np.where(above, 1.0, a - i + 1)),
        )
    integer = (a == np.floor(a)) & above
    log_abs = np.where(integer, -np.inf, log_abs)
    negatives = np.maximum(0.0, i - 1 - np.floor(a))
    sign = np.where(np.mod(negatives, 2) == 0, 1.0, -1.0)
    return log_abs, sign


def _log_a_series(q: float, sigma: float, alphas: FloatArray) -> FloatArray:
    """``log A_alpha`` for orders alpha > 1 (used for fractional ones) via two convergent series; upper bound.

    Write mu0 = N(0, s^2), mu1 = N(1, s^2), s = sigma, so that
    A_alpha = int ((1-q) mu0 + q mu1)^alpha mu0^(1-alpha) dz.
    Split the line at z0 = s^2 log(1/q - 1) + 1/2, where (1-q) mu0(z0) = q mu1(z0).

    * z <= z0: q mu1 <= (1-q) mu0, so the generalized binomial series
      ((1-q) mu0 + q mu1)^alpha = sum_i C(alpha,i) ((1-q) mu0)^(alpha-i) (q mu1)^i converges; with
      int_{z<=z0} mu0^(1-i) mu1^i = exp((i^2-i)/(2 s^2)) Phi((z0 - i)/s) the i-th term is
      t1_i = C(alpha,i) (1-q)^(alpha-i) q^i exp((i^2-i)/(2s^2)) * 0.5 erfc((i - z0)/(sqrt(2) s)).
    * z > z0: expand around q mu1 instead: with j = alpha - i,
      t2_i = C(alpha,i) q^j (1-q)^i exp((j^2-j)/(2s^2)) * 0.5 erfc((z0 - j)/(sqrt(2) s)).

    Since (2 z0 - 1) / (2 s^2) = log((1-q)/q), both terms equal exactly
    |t_i| = |C(alpha,i)| (1-q)^alpha exp(-z0^2/(2 s^2)) * 0.5 erfcx(x), x = (i - z0)/(sqrt(2) s) resp.
    (z0 - j)/(sqrt(2) s). Where the erfc argument is positive this erfcx form is used (no exp(+big) *
    erfc(big)); elsewhere (Phi >= 1/2, where the bulk of the sum lives) the direct form, which has no
    cancellation.

    For i > alpha the sign of C(alpha,i) alternates while |C(alpha,i)| (ratio (i-alpha)/(i+1)) and erfcx(x)
    (x increases with i) both decrease, so each series is alternating with decreasing terms from there on
    and its remainder is at most its first omitted term. Terms are summed in chunks (all orders at once,
    signed log-sum-exp) until, past i > alpha, the last term is below 1e-16 times the partial sum for every
    order; then the first omitted terms are ADDED, so the result is an upper bound on A_alpha (up to
    floating-point rounding, ~1e-16 relative in A_alpha). Raises RuntimeError if some order has not
    converged after 10^7 terms (never returns a silently truncated or infinite value).
    """
    alphas = np.asarray(alphas, dtype=float)
    s = float(sigma)
    z0 = s * s * math.log(1.0 / q - 1.0) + 0.5
    root2s = math.sqrt(2.0) * s
    base_all = alphas * math.log1p(-q) - z0 * z0 / (2.0 * s * s)
    log_tol = math.log(_SERIES_RTOL)

    log_q, log_1mq = math.log(q), math.log1p(-q)

    def log_pair_terms(idx_alpha: IntArray, i: FloatArray) -> tuple[FloatArray, FloatArray]:
        """log|t1_i + t2_i| and sign(C(alpha, i)) for orders ``alphas[idx_alpha]`` and term indices ``i``."""
        a = alphas[idx_alpha][:, None]
        log_c, sign = _log_abs_binom_sign(a, i)
        base = base_all[idx_alpha][:, None]
        j = a - i
        # Where Phi(.) >= 1/2 the direct form has no cancellation (the terms that carry the sum live there);
        # elsewhere the erfcx form avoids exp(+big) * erfc(big).
        near1 = i <= z0
        with np.errstate(invalid="ignore", over="ignore"):
            direct1 = (a - i) * log_1mq + i * log_q + (i * i - i) / (2 * s * s) + log_ndtr((z0 - i) / s)
            far1 = base + _log_half_erfcx(np.maximum((i - z0) / root2s, 0.0))
            near2 = j >= z0
            direct2 = j * log_q + i * log_1mq + (j * j - j) / (2 * s * s) + log_ndtr((j - z0) / s)
            far2 = base + _log_half_erfcx(np.maximum((z0 - j) / root2s, 0.0))
        both = np.logaddexp(np.where(near1, direct1, far1), np.where(near2, direct2, far2))
        return log_c + both, sign

    result = np.empty_like(alphas)
    log_s = np.full(alphas.shape, -np.inf)
    sign_s = np.zeros(alphas.shape)
    active = np.arange(alphas.size)
    start = 0
    chunk = _FIRST_CHUNK
    while active.size:
        if start >= _MAX_TERMS:
            bad = float(alphas[active[0]])
            raise RuntimeError(
                f"RDP series of the Poisson-subsampled Gaussian did not converge after {_MAX_TERMS} "
                f"terms for q={q!r}, sigma={sigma!r}, order={bad!r}"
            )
        chunk = min(chunk, _MAX_TERMS - start)
        i = np.arange(start, start + chunk, dtype=float)[None, :]
        log_t, sign = log_pair_terms(active, i)
        stacked = np.concatenate([log_s[active][:, None], log_t], axis=1)
        signs = np.concatenate([sign_s[active][:, None], np.broadcast_to(sign, log_t.shape)], axis=1)
        with np.errstate(divide="ignore"):
            new_log, new_sign = logsumexp(stacked, axis=1, b=signs, return_sign=True)
        log_s[active] = new_log
        sign_s[active] = new_sign
        last = start + chunk - 1
        done = (last > alphas[active]) & (log_t[:, -1] < log_tol + new_log) & (new_sign > 0)
        if done.any():
            idx = active[done]
            log_next, _ = log_pair_terms(idx, np.array([[last + 1.0]]))
            result[idx] = np.logaddexp(log_s[idx], log_next[:, 0])
            active = active[~done]
        start += chunk
        chunk = _CHUNK
    return result


def rdp_poisson_gaussian(q: float, noise_multiplier: float, orders: npt.ArrayLike = DEFAULT_ORDERS) -> FloatArray:
    """RDP of the Poisson-subsampled Gaussian mechanism (sampled Gaussian mechanism), add/remove neighbours.

    Each record is included independently with probability ``q``; Gaussian noise of std
    ``noise_multiplier`` x L2 sensitivity. [MTZ19]: D_alpha <= (1/(alpha-1)) log A_alpha with
    A_alpha = E_{z ~ N(0, s^2)} [((1-q) + q exp((2z-1)/(2 s^2)))^alpha] (s = noise_multiplier), the
    divergence of the "remove" pair ((1-q) N(0,s^2) + q N(1,s^2), N(0,s^2)), which dominates the "add"
    direction too.

    * q == 1: the plain Gaussian, alpha / (2 s^2).
    * integer alpha: A_alpha = sum_{k=0}^{alpha} C(alpha,k) (1-q)^(alpha-k) q^k exp((k^2-k)/(2 s^2)),
      evaluated exactly in log space (as log(1 + (A_alpha - 1)), see :func:`_log_a_minus_1_integer`).
    * fractional alpha: two convergent generalized-binomial series with a rigorous alternating-series
      remainder added (see :func:`_log_a_series`); every order is evaluated, none is dropped, and
      non-convergence raises RuntimeError.
    """
    q = check_probability("q", q)
    sigma = check_positive("noise_multiplier", noise_multiplier)
    orders = check_orders("orders", orders)
    if q == 1.0:
        return orders / (2.0 * sigma * sigma)
    out = np.empty_like(orders)
    is_int = orders == np.floor(orders)
    if is_int.any():
        out[is_int] = np.logaddexp(0.0, _log_a_minus_1_integer(q, sigma, orders[is_int])) / (orders[is_int] - 1)
    if (~is_int).any():
        frac = orders[~is_int]
        out[~is_int] = _log_a_series(q, sigma, frac) / (frac - 1)
    # RDP is non-negative; rounding could only push it a hair below 0 (raising it keeps a bound).
    return np.maximum(out, 0.0)


# --------------------------------------------------------------------------------------------- Laplace
def rdp_laplace(scale: float, orders: npt.ArrayLike = DEFAULT_ORDERS) -> FloatArray:
    """RDP of the Laplace mechanism with noise scale ``scale`` x L1 sensitivity (b = scale, sensitivity 1).

    [M17], Proposition 6 (exact, both directions): for alpha > 1,
    D_alpha = 1/(alpha-1) log( alpha/(2 alpha-1) exp((alpha-1)/b) + (alpha-1)/(2 alpha-1) exp(-alpha/b) ),
    evaluated as eps + log1p( (alpha-1)/(2 alpha-1) expm1(-(2 alpha-1) eps) ) / (alpha-1), eps = 1/b
    (factoring out exp((alpha-1) eps) makes it stable: no overflow for large alpha or eps, no cancellation
    near alpha = 1).
    """
    b = check_positive("scale", scale)
    orders = check_orders("orders", orders)
    eps = 1.0 / b
    a = orders
    return np.maximum(eps + np.log1p((a - 1) / (2 * a - 1) * np.expm1(-(2 * a - 1) * eps)) / (a - 1), 0.0)


# --------------------------------------------------------------------------------------------- discrete pairs
def _renyi_log(log_p: FloatArray, log_q: FloatArray, orders: FloatArray) -> FloatArray:
    """D_alpha(P || Q) = 1/(alpha-1) log sum_x P(x)^alpha Q(x)^(1-alpha), from log-probabilities (-inf: 0)."""
    a = orders[:, None]
    lp, lq = log_p[None, :], log_q[None, :]
    support = np.isfinite(lp)
    if np.any(support & ~np.isfinite(lq)):
        return np.full(orders.shape, np.inf)
    with np.errstate(invalid="ignore"):
        terms = np.where(support, a * lp + (1 - a) * np.where(support, lq, 0.0), -np.inf)
    log_moment: FloatArray = logsumexp(terms, axis=1)
    return np.maximum(log_moment / (orders - 1), 0.0)


def _rdp_discrete_log(log_p: FloatArray, log_q: FloatArray, orders: FloatArray) -> FloatArray:
    return np.maximum(_renyi_log(log_p, log_q, orders), _renyi_log(log_q, log_p, orders))


def rdp_discrete(p: npt.ArrayLike, q_: npt.ArrayLike, orders: npt.ArrayLike = DEFAULT_ORDERS) -> FloatArray:
    """Exact RDP of a pair of finite distributions: max(D_alpha(P || Q), D_alpha(Q || P)) [M17, Definition 3].

    D_alpha(P || Q) = 1/(alpha-1) log sum_x P(x)^alpha Q(x)^(1-alpha) (inf if P puts mass where Q does not).
    Covers randomized response, k-ary RR, pure DP (binary RR is the tight pair) and their Poisson-subsampled
    mixtures, which stay discrete.
    """
    p = _check_distribution("p", p)
    q_ = _check_distribution("q_", q_)
    if p.shape != q_.shape:
        raise ValueError(f"p and q_ must have the same length, got {p.size} and {q_.size}")
    orders = check_orders("orders", orders)
    with np.errstate(divide="ignore"):
        return _rdp_discrete_log(np.log(p), np.log(q_), orders)


def randomized_response_log_pair(epsilon: float, num_buckets: int = 2) -> tuple[FloatArray, FloatArray]:
    """Log-probabilities of :func:`randomized_response_pair` (accurate for any epsilon)."""
    eps = check_nonnegative("epsilon", epsilon)
    k = check_count("num_buckets", num_buckets, minimum=2)
    log_norm = math.log1p((k - 1) * math.exp(-eps))  # log((e^eps + k - 1) / e^eps)
    log_p = np.full(k, -eps - log_norm)
    log_p[0] = -log_norm
    log_q = log_p.copy()
    log_q[[0, 1]] = log_q[[1, 0]]
    return log_p, log_q


def randomized_response_outcome_classes(epsilon: float, num_buckets: int = 2) -> tuple[FloatArray, FloatArray]:
    """:func:`randomized_response_log_pair` with the k - 2 buckets where P = Q merged into one outcome.

    Renyi divergences (and privacy losses) are unchanged by merging outcomes of equal likelihood ratio, so this
    gives the same RDP with at most three outcomes, whatever k is.
    """
    eps = check_nonnegative("epsilon", epsilon)
    k = check_count("num_buckets", num_buckets, minimum=2)
    log_norm = math.log1p((k - 1) * math.exp(-eps))
    top, other = -log_norm, -eps - log_norm
    if k == 2:
        return np.array([top, other]), np.array([other, top])
    rest = math.log(k - 2) + other
    return np.array([top, other, rest]), np.array([other, top, rest])


def log_mixture_epsilon(q: float, epsilon: float) -> float:
    """log(1 + q (e^eps - 1)): the pure-DP epsilon of an eps-DP mechanism under Poisson sampling with rate q.

    Evaluated without overflow for large eps (as eps + log(q + (1 - q) e^-eps)).
    """
    if epsilon < 700.0:  # e^eps is a finite float
        return math.log1p(q * math.expm1(epsilon))
    return epsilon + math.log(q + (1.0 - q) * math.exp(-epsilon))


def randomized_response_pair(epsilon: float, num_buckets: int = 2) -> tuple[FloatArray, FloatArray]:
    """The output distributions (P, Q) of k-ary randomized response on two different inputs.

    P reports bucket 0 (the true value) with probability e^eps / (e^eps + k - 1) and each other bucket with
    probability 1 / (e^eps + k - 1); Q is P with buckets 0 and 1 swapped. With k = 2 this is the tight
    dominating pair of every epsilon-DP mechanism (pure DP = binary RR).
    """
    log_p, log_q = randomized_response_log_pair(epsilon, num_buckets)
    return np.exp(log_p), np.exp(log_q)


# ----------------------------------------------------------------------------------------- w/o replacement
def _wbk_log_moment_integer(gamma: float, sigma: float, alphas: FloatArray) -> FloatArray:
    """[WBK19] Theorem 9 bound on (alpha-1) eps'(alpha), integer alphas >= 2, Gaussian base (eps(inf)=inf)."""
    a = alphas[:, None]
    two_s2 = 2.0 * sigma * sigma
    eps2 = 2.0 / two_s2
    log_g = math.log(gamma)
    # j = 2 term: gamma^2 C(alpha, 2) min{4 (e^eps(2) - 1), 2 e^eps(2)}
    acc = (
        2 * log_g
        + np.log(alphas * (alphas - 1) / 2)
        + min(math.log(4.0) + float(_log_expm1(eps2)), math.log(2.0) + eps2)
    )
    jmax = int(alphas.max())
    for start in range(3, jmax + 1, _INT_CHUNK):
        j = np.arange(start, min(start + _INT_CHUNK, jmax + 1), dtype=float)[None, :]
        valid = j <= a
        jj = np.where(valid, j, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            # gamma^j C(alpha, j) e^{(j-1) eps(j)} * 2, eps(j) = j / (2 sigma^2)
            log_terms = (
                gammaln(a + 1)
                - gammaln(jj + 1)
                - gammaln(a - jj + 1)
                + jj * log_g
                + math.log(2.0)
                + (jj - 1) * jj / two_s2
            )
        log_terms = np.where(valid, log_terms, -np.inf)
        acc = np.logaddexp(acc, logsumexp(log_terms, axis=1))
    out: FloatArray = np.logaddexp(0.0, acc)
    return out


def rdp_sampled_without_replacement_gaussian(
    n: int, m: int, noise_multiplier: float, orders: npt.ArrayLike = DEFAULT_ORDERS
) -> FloatArray:
    """RDP bound of the Gaussian mechanism on m of n records sampled without replacement (replace-one).

    [WBK19], Theorem 9: if the base mechanism has RDP eps(.), with subsampling ratio gamma = m/n, for every
    integer alpha >= 2
      eps'(alpha) <= 1/(alpha-1) log( 1
          + gamma^2 C(alpha,2) min{4 (e^{eps(2)} - 1), e^{eps(2)} min{2, (e^{eps(inf)} - 1)^2}}
          + sum_{j=3}^{alpha} gamma^j C(alpha,j) e^{(j-1) eps(j)} min{2, (e^{eps(inf)} - 1)^j} ).
    Here the base is Gaussian: eps(j) = j / (2 sigma^2) and eps(inf) = inf, so both inner minima equal 2.
    Fractional alpha ([WBK19] Corollary 10): (alpha-1) eps'(alpha) is convex in alpha, so it is bounded by
    linear interpolation of the integer bounds at floor(alpha) and ceil(alpha) (with the value 0 at alpha = 1,
    so alpha in (1, 2) gets the alpha = 2 value, consistent with RDP being non-decreasing in alpha).
    The result is also capped by the base Gaussian's alpha / (2 sigma^2) (subsampling never hurts, by joint
    quasi-convexity of Renyi divergence). m = 0 gives 0; m = n is the plain Gaussian.
    """
    n = check_count("n", n, minimum=1)
    m = check_count("m", m, minimum=0)
    if m > n:
        raise ValueError(f"m must be in [0, n={n}], got {m}")
    sigma = check_positive("noise_multiplier", noise_multiplier)
    orders = check_orders("orders", orders)
    gauss = orders / (2.0 * sigma * sigma)
    if m == 0:
        return np.zeros_like(orders)
    if m == n:
        return gauss
    gamma = m / n
    lo, hi = np.floor(orders), np.ceil(orders)
    needed = np.unique(np.concatenate([lo, hi]))
    needed = needed[needed >= 2]
    cgf = dict(zip(needed.tolist(), _wbk_log_moment_integer(gamma, sigma, needed).tolist(), strict=True))
    # also cap the integer CGF bounds by the Gaussian's (j - 1) j / (2 sigma^2)
    cgf = {j: min(v, (j - 1) * j / (2.0 * sigma * sigma)) for j, v in cgf.items()}
    cgf[1.0] = 0.0
    k_lo = np.array([cgf[x] for x in lo.tolist()], dtype=np.float64)
    k_hi = np.array([cgf[x] for x in hi.tolist()], dtype=np.float64)
    t = orders - lo
    bound = ((1 - t) * k_lo + t * k_hi) / (orders - 1)
    return np.minimum(bound, gauss)


# --------------------------------------------------------------------------------------------- conversion
def rdp_to_epsilon(orders: npt.ArrayLike, rdp: npt.ArrayLike, delta: float) -> tuple[float, float]:
    """Smallest epsilon such that the RDP curve ``rdp`` implies (epsilon, delta)-DP; and its order.

    Improved conversion [BBGHS20, Thm 21], [CKS20, Prop. 12]:
      eps(alpha) = rdp(alpha) + log1p(-1/alpha) - (log(delta) + log(alpha)) / (alpha - 1),
    minimized over the orders and clamped at 0. Additionally, epsilon = 0 is reported when
    delta >= sqrt(1 - exp(-rdp(alpha))) for some order (total variation <= sqrt(1 - e^{-KL}) by
    Bretagnolle-Huber, and KL <= D_alpha). Orders with infinite RDP are skipped; if all are infinite the
    result is (inf, nan).
    """
    orders = check_orders("orders", orders)
    rdp = _check_rdp("rdp", rdp, orders)
    delta = check_delta("delta", delta)
    finite = np.isfinite(rdp)
    if not finite.any():
        return math.inf, math.nan
    a, r = orders[finite], rdp[finite]
    eps = r + np.log1p(-1.0 / a) - (math.log(delta) + np.log(a)) / (a - 1)
    eps = np.where(delta * delta + np.expm1(-r) >= 0, 0.0, eps)
    idx = int(np.argmin(eps))
    return max(0.0, float(eps[idx])), float(a[idx])


def rdp_to_delta(orders: npt.ArrayLike, rdp: npt.ArrayLike, epsilon: float) -> tuple[float, float]:
    """Smallest delta such that RDP curve ``rdp`` implies (epsilon, delta)-DP; and its order.

    Improved conversion [CKS20, Prop. 12]:
      log delta(alpha) = (alpha-1)(rdp(alpha) - eps) + (alpha-1) log(alpha-1) - alpha log(alpha),
    minimized over orders and capped at 1; also delta <= sqrt(1 - exp(-rdp(alpha))) (Bretagnolle-Huber
    total-variation bound, valid for every epsilon >= 0). Infinite RDP entries give delta 1.
    """
    orders = check_orders("orders", orders)
    rdp = _check_rdp("rdp", rdp, orders)
    eps = check_nonnegative("epsilon", epsilon)
    a = orders
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        log_delta = (a - 1) * (rdp - eps) + (a - 1) * np.log(a - 1) - a * np.log(a)
        log_tv = np.where(rdp > 0, 0.5 * np.log(-np.expm1(-rdp)), -np.inf)
    log_delta = np.where(np.isfinite(rdp), np.minimum(log_delta, log_tv), 0.0)
    idx = int(np.argmin(log_delta))
    return min(1.0, math.exp(min(0.0, float(log_delta[idx])))), float(a[idx])
