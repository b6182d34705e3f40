"""Attacks on tau reports of one user of a longitudinal protocol (constant value), registered per protocol class.

A trial is the (tau, ...) array of one user's reports. :func:`longitudinal_statistic` counts, over the tau
reports, how often they support v1 and v2; its exact law under each input mixes the memoized permanent response
(drawn once) with the tau independent instantaneous responses. :func:`longitudinal_family_attack` is LDP-Auditor's
A^L: add up the per-report support of every item, guess the argmax (random tie-breaks). A new protocol adds one
registration of each (``@longitudinal_statistic.register(MyProtocol)``), or gets only the split LR test.
"""

from __future__ import annotations

from functools import singledispatch

import numpy as np

from dpkit.audits.ldp.attacks.statistic import (
    FamilyAttack,
    Statistic,
    guess_uniform_from_support,
    mixture_binomial_pmf,
    trinomial_pmf,
)
from dpkit.mechanisms import hashing
from dpkit.mechanisms.longitudinal import LGRR, LOLOHA, LUE, DBitFlipPM, LongitudinalProtocol

__all__ = ["longitudinal_statistic", "longitudinal_family_attack"]


# ------------------------------------------------------------------------------------------------ statistics
@singledispatch
def longitudinal_statistic(proto: LongitudinalProtocol, tau: int, v1: int, v2: int) -> Statistic | None:
    """The likelihood-ratio statistic of ``tau`` reports of one user holding v1 or v2 (None: none registered)."""
    return None


def _memoized_grr_pmfs(p: LGRR | LOLOHA, m: int, tau: int) -> tuple[np.ndarray, np.ndarray]:
    """P(#reports = (the image of) v1, #reports = v2) over tau reports of GRR-over-GRR on m values, under v1 and
    under v2: the PRR lands on the own value (p1), the other one (q1) or a third value (the rest, 0 when m = 2)."""
    rest = 1 - p.p1 - p.q1
    t_own, t_other = trinomial_pmf(tau, p.p2, p.q2), trinomial_pmf(tau, p.q2, p.p2)
    t_rest = trinomial_pmf(tau, p.q2, p.q2) if m > 2 else 0.0
    pm1 = (p.p1 * t_own + p.q1 * t_other + rest * t_rest).ravel()
    pm2 = (p.q1 * t_own + p.p1 * t_other + rest * t_rest).ravel()
    return pm1, pm2


@longitudinal_statistic.register(LGRR)
def _lgrr_statistic(p: LGRR, tau: int, v1: int, v2: int) -> Statistic:
    side = tau + 1
    pm1, pm2 = _memoized_grr_pmfs(p, p.k, tau)

    def codes(r: np.ndarray) -> np.ndarray:
        return (r == v1).sum(axis=1) * side + (r == v2).sum(axis=1)

    return Statistic("(#reports = v1, #reports = v2)", side * side, codes, (pm1, pm2))


@longitudinal_statistic.register(LOLOHA)
def _loloha_statistic(p: LOLOHA, tau: int, v1: int, v2: int) -> Statistic:
    side = tau + 1
    pm1, pm2 = _memoized_grr_pmfs(p, p.g, tau)
    c = 1.0 / p.g  # H(v1) = H(v2): the reports say nothing (collision probability of the universal family)

    def codes(r: np.ndarray) -> np.ndarray:
        a, b, y = r[:, 0, 0], r[:, 0, 1], r[:, :, 2].astype(np.int64)
        h1 = hashing.hash_values(a, b, np.uint64(v1), p.g)
        h2 = hashing.hash_values(a, b, np.uint64(v2), p.g)
        out = (y == h1[:, None]).sum(axis=1) * side + (y == h2[:, None]).sum(axis=1)
        return np.where(h1 == h2, side * side, out)

    pm1 = np.append((1 - c) * pm1, c)
    pm2 = np.append((1 - c) * pm2, c)
    return Statistic("(#y = H(v1), #y = H(v2), collision)", side * side + 1, codes, (pm1, pm2))


