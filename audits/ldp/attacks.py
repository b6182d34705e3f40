"""Attacks of the distinguishing game: LDP-Auditor's per-family guesses and likelihood-ratio tests.

Two kinds, both vectorized over trials (one row of ``reports`` per trial):

* **family attacks** (ldp.md 7.2, LDP-Auditor): a guess x_hat in [k] per trial; the test event is "x_hat = v1".
  They return a bool array (guess == v1), drawing their random tie-breaks from ``rng``.
* **likelihood-ratio (Neyman-Pearson) tests**: a :class:`Statistic` maps every trial to a code of a small
  discrete statistic (e.g. (bit v1, bit v2) for unary encoding, (#reports = v1, #reports = v2) over tau
  longitudinal reports) whose exact distribution under v1 and v2 follows from the protocol's *claimed* output
  distribution. The event is {codes whose ratio P(code | v1)/P(code | v2) is above a threshold}; the threshold is
  chosen by :func:`dpkit.audits.ldp.bounds.choose_event` from the exact distribution alone, before any trial is run,
  so the bound is not biased by the choice. The event is tested in both directions (v1 against v2 and v2
  against v1), since a broken implementation may leak in the direction its model does not expect.
  When no exact distribution is known (``pmf is None``, e.g. a user's callable), the game chooses the event on a
  separate training split and evaluates it on fresh trials.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

from dpkit.mechanisms import hashing
from dpkit.mechanisms.frequency_oracles import (
    GRR,
    SHE,
    THE,
    HadamardResponse,
    HadamardResponseGeneral,
    LocalHashing,
    SubsetSelection,
    UnaryEncoding,
)

__all__ = [
    "Statistic",
    "fo_statistic",
    "fo_family_attack",
    "guess_uniform_from_support",
    "laplace_bin_pmf",
    "trinomial_pmf",
    "mixture_binomial_pmf",
]


@dataclass(frozen=True)
class Statistic:
    """A discrete statistic of one trial's reports with its exact distribution under v1 and v2.

    ``codes(reports) -> int array in [0, n_codes)``; ``pmf = (P(code | v1), P(code | v2))`` or None (unknown: the
    game then picks the event on a training split).
    """

    name: str
    n_codes: int
    codes: Callable[[np.ndarray], np.ndarray]
    pmf: tuple[np.ndarray, np.ndarray] | None = None


# ------------------------------------------------------------------------------------------ exact pmf helpers
def _bern(b, p):
    return np.where(b, p, 1 - p)


def pair_pmf(a1: float, b1: float, a2: float, b2: float) -> tuple[np.ndarray, np.ndarray]:
    """Codes 2 x + y of two independent indicator bits (x, y); P(x) = a_i, P(y) = b_i under input i."""
    x = np.array([0, 0, 1, 1], dtype=bool)
    y = np.array([0, 1, 0, 1], dtype=bool)
    return _bern(x, a1) * _bern(y, b1), _bern(x, a2) * _bern(y, b2)


def laplace_cdf(x, scale):
    x = np.asarray(x, dtype=np.float64)
    return np.where(x < 0, 0.5 * np.exp(np.minimum(x, 0) / scale), 1 - 0.5 * np.exp(-np.maximum(x, 0) / scale))


_HE_EDGES = np.array([0.0, 0.25, 0.5, 0.75, 1.0])  # bins: y <= 0 (saturated), 4 interior, y >= 1 (saturated)


def laplace_bin_pmf(mean: float, scale: float) -> np.ndarray:
    """P(bin of mean + Laplace(scale)) over the 6 bins of ``_HE_EDGES``."""
    cdf = np.concatenate([[0.0], laplace_cdf(_HE_EDGES - mean, scale), [1.0]])
    return np.diff(cdf)


def trinomial_pmf(tau: int, a: float, b: float) -> np.ndarray:
    """P(c1, c2) for tau draws with P(class 1) = a, P(class 2) = b, (tau + 1) x (tau + 1) (zero if c1 + c2 > tau)."""
    c1, c2 = np.meshgrid(np.arange(tau + 1), np.arange(tau + 1), indexing="ij")
    r = tau - c1 - c2
    ok = r >= 0
    rest = max(1.0 - a - b, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = (
            gammaln(tau + 1)
            - gammaln(c1 + 1)
            - gammaln(c2 + 1)
            - gammaln(np.maximum(r, 0) + 1)
            + _xlogy(c1, a)
            + _xlogy(c2, b)
            + _xlogy(np.maximum(r, 0), rest)
        )
    return np.where(ok, np.exp(logp), 0.0)


def _xlogy(x, p):
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x == 0, 0.0, x * np.log(p) if p > 0 else -np.inf)


def mixture_binomial_pmf(tau: int, w: float, p_hi: float, p_lo: float) -> np.ndarray:
    """P(c) of c ~ Bin(tau, p_hi) w.p. w else Bin(tau, p_lo), c in [0, tau]."""
    from scipy.stats import binom

    c = np.arange(tau + 1)
    return w * binom.pmf(c, tau, p_hi) + (1 - w) * binom.pmf(c, tau, p_lo)


# ------------------------------------------------------------------------------ frequency-oracle statistics
def fo_statistic(proto, v1: int, v2: int) -> Statistic:
    """The likelihood-ratio statistic of one report of a dpkit frequency oracle (claimed model of ``proto``).

    Pure protocols: the privacy loss ln P(y|v1)/P(y|v2) of one report takes the values +-epsilon and 0 and is a
    function of the code below, so the Neyman-Pearson test on the code is the Neyman-Pearson test on the report.
    SHE/THE: the loss is (eps/2)(clip(2 y_v1 - 1) - clip(2 y_v2 - 1)); the code bins y_v1 and y_v2 (saturated
    ends exact: y_v1 >= 1 and y_v2 <= 0 has ratio exactly e^eps).
    """
    if isinstance(proto, GRR):
        p, q = proto.p, proto.q

        def codes(r):
            return np.where(r == v1, 0, np.where(r == v2, 1, 2))

        return Statistic("y", 3, codes, (np.array([p, q, 1 - p - q]), np.array([q, p, 1 - p - q])))
    if isinstance(proto, UnaryEncoding):
        p, q = proto.p, proto.q

        def codes(r):
            return 2 * r[:, v1].astype(np.int64) + r[:, v2].astype(np.int64)

        return Statistic("(bit v1, bit v2)", 4, codes, pair_pmf(p, q, q, p))
    if isinstance(proto, LocalHashing):
        p, q, g = proto.p, proto.q, proto.g
        c = 1.0 / g  # collision probability of the universal family (exact up to g 2^-64)

        def codes(r):
            a, b, y = r[:, 0], r[:, 1], r[:, 2].astype(np.int64)
            h1 = hashing.hash_values(a, b, np.uint64(v1), g)
            h2 = hashing.hash_values(a, b, np.uint64(v2), g)
            return np.where(h1 == h2, 3, np.where(y == h1, 0, np.where(y == h2, 1, 2)))

        m1 = np.array([(1 - c) * p, (1 - c) * q, (1 - c) * (1 - p - q), c])
        m2 = np.array([(1 - c) * q, (1 - c) * p, (1 - c) * (1 - p - q), c])
        return Statistic("(y = H(v1), y = H(v2), collision)", 4, codes, (m1, m2))
    if isinstance(proto, SubsetSelection):
        k, w, pv = proto.k, proto.omega, proto.p_v

        def codes(r):
            return 2 * (r == v1).any(axis=1).astype(np.int64) + (r == v2).any(axis=1).astype(np.int64)

        # P(v1 in S, v2 in S | v1) etc.; codes 2 [v1 in S] + [v2 in S]
        own = np.array(
            [(1 - pv) * (k - 1 - w) / (k - 1), (1 - pv) * w / (k - 1), pv * (k - w) / (k - 1), pv * (w - 1) / (k - 1)]
        )
        other = own[[0, 2, 1, 3]]
        return Statistic("(v1 in S, v2 in S)", 4, codes, (own, other))
    if isinstance(proto, HadamardResponse):
        p = proto.p_star

        def codes(r):
            in1 = (np.bitwise_count((v1 + 1) & r) & 1) == 0
            in2 = (np.bitwise_count((v2 + 1) & r) & 1) == 0
            return 2 * in1.astype(np.int64) + in2.astype(np.int64)

        own = np.array([(1 - p) / 2, (1 - p) / 2, p / 2, p / 2])
        other = own[[0, 2, 1, 3]]
        return Statistic("(j in C_v1, j in C_v2)", 4, codes, (own, other))
    if isinstance(proto, HadamardResponseGeneral):
        # the loss is +-eps or 0 according to (y in C_v1, y in C_v2); its exact law sums P(y | v) over [K]
        in_c = _hr_general_membership(proto, v1, v2)

        def codes(r):
            return in_c[r]

        all_codes = in_c[np.arange(proto.K)]
        own = np.bincount(all_codes, weights=proto.output_probabilities(v1), minlength=4)
        other = np.bincount(all_codes, weights=proto.output_probabilities(v2), minlength=4)
        return Statistic("(y in C_v1, y in C_v2)", 4, codes, (own, other))
    if isinstance(proto, (SHE, THE)):
        scale = 2.0 / proto.epsilon
        on, off = laplace_bin_pmf(1.0, scale), laplace_bin_pmf(0.0, scale)

        def codes(r):
            return 6 * np.digitize(r[:, v1], _HE_EDGES) + np.digitize(r[:, v2], _HE_EDGES)

        return Statistic("(bin y_v1, bin y_v2)", 36, codes, (np.outer(on, off).ravel(), np.outer(off, on).ravel()))
    raise TypeError(f"no likelihood-ratio statistic for {type(proto).__name__}")


def _hr_general_membership(proto, v1: int, v2: int) -> np.ndarray:
    """Code 2 [y in C_v1] + [y in C_v2] of every output y in [K] of HR-general (a lookup table)."""
    y = np.arange(proto.K)

    def member(v):
        blk, row = proto.cell(v)
        return ((y // proto.b) == blk) & ((np.bitwise_count(int(row) & (y % proto.b)) & 1) == 0)

    return 2 * member(v1).astype(np.int64) + member(v2).astype(np.int64)


# ------------------------------------------------------------------------------------------ family attacks
def guess_uniform_from_support(in_v1: np.ndarray, support_size: np.ndarray, k: int, rng) -> np.ndarray:
    """guess == v1 for "x_hat uniform on the support set, uniform on [k] if the set is empty" (LDP-Auditor)."""
    u = rng.random(len(in_v1))
    size = np.asarray(support_size)
    return np.where(size > 0, in_v1 & (u * np.maximum(size, 1) < 1), u * k < 1)


def fo_family_attack(proto, v1: int, v2: int) -> Callable | None:
    """LDP-Auditor's attack for the protocol family of ``proto`` (ldp.md 7.2), returning guess == v1 per trial."""
    k = proto.k
    if isinstance(proto, GRR):
        return lambda r, rng: r == v1
    if isinstance(proto, UnaryEncoding):
        return lambda r, rng: guess_uniform_from_support(r[:, v1], r.sum(axis=1), k, rng)
    if isinstance(proto, LocalHashing):
        g = proto.g
        xs = np.arange(k, dtype=np.uint64)

        def lh(r, rng):
            a, b, y = r[:, 0], r[:, 1], r[:, 2].astype(np.int64)
            h = hashing.hash_values(a[:, None], b[:, None], xs[None, :], g)
            support = h == y[:, None]
            return guess_uniform_from_support(support[:, v1], support.sum(axis=1), k, rng)

        return lh
    if isinstance(proto, SubsetSelection):
        w = proto.omega
        return lambda r, rng: guess_uniform_from_support((r == v1).any(axis=1), np.full(len(r), w), k, rng)
    if isinstance(proto, THE):
        th = proto.theta
        return lambda r, rng: guess_uniform_from_support(r[:, v1] > th, (r > th).sum(axis=1), k, rng)
    if isinstance(proto, SHE):

        def she(r, rng):  # MAP under Laplace noise: argmax of clip(2y - 1, -1, 1), random tie-break
            # the clipped scores tie at the top only when max y >= 1 (every y >= 1 ties) or max y <= 0 (all tie
            # at -1); otherwise the argmax is unique almost surely (continuous noise). Same guess, fewer passes.
            m = r.max(axis=1)
            sat_hi = m >= 1
            sat_lo = m <= 0
            tied_cnt = np.where(sat_hi, np.count_nonzero(r >= 1, axis=1), 1)
            tied_cnt = np.where(sat_lo, k, tied_cnt)  # all clip to -1: every item ties
            in1 = np.where(sat_hi, r[:, v1] >= 1, np.where(sat_lo, True, r[:, v1] == m))
            return guess_uniform_from_support(in1, tied_cnt, k, rng)

        return she
    if isinstance(proto, HadamardResponseGeneral):
        blk, row = proto.cell(np.arange(k))

        def hrg(r, rng):  # uniform over the support {v : y in C_v} (v in y's block with an even parity)
            support = (blk[None, :] == (r // proto.b)[:, None]) & (
                (np.bitwise_count(row[None, :] & (r % proto.b)[:, None]) & 1) == 0
            )
            return guess_uniform_from_support(support[:, v1], support.sum(axis=1), k, rng)

        return hrg
    if isinstance(proto, HadamardResponse):
        vals = np.arange(1, k + 1)

        def hr(r, rng):  # uniform over the support {v : j in C_v}
            support = (np.bitwise_count(vals[None, :] & r[:, None]) & 1) == 0
            return guess_uniform_from_support(support[:, v1], support.sum(axis=1), k, rng)

        return hr
    return None


def logsumexp_ratio(p1: np.ndarray, p2: np.ndarray) -> float:
    """max ln p1/p2 over codes with p1 > 0 (the largest loss the statistic can show)."""
    live = p1 > 0
    if (p2[live] == 0).any():
        return math.inf
    return float(np.max(np.log(p1[live]) - np.log(p2[live])))
