"""What the heavy-hitter protocols share: m-bit keys and their prefixes, local hashing evaluated on a candidate set
only (the domain is never enumerated), top-k / threshold selection and the result type.

Keys are ``uint64`` values of ``bits`` <= 64 bits (``encoding.encode_bytes`` / ``hash_bytes`` turn byte strings into
keys); the length-s prefix of a key is ``key >> (bits - s)``.

Local hashing on candidates (:class:`CandidateHashing`): the OLH channel of dpkit's frequency oracles (Wang et al.
USENIX Sec'17), with a hash family for 64-bit keys. Client: draw a hash function H from the family, report
(H, GRR_g(H(x))) with g = round(e^eps) + 1 (OLH's g) and p = e^eps/(e^eps + g - 1). The family is vector
multiply-shift on the two 32-bit halves of x (Dietzfelbinger 1996; Thorup, "High speed hashing for integers and
strings", 2015), then Lemire's range reduction:

    z = (a0 lo(x) + a1 hi(x) + b) mod 2^64,   h32 = z >> 32 (strongly universal),   H(x) = (h32 g) >> 32

with a0, a1, b uniform 64-bit. Server: the support count of a candidate c is #{reports : H(c) = y}, computed only for
the candidates (no enumeration of the 2^bits keys), as one multiply-add per half and one compare per (report,
candidate): H(c) = y iff (z - L_y) mod 2^64 < W_y with L_y = ceil(y 2^32/g) 2^32 and W_y the bucket width. Pure
protocol with p* = p and q* = 1/g (collisions), up to 2^-32 rounding of the range reduction.

Privacy of one report: the hash function is drawn independently of the key and, given it, the output is g-ary
randomized response of H(x): epsilon-LDP for the key under replacement (``RandomizedResponseEvent(eps, g)``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dpkit.accountants import DpEvent, RandomizedResponseEvent
from dpkit.accountants.validation import check_positive
from dpkit.mechanisms import SupportCounts, hashing
from dpkit.mechanisms._validation import check_chunk_size, check_count, check_epsilon, check_probability, check_rng
from dpkit.mechanisms.base import check_key, check_state_of
from dpkit.mechanisms.frequency_oracles.grr import grr_pq

__all__ = [
    "MAX_BITS",
    "check_bits",
    "check_keys",
    "prefixes",
    "extend",
    "CandidateHashing",
    "HeavyHitters",
    "Selection",
    "split_groups",
    "KeyProtocol",
    "SupportCounts",
    "check_client",
    "check_run",
    "chunk_source",
    "sum_states",
]

MAX_BITS = 64
U64 = np.uint64
_MASK32 = U64(0xFFFFFFFF)
_SHIFT = U64(32)


def check_bits(name: str, value) -> int:
    """A key length in [1, 64] bits."""
    b = check_count(name, value, minimum=1)
    if b > MAX_BITS:
        raise ValueError(f"{name} must be in [1, {MAX_BITS}] (keys are uint64), got {value!r}")
    return b


def check_keys(name: str, values, bits: int) -> np.ndarray:
    """Keys of ``bits`` bits: a 1-D integer array with every entry in [0, 2^bits). Returns uint64."""
    arr = np.asarray(values)
    if arr.size == 0 and arr.ndim == 1 and arr.dtype.kind in "iuf":
        return arr.astype(U64)  # e.g. []: no key
    if arr.dtype.kind not in "iu":
        raise TypeError(
            f"{name} must be an integer array of {bits}-bit keys, got dtype {arr.dtype} "
            "(byte strings: dpkit.mechanisms.heavy_hitters.encode_bytes or hash_bytes)"
        )
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-dimensional array, got shape {arr.shape}")
    if arr.size:
        if arr.dtype.kind == "i" and arr.min() < 0:
            raise ValueError(f"{name} must be in [0, 2^{bits}), got {int(arr.min())}")
        if bits < 64 and int(arr.max()) >= (1 << bits):
            raise ValueError(f"{name} must be in [0, 2^{bits}), got {int(arr.max())}")
    return arr.astype(U64, copy=False)


def prefixes(keys: np.ndarray, bits: int, length: int) -> np.ndarray:
    """The length-``length`` prefixes of ``bits``-bit keys."""
    return keys >> U64(bits - length) if length < bits else keys


def extend(prefix_set: np.ndarray, delta: int) -> np.ndarray:
    """Every extension of each prefix by ``delta`` bits (candidates of the next level), sorted."""
    if delta == 0:
        return np.sort(prefix_set)
    ext = (prefix_set.astype(U64)[:, None] << U64(delta)) | np.arange(1 << delta, dtype=U64)[None, :]
    return np.sort(ext.ravel())


def split_groups(n: int, groups: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random group in [0, groups) for every user (independent of the data)."""
    if groups == 1:
        return np.zeros(n, dtype=np.int64)
    return rng.integers(0, groups, size=n)