@longitudinal_statistic.register(LUE)
def _lue_statistic(p: LUE, tau: int, v1: int, v2: int) -> Statistic:
    side = tau + 1
    own = mixture_binomial_pmf(tau, p.p1, p.p2, p.q2)
    other = mixture_binomial_pmf(tau, p.q1, p.p2, p.q2)

    def codes(r: np.ndarray) -> np.ndarray:
        return r[:, :, v1].sum(axis=1).astype(np.int64) * side + r[:, :, v2].sum(axis=1).astype(np.int64)

    return Statistic(
        "(#bit v1, #bit v2)", side * side, codes, (np.outer(own, other).ravel(), np.outer(other, own).ravel())
    )


@longitudinal_statistic.register(DBitFlipPM)
def _dbit_statistic(p: DBitFlipPM, tau: int, v1: int, v2: int) -> Statistic | None:
    d, b = p.d, p.b
    B1, B2 = int(p.bucket(np.array([v1]))[0]), int(p.bucket(np.array([v2]))[0])
    side = tau + 2  # count of ones in [0, tau], or tau + 1 = bucket not sampled

    def codes(r: np.ndarray) -> np.ndarray:
        J, bits = r[:, 0, :d], r[:, :, d:]

        def count(B: int) -> np.ndarray:
            hit = J == B
            c = (bits * hit[:, None, :]).sum(axis=(1, 2))
            return np.where(hit.any(axis=1), c, tau + 1)

        return count(B1) * side + count(B2)

    pb = b * (b - 1)
    both, only, none = d * (d - 1) / pb, d * (b - d) / pb, (b - d) * (b - d - 1) / pb

    def marg(prob_one: float) -> np.ndarray:  # memoized bit: all tau reports equal
        m = np.zeros(side)
        m[tau] += prob_one
        m[0] += 1 - prob_one
        return m

    absent = np.zeros(side)
    absent[tau + 1] = 1.0
    if B1 == B2:
        return None

    def pmf(own_bucket: int) -> np.ndarray:
        a1 = marg(p.p if own_bucket == 1 else p.q)
        a2 = marg(p.p if own_bucket == 2 else p.q)
        return (
            both * np.outer(a1, a2)
            + only * np.outer(a1, absent)
            + only * np.outer(absent, a2)
            + none * np.outer(absent, absent)
        ).ravel()

    return Statistic("(#ones at bucket(v1), #ones at bucket(v2))", side * side, codes, (pmf(1), pmf(2)))


# ---------------------------------------------------------------------------------------------- family attacks
@singledispatch
def longitudinal_family_attack(proto: LongitudinalProtocol, v1: int) -> FamilyAttack | None:
    """LDP-Auditor's A^L on tau reports per trial, returning guess == v1 (None: none registered)."""
    return None


def _argmax_guess(score: np.ndarray, v1: int, k: int, rng: np.random.Generator) -> np.ndarray:
    top = score.max(axis=1, keepdims=True)
    tied = score == top
    return guess_uniform_from_support(tied[:, v1], tied.sum(axis=1), k, rng)


@longitudinal_family_attack.register(LGRR)
def _lgrr_attack(p: LGRR, v1: int) -> FamilyAttack:
    k = p.k

    def lgrr(r: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = len(r)
        idx = (np.arange(n)[:, None] * k + r).ravel()
        return _argmax_guess(np.bincount(idx, minlength=n * k).reshape(n, k), v1, k, rng)

    return lgrr


@longitudinal_family_attack.register(LUE)
def _lue_attack(p: LUE, v1: int) -> FamilyAttack:
    k = p.k
    return lambda r, rng: _argmax_guess(r.sum(axis=1, dtype=np.int64), v1, k, rng)


@longitudinal_family_attack.register(LOLOHA)
def _loloha_attack(p: LOLOHA, v1: int) -> FamilyAttack:
    k, g = p.k, p.g
    xs = np.arange(k, dtype=np.uint64)

    def loloha(r: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = len(r)
        y = r[:, :, 2].astype(np.int64)
        cnt = np.bincount((np.arange(n)[:, None] * g + y).ravel(), minlength=n * g).reshape(n, g)
        h = hashing.hash_values(r[:, 0, 0][:, None], r[:, 0, 1][:, None], xs[None, :], g)
        return _argmax_guess(np.take_along_axis(cnt, h, axis=1), v1, k, rng)

    return loloha
