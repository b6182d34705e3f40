"""The three poisoning attacks of Cao, Jia and Gong (USENIX Security 2021) on every frequency oracle dpkit ships.

* **RPA** (random perturbed-value attack): each fake user sends a report drawn uniformly from the report space,
  independent of any item (GRR: y ~ U[k]; unary encoding: a uniform bit vector; local hashing: a uniform hash
  function and y ~ U[g]; SS: a uniform omega-subset; HR: a uniform output). Histogram encoding's reports are real
  vectors with no uniform law: its RPA sends the noise alone (a report of no item).
* **RIA** (random item attack): each fake user runs the honest client on a target drawn uniformly from T. Every
  estimator is unbiased, so the expected gain is beta (1 - f_T) on every protocol.
* **MGA** (maximal gain attack): the report that maximizes sum_{t in T} phi_t(y) (:mod:`.scores`): GRR a target;
  unary encoding every target bit set (optionally padded with non-target ones so that the number of ones looks
  honest); local hashing a hash function under which as many targets as possible share one bucket (and as few
  other items as possible), found by a vectorized search over random hash functions, and that bucket; SS a
  subset of targets; THE every target above the threshold; SHE every target coordinate at ``bound``; HR and
  HR-general the outputs in the most targets' sets (HR's output 0 is in every item's set).

Each attack is a ``functools.singledispatch`` function on the protocol class, ``attack(proto, targets, m, rng,
**options) -> FakeReports``: m fake reports in the protocol's own format (the server's report check accepts them)
and the closed-form expected score of one fake report for every item, ``expected_scores`` (E phi_v), so that the
expected gain is

    G = beta (sum_{t in T} expected_scores[t] - f_T)        (Cao et al.'s Theorems, for every protocol)

e.g. at eps = 1, k = 100, r = 10, beta = 0.05, f_T = 0.1: GRR MGA 2.6639, OUE MGA 1.577, OUE RPA 0.495, RIA 0.045.
A new protocol registers its attacks next to these (``@mga.register(MyOracle)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import singledispatch
from typing import Any

import numpy as np

from dpkit.audits.poisoning.scores import n_items, report_scores
from dpkit.mechanisms import frequency_oracles as fo
from dpkit.mechanisms import hashing
from dpkit.mechanisms.base import FrequencyOracle, PureFrequencyOracle
from dpkit.mechanisms.bernoulli import bernoulli_matrix

__all__ = ["FakeReports", "rpa", "ria", "mga", "ATTACKS", "pure_scores", "uniform_subsets", "ones_padding"]

MAX_OUTPUT_SEARCH = 1 << 22  # HR / HR-general: outputs scored exhaustively up to this many, else a random sample


@dataclass(frozen=True)
class FakeReports:
    """What an attack sends: ``reports`` (m rows in the protocol's report format) and ``expected_scores``, the
    closed-form E[phi_v] of one fake report for every item v (its contribution to the unbiased estimate), or None
    where no closed form is known. ``info``: what the attack chose (padding, hash collisions found, ...)."""

    reports: Any
    expected_scores: np.ndarray | None
    info: dict[str, Any] = field(default_factory=dict)

    def expected_gain(self, targets: np.ndarray, beta: float, f_targets: float) -> float | None:
        """beta (sum_{t in T} E phi_t - f_T): the expected gain against the unbiased estimator."""
        if self.expected_scores is None:
            return None
        return float(beta * (np.sum(self.expected_scores[targets]) - f_targets))


def pure_scores(proto: PureFrequencyOracle, p_fake: Any) -> np.ndarray:
    """E phi_v = (P(v in S(fake)) - q*)/(p* - q*) for a pure protocol, from the fake reports' support law."""
    return (np.asarray(p_fake, dtype=np.float64) - proto.q_star) / (proto.p_star - proto.q_star)


def _indicator(k: int, items: np.ndarray, inside: float, outside: float) -> np.ndarray:
    out = np.full(k, float(outside))
    out[items] = inside
    return out


def uniform_subsets(pool: np.ndarray, size: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """m independent uniform ``size``-subsets of ``pool`` (rows, unordered), by Floyd's algorithm vectorized over
    rows: ``size`` passes, each one draw per row."""
    n = len(pool)
    chosen = np.empty((m, size), dtype=np.int64)
    for i, j in enumerate(range(n - size, n)):
        t = rng.integers(0, j + 1, size=m)
        dup = (chosen[:, :i] == t[:, None]).any(axis=1)
        chosen[:, i] = np.where(dup, j, t)
    return np.asarray(pool)[chosen]


# --------------------------------------------------------------------------------------------------------- RPA
@singledispatch
def rpa(proto: FrequencyOracle, targets: np.ndarray, m: int, rng: np.random.Generator) -> FakeReports:
    """Random perturbed-value attack: m reports drawn uniformly from the report space (see the module)."""
    raise TypeError(f"no RPA registered for {type(proto).__name__}")


@rpa.register(fo.GRR)
def _rpa_grr(proto: fo.GRR, targets: np.ndarray, m: int, rng: np.random.Generator) -> FakeReports:
    return FakeReports(rng.integers(0, proto.k, size=m), pure_scores(proto, np.full(proto.k, 1.0 / proto.k)))


@rpa.register(fo.UnaryEncoding)
def _rpa_ue(proto: fo.UnaryEncoding, targets: np.ndarray, m: int, rng: np.random.Generator) -> FakeReports:
    return FakeReports(bernoulli_matrix((m, proto.k), 0.5, rng), pure_scores(proto, np.full(proto.k, 0.5)))


@rpa.register(fo.LocalHashing)
def _rpa_lh(proto: fo.LocalHashing, targets: np.ndarray, m: int, rng: np.random.Generator) -> FakeReports:
    a, b = hashing.draw_hash_params(m, rng)
    y = rng.integers(0, proto.g, size=m).astype(np.uint64)
    return FakeReports(np.stack([a, b, y], axis=1), np.zeros(proto.k))  # P(H(v) = y) = 1/g = q*


@rpa.register(fo.SubsetSelection)
def _rpa_ss(proto: fo.SubsetSelection, targets: np.ndarray, m: int, rng: np.random.Generator) -> FakeReports:
    reports = uniform_subsets(np.arange(proto.k), proto.omega, m, rng)
    return FakeReports(reports, pure_scores(proto, np.full(proto.k, proto.omega / proto.k)))


@rpa.register(fo.SHE)
@rpa.register(fo.THE)
def _rpa_he(proto: fo.SHE | fo.THE, targets: np.ndarray, m: int, rng: np.random.Generator) -> FakeReports:
    # the noise of no item: E y_v = 0 (SHE), P(y_v > theta) = q* (THE); either way E phi_v = 0
    return FakeReports(rng.laplace(0.0, 2.0 / proto.epsilon, size=(m, proto.k)), np.zeros(proto.k))


@rpa.register(fo.HadamardResponse)
@rpa.register(fo.HadamardResponseGeneral)
def _rpa_hr(proto: fo.HadamardResponse | fo.HadamardResponseGeneral, targets, m, rng) -> FakeReports:
    # a uniform output is in C_v with probability 1/2 (HR), and in C_v or in the rest of v's block equally often
    # (HR-general): E phi_v = 0
    return FakeReports(rng.integers(0, proto.K, size=m), np.zeros(proto.k))


# --------------------------------------------------------------------------------------------------------- RIA
@singledispatch
def ria(proto: FrequencyOracle, targets: np.ndarray, m: int, rng: np.random.Generator) -> FakeReports:
    """Random item attack: the honest client on targets drawn uniformly from T; E phi_v = [v in T]/r (unbiased
    estimators), so the expected gain is beta (1 - f_T)."""
    values = rng.choice(targets, size=m)
    scores = _indicator(n_items(proto), targets, 1.0 / len(targets), 0.0)
    return FakeReports(proto.perturb(values, rng), scores)


# --------------------------------------------------------------------------------------------------------- MGA
@singledispatch
def mga(proto: FrequencyOracle, targets: np.ndarray, m: int, rng: np.random.Generator, **options: Any) -> FakeReports:
    """Maximal gain attack: the reports that maximize the targets' total score (see the module)."""
    raise TypeError(f"no MGA registered for {type(proto).__name__}")


@mga.register(fo.GRR)
def _mga_grr(proto: fo.GRR, targets: np.ndarray, m: int, rng: np.random.Generator) -> FakeReports:
    r = len(targets)
    return FakeReports(rng.choice(targets, size=m), pure_scores(proto, _indicator(proto.k, targets, 1.0 / r, 0.0)))


def ones_padding(k: int, r: int, ones: float) -> float:
    """P(a non-target bit is set) so that r target ones plus the padding have ``ones`` ones on average."""
    return min(max((ones - r) / (k - r), 0.0), 1.0) if k > r else 0.0


@mga.register(fo.UnaryEncoding)
def _mga_ue(
    proto: fo.UnaryEncoding, targets: np.ndarray, m: int, rng: np.random.Generator, padding: str | None = "mean"
) -> FakeReports:
    """Every target bit set. ``padding`` makes the number of ones look honest (genuine mean p + (k - 1) q):
    'mean' sets each non-target bit with probability (p + (k - 1) q - r)/(k - r); 'exact' sets exactly
    l = floor(p + (k - 1) q - r) uniform non-target bits (Cao et al.); None sets no other bit."""
    k, r = proto.k, len(targets)
    honest = proto.p + (k - 1) * proto.q
    is_target = np.zeros(k, dtype=bool)
    is_target[targets] = True
    if padding == "mean":
        rate = ones_padding(k, r, honest)
        reports = bernoulli_matrix((m, k), rate, rng)  # then every target bit set: faster than a per-bit mask
        reports[:, targets] = True
        info: dict[str, Any] = {"padding": "mean", "padding_rate": rate}
    elif padding == "exact":
        lpad = max(0, min(int(math.floor(honest - r)), k - r))
        reports = np.zeros((m, k), dtype=bool)
        reports[:, targets] = True
        if lpad:
            cols = uniform_subsets(np.flatnonzero(~is_target), lpad, m, rng)
            reports[np.arange(m)[:, None], cols] = True
        rate = lpad / (k - r) if k > r else 0.0
        info = {"padding": "exact", "padding_ones": lpad}
    elif padding is None or padding == "none":
        reports = np.zeros((m, k), dtype=bool)
        reports[:, targets] = True
        rate, info = 0.0, {"padding": None}
    else:
        raise ValueError(f"padding must be 'mean', 'exact' or None, got {padding!r}")
    return FakeReports(reports, pure_scores(proto, np.where(is_target, 1.0, rate)), info)


def search_hash_functions(
    targets: np.ndarray,
    g: int,
    k: int,
    rng: np.random.Generator,
    n_hashes: int = 1 << 20,
    pool: int = 1024,
    objective: str = "targets",
    block: int = 1 << 16,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, float]:
    """The hash functions (a, b) among ``n_hashes`` random ones under which the most targets share one bucket y.

    Vectorized in blocks: hash every target, sort each row, take the longest run (c targets in bucket y), and
    count the other items in that bucket ("collateral", over up to 256 random non-targets). ``objective``:
    'targets' (Cao et al.: the largest c; ties go to the least collateral) or 'relative' (the largest
    c - r * collateral share: the targets' gain over the other items', what survives normalization). A hash family
    with degenerate members (dpkit's multiply-shift family puts every item in one bucket when a is close to 0) can
    fill a 'targets' pool with functions that raise every item alike. Returns (a, b, y) of up to ``pool`` best
    functions, the largest c among them and their mean collateral share.
    """
    if objective not in ("targets", "relative"):
        raise ValueError(f"objective must be 'targets' or 'relative', got {objective!r}")
    r = len(targets)
    others = np.setdiff1d(np.arange(k), targets)
    if len(others) > 256:
        others = rng.choice(others, size=256, replace=False)
    xs = np.asarray(targets, dtype=np.uint64)[None, :]
    xo = np.asarray(others, dtype=np.uint64)[None, :]
    idx = np.arange(r)
    n_other = max(len(others), 1)
    score = np.empty(0)  # the pool so far, best first: score, collisions, collateral, (a, b, y)
    hits = np.empty(0, dtype=np.int64)
    coll = np.empty(0, dtype=np.int64)
    aby = np.empty((0, 3), dtype=np.uint64)
    for start in range(0, n_hashes, block):
        size = min(block, n_hashes - start)
        a, b = hashing.draw_hash_params(size, rng)
        h = np.sort(hashing.hash_values(a[:, None], b[:, None], xs, g), axis=1)
        new_run = np.ones((size, r), dtype=bool)
        new_run[:, 1:] = h[:, 1:] != h[:, :-1]
        run = idx - np.maximum.accumulate(np.where(new_run, idx, 0), axis=1) + 1
        c = run.max(axis=1)
        floor = score[-1] if len(score) >= pool else -np.inf  # no function scores above its c
        sel = np.flatnonzero(c >= floor)
        if not len(sel):
            continue
        y = h[sel, run[sel].argmax(axis=1)]
        n_coll = (hashing.hash_values(a[sel, None], b[sel, None], xo, g) == y[:, None]).sum(axis=1)
        penalty = r * n_coll / n_other if objective == "relative" else n_coll / (n_other + 1.0)  # tie-break < 1
        score = np.concatenate([score, c[sel] - penalty])
        hits = np.concatenate([hits, c[sel]])
        coll = np.concatenate([coll, n_coll])
        aby = np.concatenate([aby, np.stack([a[sel], b[sel], y.astype(np.uint64)], axis=1)])
        order = np.argsort(-score, kind="stable")[:pool]
        score, hits, coll, aby = score[order], hits[order], coll[order], aby[order]
    share = float(coll.mean()) / n_other
    return aby[:, 0], aby[:, 1], aby[:, 2], int(hits.max()), share


@mga.register(fo.LocalHashing)
def _mga_lh(
    proto: fo.LocalHashing, targets: np.ndarray, m: int, rng: np.random.Generator, n_hashes: int = 1 << 20,
    pool: int = 1024, objective: str = "targets",
) -> FakeReports:  # fmt: skip
    """Search ``n_hashes`` random hash functions for the most targets in one bucket (:func:`search_hash_functions`);
    the fake users draw uniformly among the (up to ``pool``) best and report that bucket. E phi over that pool,
    exactly. Every fake user reuses one of ``pool`` hash functions, which a server can see
    (:func:`~dpkit.audits.poisoning.defenses.conditional_probability_detector` flags repeated functions)."""
    pool = max(1, min(pool, (1 << 24) // proto.k))
    a, b, y, c, share = search_hash_functions(targets, proto.g, proto.k, rng, n_hashes, pool, objective)
    pick = rng.integers(0, len(a), size=m)
    reports = np.stack([a[pick], b[pick], y[pick]], axis=1)
    support = hashing.hash_values(a[:, None], b[:, None], np.arange(proto.k, dtype=np.uint64)[None, :], proto.g)
    p_fake = (support == y[:, None].astype(np.int64)).mean(axis=0)
    info = {"collisions": c, "collateral": share, "hash_functions_searched": n_hashes, "pool": len(a),
            "objective": objective}  # fmt: skip
    return FakeReports(reports, pure_scores(proto, p_fake), info)


@mga.register(fo.SubsetSelection)
def _mga_ss(proto: fo.SubsetSelection, targets: np.ndarray, m: int, rng: np.random.Generator) -> FakeReports:
    """A subset of min(r, omega) targets, filled with uniform non-targets when r < omega."""
    k, w, r = proto.k, proto.omega, len(targets)
    if r >= w:
        reports = uniform_subsets(targets, w, m, rng)
        p_fake = _indicator(k, targets, w / r, 0.0)
    else:
        others = np.setdiff1d(np.arange(k), targets)
        reports = np.concatenate([np.broadcast_to(targets, (m, r)), uniform_subsets(others, w - r, m, rng)], axis=1)
        p_fake = _indicator(k, targets, 1.0, (w - r) / (k - r))
    return FakeReports(reports.astype(np.int64), pure_scores(proto, p_fake))


@mga.register(fo.THE)
def _mga_the(proto: fo.THE, targets: np.ndarray, m: int, rng: np.random.Generator) -> FakeReports:
    """theta + 1/2 on the targets, theta - 1/2 elsewhere: support exactly T."""
    th = float(proto.theta)  # type: ignore[arg-type]  # resolved by THE.__post_init__
    reports = np.full((m, proto.k), th - 0.5)
    reports[:, targets] = th + 0.5
    return FakeReports(reports, pure_scores(proto, _indicator(proto.k, targets, 1.0, 0.0)))


@mga.register(fo.SHE)
def _mga_she(
    proto: fo.SHE, targets: np.ndarray, m: int, rng: np.random.Generator, bound: float | None = None
) -> FakeReports:
    """SHE's server averages raw real reports: no report has the maximal gain (one fake report can move an
    estimate arbitrarily far). The fake users set every target coordinate to ``bound`` and the others to 0;
    default bound: 1 + (2/eps) ln(5e5), what a genuine user's own coordinate exceeds with probability 1e-6."""
    b = 1.0 + 2.0 / proto.epsilon * math.log(5e5) if bound is None else float(bound)
    if not math.isfinite(b):
        raise ValueError(f"bound must be finite, got {bound!r}")
    reports = np.zeros((m, proto.k))
    reports[:, targets] = b
    return FakeReports(reports, _indicator(proto.k, targets, b, 0.0), {"bound": b})


def _best_outputs(proto: Any, targets: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """The outputs y of an index-valued protocol with the largest sum_{t in T} phi_t(y), and that sum."""
    K = int(proto.K)
    if K <= MAX_OUTPUT_SEARCH:
        cand = np.arange(K)
    else:  # always keep output 0 (in every set of HR), plus a random sample
        cand = np.unique(np.concatenate([[0], rng.integers(0, K, size=MAX_OUTPUT_SEARCH)]))
    total = np.zeros(len(cand))
    for s in range(0, len(cand), 1 << 16):
        total[s : s + (1 << 16)] = report_scores(proto, cand[s : s + (1 << 16)], targets).sum(axis=1)
    top = total.max()
    return cand[total >= top - 1e-9 * max(1.0, abs(top))], float(top)


@mga.register(fo.HadamardResponse)
@mga.register(fo.HadamardResponseGeneral)
def _mga_hr(proto: fo.HadamardResponse | fo.HadamardResponseGeneral, targets, m, rng) -> FakeReports:
    """Uniform among the outputs in the sets of the most targets (exhaustive over [K] up to 2^22 outputs)."""
    best, _ = _best_outputs(proto, targets, rng)
    reports = best[rng.integers(0, len(best), size=m)]
    scores = np.zeros(proto.k)
    for s in range(0, len(best), 1 << 12):
        scores += report_scores(proto, best[s : s + (1 << 12)], np.arange(proto.k)).sum(axis=0)
    return FakeReports(reports.astype(np.int64), scores / len(best), {"best_outputs": len(best)})


AttackFunction = Callable[..., FakeReports]
ATTACKS: dict[str, AttackFunction] = {"rpa": rpa, "ria": ria, "mga": mga}
"""The attacks by name."""
