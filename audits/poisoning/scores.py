"""How the server counts one report for an item: its support and its contribution to the unbiased estimate.

Every frequency oracle's unbiased estimate is an average over reports of a per-report *score*: f_hat_v =
mean_y phi_v(y) with E[phi_v(Y) | value u] = [u = v]. For a pure protocol phi_v(y) = ([v in S(y)] - q*)/(p* - q*)
(S(y) the report's support set); SHE scores y_v itself; HR-general scores +-D/(e^eps - 1) on the two halves of v's
block; dBitFlipPM scores (b/d) z_j on its sampled buckets. Fake reports move an estimate by their scores, so every
gain below is a statement about scores:

    gain on T = beta (sum_{t in T} mean_fake phi_t - f_hat_T(genuine)),   beta = m / (n + m)

* :func:`item_support` (``functools.singledispatch`` on the protocol class): bool (reports, items), [v in S(y)];
* :func:`report_scores`: float (reports, items), phi_v(y); pure protocols get it from their support.

A new protocol registers its support (pure protocols) or its scores next to the others.
"""

from __future__ import annotations

import math
from functools import singledispatch

import numpy as np

from dpkit.mechanisms import hashing
from dpkit.mechanisms.base import FrequencyOracle, PureFrequencyOracle
from dpkit.mechanisms.frequency_oracles import (
    GRR,
    SHE,
    THE,
    BitVectorReports,
    HadamardResponse,
    HadamardResponseGeneral,
    LocalHashing,
    SubsetSelection,
)
from dpkit.mechanisms.longitudinal import LGRR, LOLOHA, DBitFlipPM

__all__ = ["item_support", "report_scores", "n_items", "true_frequencies"]


@singledispatch
def n_items(proto: FrequencyOracle) -> int:
    """The number of items the protocol estimates (k; dBitFlipPM: its b buckets)."""
    return int(proto.k)


@n_items.register(DBitFlipPM)
def _n_items_dbit(proto: DBitFlipPM) -> int:
    return int(proto.b)


@singledispatch
def true_frequencies(proto: FrequencyOracle, values: np.ndarray) -> np.ndarray:
    """The frequencies the protocol estimates, of the users' ``values`` (items in [0, k))."""
    return np.bincount(values, minlength=proto.k) / max(len(values), 1)


@true_frequencies.register(DBitFlipPM)
def _true_dbit(proto: DBitFlipPM, values: np.ndarray) -> np.ndarray:
    return np.bincount(proto.bucket(values), minlength=proto.b) / max(len(values), 1)


# ------------------------------------------------------------------------------------------------ support
@singledispatch
def item_support(proto: FrequencyOracle, reports: np.ndarray, items: np.ndarray) -> np.ndarray:
    """[v in S(y)] for every report (rows) and item v of ``items`` (columns): the reports' support sets."""
    raise TypeError(f"{type(proto).__name__} reports have no support sets (no item_support registered)")


@item_support.register(GRR)
@item_support.register(LGRR)
def _support_index(proto: GRR | LGRR, reports: np.ndarray, items: np.ndarray) -> np.ndarray:
    return np.asarray(reports)[:, None] == np.asarray(items)[None, :]


@item_support.register(BitVectorReports)  # the unary-report mixin of UE and the L-UE chains
def _support_bits(proto: BitVectorReports, reports: np.ndarray, items: np.ndarray) -> np.ndarray:  # type: ignore[misc]
    return np.asarray(reports)[:, np.asarray(items)].astype(bool)


@item_support.register(LocalHashing)
@item_support.register(LOLOHA)
def _support_hash(proto: LocalHashing | LOLOHA, reports: np.ndarray, items: np.ndarray) -> np.ndarray:
    r = np.asarray(reports, dtype=np.uint64)
    xs = np.asarray(items, dtype=np.uint64)
    h = hashing.hash_values(r[:, 0:1], r[:, 1:2], xs[None, :], proto.g)
    return h == r[:, 2:3].astype(np.int64)


@item_support.register(SubsetSelection)
def _support_subset(proto: SubsetSelection, reports: np.ndarray, items: np.ndarray) -> np.ndarray:
    r = np.asarray(reports)
    out = np.zeros((len(r), len(items)), dtype=bool)
    for j in range(r.shape[1]):  # omega columns, each one comparison against the items
        out |= r[:, j : j + 1] == np.asarray(items)[None, :]
    return out


@item_support.register(THE)
def _support_threshold(proto: THE, reports: np.ndarray, items: np.ndarray) -> np.ndarray:
    return np.asarray(reports)[:, np.asarray(items)] > proto.theta


@item_support.register(HadamardResponse)
def _support_hr(proto: HadamardResponse, reports: np.ndarray, items: np.ndarray) -> np.ndarray:
    rows = np.asarray(items, dtype=np.int64) + 1
    return (np.bitwise_count(np.asarray(reports, dtype=np.int64)[:, None] & rows[None, :]) & 1) == 0


# ------------------------------------------------------------------------------------------------- scores
@singledispatch
def report_scores(proto: FrequencyOracle, reports: np.ndarray, items: np.ndarray) -> np.ndarray:
    """phi_v(y): the contribution of every report (rows) to the unbiased estimate of every item of ``items``."""
    raise TypeError(f"no report scores registered for {type(proto).__name__}")


@report_scores.register(PureFrequencyOracle)
def _scores_pure(proto: PureFrequencyOracle, reports: np.ndarray, items: np.ndarray) -> np.ndarray:
    s = item_support(proto, reports, items)
    return (s - proto.q_star) / (proto.p_star - proto.q_star)


@report_scores.register(SHE)
def _scores_she(proto: SHE, reports: np.ndarray, items: np.ndarray) -> np.ndarray:
    return np.asarray(reports, dtype=np.float64)[:, np.asarray(items)]


@report_scores.register(HadamardResponseGeneral)
def _scores_hr_general(proto: HadamardResponseGeneral, reports: np.ndarray, items: np.ndarray) -> np.ndarray:
    y = np.asarray(reports, dtype=np.int64)[:, None]
    blk, row = proto.cell(np.asarray(items))
    same = (y // proto.b) == blk[None, :]
    even = (np.bitwise_count((y % proto.b) & row[None, :]) & 1) == 0
    return np.where(same, np.where(even, 1.0, -1.0), 0.0) * proto.D / (math.exp(proto.epsilon) - 1)


@report_scores.register(DBitFlipPM)
def _scores_dbit(proto: DBitFlipPM, reports: np.ndarray, items: np.ndarray) -> np.ndarray:
    r = np.asarray(reports, dtype=np.int64)
    j, bits = r[:, : proto.d], r[:, proto.d :]
    h = math.exp(proto.epsilon / 2)
    z = (bits * (h + 1) - 1) / (h - 1)
    hit = j[:, :, None] == np.asarray(items)[None, None, :]  # (reports, d, items)
    return proto.b / proto.d * np.einsum("rd,rdi->ri", z, hit)
