"""Dominating pairs (P, Q) of mechanisms, and the distribution of their privacy loss L = log(dP/dQ) under P.

What the PLD accountant needs of a mechanism is one function: for loss-value edges e_0 < ... < e_n, the P-mass and
the Q-mass of {e_i < L <= e_{i+1}} for every interval, plus the P-mass of {L <= e_0} and of {L > e_n}
(:meth:`masses`). Everything else (discretization, composition, epsilon) is generic.

* ``ScalarPair``: P and Q are distributions of one real z and L(z) is non-decreasing in z (Gaussian: P = N(1, s^2),
  Q = N(0, s^2); Laplace: P = Lap(1, b), Q = Lap(0, b)). Loss intervals map to z intervals through the generalized
  inverses z_sup(l) = sup{z : L(z) <= l} and z_inf(l) = inf{z : L(z) >= l}.
* ``DiscretePair``: P and Q on finitely many outcomes (randomized response).

Poisson subsampling with rate q (:func:`poisson_subsampled`) is exact for both: the "remove" pair is
((1-q) Q + q P, Q) with loss g(L) = log(1 - q + q e^L), the "add" pair is (Q, (1-q) Q + q P) with loss -g(L).
Under add/remove neighbouring, an accountant composes each direction separately and reports the worse one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Protocol

import numpy as np

from dpkit.accountants._typing import FloatArray


class ContinuousDistribution(Protocol):
    """What the pairs use of a continuous distribution of one real z."""

    def median(self) -> float: ...

    def cdf(self, x: FloatArray) -> FloatArray: ...

    def sf(self, x: FloatArray) -> FloatArray: ...


#: A generalized inverse of a privacy loss function: loss values -> z values (vectorized).
LossInverse = Callable[[FloatArray], FloatArray]


@dataclasses.dataclass(frozen=True)
class Normal:
    """N(loc, scale^2), its CDF and survival function through ``scipy.special.ndtr`` (as ``scipy.stats.norm``
    computes them, without the second it takes to import ``scipy.stats``)."""

    loc: float
    scale: float

    def median(self) -> float:
        return self.loc

    def cdf(self, x: FloatArray) -> FloatArray:
        from scipy.special import ndtr

        return np.asarray(ndtr((np.asarray(x, dtype=np.float64) - self.loc) / self.scale), dtype=np.float64)

    def sf(self, x: FloatArray) -> FloatArray:
        from scipy.special import ndtr

        return np.asarray(ndtr((self.loc - np.asarray(x, dtype=np.float64)) / self.scale), dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class Laplace:
    """Lap(loc, scale): CDF 1/2 e^(u) for u = (x - loc) / scale <= 0, 1 - 1/2 e^(-u) above; sf(x) = CDF(-u)."""

    loc: float
    scale: float

    def median(self) -> float:
        return self.loc

    @staticmethod
    def _standard_cdf(u: FloatArray) -> FloatArray:
        with np.errstate(over="ignore"):
            return np.where(u > 0, 1.0 - 0.5 * np.exp(-u), 0.5 * np.exp(u))

    def cdf(self, x: FloatArray) -> FloatArray:
        return self._standard_cdf((np.asarray(x, dtype=np.float64) - self.loc) / self.scale)

    def sf(self, x: FloatArray) -> FloatArray:
        return self._standard_cdf((self.loc - np.asarray(x, dtype=np.float64)) / self.scale)


def _interval_mass(dist: ContinuousDistribution, lo: FloatArray, hi: FloatArray) -> FloatArray:
    """Mass of (lo, hi] under a continuous distribution, accurate in both tails."""
    if isinstance(dist, NormalMixture):
        return dist.interval_mass(lo, hi)
    med = dist.median()
    with np.errstate(invalid="ignore"):
        upper = dist.sf(lo) - dist.sf(hi)
        lower = dist.cdf(hi) - dist.cdf(lo)
    return np.clip(np.where(lo >= med, upper, lower), 0.0, None)


@dataclasses.dataclass(frozen=True)
class NormalMixture:
    """sum_i w_i N(mu_i, s^2): the continuous distribution of the mixture pairs (interval masses per component)."""

    weights: tuple[float, ...]
    means: tuple[float, ...]
    scale: float

    def _components(self) -> list[tuple[float, ContinuousDistribution]]:
        return [(w, Normal(m, self.scale)) for w, m in zip(self.weights, self.means, strict=True) if w > 0]

    def interval_mass(self, lo: FloatArray, hi: FloatArray) -> FloatArray:
        out = np.zeros(np.broadcast(lo, hi).shape)
        for w, dist in self._components():
            out = out + w * _interval_mass(dist, lo, hi)
        return out

    def median(self) -> float:
        return float(np.dot(self.weights, self.means))

    def cdf(self, x: FloatArray) -> FloatArray:
        return np.asarray(sum(w * d.cdf(x) for w, d in self._components()), dtype=np.float64)

    def sf(self, x: FloatArray) -> FloatArray:
        return np.asarray(sum(w * d.sf(x) for w, d in self._components()), dtype=np.float64)


def _g_inverse(l: FloatArray, q: float) -> FloatArray:
    """Inverse of g(l) = log(1 - q + q e^l): log((e^l - 1 + q) / q), -inf where e^l <= 1 - q."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # e^l - (1 - q) = expm1(l) + q, computed without cancellation for small l.
        inner = np.expm1(l) + q
        out = np.where(inner > 0, np.log(np.where(inner > 0, inner, 1.0)) - math.log(q), -np.inf)
    return np.where(np.isposinf(l), np.inf, out)


