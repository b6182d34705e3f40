"""SFP, Apple's sequence fragment puzzle (Apple Differential Privacy Team, "Learning with Privacy at Scale", Apple
Machine Learning Journal 2017; the reimplementation in pure-LDP fixed its parameters: a 256-value hash, fragments,
epsilon split in halves).

A key of m bits is cut into P = ceil(m / fragment_bits) fragments (the last one zero-padded). A fixed public hash
maps the whole key to ``hash_bits`` bits (splitmix64's finalizer, top bits).

Client: every user sends two reports at epsilon/2 each:

1. a fragment position l drawn uniformly at random (public, data-independent) and the pair (hash(key), fragment l
   of the key), one of 2^(hash_bits + fragment_bits) items, through a frequency oracle at epsilon/2 over those
   items (any :func:`dpkit.mechanisms.make_oracle` name; default 'HR', Hadamard response: an O(1) client and a
   server decoding all 2^16 items with one fast Walsh-Hadamard transform, in the spirit of Apple's Hadamard
   count-mean sketch; its variance stops falling near 1/n_l at large epsilon, where 'OLH', 'OUE' or, for small
   fragment domains, 'GRR' do better at a higher cost);
2. the whole key through OLH at epsilon/2 (:class:`~.base.CandidateHashing`: evaluated on candidates only).

Server: for every position, the top-k pairs (or those above the threshold); pairs with the same hash are the
puzzle pieces of one key: the keys assembled from one piece per position (at most ``max_combinations`` per hash,
the best pieces first) whose own hash matches are the candidates; their frequencies are estimated from the
whole-key reports of all n users, and the top-k (or those above the threshold) are the heavy hitters, with counts
n f_hat and variance n^2 V_OLH(n, f) at epsilon/2.

Unit of privacy: one user's key; neighbouring relation: replace it. Guarantee: epsilon-LDP by basic composition of
the two epsilon/2 reports (``privacy_event()``: ``ComposedEvent`` of the fragment oracle's and the OLH event).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dpkit.accountants import ComposedEvent, DpEvent
from dpkit.mechanisms import make_oracle
from dpkit.mechanisms._validation import check_count
from dpkit.mechanisms.heavy_hitters import base

__all__ = ["SFP", "public_hash"]

U64 = np.uint64


def public_hash(keys: np.ndarray, bits: int) -> np.ndarray:
    """The fixed public hash of 64-bit keys to ``bits`` bits (splitmix64 finalizer, top bits)."""
    h = np.asarray(keys, dtype=U64) + U64(0x9E3779B97F4A7C15)
    h = (h ^ (h >> U64(30))) * U64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> U64(27))) * U64(0x94D049BB133111EB)
    h ^= h >> U64(31)
    return (h >> U64(64 - bits)).astype(np.int64)


@dataclass(frozen=True)
class SFP(base.KeyProtocol):
    """Sequence fragment puzzle for ``bits``-bit keys (module docstring). Reports (``perturb``): a tuple of P + 1
    arrays: the fragment oracle's reports of the users at each position, then the whole-key OLH reports."""

    bits: int
    epsilon: float
    k: int | None = 10
    threshold: float | None = None
    fragment_bits: int = 8
    hash_bits: int = 8
    fragment_oracle: str = "HR"
    max_combinations: int = 1024
    name = "SFP"
    fragments: Any = field(init=False, repr=False, compare=False, default=None)
    word_oracle: Any = field(init=False, repr=False, compare=False, default=None)
    selection: Any = field(init=False, repr=False, compare=False, default=None)
    positions: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self):
        self._init_keys()
        fb = check_count("fragment_bits", self.fragment_bits, minimum=1)
        hb = check_count("hash_bits", self.hash_bits, minimum=1)
        if fb > self.bits:
            raise ValueError(f"fragment_bits must be in [1, bits={self.bits}], got {fb}")
        if fb + hb > 24:
            raise ValueError(f"fragment_bits + hash_bits must be <= 24 (fragment items enumerated), got {fb + hb}")
        object.__setattr__(self, "fragment_bits", fb)
        object.__setattr__(self, "hash_bits", hb)
        object.__setattr__(self, "max_combinations", check_count("max_combinations", self.max_combinations, minimum=1))
        object.__setattr__(self, "positions", -(-self.bits // fb))
        object.__setattr__(self, "fragments", make_oracle(self.fragment_oracle, 1 << (fb + hb), self.epsilon / 2))
        object.__setattr__(self, "word_oracle", self._oracle(2))

    # --------------------------------------------------------------------------------------------- pieces
    def _span(self, pos: int) -> tuple[int, int]:
        """(end bit counted from the top, length) of fragment ``pos``."""
        end = min((pos + 1) * self.fragment_bits, self.bits)
        return end, end - pos * self.fragment_bits

    def fragment(self, keys: np.ndarray, pos: int) -> np.ndarray:
        """Fragment ``pos`` of every key (zero-padded to fragment_bits)."""
        end, length = self._span(pos)
        frag = (keys >> U64(self.bits - end)) & U64((1 << length) - 1)
        return (frag << U64(self.fragment_bits - length)).astype(np.int64)

    def items(self, keys: np.ndarray, pos: int) -> np.ndarray:
        """The fragment oracle's input: hash(key) 2^fragment_bits + fragment ``pos``."""
        return (public_hash(keys, self.hash_bits) << self.fragment_bits) | self.fragment(keys, pos)

    # --------------------------------------------------------------------------------------------- client
    def perturb(self, values, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        keys = base.check_client(values, rng, self.bits)
        pos = base.split_groups(len(keys), self.positions, rng)
        frag = tuple(self.fragments.perturb(self.items(keys[pos == i], i), rng) for i in range(self.positions))
        return (*frag, self.word_oracle.perturb(keys, rng))

    # --------------------------------------------------------------------------------------------- server
    def identify(self, reports) -> base.HeavyHitters:
        """Heavy hitters from a tuple of P + 1 report arrays, or a callable returning an iterable of such tuples
        (each read twice: the fragment states, then the candidates' whole-key counts)."""
        source = base.chunk_source(reports, self.positions + 1)
        states = [self.fragments.aggregate_stream(chunk[i] for chunk in source()) for i in range(self.positions)]
        cand = self.candidates(states)
        word = base.sum_states(self.word_oracle.aggregate(chunk[-1], cand) for chunk in source())
        return self._word_result(cand, word)

    def run(self, values, rng: np.random.Generator, chunk_size: int = 1 << 18) -> base.HeavyHitters:
        """Clients and server chunk by chunk (same distribution as ``identify(perturb(values, rng))``)."""
        keys, chunk_size = base.check_run(values, rng, chunk_size, self.bits)
        pos = base.split_groups(len(keys), self.positions, rng)
        states = []
        for i in range(self.positions):
            items = self.items(keys[pos == i], i)
            states.append(self.fragments.perturb_aggregate(items, rng, chunk_size))
        cand = self.candidates(states)
        word = self._chunked_state(self.word_oracle, keys, cand, rng, chunk_size) if len(keys) else None
        return self._word_result(cand, word)

    def candidates(self, states) -> np.ndarray:
        """Keys assembled from the surviving (hash, fragment) pieces of every position, with a matching hash."""
        if not isinstance(states, (list, tuple)) or len(states) != self.positions:
            raise ValueError(f"states must be the {self.positions} fragment oracles' states, one per position")
        if any(isinstance(s, base.SupportCounts) and s.n <= 0 for s in states):
            raise ValueError("every fragment position needs reports: more users or longer fragments")
        for s in states:
            self.fragments._check_state(s)
        pieces = []  # per position: {hash: fragments by decreasing estimate}
        for s in states:
            items, _ = self.selection(np.arange(1 << (self.fragment_bits + self.hash_bits)), self.fragments.estimate(s))
            by_hash: dict[int, list[int]] = {}
            for it in items.tolist():
                by_hash.setdefault(it >> self.fragment_bits, []).append(it & ((1 << self.fragment_bits) - 1))
            pieces.append(by_hash)
        common = set(pieces[0]).intersection(*pieces[1:])
        per_pos = max(1, int(self.max_combinations ** (1 / self.positions)))
        keys, hashes = [], []
        for h in sorted(common):
            for combo in itertools.product(*(p[h][:per_pos] for p in pieces)):
                key = 0
                for pos, frag in enumerate(combo):
                    end, length = self._span(pos)
                    key |= (frag >> (self.fragment_bits - length)) << (self.bits - end)
                keys.append(key)
                hashes.append(h)
        cand = np.array(keys, dtype=U64)
        return np.unique(cand[public_hash(cand, self.hash_bits) == np.array(hashes, dtype=np.int64)])

    def privacy_event(self) -> DpEvent:
        return ComposedEvent((self.fragments.privacy_event(), self.word_oracle.privacy_event()))
