"""Countermeasures against poisoning (Cao, Jia, Gong, USENIX Security 2021, Section 6): normalization, detection of
fake users by frequent itemsets of the reports' support sets, and conditional-probability detection for local
hashing. Each detector returns which reports it flags; a simulation reports the share of fake users flagged and
the false-positive rate on genuine users.

* **Normalization** is post-processing of the estimate (Norm-Sub, clip, IBU: ``postprocess=`` of
  :func:`~dpkit.audits.poisoning.simulation.simulate`); it caps the total gain at 1 - f_T and spreads it, it flags
  no one.
* **Frequent itemsets** (:func:`itemset_detector`; unary encoding, THE, SS and the longitudinal UE chains):
  MGA's fake users all support the same target set, a set genuine users rarely share. The server grows an
  itemset greedily from the pair of items most over-supported together (co-occurrence above the independent
  product), adding the item most supported together with the set; a set I of size z is significant
  when its support count is unlikely under genuine users alone: every genuine user supports a given z-set with
  probability at most b_z (:func:`support_bound`; unary encoding p q^(z-1)), so the count of n users is dominated
  by Bin(n, b_z), and the test is at level alpha / (z_max C(k, z)) (a union bound over every z-set and size: with
  genuine users alone, no itemset is flagged with probability at least 1 - alpha). Among the significant sizes the
  one with the largest excess over n b_z is kept and its supporters are flagged; then again on the rest (up to
  ``max_itemsets`` sets).
* **Conditional probability** (:func:`conditional_probability_detector`, local hashing and LOLOHA): candidate
  targets are the items whose estimate is more than z robust standard deviations above the median; a report (a, b, y) is
  flagged when the number X of candidates it supports is improbable for a genuine user, P(X >= x) < alpha under the
  law of a genuine report (the hash family's own, by Monte Carlo), so a genuine user is flagged with probability
  about alpha; reports that reuse another report's hash function are flagged too (genuine users never repeat a
  128-bit function, fake users who share a searched pool do).

Detectors are registered per protocol class (:func:`default_detector`, ``functools.singledispatch``); GRR (a report
supports one item), SHE (no support sets), HR and HR-general have none. The itemset bound assumes independent
support indicators, which local hashing's pairwise-independent hash family does not give; local hashing uses the
conditional-probability detector, whose null law is simulated.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import singledispatch
from typing import Any

import numpy as np

from dpkit.audits._checks import check_alpha
from dpkit.audits.poisoning.scores import item_support
from dpkit.mechanisms.base import FrequencyOracle
from dpkit.mechanisms.frequency_oracles import THE, LocalHashing, SubsetSelection, UnaryEncoding
from dpkit.mechanisms.longitudinal import LOLOHA, LUE

__all__ = [
    "Detection",
    "Detector",
    "support_bound",
    "itemset_detector",
    "conditional_probability_detector",
    "default_detector",
    "MAX_SUPPORT_CELLS",
]

MAX_SUPPORT_CELLS = 1 << 28  # reports x items of one support matrix (256 MB of bools)
MAX_PAIR_ITEMS = 256  # the itemset search starts from a pair of this many most supported items


@dataclass(frozen=True)
class Detection:
    """``flags``: one bool per report (True = judged fake); ``info``: what was found (itemsets, thresholds)."""

    flags: np.ndarray
    method: str
    info: dict[str, Any] = field(default_factory=dict)


Detector = Callable[[FrequencyOracle, Any], Detection]


# ------------------------------------------------------------------------------------------- null support law
@singledispatch
def support_bound(proto: FrequencyOracle, z: int) -> float:
    """The largest probability, over the user's value, that one genuine report supports every item of a fixed
    set of z items."""
    raise TypeError(f"no support bound for {type(proto).__name__}")


@support_bound.register(UnaryEncoding)
@support_bound.register(THE)
@support_bound.register(LUE)
def _bound_bits(proto: Any, z: int) -> float:
    return float(proto.p_star * proto.q_star ** (z - 1))  # independent bits: own item p*, the others q*


@support_bound.register(SubsetSelection)
def _bound_subset(proto: SubsetSelection, z: int) -> float:
    k, w, pv = proto.k, proto.omega, proto.p_v
    if z > w:
        return 0.0
    comb = math.comb
    own = pv * comb(k - z, w - z) / comb(k - 1, w - 1)  # the value is in the set and was kept
    other = (1 - pv) * comb(k - 1 - z, w - z) / comb(k - 1, w) + pv * (
        comb(k - 1 - z, w - 1 - z) / comb(k - 1, w - 1) if w - 1 >= z else 0.0
    )
    return float(max(own, other))


# ----------------------------------------------------------------------------------------------- support matrix
def support_matrix(proto: FrequencyOracle, reports: Any) -> np.ndarray:
    """[v in S(y)] for every report and every item, bool (reports, k), built in row blocks."""
    k = int(proto.k)
    n = len(reports)
    if n * k > MAX_SUPPORT_CELLS:
        raise ValueError(
            f"reports x k = {n} x {k} is too large for a support matrix (at most {MAX_SUPPORT_CELLS}): subsample"
        )
    out = np.empty((n, k), dtype=bool)
    items = np.arange(k)
    step = max(1, (1 << 22) // k)
    for s in range(0, n, step):
        out[s : s + step] = item_support(proto, reports[s : s + step], items)
    return out


def _log_tail(count: int, n: int, p: float) -> float:
    """log P(Bin(n, p) >= count)."""
    from scipy.stats import binom

    if count <= 0:
        return 0.0
    if p <= 0:
        return -math.inf
    return float(binom.logsf(count - 1, n, p))


def _log_comb(k: int, z: int) -> float:
    return math.lgamma(k + 1) - math.lgamma(z + 1) - math.lgamma(k - z + 1)


def _packed_columns(S: np.ndarray) -> np.ndarray:
    """The columns of a bool (n, k) matrix as bitsets: uint64 (k, ceil(n/64)), rows in order."""
    n, k = S.shape
    words = -(-n // 64)
    packed = np.zeros((words * 8, k), dtype=np.uint8)
    packed[: -(-n // 8)] = np.packbits(S, axis=0)
    return np.ascontiguousarray(packed.T).view(np.uint64)


def _unpack(bits: np.ndarray, n: int) -> np.ndarray:
    return np.unpackbits(bits.view(np.uint8))[:n].astype(bool)


def _popcounts(cols: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """|column_i AND mask| for every column (bit counts, no floating point, no BLAS)."""
    return np.bitwise_count(cols & mask[None, :]).sum(axis=1, dtype=np.int64)


def _grow_itemset(cols: np.ndarray, live: np.ndarray, max_size: int) -> list[tuple[list[int], np.ndarray]]:
    """Greedy itemsets from the most over-supported pair (co-occurrence above the independent product among the
    live reports, over the MAX_PAIR_ITEMS most supported items): [(items, supporters bitset)] for sizes 2.."""
    n = int(np.bitwise_count(live).sum())
    if n < 2:
        return []
    c = _popcounts(cols, live)
    pool = np.argsort(-c, kind="stable")[:MAX_PAIR_ITEMS]
    best, pair = -np.inf, (0, 1)
    for i in pool:
        co = _popcounts(cols[pool], cols[i] & live)
        excess = co - c[i] * c[pool] / n
        excess[pool == i] = -np.inf
        j = int(np.argmax(excess))
        if excess[j] > best:
            best, pair = float(excess[j]), (int(i), int(pool[j]))
    items = list(pair)
    members = live & cols[pair[0]] & cols[pair[1]]
    out = [(list(items), members.copy())]
    while len(items) < max_size:
        counts = _popcounts(cols, members)
        counts[items] = -1
        nxt = int(np.argmax(counts))
        if counts[nxt] < 2:
            break
        items.append(nxt)
        members &= cols[nxt]
        out.append((list(items), members.copy()))
    return out


def itemset_detector(
    proto: FrequencyOracle, reports: Any, alpha: float = 1e-3, max_size: int = 64, max_itemsets: int = 3
) -> Detection:
    """Flag the supporters of significantly over-supported itemsets (see the module docstring)."""
    alpha = check_alpha("alpha", alpha)
    S = support_matrix(proto, reports)
    n, k = S.shape
    cols = _packed_columns(S)
    del S
    max_size = max(2, min(int(max_size), k))
    live = _packed_columns(np.ones((n, 1), dtype=bool))[0]
    flags = np.zeros_like(live)
    found = []
    log_alpha = math.log(alpha) - math.log(max_size)
    for _ in range(max_itemsets):
        best = None
        for items, members in _grow_itemset(cols, live, max_size):
            z, count = len(items), int(np.bitwise_count(members).sum())
            b = support_bound(proto, z)
            if _log_tail(count, n, b) < log_alpha - _log_comb(k, z):
                excess = count - n * b
                if best is None or excess > best[0]:
                    best = (excess, items, members, count)
        if best is None:
            break
        _, items, members, count = best
        flags |= members
        live &= ~members
        found.append({"items": sorted(items), "supporters": count})
    return Detection(_unpack(flags, n), "frequent itemsets", {"itemsets": found, "alpha": alpha})


def conditional_probability_detector(
    proto: LocalHashing | LOLOHA,
    reports: Any,
    alpha: float = 1e-3,
    z: float = 3.0,
    max_candidates: int = 64,
    candidates: Any = None,
    null_samples: int = 1 << 18,
    seed: int = 0,
    repeats: bool = True,
) -> Detection:
    """Flag local-hashing reports that support improbably many candidate targets (see the module docstring).

    ``candidates``: the suspected targets (default: the estimates more than ``z`` robust standard deviations above
    the median, the larger of 1.4826 x their median absolute deviation and the estimator's; at most
    ``max_candidates`` of the largest). The law of X = #candidates a genuine report supports is
    the hash family's own, by Monte Carlo over ``null_samples`` genuine users (value from the Norm-Sub estimate,
    a fresh hash function, the protocol's randomized response): dpkit's family is pairwise independent, and
    consecutive items share a bucket more often than under a random function, so a binomial law would understate
    the tail. A report is flagged when P(X >= its x) < alpha. ``repeats``: also flag every report whose hash
    function (a, b) occurs in another report (a genuine user draws a fresh 128-bit function: a repeat among n
    genuine users has probability below n^2 2^-129)."""
    from dpkit.mechanisms import hashing
    from dpkit.mechanisms.frequency_oracles import grr_perturb
    from dpkit.mechanisms.postprocessing import norm_sub

    alpha = check_alpha("alpha", alpha)
    reports = np.asarray(reports)
    n = len(reports)
    est = proto.estimate(proto.aggregate(reports))
    if candidates is None:
        med = float(np.median(est))
        spread = max(1.4826 * float(np.median(np.abs(est - med))), math.sqrt(float(proto.variance(n))))
        above = np.flatnonzero(est > med + z * spread)
        cand = above[np.argsort(-est[above], kind="stable")][:max_candidates]
    else:
        cand = np.unique(np.asarray(candidates, dtype=np.int64))
    repeated = np.zeros(n, dtype=bool)
    if repeats and n:
        ab = np.ascontiguousarray(reports[:, :2].astype(np.uint64)).view([("a", np.uint64), ("b", np.uint64)])
        _, inverse, counts = np.unique(ab.ravel(), return_inverse=True, return_counts=True)
        repeated = counts[inverse.ravel()] > 1
    if len(cand) == 0:
        info = {"candidates": [], "alpha": alpha, "repeated_hash_functions": int(repeated.sum())}
        return Detection(repeated, "conditional probability", info)
    x = np.zeros(n, dtype=np.int64)
    step = max(1, (1 << 22) // len(cand))
    for s in range(0, n, step):
        x[s : s + step] = item_support(proto, reports[s : s + step], cand).sum(axis=1)
    rng = np.random.default_rng(seed)
    x0 = np.zeros(len(cand) + 2, dtype=np.int64)
    f0 = norm_sub(est)
    for s in range(0, null_samples, step):
        size = min(step, null_samples - s)
        u = rng.choice(proto.k, size=size, p=f0 / f0.sum())
        a, b = hashing.draw_hash_params(size, rng)
        y = grr_perturb(hashing.hash_values(a, b, u, proto.g), proto.g, float(proto.p_star), rng)
        null = np.stack([a, b, y.astype(np.uint64)], axis=1)
        x0 += np.bincount(item_support(proto, null, cand).sum(axis=1), minlength=len(x0))
    tail = np.cumsum(x0[::-1])[::-1] / null_samples  # P(X >= x) for x = 0..|C| + 1
    improbable = tail[np.minimum(x, len(cand) + 1)] < alpha
    flags = improbable | repeated
    info = {
        "candidates": cand.tolist(),
        "alpha": alpha,
        "min_flagged_support": int(np.argmax(tail < alpha)) if (tail < alpha).any() else None,
        "improbable_support": int(improbable.sum()),
        "repeated_hash_functions": int(repeated.sum()),
    }
    return Detection(flags, "conditional probability", info)


# ------------------------------------------------------------------------------------------- default per class
@singledispatch
def default_detector(proto: FrequencyOracle) -> Detector | None:
    """The detector for this protocol class, or None (GRR: one item per report; SHE, HR: no fixed support)."""
    return None


@default_detector.register(UnaryEncoding)
@default_detector.register(THE)
@default_detector.register(SubsetSelection)
@default_detector.register(LUE)
def _itemsets(proto: Any) -> Detector:
    return itemset_detector


@default_detector.register(LocalHashing)
@default_detector.register(LOLOHA)
def _conditional(proto: Any) -> Detector:
    return conditional_probability_detector  # type: ignore[return-value]  # registered for LH and LOLOHA only