@dataclasses.dataclass(frozen=True)
class Masses:
    """Privacy-loss masses on intervals (e_i, e_{i+1}] and the two tails (P-mass only)."""

    p: FloatArray
    q: FloatArray
    p_below: float
    p_above: float


@dataclasses.dataclass(frozen=True)
class ScalarPair:
    """Pair of distributions of a real z whose privacy loss is non-decreasing in z.

    ``p``/``q`` are continuous distributions (:class:`Normal`, :class:`Laplace`, :class:`NormalMixture`);
    ``z_sup``/``z_inf`` are the generalized inverses of L (vectorized, returning -inf/+inf outside L's range).
    ``mix`` = q_s and ``direction`` describe Poisson subsampling applied to
    the base pair (``mix`` = 1: no subsampling).
    """

    p: ContinuousDistribution
    q: ContinuousDistribution
    z_sup: LossInverse
    z_inf: LossInverse
    mix: float = 1.0
    direction: str = "remove"

    def _mixed(self, lo: FloatArray, hi: FloatArray) -> FloatArray:
        """(1 - q_s) Q + q_s P mass of the z interval (lo, hi]."""
        out = self.mix * _interval_mass(self.p, lo, hi)
        if self.mix < 1:
            out = out + (1 - self.mix) * _interval_mass(self.q, lo, hi)
        return out

    def masses(self, edges: FloatArray) -> Masses:
        edges = np.asarray(edges, dtype=float)
        ninf, pinf = np.array([-np.inf]), np.array([np.inf])
        if self.direction == "remove":
            # L_sub(z) = g(L(z)) non-decreasing: {e_i < L_sub <= e_j} = {z_sup(g^-1(e_i)) < z <= z_sup(g^-1(e_j))}.
            z = self.z_sup(_g_inverse(edges, self.mix)) if self.mix < 1 else self.z_sup(edges)
            zz = np.concatenate([ninf, z, pinf])
            pm = self._mixed(zz[:-1], zz[1:])
            qm = _interval_mass(self.q, zz[:-1], zz[1:])
        else:
            # P_add = Q, Q_add = mixture, L_add = -g(L) non-increasing:
            # {e_i < L_add <= e_j} = {z_inf(g^-1(-e_j)) <= z < z_inf(g^-1(-e_i))}.
            w = self.z_inf(_g_inverse(-edges, self.mix)) if self.mix < 1 else self.z_inf(-edges)
            ww = np.concatenate([pinf, w, ninf])
            pm = _interval_mass(self.q, ww[1:], ww[:-1])
            qm = self._mixed(ww[1:], ww[:-1])
        return Masses(p=pm[1:-1], q=qm[1:-1], p_below=float(pm[0]), p_above=float(pm[-1]))


