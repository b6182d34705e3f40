"""Attacks on one report of a frequency oracle, registered per protocol class.

:func:`fo_statistic` (the likelihood-ratio statistic) and :func:`fo_family_attack` (LDP-Auditor's guess) dispatch
on the class of the protocol (``functools.singledispatch``, so subclasses inherit their family's attack). A new
frequency oracle adds one registration of each::

    @fo_statistic.register(MyOracle)
    def _my_statistic(proto: MyOracle, v1: int, v2: int) -> Statistic: ...

    @fo_family_attack.register(MyOracle)
    def _my_attack(proto: MyOracle, v1: int, v2: int) -> FamilyAttack | None: ...

Pure protocols: the privacy loss ln P(y|v1)/P(y|v2) of one report takes the values +-epsilon and 0 and is a
function of the code of the statistic, so the Neyman-Pearson test on the code is the Neyman-Pearson test on the
report. SHE/THE: the loss is (eps/2)(clip(2 y_v1 - 1) - clip(2 y_v2 - 1)); the code bins y_v1 and y_v2 (saturated
ends exact: y_v1 >= 1 and y_v2 <= 0 has ratio exactly e^eps). GM/AGM: the loss is (y_v1 - y_v2) / sigma^2, so the
code bins y_v1 - y_v2 (a Gaussian shift). The approximate-LDP variants AGRR, ASUE, ABLH and AOLH subclass GRR,
unary encoding and local hashing and inherit their statistics, which read the class's own (p, q). The family
attacks follow LDP-Auditor (Arcolezi and Gambs, 2024): x_hat uniform on the support set of the report (GM/AGM: the
argmax of the report, the maximum-likelihood value).
"""

from __future__ import annotations

import math
from functools import singledispatch
from typing import Any

import numpy as np

from dpkit.audits.ldp.attacks.statistic import (
    HE_EDGES,
    FamilyAttack,
    Statistic,
    gaussian_shift_statistic,
    guess_uniform_from_support,
    laplace_bin_pmf,
    pair_pmf,
)
from dpkit.mechanisms import hashing
from dpkit.mechanisms.frequency_oracles import (
    GRR,
    SHE,
    THE,
    GaussianEncoding,
    HadamardResponse,
    HadamardResponseGeneral,
    LocalHashing,
    SubsetSelection,
    UnaryEncoding,
)
from dpkit.mechanisms.heavy_hitters import CandidateHashing
from dpkit.mechanisms.range_queries import HaarLevel

__all__ = ["fo_statistic", "fo_family_attack"]


# ------------------------------------------------------------------------------------------------ statistics
@singledispatch
def fo_statistic(proto: Any, v1: int, v2: int) -> Statistic:
    """The likelihood-ratio statistic of one report of ``proto`` (its claimed model) for the inputs v1, v2."""
    raise TypeError(f"no likelihood-ratio statistic for {type(proto).__name__}")


@fo_statistic.register(GRR)
def _grr_statistic(proto: GRR, v1: int, v2: int) -> Statistic:
    p, q = proto.p, proto.q

    def codes(r: np.ndarray) -> np.ndarray:
        return np.where(r == v1, 0, np.where(r == v2, 1, 2))

    return Statistic("y", 3, codes, (np.array([p, q, 1 - p - q]), np.array([q, p, 1 - p - q])))


@fo_statistic.register(UnaryEncoding)
def _ue_statistic(proto: UnaryEncoding, v1: int, v2: int) -> Statistic:
    p, q = proto.p, proto.q

    def codes(r: np.ndarray) -> np.ndarray:
        return 2 * r[:, v1].astype(np.int64) + r[:, v2].astype(np.int64)

    return Statistic("(bit v1, bit v2)", 4, codes, pair_pmf(p, q, q, p))


@fo_statistic.register(LocalHashing)
def _lh_statistic(proto: LocalHashing, v1: int, v2: int) -> Statistic:
    p, q, g = proto.p, proto.q, proto.g
    c = 1.0 / g  # collision probability of the universal family (exact up to g 2^-64)

    def codes(r: np.ndarray) -> np.ndarray:
        a, b, y = r[:, 0], r[:, 1], r[:, 2].astype(np.int64)
        h1 = hashing.hash_values(a, b, np.uint64(v1), g)
        h2 = hashing.hash_values(a, b, np.uint64(v2), g)
        return np.where(h1 == h2, 3, np.where(y == h1, 0, np.where(y == h2, 1, 2)))

    m1 = np.array([(1 - c) * p, (1 - c) * q, (1 - c) * (1 - p - q), c])
    m2 = np.array([(1 - c) * q, (1 - c) * p, (1 - c) * (1 - p - q), c])
    return Statistic("(y = H(v1), y = H(v2), collision)", 4, codes, (m1, m2))


