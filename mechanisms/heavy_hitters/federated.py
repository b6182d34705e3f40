"""Federated heavy hitters under LDP: TAP (target-aligning prefix tree) and TAPS (TAP with consensus-based pruning),
after Zhang, Ye, Hu, "Federated Heavy Hitter Analytics with Local Differential Privacy", Proc. ACM Manag. Data
3(1) 2025 (SIGMOD'25), arXiv 2412.14832.

Setting: P parties (silos), each with its own users, whose key distributions differ (non-IID); the target is the
*global* top-k. Every user reports once, at the full epsilon, through OLH evaluated on candidates
(:class:`~.base.CandidateHashing`); everything else is post-processing.

The paper's text was not available to us beyond its abstract; what it fixes: a shared shallow trie, per-party
adaptive extension, sequential consensus-based pruning with noisy prior knowledge (candidates and frequencies) from
earlier parties, any frequency oracle, F1 and NCR. The choices below are ours and documented as such:

* Levels: PEM's prefix lengths (s0 = floor(log2 k) + 1, then +step bits up to m); in every party each user joins
  one level uniformly at random (PEM's user partition).
* Shared shallow trie: the first ``shared_levels`` levels pool the reports of all parties (more users per coarse
  level); the ceil(extension k) prefixes of largest pooled estimate survive each of those levels, aligned with the
  global target.
* Adaptive extension, per party, from the shared trie down to m bits: the party's own level users estimate counts
  (frequency times the party's size) of the extended candidates; it keeps those whose score is at least ``z``
  standard deviations of its noise, never fewer than k nor more than ceil(extension k), so a small (noisy) party
  keeps a wider set and a large one a tighter set.
* Consensus-based pruning (TAPS, ``consensus=True``): parties run one after another (largest first, or in the
  given order); at each level a party adds to its own estimated counts the counts that earlier parties released
  for the same prefixes at that level (0 where they released none) and ranks and thresholds on the sum, its noise
  variance being the sum of theirs. Prefixes supported by the earlier parties survive a locally weak estimate and
  locally noisy ones without support are pruned.
* Global answer: the union of the parties' final candidates, each estimated by every party from its last-level
  reports (OLH reports can be evaluated on any key afterwards), counts summed over the parties (party-size
  weighting); the top-k of the sums, with variance sum_p N_p^2 V_OLH(n_p, f_p) (f_p plugged in).
* Frequency oracle: OLH only. It is the oracle under which a party's reports can be evaluated on candidates that
  other parties found later, which the global answer uses; the paper's other oracles are not provided.

Unit of privacy: one user's key (each user belongs to one party). Neighbouring relation: replace it. Guarantee:
epsilon-LDP per user (``privacy_event()`` = ``RandomizedResponseEvent(epsilon, g)``); the shared trie, the
extension and the pruning only read other users' reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dpkit.accountants import DpEvent
from dpkit.mechanisms._validation import check_count, check_rng
from dpkit.mechanisms.heavy_hitters import base
from dpkit.mechanisms.heavy_hitters.pem import prefix_schedule

__all__ = ["TAP", "TAPS"]


@dataclass(frozen=True)
class TAP(base.KeyProtocol):
    """Target-aligning prefix tree for ``bits``-bit keys held by users of several parties (module docstring).

    ``k``: the global top-k; ``step``: bits per level; ``shared_levels``: depth of the shared trie (levels);
    ``extension``: the widest beam, ceil(extension k); ``z``: the adaptive keep threshold in noise standard
    deviations; ``consensus``: TAPS's sequential pruning; ``order``: 'size' (largest party first) or 'given'.
    Reports (``perturb``): a tuple over parties of tuples over levels of OLH reports (uint64 (n, 4)).
    """

    bits: int
    epsilon: float
    k: int = 10
    step: int = 1
    shared_levels: int = 2
    extension: float = 2.0
    z: float = 2.0
    consensus: bool = False
    order: str = "size"
    name = "TAP"
    oracle: Any = field(init=False, repr=False, compare=False, default=None)
    lengths: tuple = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self):
        self._init_keys(threshold=False)
        object.__setattr__(self, "step", check_count("step", self.step, minimum=1))
        object.__setattr__(self, "shared_levels", check_count("shared_levels", self.shared_levels, minimum=0))
        if not (isinstance(self.extension, int | float) and not isinstance(self.extension, bool)) or not (
            1 <= self.extension < math.inf
        ):
            raise ValueError(f"extension must be a finite number >= 1, got {self.extension!r}")
        if not (isinstance(self.z, int | float) and not isinstance(self.z, bool)) or not (0 <= self.z < math.inf):
            raise ValueError(f"z must be a finite number >= 0, got {self.z!r}")
        if self.order not in ("size", "given"):
            raise ValueError(f"order must be 'size' or 'given', got {self.order!r}")
        if not isinstance(self.consensus, bool):
            raise TypeError(f"consensus must be True or False, got {self.consensus!r}")
        s0 = min(int(math.floor(math.log2(self.k))) + 1, self.bits)
        object.__setattr__(self, "lengths", prefix_schedule(self.bits, s0, self.step))
        object.__setattr__(self, "oracle", self._oracle())

    @property
    def levels(self) -> int:
        return len(self.lengths)

    @property
    def beam(self) -> int:
        return math.ceil(self.extension * self.k)

    # ------------------------------------------------------------------------------------------- client
    def _check_parties(self, parties, n: int) -> np.ndarray:
        arr = np.asarray(parties)
        if arr.dtype.kind not in "iu" or arr.shape != (n,):
            raise ValueError(f"parties must be an integer array of shape ({n},) (one party label per user)")
        if n and arr.min() < 0:
            raise ValueError(f"parties must be labels >= 0, got {int(arr.min())}")
        return arr.astype(np.int64, copy=False)

    def perturb(self, values, parties, rng: np.random.Generator) -> tuple[tuple[np.ndarray, ...], ...]:
        """Every user joins a level of their party and reports that prefix through OLH (vectorized)."""
        keys = base.check_keys("values", values, self.bits)
        parties = self._check_parties(parties, len(keys))
        check_rng(rng)
        n_parties = int(parties.max()) + 1 if len(parties) else 0
        return tuple(self._perturb_levels(self.oracle, keys[parties == p], self.lengths, rng) for p in range(n_parties))

    # ------------------------------------------------------------------------------------------- server
    def identify(self, reports) -> base.HeavyHitters:
        """The global heavy hitters from every party's level reports."""
        if not isinstance(reports, tuple | list) or not reports or any(len(r) != self.levels for r in reports):
            raise ValueError(
                f"reports must hold, for every party, a tuple of {self.levels} report arrays (one a level)"
            )
        return self._run(lambda p, lvl, cand: self.oracle.aggregate(reports[p][lvl], cand), len(reports))

    def run(self, values, parties, rng: np.random.Generator) -> base.HeavyHitters:
        """Clients then server (same as ``identify(perturb(values, parties, rng))``)."""
        return self.identify(self.perturb(values, parties, rng))

    def _run(self, counts, n_parties: int) -> base.HeavyHitters:
        sizes = np.array(
            [
                sum(counts(p, lvl, np.zeros(0, dtype=np.uint64)).n for lvl in range(self.levels))
                for p in range(n_parties)
            ]
        )
        if (sizes == 0).any():
            raise ValueError(f"every party needs users; party sizes {sizes.tolist()}")
        S = min(self.shared_levels, self.levels - 1)
        cand = np.arange(1 << self.lengths[0], dtype=np.uint64)
        for lvl in range(S):  # the shared shallow trie: all parties' users of the level pooled
            if lvl:
                cand = base.extend(cand, self.lengths[lvl] - self.lengths[lvl - 1])
            state = sum(counts(p, lvl, cand) for p in range(n_parties))
            freq = self.oracle.estimate(state, cand)
            cand = cand[np.lexsort((cand, -freq))[: self.beam]]
        shared = cand
        order = np.argsort(-sizes, kind="stable") if self.order == "size" else np.arange(n_parties)
        released: list[dict[int, tuple[np.ndarray, np.ndarray, float]]] = []
        finals = []
        for p in order:
            cand = shared
            mine: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}
            for lvl in range(S, self.levels):
                if lvl:
                    cand = base.extend(cand, self.lengths[lvl] - self.lengths[lvl - 1])
                state = counts(p, lvl, cand)
                if state.n <= 0:
                    raise ValueError(f"party {int(p)} has no user at level {lvl}: more users or a larger step")
                score = self.oracle.estimate(state, cand) * sizes[p]
                var = self.oracle.variance(state.n) * sizes[p] ** 2
                mine[lvl] = (cand, score, var)
                if self.consensus:
                    for prior in released:
                        if lvl in prior:
                            pc, ps, pv = prior[lvl]
                            idx = np.searchsorted(pc, cand)
                            hit = (idx < len(pc)) & (pc[np.minimum(idx, len(pc) - 1)] == cand)
                            score = score + np.where(hit, ps[np.minimum(idx, len(pc) - 1)], 0.0)
                            var += pv
                order_c = np.lexsort((cand, -score))
                keep = int(np.sum(score >= self.z * math.sqrt(var)))
                keep = min(max(keep, self.k), self.beam)
                cand = np.sort(cand[order_c[:keep]])
                own_c, own_s, own_v = mine[lvl]
                pos = np.searchsorted(own_c, cand)
                mine[lvl] = (cand, own_s[pos], own_v)  # what this party releases: its own estimates of its survivors
            released.append(mine)
            finals.append(cand)
        union = np.unique(np.concatenate(finals))
        last = self.levels - 1
        total, var = np.zeros(len(union)), np.zeros(len(union))
        for p in range(n_parties):
            state = counts(p, last, union)
            f = self.oracle.estimate(state, union)
            total += f * sizes[p]
            var += sizes[p] ** 2 * self.oracle.variance(state.n, np.clip(f, 0, 1))
        n = int(sizes.sum())
        top = np.lexsort((union, -total))[: self.k]
        return base.count_result(
            union[top],
            total[top] / n,
            var[top] / n**2,
            n,
            self.bits,
            self.name + ("S" if self.consensus else ""),
            party_candidates=[finals[int(np.flatnonzero(order == p)[0])] for p in range(n_parties)],
        )

    def privacy_event(self) -> DpEvent:
        return self.oracle.privacy_event()


def TAPS(bits: int, epsilon: float, k: int = 10, **kwargs) -> TAP:
    """TAP with consensus-based pruning (parties in sequence, each pruning with the earlier parties' releases)."""
    return TAP(bits, epsilon, k, consensus=True, **kwargs)