@dataclasses.dataclass(frozen=True)
class DiscretePair:
    """P and Q on finitely many outcomes (an outcome with Q = 0 < P has infinite loss; P = 0 outcomes are ignored)."""

    p: FloatArray
    q: FloatArray

    def masses(self, edges: FloatArray) -> Masses:
        edges = np.asarray(edges, dtype=float)
        keep = self.p > 0
        with np.errstate(divide="ignore"):  # Q = 0 where P > 0 (e^-eps underflowed): infinite loss
            loss = np.log(self.p[keep]) - np.log(self.q[keep])
        # bin b: e_{b-1} < loss <= e_b  ->  0 below e_0, n+1 above e_n.
        bins = np.searchsorted(edges, loss, side="left")
        n = len(edges) + 1
        pm = np.bincount(bins, weights=self.p[keep], minlength=n).astype(np.float64, copy=False)
        qm = np.bincount(bins, weights=self.q[keep], minlength=n).astype(np.float64, copy=False)
        return Masses(p=pm[1:-1], q=qm[1:-1], p_below=float(pm[0]), p_above=float(pm[-1]))


@dataclasses.dataclass(frozen=True)
class MixturePair:
    """With probability ``weights[j]`` the pair ``pairs[j]`` is used, and j is revealed (a labelled mixture).

    Its privacy loss is pair j's loss with probability w_j, so every mass is the w-weighted sum of the components'
    masses; ``tail`` is extra P-mass at infinite loss (labels that were left out, pessimistically). It dominates
    the unlabelled mixture (dropping the label is a post-processing).
    """

    weights: tuple[float, ...]
    pairs: tuple[ScalarPair | DiscretePair, ...]
    tail: float = 0.0

    def masses(self, edges: FloatArray) -> Masses:
        edges = np.asarray(edges, dtype=float)
        p = np.zeros(len(edges) - 1)
        q = np.zeros(len(edges) - 1)
        below, above = 0.0, self.tail
        for w, pair in zip(self.weights, self.pairs, strict=True):
            m = pair.masses(edges)
            p, q = p + w * m.p, q + w * m.q
            below, above = below + w * m.p_below, above + w * m.p_above
        return Masses(p=p, q=q, p_below=below, p_above=above)


Pair = ScalarPair | DiscretePair | MixturePair


def gaussian_pair(noise_multiplier: float) -> ScalarPair:
    """P = N(1, s^2), Q = N(0, s^2): L(z) = (2z - 1) / (2 s^2); symmetric, so add and remove coincide."""
    s2 = noise_multiplier**2

    def inv(l: FloatArray) -> FloatArray:
        return s2 * np.asarray(l, dtype=float) + 0.5

    return ScalarPair(Normal(1.0, noise_multiplier), Normal(0.0, noise_multiplier), inv, inv)


def laplace_pair(scale: float) -> ScalarPair:
    """P = Lap(1, b), Q = Lap(0, b): L(z) = (|z| - |z - 1|) / b, in [-1/b, 1/b] with atoms at both ends."""
    b = scale

    def z_sup(l: FloatArray) -> FloatArray:
        l = np.asarray(l, dtype=float)
        return np.where(l < -1 / b, -np.inf, np.where(l >= 1 / b, np.inf, (l * b + 1) / 2))

    def z_inf(l: FloatArray) -> FloatArray:
        l = np.asarray(l, dtype=float)
        return np.where(l <= -1 / b, -np.inf, np.where(l > 1 / b, np.inf, (l * b + 1) / 2))

    return ScalarPair(Laplace(1.0, b), Laplace(0.0, b), z_sup, z_inf)


def randomized_response_pair(epsilon: float, num_buckets: int = 2) -> DiscretePair:
    """k-ary RR on inputs x (P) and x' (Q): true bucket w.p. e^eps / (e^eps + k - 1), each other 1 / (e^eps + k - 1)."""
    k = num_buckets
    # Stable for large epsilon: divide through by e^eps. The k - 2 buckets with P = Q (loss 0) are one outcome.
    hi = 1.0 / (1.0 + (k - 1) * math.exp(-epsilon))
    lo = math.exp(-epsilon) * hi
    if k == 2:
        return DiscretePair(np.array([hi, lo]), np.array([lo, hi]))
    return DiscretePair(np.array([hi, lo, (k - 2) * lo]), np.array([lo, hi, (k - 2) * lo]))