@fo_statistic.register(SubsetSelection)
def _ss_statistic(proto: SubsetSelection, v1: int, v2: int) -> Statistic:
    k, w, pv = proto.k, proto.omega, proto.p_v

    def codes(r: np.ndarray) -> np.ndarray:
        return 2 * (r == v1).any(axis=1).astype(np.int64) + (r == v2).any(axis=1).astype(np.int64)

    # P(v1 in S, v2 in S | v1) etc.; codes 2 [v1 in S] + [v2 in S]
    own = np.array(
        [(1 - pv) * (k - 1 - w) / (k - 1), (1 - pv) * w / (k - 1), pv * (k - w) / (k - 1), pv * (w - 1) / (k - 1)]
    )
    other = own[[0, 2, 1, 3]]
    return Statistic("(v1 in S, v2 in S)", 4, codes, (own, other))


@fo_statistic.register(HadamardResponse)
def _hr_statistic(proto: HadamardResponse, v1: int, v2: int) -> Statistic:
    p = proto.p_star

    def codes(r: np.ndarray) -> np.ndarray:
        in1 = (np.bitwise_count((v1 + 1) & r) & 1) == 0
        in2 = (np.bitwise_count((v2 + 1) & r) & 1) == 0
        return 2 * in1.astype(np.int64) + in2.astype(np.int64)

    own = np.array([(1 - p) / 2, (1 - p) / 2, p / 2, p / 2])
    other = own[[0, 2, 1, 3]]
    return Statistic("(j in C_v1, j in C_v2)", 4, codes, (own, other))


@fo_statistic.register(HadamardResponseGeneral)
def _hr_general_statistic(proto: HadamardResponseGeneral, v1: int, v2: int) -> Statistic:
    # the loss is +-eps or 0 according to (y in C_v1, y in C_v2); its exact law sums P(y | v) over [K]
    in_c = _hr_general_membership(proto, v1, v2)

    def codes(r: np.ndarray) -> np.ndarray:
        return in_c[r]

    all_codes = in_c[np.arange(proto.K)]
    own = np.bincount(all_codes, weights=proto.output_probabilities(v1), minlength=4)
    other = np.bincount(all_codes, weights=proto.output_probabilities(v2), minlength=4)
    return Statistic("(y in C_v1, y in C_v2)", 4, codes, (own, other))


