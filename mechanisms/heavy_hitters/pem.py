"""PEM, the prefix extending method (Wang, Li, Jha, "Locally Differentially Private Heavy Hitter Identification",
IEEE TDSC 2019, arXiv 1708.06674).

Keys of m bits; target: the top-k (or every key above a frequency threshold). Start length s0 = floor(log2 k) + 1
(threshold mode: ceil(log2(1/threshold)) + 1), extension step eta bits, G = 1 + ceil((m - s0)/eta) groups with
prefix lengths s_i = min(s0 + i eta, m).

Client: each user joins a group i uniformly at random (independently of the data) and reports the length-s_i
prefix of their key through OLH at the full epsilon (:class:`~.base.CandidateHashing`): one report per user.

Server, group by group: the candidates of group 0 are all 2^s0 prefixes; those of group i are the extensions by
s_i - s_{i-1} bits of the survivors of group i - 1; each candidate's frequency is estimated from group i's
reports, by evaluating the hash on that candidate only (the 2^m domain is never enumerated); the top-k (or those
above the threshold) survive. The survivors of the last group are the heavy hitters; their counts are n times the
estimated frequency in the last group (unbiased for each candidate, given the candidate set), with variance
n^2 V_OLH(n/G, f).

Unit of privacy: one user's key. Neighbouring relation: replace it. Guarantee: epsilon-LDP (one OLH report;
``privacy_event()`` = ``RandomizedResponseEvent(epsilon, g)``). Choosing candidates from earlier groups is
post-processing of other users' reports.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dpkit.accountants import DpEvent
from dpkit.mechanisms._validation import check_count
from dpkit.mechanisms.heavy_hitters import base

__all__ = ["PEM", "prefix_schedule"]

MAX_START_BITS = 24


def prefix_schedule(bits: int, start: int, step: int) -> tuple[int, ...]:
    """Prefix lengths s0, s0 + step, ..., m (the last one clipped to m)."""
    lengths = [min(start, bits)]
    while lengths[-1] < bits:
        lengths.append(min(lengths[-1] + step, bits))
    return tuple(lengths)


@dataclass(frozen=True)
class PEM(base.KeyProtocol):
    """Prefix extending method for ``bits``-bit keys (module docstring: algorithm and guarantee).

    ``k``: top-k (default 10); or ``threshold``: every key with estimated frequency >= threshold (then ``k=None``).
    ``step`` (eta): bits added per group. ``start_bits``: s0 (default from k or the threshold).
    Reports (``perturb``): a tuple of G arrays, the OLH reports (uint64 (n_i, 4)) of each group's users.
    """

    bits: int
    epsilon: float
    k: int | None = 10
    threshold: float | None = None
    step: int = 1
    start_bits: int | None = None
    name = "PEM"
    oracle: Any = field(init=False, repr=False, compare=False, default=None)
    selection: Any = field(init=False, repr=False, compare=False, default=None)
    lengths: tuple = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self):
        self._init_keys()
        object.__setattr__(self, "step", check_count("step", self.step, minimum=1))
        if self.start_bits is None:
            s0 = int(math.floor(math.log2(self.selection.capacity))) + 1
        else:
            s0 = check_count("start_bits", self.start_bits, minimum=1)
        s0 = min(s0, self.bits)
        if s0 > MAX_START_BITS:
            raise ValueError(f"start_bits must be <= {MAX_START_BITS} (2^start_bits first candidates), got {s0}")
        object.__setattr__(self, "start_bits", s0)
        object.__setattr__(self, "lengths", prefix_schedule(self.bits, s0, self.step))
        object.__setattr__(self, "oracle", self._oracle())

    @property
    def groups(self) -> int:
        return len(self.lengths)

    # ------------------------------------------------------------------------------------------- client
    def perturb(self, values, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """Each user joins a random group and reports their prefix of that group's length (vectorized)."""
        keys = base.check_client(values, rng, self.bits)
        return self._perturb_levels(self.oracle, keys, self.lengths, rng)

    # ------------------------------------------------------------------------------------------- server
    def first_candidates(self) -> np.ndarray:
        return np.arange(1 << self.lengths[0], dtype=np.uint64)

    def next_candidates(self, level: int, survivors: np.ndarray) -> np.ndarray:
        """Candidates of group ``level`` >= 1 from the survivors of the group before."""
        return base.extend(survivors, self.lengths[level] - self.lengths[level - 1])

    def identify(self, reports) -> base.HeavyHitters:
        """The heavy hitters from all groups' reports: a tuple of G report arrays, or a callable returning an
        iterable of such tuples (chunks; read once per group, so memory stays bounded by one chunk)."""
        source = base.chunk_source(reports, self.groups)
        counts = lambda level, cand: base.sum_states(  # noqa: E731
            self.oracle.aggregate(chunk[level], cand) for chunk in source()
        )
        return self._descend(counts)

    def run(self, values, rng: np.random.Generator, chunk_size: int = 1 << 18) -> base.HeavyHitters:
        """Clients and server in one pass per group, chunk by chunk (the same distribution as ``identify(perturb(
        values, rng))``: the clients' randomness does not depend on the candidates)."""
        keys, chunk_size = base.check_run(values, rng, chunk_size, self.bits)
        grp = base.split_groups(len(keys), self.groups, rng)

        def counts(level, cand):
            own = base.prefixes(keys[grp == level], self.bits, self.lengths[level])
            return self._chunked_state(self.oracle, own, cand, rng, chunk_size)

        return self._descend(counts, n=len(keys))

    def _descend(self, counts: Callable, n: int | None = None) -> base.HeavyHitters:
        cand = self.first_candidates()
        sizes = []
        for level in range(self.groups):
            if level:
                cand = self.next_candidates(level, cand)
            state = counts(level, cand)
            if state is None or state.n <= 0:
                raise ValueError(f"group {level} has no report: more users or fewer groups (a larger step)")
            sizes.append(state.n)
            freq = self.oracle.estimate(state, cand)
            cand, freq = self.selection(cand, freq)
        total = int(sum(sizes)) if n is None else n
        var = self.oracle.variance(sizes[-1], np.clip(freq, 0, 1))
        return base.count_result(cand, freq, var, total, self.bits, self.name, group_sizes=sizes)

    def privacy_event(self) -> DpEvent:
        return self.oracle.privacy_event()
