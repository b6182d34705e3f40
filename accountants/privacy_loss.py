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
    """What the pairs use of a frozen continuous scipy distribution."""

    def median(self) -> float: ...

    def cdf(self, x: FloatArray) -> FloatArray: ...

    def sf(self, x: FloatArray) -> FloatArray: ...


#: A generalized inverse of a privacy loss function: loss values -> z values (vectorized).
LossInverse = Callable[[FloatArray], FloatArray]


def _interval_mass(dist: ContinuousDistribution, lo: FloatArray, hi: FloatArray) -> FloatArray:
    """Mass of (lo, hi] under a continuous scipy distribution, accurate in both tails."""
    med = dist.median()
    with np.errstate(invalid="ignore"):
        upper = dist.sf(lo) - dist.sf(hi)
        lower = dist.cdf(hi) - dist.cdf(lo)
    return np.clip(np.where(lo >= med, upper, lower), 0.0, None)


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

    ``p``/``q`` are frozen scipy distributions; ``z_sup``/``z_inf`` are the generalized inverses of L (vectorized,
    returning -inf/+inf outside L's range). ``mix`` = q_s and ``direction`` describe Poisson subsampling applied to
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
    """P and Q on finitely many outcomes (all Q-masses positive)."""

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


Pair = ScalarPair | DiscretePair


def gaussian_pair(noise_multiplier: float) -> ScalarPair:
    """P = N(1, s^2), Q = N(0, s^2): L(z) = (2z - 1) / (2 s^2); symmetric, so add and remove coincide."""
    s2 = noise_multiplier**2

    def inv(l: FloatArray) -> FloatArray:
        return s2 * np.asarray(l, dtype=float) + 0.5

    from scipy import stats  # imported where used: scipy.stats takes a quarter second to import

    return ScalarPair(stats.norm(1.0, noise_multiplier), stats.norm(0.0, noise_multiplier), inv, inv)


def laplace_pair(scale: float) -> ScalarPair:
    """P = Lap(1, b), Q = Lap(0, b): L(z) = (|z| - |z - 1|) / b, in [-1/b, 1/b] with atoms at both ends."""
    b = scale

    def z_sup(l: FloatArray) -> FloatArray:
        l = np.asarray(l, dtype=float)
        return np.where(l < -1 / b, -np.inf, np.where(l >= 1 / b, np.inf, (l * b + 1) / 2))

    def z_inf(l: FloatArray) -> FloatArray:
        l = np.asarray(l, dtype=float)
        return np.where(l <= -1 / b, -np.inf, np.where(l > 1 / b, np.inf, (l * b + 1) / 2))

    from scipy import stats

    return ScalarPair(stats.laplace(1.0, b), stats.laplace(0.0, b), z_sup, z_inf)


def randomized_response_pair(epsilon: float, num_buckets: int = 2) -> DiscretePair:
    """k-ary RR on inputs x (P) and x' (Q): true bucket w.p. e^eps / (e^eps + k - 1), each other 1 / (e^eps + k - 1)."""
    k = num_buckets
    # Stable for large epsilon: divide through by e^eps. The k - 2 buckets with P = Q (loss 0) are one outcome.
    hi = 1.0 / (1.0 + (k - 1) * math.exp(-epsilon))
    lo = math.exp(-epsilon) * hi
    if k == 2:
        return DiscretePair(np.array([hi, lo]), np.array([lo, hi]))
    return DiscretePair(np.array([hi, lo, (k - 2) * lo]), np.array([lo, hi, (k - 2) * lo]))


def poisson_subsampled(pair: Pair, q: float, direction: str) -> Pair:
    """The ``direction`` ("remove" or "add") pair of ``pair`` under Poisson subsampling with rate ``q``."""
    if direction not in ("remove", "add"):
        raise ValueError(f"direction must be 'remove' or 'add', got {direction!r}")
    if isinstance(pair, ScalarPair):
        if pair.mix != 1.0:
            raise ValueError("nested Poisson subsampling is not supported")
        return dataclasses.replace(pair, mix=q, direction=direction)
    mixed = (1 - q) * pair.q + q * pair.p
    return DiscretePair(mixed, pair.q) if direction == "remove" else DiscretePair(pair.q, mixed)