def _hr_general_membership(proto: HadamardResponseGeneral, v1: int, v2: int) -> np.ndarray:
    """Code 2 [y in C_v1] + [y in C_v2] of every output y in [K] of HR-general (a lookup table)."""
    y = np.arange(proto.K)

    def member(v: int) -> np.ndarray:
        blk, row = proto.cell(v)
        return ((y // proto.b) == blk) & ((np.bitwise_count(int(row) & (y % proto.b)) & 1) == 0)

    return 2 * member(v1).astype(np.int64) + member(v2).astype(np.int64)


@fo_statistic.register(SHE)
@fo_statistic.register(THE)
def _he_statistic(proto: SHE | THE, v1: int, v2: int) -> Statistic:
    scale = 2.0 / proto.epsilon
    on, off = laplace_bin_pmf(1.0, scale), laplace_bin_pmf(0.0, scale)

    def codes(r: np.ndarray) -> np.ndarray:
        return 6 * np.digitize(r[:, v1], HE_EDGES) + np.digitize(r[:, v2], HE_EDGES)

    return Statistic("(bin y_v1, bin y_v2)", 36, codes, (np.outer(on, off).ravel(), np.outer(off, on).ravel()))


@fo_statistic.register(GaussianEncoding)
def _gaussian_statistic(proto: GaussianEncoding, v1: int, v2: int) -> Statistic:
    scale = proto.sigma * math.sqrt(2.0)  # y_v1 - y_v2 ~ N(+-1, 2 sigma^2)

    def standardize(r: np.ndarray) -> np.ndarray:
        return (r[:, v1] - r[:, v2]) / scale

    return gaussian_shift_statistic("bin of y_v1 - y_v2", standardize, 1.0 / scale, -1.0 / scale)


@fo_statistic.register(HaarLevel)
def _haar_level_statistic(proto: HaarLevel, v1: int, v2: int) -> Statistic:
    # a report (r, sign) is consistent with u iff the sign is s_u H[j_u][r]; P(consistent | u) = p, and the
    # coefficient index r is uniform, so the pmf needs only a = P_r(u1 and u2 give the same sign)
    p = proto.p

    def consistent(r: np.ndarray, u: int) -> np.ndarray:
        idx, plus = r >> 1, r & 1
        return ((np.bitwise_count((u >> 1) & idx) + (u & 1)) & 1) == 1 - plus

    def codes(r: np.ndarray) -> np.ndarray:
        r = np.asarray(r, dtype=np.int64)
        return 2 * consistent(r, v1).astype(np.int64) + consistent(r, v2).astype(np.int64)

    idx = np.arange(proto.m, dtype=np.int64)
    sign = lambda u: (np.bitwise_count((u >> 1) & idx) + (u & 1)) & 1  # noqa: E731
    a = float(np.mean(sign(v1) == sign(v2)))
    own = np.array([a * (1 - p), (1 - a) * (1 - p), (1 - a) * p, a * p])  # codes 0: neither, 1: v2, 2: v1, 3: both
    return Statistic("(consistent with v1, consistent with v2)", 4, codes, (own, own[[0, 2, 1, 3]]))


def _candidate_collision(g: int) -> float:
    """P(H(x) = H(x')) for distinct keys under CandidateHashing: its 32-bit hashes are independent and uniform
    (strongly universal), then bucket y holds w_y = floor(2^32/g) or one more of them: sum_y w_y^2 / 2^64."""
    w0, wide = divmod(1 << 32, g)
    return (wide * (w0 + 1) ** 2 + (g - wide) * w0**2) / float(1 << 64)


def _candidate_hits(proto: CandidateHashing, r: np.ndarray, key: int) -> np.ndarray:
    return proto.hash(r[:, 0], r[:, 1], r[:, 2], np.uint64(key)) == r[:, 3].astype(np.int64)


@fo_statistic.register(CandidateHashing)
def _candidate_statistic(proto: CandidateHashing, v1: int, v2: int) -> Statistic:
    p, g = proto.p_star, proto.g
    q = (1 - p) / (g - 1)
    c = _candidate_collision(g)

    def codes(r: np.ndarray) -> np.ndarray:
        h1 = proto.hash(r[:, 0], r[:, 1], r[:, 2], np.uint64(v1))
        h2 = proto.hash(r[:, 0], r[:, 1], r[:, 2], np.uint64(v2))
        y = r[:, 3].astype(np.int64)
        return np.where(h1 == h2, 3, np.where(y == h1, 0, np.where(y == h2, 1, 2)))

    m1 = np.array([(1 - c) * p, (1 - c) * q, (1 - c) * (1 - p - q), c])
    return Statistic("(y = H(v1), y = H(v2), collision)", 4, codes, (m1, m1[[1, 0, 2, 3]]))


# ---------------------------------------------------------------------------------------------- family attacks
@singledispatch
def fo_family_attack(proto: Any, v1: int, v2: int) -> FamilyAttack | None:
    """LDP-Auditor's attack for the protocol family of ``proto``, returning guess == v1 per trial (None: no
    attack is registered for this class)."""
    return None


@fo_family_attack.register(GRR)
def _grr_attack(proto: GRR, v1: int, v2: int) -> FamilyAttack:
    return lambda r, rng: r == v1


@fo_family_attack.register(UnaryEncoding)
def _ue_attack(proto: UnaryEncoding, v1: int, v2: int) -> FamilyAttack:
    k = proto.k
    return lambda r, rng: guess_uniform_from_support(r[:, v1], r.sum(axis=1), k, rng)


@fo_family_attack.register(LocalHashing)
def _lh_attack(proto: LocalHashing, v1: int, v2: int) -> FamilyAttack:
    k, g = proto.k, proto.g
    xs = np.arange(k, dtype=np.uint64)

    def lh(r: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        a, b, y = r[:, 0], r[:, 1], r[:, 2].astype(np.int64)
        h = hashing.hash_values(a[:, None], b[:, None], xs[None, :], g)
        support = h == y[:, None]
        return guess_uniform_from_support(support[:, v1], support.sum(axis=1), k, rng)

    return lh


@fo_family_attack.register(SubsetSelection)
def _ss_attack(proto: SubsetSelection, v1: int, v2: int) -> FamilyAttack:
    k, w = proto.k, proto.omega
    return lambda r, rng: guess_uniform_from_support((r == v1).any(axis=1), np.full(len(r), w), k, rng)


@fo_family_attack.register(THE)
def _the_attack(proto: THE, v1: int, v2: int) -> FamilyAttack:
    k, th = proto.k, proto.theta
    return lambda r, rng: guess_uniform_from_support(r[:, v1] > th, (r > th).sum(axis=1), k, rng)


@fo_family_attack.register(SHE)
def _she_attack(proto: SHE, v1: int, v2: int) -> FamilyAttack:
    k = proto.k

    def she(r: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        # MAP under Laplace noise: argmax of clip(2y - 1, -1, 1), random tie-break. The clipped scores tie at the
        # top only when max y >= 1 (every y >= 1 ties) or max y <= 0 (all tie at -1); otherwise the argmax is
        # unique almost surely (continuous noise). Same guess, fewer passes.
        m = r.max(axis=1)
        sat_hi = m >= 1
        sat_lo = m <= 0
        tied_cnt = np.where(sat_hi, np.count_nonzero(r >= 1, axis=1), 1)
        tied_cnt = np.where(sat_lo, k, tied_cnt)  # all clip to -1: every item ties
        in1 = np.where(sat_hi, r[:, v1] >= 1, np.where(sat_lo, True, r[:, v1] == m))
        return guess_uniform_from_support(in1, tied_cnt, k, rng)

    return she


@fo_family_attack.register(HadamardResponseGeneral)
def _hr_general_attack(proto: HadamardResponseGeneral, v1: int, v2: int) -> FamilyAttack:
    k = proto.k
    blk, row = proto.cell(np.arange(k))

    def hrg(r: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        # uniform over the support {v : y in C_v} (v in y's block with an even parity)
        support = (blk[None, :] == (r // proto.b)[:, None]) & (
            (np.bitwise_count(row[None, :] & (r % proto.b)[:, None]) & 1) == 0
        )
        return guess_uniform_from_support(support[:, v1], support.sum(axis=1), k, rng)

    return hrg


@fo_family_attack.register(HadamardResponse)
def _hr_attack(proto: HadamardResponse, v1: int, v2: int) -> FamilyAttack:
    k = proto.k
    vals = np.arange(1, k + 1)

    def hr(r: np.ndarray, rng: np.random.Generator) -> np.ndarray:  # uniform over the support {v : j in C_v}
        support = (np.bitwise_count(vals[None, :] & r[:, None]) & 1) == 0
        return guess_uniform_from_support(support[:, v1], support.sum(axis=1), k, rng)

    return hr


@fo_family_attack.register(GaussianEncoding)
def _gaussian_attack(proto: GaussianEncoding, v1: int, v2: int) -> FamilyAttack:
    # MAP under Gaussian noise: argmax_v y_v (ties have probability 0)
    return lambda r, rng: r[:, v1] >= r.max(axis=1)


@fo_family_attack.register(HaarLevel)
def _haar_level_attack(proto: HaarLevel, v1: int, v2: int) -> FamilyAttack:
    u = np.arange(2 * proto.m, dtype=np.int64)

    def haar(r: np.ndarray, rng: np.random.Generator) -> np.ndarray:  # uniform over the inputs the report fits
        r = np.asarray(r, dtype=np.int64)
        idx, plus = (r >> 1)[:, None], (r & 1)[:, None]
        support = ((np.bitwise_count((u[None, :] >> 1) & idx) + (u[None, :] & 1)) & 1) == 1 - plus
        return guess_uniform_from_support(support[:, v1], support.sum(axis=1), len(u), rng)

    return haar


@fo_family_attack.register(CandidateHashing)
def _candidate_attack(proto: CandidateHashing, v1: int, v2: int) -> FamilyAttack:
    # LDP-Auditor's local-hashing guess over a candidate set: v1, v2 and the keys 1..14 between them
    keys = np.unique(np.array([v1, v2, *range(1, 15)], dtype=np.uint64))
    first = int(np.flatnonzero(keys == np.uint64(v1))[0])

    def lh(r: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        support = np.stack([_candidate_hits(proto, r, int(x)) for x in keys], axis=1)
        return guess_uniform_from_support(support[:, first], support.sum(axis=1), len(keys), rng)

    return lh
