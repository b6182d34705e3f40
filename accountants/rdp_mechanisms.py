"""Renyi DP of further mechanisms and of three transformations (labelled mixtures, repeat-and-select, replace-one
Poisson subsampling), as vectorized functions of the orders; :mod:`dpkit.accountants.rdp_analysis` has the basic
ones and the conversion to (epsilon, delta). Every function returns an upper bound on
``max(D_alpha(P || Q), D_alpha(Q || P))`` for the worst neighbouring pair, one value per order, in nats.

References:

* [BS16] M. Bun, T. Steinke. Concentrated Differential Privacy: Simplifications, Extensions, and Lower Bounds.
  TCC 2016 (arXiv:1605.02065).
* [CKS20] C. Canonne, G. Kamath, T. Steinke. The Discrete Gaussian for Differential Privacy. NeurIPS 2020
  (arXiv:2004.00010).
* [CR21] M. Cesar, R. Rogers. Bounding, Concentrating, and Truncating: Unifying Privacy Loss Composition for Data
  Analytics. ALT 2021 (arXiv:2004.07223).
* [PS22] N. Papernot, T. Steinke. Hyperparameter Tuning with Renyi Differential Privacy. ICLR 2022
  (arXiv:2110.03620).
* [M17] I. Mironov. Renyi Differential Privacy. CSF 2017 (arXiv:1702.07476), Proposition 11.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln, logsumexp

from dpkit.accountants._typing import FloatArray
from dpkit.accountants.rdp_analysis import (
    _rdp_discrete_log,
    randomized_response_outcome_classes,
    rdp_poisson_gaussian,
    rdp_to_delta,
)

__all__ = [
    "binomial_log_weights",
    "discrete_laplace_log_pair",
    "epsilon_delta_pair",
    "rdp_discrete_gaussian",
    "rdp_exponential_mechanism",
    "rdp_mixture_of_gaussians",
    "rdp_poisson_gaussian_replace_one",
    "rdp_pure",
    "rdp_repeat_and_select",
    "rdp_zcdp",
    "truncated_negative_binomial_gamma",
]

#: Binomial label weights below exp(this) are folded into one tail term (bounded by the largest group).
_LOG_TAIL = -700.0


def rdp_zcdp(rho: float, xi: float, orders: FloatArray) -> FloatArray:
    """(xi, rho)-zCDP: ``xi + rho * alpha`` at every order [BS16, Definition 1.1]."""
    return xi + rho * orders


def rdp_pure(epsilon: float, orders: FloatArray) -> FloatArray:
    """Exact RDP of binary randomized response, the tight dominating pair of every epsilon-DP mechanism."""
    log_p, log_q = randomized_response_outcome_classes(epsilon, 2)
    return np.minimum(_rdp_discrete_log(log_p, log_q, orders), epsilon)


def rdp_exponential_mechanism(epsilon: float, orders: FloatArray) -> FloatArray:
    """An epsilon-bounded-range mechanism: ``min(RDP of epsilon-DP, alpha epsilon^2 / 8)`` ([CR21], Lemma 3.2:
    epsilon-BR implies epsilon^2/8-zCDP; and epsilon-BR implies epsilon-DP)."""
    return np.minimum(rdp_pure(epsilon, orders), orders * epsilon * epsilon / 8.0)


def rdp_discrete_gaussian(sigma: float, sensitivity: int, orders: FloatArray) -> FloatArray:
    """Exact RDP of the discrete Gaussian with scale sigma and integer sensitivity d ([CKS20], Section 2).

    With theta(c) = sum_{x in Z} exp(-(x - c)^2 / (2 sigma^2)) (both distributions share the normalizer theta(0)),
    completing the square gives, in both directions,
      D_alpha = alpha d^2 / (2 sigma^2) + log(theta((1 - alpha) d) / theta(0)) / (alpha - 1),
    and theta(c) <= theta(0) (Poisson summation), so D_alpha <= alpha d^2 / (2 sigma^2) ([CKS20], Theorem 4).
    The correction is summed directly for sigma <= 10; above, it is below exp(-2 pi^2 sigma^2) < 1e-800 in
    relative size (Poisson summation) and the bound is returned.
    """
    d = float(sensitivity)
    bound = orders * d * d / (2.0 * sigma * sigma)
    if sigma > 10.0:
        return bound
    c = np.mod((1.0 - orders) * d, 1.0)[:, None]
    half = math.ceil(40.0 * sigma) + 2
    x = np.arange(-half, half + 1, dtype=np.float64)[None, :]
    log_theta_c: FloatArray = logsumexp(-((x - c) ** 2) / (2.0 * sigma * sigma), axis=1)
    log_theta_0 = float(logsumexp(-(x[0] ** 2) / (2.0 * sigma * sigma)))
    correction = np.minimum(log_theta_c - log_theta_0, 0.0) / (orders - 1.0)
    return np.maximum(bound + correction, 0.0)


def discrete_laplace_log_pair(noise_parameter: float, sensitivity: int) -> tuple[FloatArray, FloatArray]:
    """Log-probabilities of the outcome classes of DLap(0, a) against DLap(d, a) (a = noise_parameter).

    Classes: {x <= 0} (loss a d), x = 1, ..., d - 1 (loss a (d - 2x)), {x >= d} (loss -a d). With
    t = tanh(a/2): P(x <= 0) = 1 / (1 + e^-a), P(x >= d) = e^(-a d) / (1 + e^-a), P(x) = t e^(-a |x|).
    """
    a, d = float(noise_parameter), int(sensitivity)
    log_norm = math.log1p(math.exp(-a))  # log(1 + e^-a)
    log_t = math.log(-math.expm1(-a)) - log_norm
    mid = np.arange(1, d, dtype=np.float64)
    log_p = np.concatenate([[-log_norm], log_t - a * mid, [-a * d - log_norm]])
    return log_p, log_p[::-1].copy()


def epsilon_delta_pair(epsilon: float, delta: float) -> tuple[FloatArray, FloatArray]:
    """The tight dominating pair of (epsilon, delta)-DP (Kairouz, Oh, Viswanath 2015): four outcomes with
    P = (delta, (1-delta) e^eps/(1+e^eps), (1-delta)/(1+e^eps), 0) and Q the same reversed."""
    hi = 1.0 / (1.0 + math.exp(-epsilon))  # e^eps / (1 + e^eps), stable
    lo = math.exp(-epsilon) * hi
    p = np.array([delta, (1.0 - delta) * hi, (1.0 - delta) * lo, 0.0])
    return p, p[::-1].copy()


def rdp_mixture_of_gaussians(
    standard_deviation: float, sensitivities: tuple[float, ...], probabilities: tuple[float, ...], orders: FloatArray
) -> FloatArray:
    """Upper bound for the pair (sum_i p_i N(c_i, s^2), N(0, s^2)), both directions.

    exp((alpha-1) D_alpha) is convex in each argument for alpha > 1 (the integrand P^alpha Q^(1-alpha) is convex in
    P and in Q), so by Jensen both directions are at most (1/(alpha-1)) log sum_i p_i exp((alpha-1) alpha c_i^2 /
    (2 s^2)), the mixture of the components' Gaussian RDPs. Not tight (the PLD accountant is).
    """
    c = np.asarray(sensitivities, dtype=np.float64)[None, :] / standard_deviation
    with np.errstate(divide="ignore"):
        log_w = np.log(np.asarray(probabilities, dtype=np.float64))[None, :]
    a = orders[:, None]
    out: FloatArray = logsumexp(log_w + (a - 1.0) * a * c * c / 2.0, axis=1) / (orders - 1.0)
    return np.maximum(out, 0.0)


def binomial_log_weights(trials: int, p: float) -> tuple[FloatArray, float]:
    """``(log P(J = j) for j = 0..K, log P(J > K))`` for J ~ Binomial(trials, p), K the last j whose weight is at
    least exp(-700) (the tail is -inf when K = trials)."""
    j = np.arange(trials + 1, dtype=np.float64)
    log_pmf = gammaln(trials + 1.0) - gammaln(j + 1.0) - gammaln(trials - j + 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_pmf = log_pmf + np.where(j > 0, j * math.log(p), 0.0)
        log_pmf = log_pmf + np.where(j < trials, (trials - j) * math.log1p(-p) if p < 1 else -np.inf, 0.0)
    big = np.nonzero(log_pmf >= _LOG_TAIL)[0]
    last = int(big[-1]) if len(big) else 0
    tail = float(logsumexp(log_pmf[last + 1 :])) if last < trials else -math.inf
    return log_pmf[: last + 1], tail


def rdp_poisson_gaussian_replace_one(q: float, noise_multiplier: float, orders: FloatArray) -> FloatArray:
    """Upper bound for the Poisson-subsampled Gaussian under replace-one neighbours (sampled contributions of norm
    at most Delta/2, Delta the replace-one sensitivity; noise std ``noise_multiplier`` x Delta).

    Replacing x by x' is removing x, then adding x'. Hoelder's inequality gives the weak triangle inequality
    ([M17], Proposition 11 with p = q = 2):
      D_alpha(P || R) <= (alpha - 1/2) / (alpha - 1) D_{2 alpha}(P || Q) + D_{2 alpha - 1}(Q || R),
    and each step is the add/remove Poisson-subsampled Gaussian with noise multiplier 2 sigma (relative to the
    add/remove sensitivity Delta/2). The result is also capped by the unsampled Gaussian alpha / (2 sigma^2)
    (Poisson subsampling is a post-processing of it). Sound, not tight: the PLD accountant is exact here.
    """
    r2 = rdp_poisson_gaussian(q, 2.0 * noise_multiplier, 2.0 * orders)
    r1 = rdp_poisson_gaussian(q, 2.0 * noise_multiplier, 2.0 * orders - 1.0)
    bound = (orders - 0.5) / (orders - 1.0) * r2 + r1
    return np.minimum(bound, orders / (2.0 * noise_multiplier * noise_multiplier))


def truncated_negative_binomial_gamma(mean: float, shape: float) -> float:
    """gamma of the truncated negative binomial with this mean and shape eta ([PS22], Definition 1), rounded down.

    mean(gamma) = eta (1 - gamma) / (gamma (1 - gamma^eta)) (eta > 0; eta = 1: 1 / gamma), and
    (1 - gamma) / (gamma log(1 / gamma)) for eta = 0 (logarithmic). The mean decreases in gamma; the returned gamma
    is at most the exact one, which can only increase the RDP bound (it grows with log(1 / gamma)).
    """
    if mean <= 1.0:
        return 1.0
    if shape == 1.0:
        return float(np.nextafter(1.0 / mean, 0.0))

    def log_mean(log_g: float) -> float:
        log_one_minus = math.log(-math.expm1(log_g))
        if shape == 0.0:
            return log_one_minus - log_g - math.log(-log_g)
        return math.log(shape) + log_one_minus - log_g - math.log(-math.expm1(shape * log_g))

    lo, hi = -1e4, -1e-300  # log gamma; mean(lo) is huge, mean(hi) ~ 1
    target = math.log(mean)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if log_mean(mid) > target:
            lo = mid
        else:
            hi = mid
    return math.exp(lo)


def rdp_repeat_and_select(
    orders: FloatArray, rdp: FloatArray, mean: float, shape: float, pure_epsilon: float = math.inf
) -> FloatArray:
    """RDP of running a mechanism (RDP curve ``rdp``) a random number K of times and releasing the best run [PS22].

    * Truncated negative binomial (shape eta in [0, inf): 0 logarithmic, 1 geometric), [PS22] Theorem 2: for
      any order lam and any lam_hat >= 1,
        eps'(lam) = eps(lam) + (1 + eta) ((1 - 1/lam_hat) eps(lam_hat) + log(1/gamma) / lam_hat)
                    + log(E[K]) / (lam - 1),
      minimized over lam_hat in the grid and lam_hat = 1.
    * Poisson (shape = inf), [PS22] Theorem 6: eps'(lam) = eps(lam) + mu delta_hat + log(mu) / (lam - 1), with
      delta_hat the delta of one run at epsilon_hat = log(1 + 1 / (lam - 1)) (from its RDP curve, or 0 when its
      pure-DP epsilon is at most epsilon_hat).
    Then RDP is non-decreasing in the order, so each order takes the minimum over the orders at or above it.
    """
    out = np.full_like(orders, np.inf)
    finite = np.isfinite(rdp)
    if shape == math.inf:
        for i, lam in enumerate(orders.tolist()):
            eps_hat = math.log1p(1.0 / (lam - 1.0))
            if pure_epsilon <= eps_hat:
                delta_hat = 0.0
            elif finite.any():
                delta_hat, _ = rdp_to_delta(orders[finite], rdp[finite], eps_hat)
            else:
                continue
            out[i] = rdp[i] + mean * delta_hat + math.log(mean) / (lam - 1.0)
    else:
        gamma = truncated_negative_binomial_gamma(mean, shape)
        with np.errstate(invalid="ignore"):
            inner = (1.0 - 1.0 / orders) * rdp - math.log(gamma) / orders
        # lam_hat = 1 is allowed too: its term is log(1 / gamma) (the KL term has weight 0)
        c = (1.0 + shape) * min(-math.log(gamma), float(np.min(np.where(np.isfinite(inner), inner, np.inf))))
        out = rdp + c + math.log(mean) / (orders - 1.0)
    out = np.where(np.isnan(out), np.inf, out)
    return np.minimum.accumulate(out[::-1])[::-1] if np.all(np.diff(orders) > 0) else _monotone(orders, out)


def _monotone(orders: FloatArray, values: FloatArray) -> FloatArray:
    """values[i] -> min over j with orders[j] >= orders[i] (any order of the grid)."""
    idx = np.argsort(orders)
    suffix = np.minimum.accumulate(values[idx][::-1])[::-1]
    out = np.empty_like(values)
    out[idx] = suffix
    return out
