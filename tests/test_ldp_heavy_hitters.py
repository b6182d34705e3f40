"""Heavy hitters under LDP: PEM, SFP, TreeHist, TAP/TAPS, candidate local hashing, encodings and metrics.

Checked against the math: the candidate oracle's unbiasedness and variance by simulation (5-sigma bands, fixed
seeds), exact epsilon-LDP from enumerated output distributions, exact recovery at large epsilon, F1/NCR values.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from dpkit.accountants import ComposedEvent, RandomizedResponseEvent
from dpkit.mechanisms import OLH, make_oracle
from dpkit.mechanisms.heavy_hitters import (
    PEM,
    SFP,
    TAP,
    TAPS,
    CandidateHashing,
    TreeHist,
    decode_bytes,
    encode_bytes,
    f1_score,
    hash_bytes,
    ncr,
    public_hash,
    true_top_k,
)


def _separated_keys(n: int, bits: int, k: int, seed: int) -> np.ndarray:
    """k heavy keys (frequencies 0.15 down to 0.05) well above 200 light ones (0.001 each or less)."""
    rng = np.random.default_rng(seed)
    hi = 2**bits - 1 if bits < 64 else 2**64 - 1
    dom = np.unique(rng.integers(0, hi, size=k + 200, dtype=np.uint64, endpoint=True))[: k + 200]
    rng.shuffle(dom)
    heavy = np.linspace(0.15, 0.05, k)
    w = np.concatenate([heavy, np.full(len(dom) - k, (1 - heavy.sum()) / (len(dom) - k))])
    return dom[rng.choice(len(dom), n, p=w)]


def _zipf_keys(n: int, bits: int, support: int, seed: int, s: float = 1.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hi = 2**bits - 1 if bits < 64 else 2**64 - 1
    dom = np.unique(rng.integers(0, hi, size=support, dtype=np.uint64, endpoint=True))
    w = 1.0 / np.arange(1, len(dom) + 1) ** s
    return dom[rng.choice(len(dom), n, p=w / w.sum())]


def _max_log_ratio(m: np.ndarray) -> float:
    hi, lo = m.max(axis=0), m.min(axis=0)
    live = hi > 0
    assert (lo[live] > 0).all()
    return float(np.max(np.log(hi[live]) - np.log(lo[live])))


# ------------------------------------------------------------------------------------------- candidate oracle
@pytest.mark.parametrize("eps", [1.0, 3.0])
def test_candidate_hashing_unbiased_with_olh_variance(eps):
    ch = CandidateHashing(eps)
    assert ch.g == OLH(2, eps).g
    assert ch.variance(1000) == pytest.approx(OLH(16, eps).variance(1000))  # the same channel as dpkit's OLH
    rng = np.random.default_rng(1)
    n, trials = 4000, 200
    keys = np.full(n, np.uint64(0xDEADBEEF12345678))
    keys[: n // 4] = np.uint64(7)  # a 64-bit key with both halves set, and a small one
    cand = np.array([7, 0xDEADBEEF12345678, 2**63 + 5, 12345], dtype=np.uint64)
    truth = np.array([0.25, 0.75, 0.0, 0.0])
    est = np.array([ch.estimate(ch.aggregate(ch.perturb(keys, rng), cand)) for _ in range(trials)])
    var = ch.variance(n, truth)
    assert np.all(np.abs(est.mean(0) - truth) <= 5 * np.sqrt(var / trials))
    assert np.all(np.abs(est.var(0, ddof=1) / var - 1) <= 5 * math.sqrt(2 / (trials - 1)))


def test_candidate_hashing_support_matches_the_hash():
    ch = CandidateHashing(2.0)
    rng = np.random.default_rng(2)
    rep = ch.perturb(rng.integers(0, 2**64 - 1, 500, dtype=np.uint64, endpoint=True), rng)
    cand = rng.integers(0, 2**64 - 1, 37, dtype=np.uint64, endpoint=True)
    direct = (ch.hash(rep[:, 0, None], rep[:, 1, None], rep[:, 2, None], cand[None, :]) == rep[:, 3, None]).sum(0)
    assert np.array_equal(ch.support_counts(rep, cand), direct)


def test_exact_ldp_of_the_candidate_client():
    for eps in (0.5, 2.0):
        ch = CandidateHashing(eps)
        rng = np.random.default_rng(3)
        for a0, a1, b in rng.integers(0, 2**64 - 1, size=(5, 3), dtype=np.uint64, endpoint=True):
            m = np.stack([ch.output_probabilities(v, int(a0), int(a1), int(b)) for v in range(16)])
            assert np.allclose(m.sum(axis=1), 1.0)
            assert _max_log_ratio(m) <= eps + 1e-12
        assert ch.privacy_event() == RandomizedResponseEvent(eps, ch.g)


def test_exact_ldp_of_the_sfp_client():
    """SFP's client output is (position, fragment report, whole-key report): P(out | v) is the product of the
    fragment oracle's and OLH's channels (position uniform), so ln ratio <= eps/2 + eps/2."""
    eps = 1.2
    sfp = SFP(4, eps, k=2, fragment_bits=2, hash_bits=2)
    frag = make_oracle("HR", 16, eps / 2).channel_matrix()
    a0, a1, b = 12345678901, 987654321, 555
    keys = np.arange(16, dtype=np.uint64)
    rows = []
    for v in keys:
        word = sfp.word_oracle.output_probabilities(int(v), a0, a1, b)
        per_pos = [frag[int(sfp.items(np.array([v]), p)[0])] for p in range(sfp.positions)]
        rows.append(np.concatenate([np.outer(fp, word).ravel() / sfp.positions for fp in per_pos]))
    m = np.stack(rows)
    assert np.allclose(m.sum(axis=1), 1.0)
    assert _max_log_ratio(m) <= eps + 1e-12
    assert sfp.privacy_event() == ComposedEvent(
        (make_oracle("HR", 16, eps / 2).privacy_event(), sfp.word_oracle.privacy_event())
    )


# --------------------------------------------------------------------------------------------------- PEM
@pytest.mark.parametrize("bits", [16, 32, 64])
def test_pem_finds_the_exact_top_k_at_large_epsilon(bits):
    values = _separated_keys(30000, bits, 6, seed=4)
    truth = true_top_k(values, 6)
    res = PEM(bits, 8.0, k=6, step=4).run(values, np.random.default_rng(5))
    assert set(res.values.tolist()) == set(truth.tolist())
    assert f1_score(res.values, truth) == 1.0 and ncr(res.values, truth) == 1.0
    counts = {int(v): c for v, c in zip(*np.unique(values, return_counts=True), strict=True)}
    z = (res.counts - np.array([counts[int(v)] for v in res.values])) / np.sqrt(res.variances)
    assert np.all(np.abs(z) < 5)


def test_pem_identify_from_reports_and_chunks_agree():
    values = _zipf_keys(8000, 20, 100, seed=6)
    pem = PEM(20, 6.0, k=5, step=3)
    reports = pem.perturb(values, np.random.default_rng(7))
    whole = pem.identify(reports)
    halves = [tuple(r[: len(r) // 2] for r in reports), tuple(r[len(r) // 2 :] for r in reports)]
    chunked = pem.identify(lambda: iter(halves))
    assert np.array_equal(whole.values, chunked.values) and np.allclose(whole.counts, chunked.counts)
    assert whole.n == 8000 and len(whole) == 5
    assert pem.groups == len(pem.lengths) == 1 + math.ceil((20 - pem.start_bits) / 3)


def test_pem_counts_unbiased_given_the_candidates():
    values = _zipf_keys(6000, 12, 40, seed=8, s=2.0)
    pem = PEM(12, 7.0, k=3, step=4)
    truth = true_top_k(values, 3)
    rng = np.random.default_rng(9)
    runs = [pem.run(values, rng) for _ in range(60)]
    assert all(set(r.values.tolist()) == set(truth.tolist()) for r in runs)
    by_key = np.array([[r.counts[list(r.values).index(v)] for v in truth] for r in runs])
    true_counts = np.array([np.sum(values == v) for v in truth])
    se = np.sqrt(np.mean([r.variances for r in runs], axis=0) / len(runs))
    assert np.all(np.abs(by_key.mean(0) - true_counts) <= 5 * se)


def test_pem_threshold_mode_and_byte_strings():
    words = np.array([b"the", b"of", b"and", b"privacy", b"local", b"zebra", b"qq"])
    rng = np.random.default_rng(10)
    data = words[rng.choice(len(words), 50000, p=[0.3, 0.25, 0.2, 0.1, 0.08, 0.04, 0.03])]
    keys = encode_bytes(data, 8)
    res = PEM(64, 8.0, k=None, threshold=0.06, step=8).run(keys, np.random.default_rng(11))
    assert set(decode_bytes(res.values, 8)) == {b"the", b"of", b"and", b"privacy", b"local"}
    assert decode_bytes(encode_bytes([b"ab", b"b"], 2), 2) == [b"ab", b"b"]
    h = hash_bytes([b"x" * 300, b"x" * 300, b"y"], bits=40, max_length=300)
    assert h[0] == h[1] != h[2] and int(h.max()) < 2**40


# ------------------------------------------------------------------------------------------ SFP, TreeHist
def test_sfp_and_treehist_find_the_top_k_at_large_epsilon():
    values = _separated_keys(40000, 24, 5, seed=12)
    truth = true_top_k(values, 5)
    sfp = SFP(24, 12.0, k=5, fragment_bits=6, hash_bits=6, fragment_oracle="GRR")
    for proto in (sfp, TreeHist(24, 12.0, k=5, step=4)):
        res = proto.run(values, np.random.default_rng(13))
        assert f1_score(res.values, truth) == 1.0, type(proto).__name__
        res2 = proto.identify(proto.perturb(values, np.random.default_rng(14)))
        assert f1_score(res2.values, truth) == 1.0
    assert TreeHist(24, 2.0).privacy_event() == ComposedEvent(
        (RandomizedResponseEvent(1.0, 4), RandomizedResponseEvent(1.0, 4))
    )


def test_sfp_pieces_reassemble_keys():
    sfp = SFP(20, 4.0, fragment_bits=6, hash_bits=8)
    keys = np.array([0, 1, 2**20 - 1, 0xABCDE], dtype=np.uint64)
    assert sfp.positions == 4
    rebuilt = np.zeros(4, dtype=np.uint64)
    for pos in range(sfp.positions):
        end, length = sfp._span(pos)
        frag = sfp.fragment(keys, pos).astype(np.uint64) >> np.uint64(sfp.fragment_bits - length)
        rebuilt |= frag << np.uint64(sfp.bits - end)
    assert np.array_equal(rebuilt, keys)
    assert np.array_equal(public_hash(keys, 8), public_hash(keys.copy(), 8)) and public_hash(keys, 8).max() < 256


# ------------------------------------------------------------------------------------------------- TAP/TAPS
def test_tap_and_taps_find_the_global_top_k():
    rng = np.random.default_rng(15)
    dom = np.unique(rng.integers(0, 2**20, 400, dtype=np.uint64))
    w = 1.0 / np.arange(1, len(dom) + 1) ** 1.4
    vals, parties = [], []
    for p, n in enumerate([20000, 12000, 8000]):
        perm = np.where(rng.random(len(dom)) < 0.6, np.arange(len(dom)), rng.permutation(len(dom)))  # non-IID
        vals.append(dom[perm[rng.choice(len(dom), n, p=w / w.sum())]])
        parties.append(np.full(n, p))
    values, parties = np.concatenate(vals), np.concatenate(parties)
    truth = true_top_k(values, 6)
    for proto in (TAP(20, 10.0, k=6, step=4), TAPS(20, 10.0, k=6, step=4)):
        res = proto.run(values, parties, np.random.default_rng(16))
        assert f1_score(res.values, truth) == 1.0 and res.n == len(values)
        assert res.protocol == ("TAPS" if proto.consensus else "TAP")
        assert len(res.extra["party_candidates"]) == 3
    assert TAPS(20, 1.0).privacy_event() == RandomizedResponseEvent(1.0, OLH(2, 1.0).g)


# ---------------------------------------------------------------------------------------------- metrics
def test_f1_and_ncr():
    truth = np.array([10, 20, 30, 40])
    assert f1_score([10, 20, 30, 40], truth) == 1.0
    assert f1_score([10, 20, 99], truth) == pytest.approx(2 * (2 / 3) * (2 / 4) / (2 / 3 + 2 / 4))
    assert f1_score([], truth) == 0.0
    assert ncr([10], truth) == pytest.approx(4 / 10)
    assert ncr([40, 99], truth) == pytest.approx(1 / 10)
    assert list(true_top_k([5, 5, 3, 3, 3, 9], 2)) == [3, 5]


# ----------------------------------------------------------------------------------------------- bad input
def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match=r"bits must be in \[1, 64\]"):
        PEM(65, 1.0)
    with pytest.raises(ValueError, match=r"k must be in \[1, 2\^bits = 16\], got 17"):
        PEM(4, 1.0, k=17)
    with pytest.raises(ValueError, match=r"k must be in \[1, 2\^bits"):
        TreeHist(3, 1.0, k=9)
    with pytest.raises(ValueError, match=r"values must be in \[0, 2\^8\), got 256"):
        PEM(8, 1.0, k=4).perturb(np.array([1, 256]), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"values must be in \[0, 2\^8\), got -1"):
        SFP(8, 1.0, k=4, fragment_bits=4).run(np.array([1, -1]), np.random.default_rng(0))
    with pytest.raises(TypeError, match="encode_bytes"):
        PEM(8, 1.0).perturb(np.array(["a"]), np.random.default_rng(0))
    with pytest.raises(ValueError, match="exactly one of k"):
        PEM(8, 1.0, k=4, threshold=0.1)
    with pytest.raises(ValueError, match="epsilon"):
        TAP(8, -1.0)
    with pytest.raises(ValueError, match="parties must be"):
        TAP(8, 1.0, k=2).perturb(np.array([1, 2]), np.array([0]), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"length must be in \[1, 8\]"):
        encode_bytes([b"a"], 9)
    with pytest.raises(ValueError, match="at most 2 bytes"):
        encode_bytes([b"abc"], 2)
