"""Exact Bernoulli bits (mechanisms.bernoulli): realized probabilities, determinism, threads, the fused UE server.

Statistical checks use 5-sigma bands around the *exact* probability (false alarm ~6e-7 per check); the exactness
of the lazy digit comparison itself is checked exhaustively on enumerated random streams, without sampling.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

import dpkit.mechanisms.bernoulli as B
from dpkit.audits.ldp.broken import LeakyTrueBitOUE
from dpkit.mechanisms import OUE, SUE, max_log_ratio
from dpkit.mechanisms.bernoulli import (
    bernoulli_expansion,
    bernoulli_matrix,
    column_counts,
    unary_perturb,
    unary_support_counts,
)

Q_OUE = 1 / (math.e + 1)
PROBS = [0.0, 1.0, 0.5, 1 / 3, Q_OUE, 15 / 16, 1 - 2**-53, 2**-1074, 1e-300, 0.2689414213699951, 0.9]


def within_5_sigma(ones: int, size: int, x: float) -> bool:
    sd = math.sqrt(x * (1 - x) / size) if 0 < x < 1 else 0.0
    return abs(ones / size - x) <= 5 * sd + 1e-15


class Stream:
    """A stand-in bit generator: ``random_raw`` hands out prescribed 64-bit outputs in order."""

    def __init__(self, words):
        self.words = np.asarray(words, dtype=np.uint64)
        self.used = 0

    def random_raw(self, size):
        out = self.words[self.used : self.used + size]
        assert out.size == size, "stream exhausted"
        self.used += size
        return out.copy()


class FakeRng:
    def __init__(self, words):
        self.bit_generator = Stream(words)


# ----------------------------------------------------------------------------------------------- expansion
@pytest.mark.parametrize("x", PROBS + list(np.random.default_rng(0).random(20)))
def test_expansion_is_exact(x):
    c, e, digits = bernoulli_expansion(x)
    assert 0 <= c <= 16 and 0 <= e < 256 and all(0 <= d < 2**64 for d in digits)
    value = (
        Fraction(c, 16) + Fraction(e, 4096) + sum(Fraction(d, 2 ** (12 + 64 * (i + 1))) for i, d in enumerate(digits))
    )
    assert value == Fraction(x)
    assert not digits or digits[-1] != 0  # trailing zero digits are cut


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), float("inf")])
def test_expansion_rejects_non_probabilities(bad):
    with pytest.raises(ValueError, match="probability"):
        bernoulli_expansion(bad)


# ------------------------------------------------------------------------------ exactness, no sampling
@pytest.mark.parametrize("ones", [0, 1, 255, 256, 1000, 1101, 2048, 4095])
def test_nibble_then_byte_is_exact_on_every_stream(ones):
    """x = ones / 4096: over the 4096 equally likely (nibble, byte) pairs exactly ``ones`` bits come out 1."""
    x = ones / 4096
    c, e, digits = bernoulli_expansion(x)
    assert not digits
    # 4096 bits whose bulk nibbles are 0..15, 256 of each (bit f has nibble f // 256): output i carries bits
    # 16 i .. 16 i + 15 (8 low nibbles, then 8 high ones), all with nibble i // 16.
    bulk = [int(np.uint64(0x0101010101010101) * np.uint64((i // 16) * 17)) for i in range(256)]
    # the 256 ties (nibble = c) then read the bytes 0, 1, ..., 255 in order
    tie_bytes = np.arange(256, dtype=np.uint8).view(np.uint64).tolist() if c < 16 else []
    bits = bernoulli_matrix(4096, x, FakeRng(bulk + tie_bytes))
    assert int(bits.sum()) == ones
    assert np.array_equal(bits, np.arange(4096) < ones)  # nibble < c, or nibble = c and byte < e


def test_digit_levels_compare_exactly():
    """Level 3+: w < d gives 1, w > d gives 0, w = d reads the next digit, a tie past the last digit gives 0."""
    digits = (5, 9)
    # digit 1 for ties 0..3: 4 < 5 (1), 5 = 5, 6 > 5 (0), 5 = 5; digit 2 for ties 1 and 3: 5 < 9 (1), 9 = 9 (past: 0)
    stream = Stream([4, 5, 6, 5, 5, 9])
    assert B._resolve_digits(4, digits, stream).tolist() == [True, True, False, False]
    assert stream.used == 6


def test_ties_resolve_to_the_remainder_probability():
    """A tie's bit (byte, then digits) is 1 with probability 16 x - c, exactly: checked at 5 sigma on 2^22 ties,
    and the byte ties' digits alone on 2^20 of them."""
    rng = np.random.default_rng(3)
    for x in (Q_OUE, 1 / 3, 0.2 + 2**-40):
        exp = bernoulli_expansion(x)
        rem = 16 * x - exp[0]
        bits = B._resolve_ties(1 << 22, exp, rng.bit_generator)
        assert within_5_sigma(int(bits.sum()), bits.size, rem), x
        frac = float(sum(Fraction(d, 2 ** (64 * (i + 1))) for i, d in enumerate(exp[2])))
        deep = B._resolve_digits(1 << 20, exp[2], rng.bit_generator)
        assert within_5_sigma(int(deep.sum()), deep.size, frac), x