# ------------------------------------------------------------------------------------------ candidate hashing
@dataclass(frozen=True)
class CandidateHashing:
    """OLH for 64-bit keys, whose server evaluates support counts on a candidate set only (module docstring).

    Reports: uint64 array (n, 4), columns (a0, a1, b, y). ``g=0``: OLH's g = round(e^eps) + 1. A state's key names
    the oracle's parameters and the candidate set it counts (:meth:`state_key`): states merge only over the same
    candidates.
    """

    epsilon: float
    g: int = 0
    block: int = 1 << 20  # (report, candidate) pairs per block of the server's count
    p_star: float = field(init=False, repr=False, compare=False, default=0.0)
    q_star: float = field(init=False, repr=False, compare=False, default=0.0)
    name = "OLH-candidates"

    def __post_init__(self):
        object.__setattr__(self, "epsilon", check_epsilon("epsilon", self.epsilon))
        if self.g:
            g = check_count("g", self.g, minimum=2, maximum=hashing.MAX_BUCKETS)
        else:
            g = hashing.optimal_g(self.epsilon, self.name)
        object.__setattr__(self, "g", g)
        object.__setattr__(self, "block", check_count("block", self.block, minimum=1))
        object.__setattr__(self, "p_star", grr_pq(self.epsilon, g)[0])
        object.__setattr__(self, "q_star", 1.0 / g)

    @property
    def key(self) -> str:
        """The oracle's identity: the parameters its estimator depends on."""
        return f"{self.name}(epsilon={self.epsilon!r}, g={self.g})"

    def state_key(self, candidates: np.ndarray) -> str:
        """The key of a state of support counts over ``candidates``: the oracle's, the number of candidates and a
        digest of them (counts over other candidates do not merge)."""
        digest = hashlib.blake2b(np.ascontiguousarray(candidates, dtype=U64).tobytes(), digest_size=8).hexdigest()
        return f"{self.key}[{len(candidates)} candidates {digest}]"

    # ---------------------------------------------------------------- client
    def hash(self, a0, a1, b, keys) -> np.ndarray:
        """H(keys) in [0, g) (elementwise, broadcasting)."""
        k = np.asarray(keys, dtype=U64)
        z = np.asarray(a0, dtype=U64) * (k & _MASK32) + np.asarray(a1, dtype=U64) * (k >> _SHIFT)
        z = (z + np.asarray(b, dtype=U64)) >> _SHIFT
        return ((z * U64(self.g)) >> _SHIFT).astype(np.int64)

    def perturb(self, keys, rng: np.random.Generator) -> np.ndarray:
        """One report (a0, a1, b, y) per key (vectorized); keys: a 1-D integer array of 64-bit keys."""
        keys = check_keys("keys", keys, MAX_BITS)
        check_rng(rng)
        n = keys.shape[0]
        params = rng.integers(0, 2**64 - 1, size=(3, n), dtype=U64, endpoint=True)
        h = self.hash(params[0], params[1], params[2], keys)
        keep = rng.random(n) < self.p_star
        other = rng.integers(0, self.g - 1, size=n)
        other += other >= h
        y = np.where(keep, h, other).astype(U64)
        return np.stack([params[0], params[1], params[2], y], axis=1)

    # ---------------------------------------------------------------- server
    def _check_reports(self, reports) -> np.ndarray:
        return hashing.check_hash_reports("reports", reports, self.g, columns=4)

    def support_counts(self, reports, candidates) -> np.ndarray:
        """C(c) = #{reports with H(c) = y} for every candidate key c (int64, in blocks of ``block`` pairs)."""
        r = self._check_reports(reports)
        cand = check_keys("candidates", candidates, MAX_BITS)
        counts = np.zeros(cand.shape[0], dtype=np.int64)
        if len(r) == 0 or cand.size == 0:
            return counts
        lo_y, width = hashing.bucket_bounds(r[:, 3], self.g)  # H(c) = y iff (z - L_y) mod 2^64 < W_y
        b_shift = r[:, 2] - lo_y  # wraps mod 2^64
        c_lo, c_hi = cand & _MASK32, cand >> _SHIFT
        use_hi = bool(c_hi.any())
        rows = max(1, self.block // cand.shape[0])
        z = np.empty((min(rows, len(r)), cand.shape[0]), dtype=U64)
        t = np.empty_like(z)
        hit = np.empty(z.shape, dtype=bool)
        for s in range(0, len(r), rows):
            e = min(len(r), s + rows)
            m = e - s
            zz, tt, hh = z[:m], t[:m], hit[:m]
            np.multiply(r[s:e, 0, None], c_lo[None, :], out=zz)
            if use_hi:
                np.multiply(r[s:e, 1, None], c_hi[None, :], out=tt)
                np.add(zz, tt, out=zz)
            np.add(zz, b_shift[s:e, None], out=zz)
            np.less(zz, width[s:e, None], out=hh)
            counts += np.add.reduce(hh.view(np.uint8), axis=0, dtype=np.int64)
        return counts

    def aggregate(self, reports, candidates) -> SupportCounts:
        """Mergeable state (support counts of the candidates) of one chunk of reports."""
        r = self._check_reports(reports)
        cand = check_keys("candidates", candidates, MAX_BITS)
        return SupportCounts(self.support_counts(r, cand), len(r), self.state_key(cand))

    def estimate(self, state: SupportCounts, candidates=None) -> np.ndarray:
        """Unbiased frequencies of the candidates, (C/n - q*)/(p* - q*), from a state of this oracle (over
        ``candidates``, if given)."""
        if not isinstance(state, SupportCounts):
            raise TypeError(f"state must be a SupportCounts (from aggregate), got {type(state).__name__}")
        if candidates is not None:
            cand = check_keys("candidates", candidates, MAX_BITS)
            check_state_of(state, self.state_key(cand), (len(cand),), lambda n: (0.0, float(n)))
        else:
            check_key("state", state.protocol.split("[", 1)[0], self.key)
            check_state_of(state, state.protocol, state.counts.shape, lambda n: (0.0, float(n)))
        return (state.counts / state.n - self.q_star) / (self.p_star - self.q_star)

    def variance(self, n: float, f=None):
        """q*(1-q*)/(n (p*-q*)^2) + f (1-p*-q*)/(n (p*-q*)): the variance of an estimated frequency (``n``: users,
        possibly fractional, e.g. an expected group size)."""
        n = check_positive("n", n)
        p, q = self.p_star, self.q_star
        v = q * (1 - q) / (n * (p - q) ** 2)
        if f is None:
            return v
        fa = np.asarray(f, dtype=np.float64)
        if not ((fa >= 0) & (fa <= 1)).all():
            raise ValueError("f must be frequencies in [0, 1]")
        return v + fa * (1 - p - q) / (n * (p - q))

    def privacy_event(self) -> DpEvent:
        return RandomizedResponseEvent(self.epsilon, self.g)

    def output_probabilities(self, key: int, a0: int, a1: int, b: int) -> np.ndarray:
        """P(y | key, hash function (a0, a1, b)) for y in [0, g)."""
        h = int(self.hash(U64(a0), U64(a1), U64(b), np.array([key], dtype=U64))[0])
        out = np.full(self.g, (1 - self.p_star) / (self.g - 1))
        out[h] = self.p_star
        return out


# --------------------------------------------------------------------------------------------------- selection
@dataclass(frozen=True)
class Selection:
    """Which candidates survive a level: the ``k`` largest estimates, or those with estimated frequency >=
    ``threshold`` (at most ``ceil(1/threshold)`` of them, the largest: no more can truly reach it)."""

    k: int | None = None
    threshold: float | None = None

    def __post_init__(self):
        if (self.k is None) == (self.threshold is None):
            raise ValueError(
                f"give exactly one of k (top-k) and threshold, got k={self.k!r}, threshold={self.threshold!r}"
            )
        if self.k is not None:
            object.__setattr__(self, "k", check_count("k", self.k, minimum=1))
        else:
            object.__setattr__(self, "threshold", check_probability("threshold", self.threshold))

    @property
    def capacity(self) -> int:
        return self.k if self.k is not None else math.ceil(1 / float(self.threshold or 1.0))

    def __call__(self, candidates: np.ndarray, freq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(kept candidates, their estimates), by decreasing estimate (ties: smaller key first)."""
        order = np.lexsort((candidates, -freq))
        if self.threshold is not None:
            order = order[freq[order] >= self.threshold]
        order = order[: self.capacity]
        return candidates[order], freq[order]


@dataclass(frozen=True, eq=False)
class HeavyHitters:
    """The identified heavy hitters: ``values`` (uint64 keys) by decreasing estimated count, ``counts`` (estimated
    number of users holding each), ``variances`` (the analytic variance of each count, with the estimate plugged in
    for f), ``n`` users, ``bits`` per key."""

    values: np.ndarray
    counts: np.ndarray
    variances: np.ndarray
    n: int
    bits: int
    protocol: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def frequencies(self) -> np.ndarray:
        return self.counts / self.n

    def __len__(self) -> int:
        return len(self.values)

    def to_dict(self) -> dict:
        return {
            "values": [int(v) for v in self.values],
            "counts": [float(c) for c in self.counts],
            "variances": [float(v) for v in self.variances],
            "n": int(self.n),
            "bits": int(self.bits),
            "protocol": self.protocol,
        }


def count_result(values, freq, var_freq, n: int, bits: int, protocol: str, **extra) -> HeavyHitters:
    """A :class:`HeavyHitters` from estimated frequencies and their variances (counts = n f)."""
    order = np.lexsort((values, -freq))
    return HeavyHitters(
        np.asarray(values, dtype=U64)[order],
        n * np.asarray(freq, dtype=np.float64)[order],
        n**2 * np.asarray(var_freq, dtype=np.float64)[order],
        int(n),
        int(bits),
        protocol,
        dict(extra),
    )


# ------------------------------------------------------------------------------------------ shared protocol parts
class KeyProtocol:
    """What the heavy-hitter protocols share: ``bits``-bit keys, ``epsilon``, and the selection of the heavy hitters
    (top ``k`` or ``threshold``); helpers for the users' split among levels and for reading reports in chunks."""

    bits: int
    epsilon: float
    k: int | None
    threshold: float | None

    def _init_keys(self, threshold: bool = True) -> None:
        """Check and store ``bits``, ``epsilon`` and the selection (``selection``: top-k or threshold)."""
        object.__setattr__(self, "bits", check_bits("bits", self.bits))
        object.__setattr__(self, "epsilon", check_epsilon("epsilon", self.epsilon))
        sel = Selection(self.k, self.threshold if threshold else None)
        if sel.k is not None and self.bits < 64 and sel.k > 1 << self.bits:
            raise ValueError(f"k must be in [1, 2^bits = {1 << self.bits}], got {self.k!r}")
        object.__setattr__(self, "selection", sel)
        if sel.k is not None:
            object.__setattr__(self, "k", sel.k)

    def _oracle(self, share: int = 1) -> CandidateHashing:
        """OLH on candidates at epsilon / ``share`` (its g = round(e^(epsilon / share)) + 1 must stay below 2^32)."""
        eps = self.epsilon / share
        if eps > hashing.MAX_OLH_EPSILON:
            raise ValueError(
                f"epsilon must be at most {share * hashing.MAX_OLH_EPSILON:.4g} for {type(self).__name__} (its OLH "
                f"reports at epsilon{'' if share == 1 else f' / {share}'} need g = round(e^eps) + 1 below 2^32), "
                f"got {self.epsilon!r}"
            )
        return CandidateHashing(eps)

    def _perturb_levels(self, oracle: CandidateHashing, keys: np.ndarray, lengths, rng) -> tuple[np.ndarray, ...]:
        """Every user joins one of the levels uniformly at random and reports their prefix of that level's length
        through ``oracle`` (one report array per level)."""
        grp = split_groups(len(keys), len(lengths), rng)
        return tuple(oracle.perturb(prefixes(keys[grp == i], self.bits, s), rng) for i, s in enumerate(lengths))

    def _word_result(self, cand: np.ndarray, word: SupportCounts | None) -> HeavyHitters:
        """The heavy hitters among ``cand`` from the whole-key OLH state ``word`` of all users (TreeHist, SFP): the
        selection of their estimates, counts n f_hat, variances n^2 V_OLH(n, f_hat)."""
        if word is None or word.n <= 0:
            raise ValueError("no whole-key report")
        oracle = self.word_oracle  # type: ignore[attr-defined]
        freq = oracle.estimate(word, cand)
        cand, freq = self.selection(cand, freq)  # type: ignore[attr-defined]
        var = oracle.variance(word.n, np.clip(freq, 0, 1))
        return count_result(cand, freq, var, word.n, self.bits, type(self).name)  # type: ignore[attr-defined]

    @staticmethod
    def _chunked_state(oracle: CandidateHashing, keys: np.ndarray, cand, rng, chunk_size: int) -> SupportCounts:
        """The support counts over ``cand`` of the reports of ``keys``, perturbed and counted chunk by chunk."""
        return sum_states(
            oracle.aggregate(oracle.perturb(keys[s : s + chunk_size], rng), cand)
            for s in range(0, max(len(keys), 1), chunk_size)
        )


def check_client(values, rng, bits: int) -> np.ndarray:
    """The keys of a client call (``perturb``, ``run``): ``values`` as ``bits``-bit keys, then ``rng`` checked."""
    keys = check_keys("values", values, bits)
    check_rng(rng)
    return keys


def check_run(values, rng, chunk_size, bits: int) -> tuple[np.ndarray, int]:
    """The keys and the chunk size of a ``run`` (clients and server in one pass)."""
    return check_client(values, rng, bits), check_chunk_size("chunk_size", chunk_size) or 1 << 18


def chunk_source(reports, parts: int) -> Callable[[], Iterable]:
    """The reports of ``identify``: a tuple of ``parts`` report arrays, or a callable returning an iterable of such
    tuples (chunks, read once per pass), as a callable; every chunk is checked when it is read."""
    if callable(reports):

        def chunks():
            for i, chunk in enumerate(reports()):
                if not isinstance(chunk, tuple | list) or len(chunk) != parts:
                    raise ValueError(f"chunk {i} of the reports must be a tuple of {parts} report arrays")
                yield chunk

        return chunks
    if isinstance(reports, tuple | list) and len(reports) == parts:
        return lambda: (tuple(reports),)
    raise ValueError(
        f"reports must be a tuple of {parts} report arrays (one per group) or a callable returning chunks of them"
    )


def sum_states(states: Iterable[Any]) -> Any:
    """The merge of a non-empty iterable of states (None for an empty one)."""
    total = None
    for s in states:
        total = s if total is None else total + s
    return total