def identical_pair() -> DiscretePair:
    """P = Q: no privacy loss (the label-0 component of a group mixture)."""
    return DiscretePair(np.array([1.0]), np.array([1.0]))


def discrete_pair(p: FloatArray, q: FloatArray) -> DiscretePair:
    """A discrete pair from arrays of probabilities (e.g. :mod:`dpkit.accountants.rdp_mechanisms`' pairs)."""
    return DiscretePair(np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64))


def discrete_gaussian_pair(sigma: float, sensitivity: int, tail_mass: float) -> DiscretePair:
    """P = N_Z(0, sigma^2), Q = N_Z(d, sigma^2) (Canonne-Kamath-Steinke 2020) on the integers of a window.

    The window holds all but at most ``tail_mass`` of each distribution (Gaussian tail of the shifted sums,
    with a margin); the P-mass outside it becomes an outcome with Q = 0 (infinite loss) and the Q-mass an outcome
    with P = 0. That pair dominates the true one: mapping those two outcomes to draws from P and Q outside the
    window recovers it.
    """
    d = int(sensitivity)
    # P(|X| > t) <= 2 exp(-t^2 / (2 sigma^2)) / (1 - exp(-1 / sigma^2) ...) is below tail for this t (with margin).
    t = math.ceil(sigma * math.sqrt(2.0 * (math.log(4.0 / tail_mass) + 2.0)) + 2.0)
    x = np.arange(-t, t + d + 1, dtype=np.float64)
    log_wp = -(x**2) / (2.0 * sigma * sigma)
    log_wq = -((x - d) ** 2) / (2.0 * sigma * sigma)
    from scipy.special import logsumexp

    half = np.arange(-t - 10 * max(1, math.ceil(sigma)), t + 10 * max(1, math.ceil(sigma)) + 1, dtype=np.float64)
    log_z = float(logsumexp(-(half**2) / (2.0 * sigma * sigma)))  # the normalizer (its tail beyond is negligible)
    p = np.exp(log_wp - log_z)
    q = np.exp(log_wq - log_z)
    p_out = max(0.0, 1.0 - math.fsum(p.tolist()))
    q_out = max(0.0, 1.0 - math.fsum(q.tolist()))
    return DiscretePair(np.concatenate([p, [p_out, 0.0]]), np.concatenate([q, [0.0, q_out]]))


def poisson_gaussian_replace_pair(q: float, noise_multiplier: float) -> ScalarPair:
    """Poisson-subsampled Gaussian under replace-one neighbours (a sampled record contributes a vector of norm at
    most Delta/2, Delta = 1 the replace-one sensitivity, noise std ``noise_multiplier``).

    Worst case (Lebeda, Regehr, Kamath, Steinke, "Avoiding pitfalls for privacy accounting of subsampled
    mechanisms under composition", 2024, arXiv:2405.20769, Proposition 13): P = (1-q) N(0, s^2) + q N(h, s^2),
    Q = (1-q) N(0, s^2) + q N(-h, s^2), h = 1/2. With X = h z / s^2 and beta = (1-q)/q e^{h^2/(2 s^2)} the loss is
    L(z) = log((beta + e^X) / (beta + e^-X)), increasing; solving gives sinh(X - L/2) = beta sinh(L/2), so
    z(l) = (s^2 / h) (l/2 + asinh(beta sinh(l/2))). The pair is symmetric (z -> -z swaps P and Q): one direction.
    """
    s2 = noise_multiplier**2
    h = 0.5
    log_beta = math.log1p(-q) - math.log(q) + h * h / (2.0 * s2) if q < 1 else -math.inf

    def inv(l: FloatArray) -> FloatArray:
        l = np.asarray(l, dtype=float)
        a = np.abs(l) / 2.0
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            # log(beta sinh(|l|/2)), then asinh(e^y) = y + log(1 + sqrt(1 + e^-2y)) (y large) or asinh directly.
            log_sinh = a + np.log(-np.expm1(-2.0 * a)) - math.log(2.0)
            y = log_beta + log_sinh
            big = y > 20.0
            ash = np.where(
                big,
                y + np.log1p(np.sqrt(1.0 + np.exp(-2.0 * np.where(big, y, 0.0)))),
                np.arcsinh(np.exp(np.minimum(y, 20.0))),
            )
            z = (s2 / h) * (l / 2.0 + np.sign(l) * ash)
        z = np.where(l == 0, 0.0, z)
        return np.where(np.isnan(l), np.nan, np.where(np.isinf(l), l, z))

    p = NormalMixture((1.0 - q, q), (0.0, h), noise_multiplier)
    qd = NormalMixture((1.0 - q, q), (0.0, -h), noise_multiplier)
    return ScalarPair(p, qd, inv, inv)