# ------------------------------------------------------------------------------------ realized frequencies
@pytest.mark.parametrize("x", PROBS)
def test_bernoulli_matrix_frequency(x):
    rng = np.random.default_rng(11)
    bits = bernoulli_matrix((2000, 1500), x, rng)
    assert bits.shape == (2000, 1500) and bits.dtype == bool
    assert within_5_sigma(int(bits.sum()), bits.size, x)
    if x in (0.0, 1.0):
        assert bits.all() == bool(x) and bits.any() == bool(x)


def test_bernoulli_matrix_where_and_shapes():
    rng = np.random.default_rng(12)
    where = rng.random((3001, 97)) < 0.3
    bits = bernoulli_matrix(where.shape, 0.2, rng, where=where, prob_where=0.7)
    assert within_5_sigma(int(bits[where].sum()), int(where.sum()), 0.7)
    assert within_5_sigma(int(bits[~where].sum()), int((~where).sum()), 0.2)
    assert bernoulli_matrix(0, 0.3, rng).shape == (0,)
    assert bernoulli_matrix((0, 5), 0.3, rng).shape == (0, 5)
    assert bernoulli_matrix(17, 0.3, rng).shape == (17,)
    with pytest.raises(ValueError, match="where must have shape"):
        bernoulli_matrix((3, 4), 0.2, rng, where=np.zeros((4, 3), bool), prob_where=0.5)
    with pytest.raises(ValueError, match="prob_where"):
        bernoulli_matrix((3, 4), 0.2, rng, where=np.zeros((3, 4), bool))


@pytest.mark.parametrize("p,q", [(0.5, Q_OUE), (math.exp(0.5) / (math.exp(0.5) + 1), 1 / (math.exp(0.5) + 1))])
def test_unary_perturb_own_bit_is_p_and_every_other_bit_is_q(p, q):
    rng = np.random.default_rng(13)
    k, n = 50, 40_000
    values = rng.integers(0, k, n)
    bits = unary_perturb(values, k, p, q, rng)
    own = np.zeros((n, k), bool)
    own[np.arange(n), values] = True
    assert within_5_sigma(int(bits[own].sum()), n, p)
    assert within_5_sigma(int(bits[~own].sum()), n * (k - 1), q)
    # per column too (the tie resolution runs column by column)
    off = (bits & ~own).sum(axis=0)
    assert all(within_5_sigma(int(off[j]), int((values != j).sum()), q) for j in range(k))


@pytest.mark.parametrize("cls", [OUE, SUE])
def test_channel_of_the_sampler_is_the_exact_one(cls):
    """The realized probabilities are p and q exactly, so the exact channel (and its epsilon) is the sampler's."""
    oracle = cls(3, 1.0)
    for x in (oracle.p, oracle.q):
        c, e, d = bernoulli_expansion(x)
        assert Fraction(c, 16) + Fraction(e, 4096) + sum(
            Fraction(di, 2 ** (12 + 64 * (i + 1))) for i, di in enumerate(d)
        ) == Fraction(x)
    assert max_log_ratio(oracle.channel_matrix()) == pytest.approx(1.0, abs=1e-12)
    rng = np.random.default_rng(14)
    n = 200_000
    for v in range(3):
        rep = oracle.perturb(np.full(n, v), rng)
        idx = rep.astype(np.int64) @ np.array([4, 2, 1])
        freq = np.bincount(idx, minlength=8)
        probs = oracle.output_probabilities(v)
        assert all(within_5_sigma(int(freq[y]), n, probs[y]) for y in range(8))


