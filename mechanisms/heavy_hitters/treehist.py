"""TreeHist (Bassily, Nissim, Stemmer, Thakurta, "Practical Locally Private Heavy Hitters", NeurIPS 2017; JMLR 2020).

A prefix tree over m-bit keys with levels of prefix length step, 2 step, ..., m (the paper's binary tree is
step = 1). Every user sends two reports at epsilon/2 each (as in the paper and in pure-LDP's TreeHist):

1. the prefix of their key at a level drawn uniformly at random (the level is public and data-independent: a
   random partition of the users among the levels), through OLH at epsilon/2;
2. their whole key, through OLH at epsilon/2 (the final frequency oracle, run by all users).

Server: level by level from the 2^step first prefixes, the candidates' frequencies are estimated from that level's
users (hash evaluated on candidates only) and the top-k (or those above the threshold) are extended by step bits;
the survivors of the last level are then estimated with the whole-key reports of all n users, and the top-k (or
those above the threshold) of those estimates are the heavy hitters, with counts n f_hat and variance
n^2 V_OLH(n, f) at epsilon/2.

Unit of privacy: one user's key; neighbouring relation: replace it. Guarantee: epsilon-LDP by basic composition of
two epsilon/2-LDP reports (``privacy_event()``: ``ComposedEvent`` of the two randomized-response events).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dpkit.accountants import ComposedEvent, DpEvent
from dpkit.mechanisms._validation import check_count
from dpkit.mechanisms.heavy_hitters import base
from dpkit.mechanisms.heavy_hitters.pem import prefix_schedule

__all__ = ["TreeHist"]

MAX_STEP = 16


@dataclass(frozen=True)
class TreeHist(base.KeyProtocol):
    """TreeHist for ``bits``-bit keys (module docstring). ``k`` (top-k, default 10) or ``threshold``; ``step``: bits per
    tree level. Reports (``perturb``): a tuple of L + 1 arrays: the prefix reports of each level's users, then the
    whole-key reports of all users (uint64 (n, 4) each)."""

    bits: int
    epsilon: float
    k: int | None = 10
    threshold: float | None = None
    step: int = 1
    name = "TreeHist"
    prefix_oracle: Any = field(init=False, repr=False, compare=False, default=None)
    word_oracle: Any = field(init=False, repr=False, compare=False, default=None)
    selection: Any = field(init=False, repr=False, compare=False, default=None)
    lengths: tuple = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self):
        self._init_keys()
        step = check_count("step", self.step, minimum=1)
        if step > MAX_STEP:
            raise ValueError(f"step must be in [1, {MAX_STEP}], got {self.step!r}")
        object.__setattr__(self, "step", step)
        object.__setattr__(self, "lengths", prefix_schedule(self.bits, min(step, self.bits), step))
        object.__setattr__(self, "prefix_oracle", self._oracle(2))
        object.__setattr__(self, "word_oracle", self._oracle(2))

    @property
    def levels(self) -> int:
        return len(self.lengths)

    def perturb(self, values, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        keys = base.check_client(values, rng, self.bits)
        pre = self._perturb_levels(self.prefix_oracle, keys, self.lengths, rng)
        return (*pre, self.word_oracle.perturb(keys, rng))

    def identify(self, reports) -> base.HeavyHitters:
        """Heavy hitters from a tuple of L + 1 report arrays, or a callable returning an iterable of such tuples."""
        source = base.chunk_source(reports, self.levels + 1)

        def counts(level, cand):
            oracle = self.word_oracle if level == self.levels else self.prefix_oracle
            return base.sum_states(oracle.aggregate(chunk[level], cand) for chunk in source())

        return self._descend(counts)

    def run(self, values, rng: np.random.Generator, chunk_size: int = 1 << 18) -> base.HeavyHitters:
        """Clients and server chunk by chunk (same distribution as ``identify(perturb(values, rng))``); the
        whole-key reports are regenerated from a generator spawned once, so they are the same at every read."""
        keys, chunk_size = base.check_run(values, rng, chunk_size, self.bits)
        lvl = base.split_groups(len(keys), self.levels, rng)
        word_seed = rng.integers(0, 2**63)

        def counts(level, cand):
            if level == self.levels:
                g = np.random.default_rng(word_seed)
                return base.sum_states(
                    self.word_oracle.aggregate(self.word_oracle.perturb(keys[s : s + chunk_size], g), cand)
                    for s in range(0, len(keys), chunk_size)
                )
            own = base.prefixes(keys[lvl == level], self.bits, self.lengths[level])
            return self._chunked_state(self.prefix_oracle, own, cand, rng, chunk_size)

        return self._descend(counts)

    def _descend(self, counts) -> base.HeavyHitters:
        cand = np.arange(1 << self.lengths[0], dtype=np.uint64)
        for level in range(self.levels):
            if level:
                cand = base.extend(cand, self.lengths[level] - self.lengths[level - 1])
            state = counts(level, cand)
            if state is None or state.n <= 0:
                raise ValueError(f"level {level} has no report: more users or a larger step")
            cand, _ = self.selection(cand, self.prefix_oracle.estimate(state, cand))
        return self._word_result(cand, counts(self.levels, cand))

    def privacy_event(self) -> DpEvent:
        return ComposedEvent((self.prefix_oracle.privacy_event(), self.word_oracle.privacy_event()))