def mixture_of_gaussians_pair(
    standard_deviation: float, sensitivities: tuple[float, ...], probabilities: tuple[float, ...], direction: str
) -> ScalarPair:
    """Remove direction: (sum_i p_i N(c_i, s^2), N(0, s^2)); add direction: the reverse (Choquette-Choo, Ganesh,
    Steinke, Thakurta 2024). In units of s: L(z) = log sum_i p_i exp(c_i z - c_i^2 / 2) with z ~ P, increasing
    and convex in z; its inverse is found by Newton's method from the right (monotone convergence for convex
    increasing functions), started at max_i (l + c_i^2/2 - log p_i) / c_i where L >= l.
    """
    s = standard_deviation
    cs = np.array([c / s for c, p in zip(sensitivities, probabilities, strict=True) if p > 0])
    ps = np.array([p for p in probabilities if p > 0])
    log_p = np.log(ps)
    pos = cs > 0
    log_floor = float(np.log(ps[~pos].sum())) if (~pos).any() else -math.inf  # L(-inf)

    def loss_and_slope(z: FloatArray) -> tuple[FloatArray, FloatArray]:
        from scipy.special import logsumexp, softmax

        e = log_p[None, :] + cs[None, :] * z[:, None] - cs[None, :] ** 2 / 2.0
        return logsumexp(e, axis=1), np.sum(softmax(e, axis=1) * cs[None, :], axis=1)

    def inv(l: FloatArray) -> FloatArray:
        l = np.asarray(l, dtype=float)
        flat = l.ravel()
        out = np.full(flat.shape, np.inf)
        out[flat <= log_floor] = -np.inf
        todo = np.nonzero((flat > log_floor) & np.isfinite(flat))[0]
        if len(todo):
            lt = flat[todo]
            z = np.max((lt[:, None] + cs[pos][None, :] ** 2 / 2.0 - log_p[pos][None, :]) / cs[pos][None, :], axis=1)
            for _ in range(200):
                val, slope = loss_and_slope(z)
                step = (val - lt) / np.maximum(slope, 1e-300)
                z = z - step
                if np.all(np.abs(step) <= 1e-13 * np.maximum(1.0, np.abs(z))):
                    break
            out[todo] = z * s
        return out.reshape(l.shape)

    mix = NormalMixture(tuple(ps.tolist()), tuple((cs * s).tolist()), s)
    base = ScalarPair(mix, Normal(0.0, s), inv, inv)
    return base if direction == "remove" else dataclasses.replace(base, direction="add")


def poisson_subsampled(pair: Pair, q: float, direction: str) -> Pair:
    """The ``direction`` ("remove" or "add") pair of ``pair`` under Poisson subsampling with rate ``q``."""
    if direction not in ("remove", "add"):
        raise ValueError(f"direction must be 'remove' or 'add', got {direction!r}")
    if isinstance(pair, MixturePair):
        raise ValueError("Poisson subsampling of a mixture pair is not supported")
    if isinstance(pair, ScalarPair):
        if pair.mix != 1.0 or pair.direction != "remove" or isinstance(pair.p, NormalMixture):
            raise ValueError("nested Poisson subsampling is not supported")
        return dataclasses.replace(pair, mix=q, direction=direction)
    mixed = (1 - q) * pair.q + q * pair.p
    return DiscretePair(mixed, pair.q) if direction == "remove" else DiscretePair(pair.q, mixed)