# ------------------------------------------------------------------------------ determinism and threads
def test_same_seed_same_bits_other_seed_other_bits():
    a = bernoulli_matrix((300, 101), Q_OUE, np.random.default_rng(5))
    b = bernoulli_matrix((300, 101), Q_OUE, np.random.default_rng(5))
    c = bernoulli_matrix((300, 101), Q_OUE, np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    v = np.random.default_rng(0).integers(0, 40, 999)
    assert np.array_equal(
        unary_perturb(v, 40, 0.5, Q_OUE, np.random.default_rng(7)),
        unary_perturb(v, 40, 0.5, Q_OUE, np.random.default_rng(7)),
    )


@pytest.mark.parametrize("bit_generator", [np.random.PCG64, np.random.PCG64DXSM, np.random.SFC64])
def test_threads_change_nothing(monkeypatch, bit_generator):
    """Outputs and the generator's final state are the same whatever the number of threads (forced on small
    inputs); generators that cannot jump ahead (SFC64) run the same blocks in one thread."""
    monkeypatch.setattr(B, "_PARALLEL_MIN_BITS", 0)
    monkeypatch.setattr(B, "_BLOCK_BITS", 1 << 12)
    values = np.random.default_rng(1).integers(0, 37, 3000)
    runs = []
    for threads in (1, 2, 3):
        rng = np.random.Generator(bit_generator(99))
        rng.integers(0, 2**32, dtype=np.uint32)  # leaves a buffered 32-bit half: must survive untouched
        out = (
            bernoulli_matrix((1000, 37), Q_OUE, rng, threads=threads),
            unary_perturb(values, 37, 0.5, Q_OUE, rng, threads=threads),
            unary_support_counts(values, 37, 0.5, Q_OUE, rng, threads=threads, chunk_size=1100),
        )
        state = {key: np.asarray(v).tolist() for key, v in rng.bit_generator.state["state"].items()}
        runs.append((out, state, rng.integers(0, 2**32, size=4, dtype=np.uint32)))
    for out, state, after in runs[1:]:
        assert all(np.array_equal(x, y) for x, y in zip(out, runs[0][0], strict=True))
        assert state == runs[0][1] and np.array_equal(after, runs[0][2])


@pytest.mark.parametrize("k", [1, 2, 3, 16, 37, 100, 1000])
@pytest.mark.parametrize("q", [Q_OUE, 0.0, 1.0, 15 / 16, 1 / 3])
def test_fused_counts_equal_the_reports_column_sums(k, q):
    """unary_support_counts draws the bits of unary_perturb, chunk by chunk: equal counts, equal end state."""
    values = np.random.default_rng(k).integers(0, k, 4321)
    for chunk in (None, 1000):
        rng = np.random.default_rng(8)
        fused = unary_support_counts(values, k, 0.5, q, rng, chunk_size=chunk)
        end = rng.bit_generator.state
        rng = np.random.default_rng(8)
        size = len(values) if chunk is None else chunk
        reports = [unary_perturb(values[s : s + size], k, 0.5, q, rng) for s in range(0, len(values), size)]
        assert np.array_equal(fused, sum(column_counts(r) for r in reports))
        assert rng.bit_generator.state == end


def test_oracle_perturb_aggregate_is_aggregate_of_perturb():
    o = OUE(60, 1.0)
    values = np.random.default_rng(2).integers(0, 60, 10_000)
    fused = o.perturb_aggregate(values, np.random.default_rng(4), chunk_size=3000)
    rng = np.random.default_rng(4)
    streamed = o.aggregate_stream(o.perturb(values[s : s + 3000], rng) for s in range(0, 10_000, 3000))
    assert fused == streamed
    # a subclass with its own client keeps it (the auditor's broken fixtures): no fused shortcut
    leaky = LeakyTrueBitOUE(60, 1.0)
    a = leaky.perturb_aggregate(values, np.random.default_rng(4), chunk_size=3000)
    rng = np.random.default_rng(4)
    b = leaky.aggregate_stream(leaky.perturb(values[s : s + 3000], rng) for s in range(0, 10_000, 3000))
    assert a == b


# ----------------------------------------------------------------------------------------- column counts
@pytest.mark.parametrize("shape", [(0, 4), (1, 1), (255, 3), (256, 3), (1000, 37), (3000, 4096), (5, 9000)])
def test_column_counts(shape):
    rng = np.random.default_rng(9)
    bits = rng.random(shape) < 0.4
    assert np.array_equal(column_counts(bits), bits.sum(axis=0))
    assert np.array_equal(column_counts(np.asfortranarray(bits)), bits.sum(axis=0))
    if shape[0] > 1:
        assert np.array_equal(column_counts(bits[::2]), bits[::2].sum(axis=0))


def test_set_threads_validates():
    with pytest.raises(ValueError, match="threads"):
        B.set_threads(0)
    with pytest.raises(ValueError, match="threads"):
        B.set_threads(True)
    B.set_threads(None)


# ------------------------------------------------------------------------------------------- bernoulli_sums
@pytest.mark.parametrize("prob", [1 / 3, 0.5, 1 / (math.e + 1), 0.9, 2.0**-30, 0.0, 1.0])
def test_bernoulli_sums_have_the_binomial_law(prob):
    from scipy.stats import binom

    m, reps = 7, 200_000
    counts = B.bernoulli_sums(np.full(reps, m), prob, np.random.default_rng(11))
    freq = np.bincount(counts, minlength=m + 1) / reps
    pmf = binom.pmf(np.arange(m + 1), m, prob)
    assert counts.min() >= 0 and counts.max() <= m
    assert np.all(np.abs(freq - pmf) <= 5 * np.sqrt(pmf * (1 - pmf) / reps) + 1e-12)


def test_bernoulli_sums_mixed_sizes_and_slabs(monkeypatch):
    # many sizes (0, multiples of 64, one past, huge) across slab boundaries: mean within 5 sigma per size
    monkeypatch.setattr(B, "_SUM_WORDS", 8)
    sizes = np.array([0, 1, 63, 64, 65, 640, 1000, 5000])
    reps, prob = 4000, 1 / (math.e + 1)
    counts = np.stack([B.bernoulli_sums(sizes, prob, np.random.default_rng(r)) for r in range(reps)])
    assert np.all(counts[:, 0] == 0)
    mean, sd = sizes * prob, np.sqrt(sizes * prob * (1 - prob) / reps)
    assert np.all(np.abs(counts.mean(axis=0) - mean) <= 5 * sd + 1e-12)
    var = sizes[1:] * prob * (1 - prob)
    assert np.all(np.abs(counts[:, 1:].var(axis=0) / var - 1) < 5 * math.sqrt(2 / reps))


def test_bernoulli_sums_refuse_bad_input():
    with pytest.raises(ValueError, match="trials"):
        B.bernoulli_sums(np.array([-1]), 0.5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="prob"):
        B.bernoulli_sums(np.array([3]), 1.5, np.random.default_rng(0))


@pytest.mark.parametrize("cls", [OUE, SUE])
def test_sample_aggregate_has_the_law_of_the_clients_counts(cls):
    o, n, reps = cls(6, 1.0), 3000, 600
    values = np.random.default_rng(1).integers(0, 6, n)
    holders = np.bincount(values, minlength=6)
    rng = np.random.default_rng(2)
    counts = np.stack([o.sample_aggregate(values, rng).counts for _ in range(reps)])
    mean = holders * o.p + (n - holders) * o.q
    var = holders * o.p * (1 - o.p) + (n - holders) * o.q * (1 - o.q)
    assert np.all(np.abs(counts.mean(axis=0) - mean) <= 5 * np.sqrt(var / reps))
    assert np.all(np.abs(counts.var(axis=0) / var - 1) < 5 * math.sqrt(2 / reps))
    state = o.sample_aggregate(values, rng)
    assert state.n == n and state.protocol == o.key
    leaky = LeakyTrueBitOUE(6, 1.0)  # a subclass with its own client keeps its client
    assert leaky.sample_aggregate(values, np.random.default_rng(3)) == leaky.perturb_aggregate(
        values, np.random.default_rng(3)
    )
