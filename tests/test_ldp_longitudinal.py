"""Longitudinal protocols: test vectors, exact epsilon of one report and of the memoized PRR, unbiasedness and MSE
per round (through a real ClientPopulation), memoization across calls and restarts, privacy spent after tau reports.

Tolerances as in test_ldp_frequency_oracles: 5-sigma band per item for the mean of R repeats; MSE within 10% with
k * R = 50 * 64 = 3200 squared errors, relative sd sqrt(2/3200) = 2.5%, so 10% is 4 sigma.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_ldp_frequency_oracles import check_unbiased_and_mse, zipf_population

from dpkit.accountants import PureDpEvent, RandomizedResponseEvent, SelfComposedEvent
from dpkit.mechanisms import OUE, SupportCounts, hashing, max_log_ratio
from dpkit.mechanisms.channels import enumerate_bit_vectors
from dpkit.mechanisms.longitudinal import (
    LGRR,
    LOLOHA,
    LOSUE,
    LOUE,
    LSOUE,
    LSUE,
    ClientPopulation,
    DBitFlipPM,
    loloha_optimal_g,
)
from dpkit.mechanisms.postprocessing import em_channel

N, K, R = 100_000, 50, 64
EP, E1 = 2.0, 1.0

PROTOCOLS = {
    "L-GRR": lambda: LGRR(K, EP, E1),
    "L-GRR-exact": lambda: LGRR(K, EP, E1, calibration="exact"),
    "L-SUE": lambda: LSUE(K, EP, E1),
    "L-OUE": lambda: LOUE(K, EP, E1),
    "L-OSUE": lambda: LOSUE(K, EP, E1),
    "L-SOUE": lambda: LSOUE(K, EP, E1),
    "LOLOHA": lambda: LOLOHA(K, EP, E1),
    "BiLOLOHA": lambda: LOLOHA(K, EP, E1, g=2),
    "dBitFlipPM": lambda: DBitFlipPM(K, EP, b=K, d=4),
}


SLOW_PROTOCOLS = {"L-SUE", "L-OUE", "L-OSUE", "L-SOUE"}  # a few seconds each


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_PROTOCOLS else n for n in PROTOCOLS]
)
def test_round_estimates_unbiased_and_mse(name):
    proto = PROTOCOLS[name]()
    values, f = zipf_population(N, K)
    rng = np.random.default_rng(500 + list(PROTOCOLS).index(name))
    est = []
    for _ in range(R):
        pop = ClientPopulation(proto, N, rng)
        est.append(proto.estimate(proto.aggregate(pop.report(values, rng))))
    check_unbiased_and_mse(np.stack(est), proto, f, N)


# --------------------------------------------------------------------------------------------- test vectors
# DCN'22 Table 1 (n = 10 000), recomputed from the closed form (two of the table's entries are misprinted).
TABLE1 = [
    (0.5, 0.30, 0.001103, 0.980969, 0.004411, 0.004436, 0.005306, 0.005549),
    (1.0, 0.60, 0.000270, 0.125036, 0.001078, 0.001103, 0.001234, 0.001347),
    (2.0, 1.00, 0.000092, 0.013926, 0.000368, 0.000392, 0.000389, 0.000447),
    (4.0, 2.00, 0.000018, 0.000188, 0.000072, 0.000092, 0.000073, 0.000092),
    (1.0, 0.30, 0.001103, 1.398568, 0.004411, 0.004436, 0.004620, 0.004799),
    (2.0, 0.60, 0.000270, 0.078202, 0.001078, 0.001103, 0.001106, 0.001198),
    (4.0, 0.40, 0.000617, 0.030494, 0.002467, 0.002492, 0.002469, 0.002560),
]


@pytest.mark.parametrize("row", TABLE1)
def test_dcn22_table1(row):
    ep, e1, grr2, grr32, osue, sue, soue, oue = row
    n = 10_000
    got = [
        LGRR(2, ep, e1).variance(n),
        LGRR(32, ep, e1).variance(n),
        LOSUE(8, ep, e1).variance(n),
        LSUE(8, ep, e1).variance(n),
        LSOUE(8, ep, e1).variance(n),
        LOUE(8, ep, e1).variance(n),
    ]
    for g, w in zip(got, [grr2, grr32, osue, sue, soue, oue], strict=False):
        assert g == pytest.approx(w, rel=2e-3, abs=6e-7)
    # L-OSUE's variance is OUE's at eps_1 (Arcolezi et al., DCN 2022)
    assert LOSUE(8, ep, e1).variance(n) == pytest.approx(OUE(8, e1).variance(n), rel=1e-9)


def test_lgrr_parameters_and_exact_calibration():
    o = LGRR(5, 2.0, 0.6)
    assert [round(x, 6) for x in (o.p1, o.q1, o.p2, o.q2)] == [0.648786, 0.087804, 0.35886, 0.160285]
    assert o.single_report_epsilon() == pytest.approx(0.487, abs=5e-4)  # conservative for k > 2
    assert LGRR(32, 2.0, 0.6).single_report_epsilon() == pytest.approx(0.182, abs=5e-4)
    for k, ep, e1, paper, exact in [
        (5, 2, 0.6, 0.001178, 0.000713),
        (32, 2, 0.6, 0.078202, 0.004708),
        (32, 1, 0.5, 0.268074, 0.007520),
    ]:
        assert LGRR(k, ep, e1).variance(10**4) == pytest.approx(paper, rel=1e-3)
        ex = LGRR(k, ep, e1, calibration="exact")
        assert ex.variance(10**4) == pytest.approx(exact, rel=1e-3)
        assert ex.single_report_epsilon() == pytest.approx(e1, abs=1e-12)
    b = LGRR(2, 2.0, 0.6)
    assert [round(x, 6) for x in (b.p2, b.q2)] == [0.691252, 0.308748]


def test_loloha_optimal_g_and_parameters():
    table = {0.1: [2, 2, 2, 2, 2, 3], 0.3: [2, 2, 2, 3, 4, 5], 0.5: [2, 2, 3, 4, 7, 11], 0.6: [2, 2, 3, 5, 9, 17]}
    for alpha, row in table.items():
        assert [loloha_optimal_g(e, alpha) for e in (0.5, 1, 2, 3, 4, 5)] == row
    for g, ep, e1, p1, q1, p2, q2, v in [
        (2, 1, 0.5, 0.731059, 0.268941, 0.764996, 0.235004, 0.001667),
        (7, 4, 2.0, 0.900987, 0.016502, 0.586902, 0.068850, 0.000079),
        (2, 4, 2.0, 0.982014, 0.017986, 0.895006, 0.104994, 0.000172),
    ]:
        o = LOLOHA(100, ep, e1, g=g)
        assert [round(x, 6) for x in (o.p1, o.q1, o.p2, o.q2)] == [p1, q1, p2, q2]
        assert o.variance(10**4) == pytest.approx(v, rel=6e-3)
    assert LOLOHA(100, 4, 2.0).g == 7
    assert LOLOHA(100, 4, 2.0).variance(1) == pytest.approx(0.7938, abs=1e-4)


def test_dbitflip_variance_vector():
    # dBitFlipPM (Ding et al., NeurIPS 2017): b = 32, d = 4, eps = 2, n = 1 gives 7.3654 (not the notebook's 3.4037)
    assert DBitFlipPM(32, 2.0, b=32, d=4).variance(1) == pytest.approx(7.3654, abs=1e-4)


# ------------------------------------------------------------------------------------------------ exact epsilon
@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("ep,e1", [(1.0, 0.5), (2.0, 0.6), (4.0, 2.0)])
def test_lgrr_exact_privacy_of_report_and_memo(k, ep, e1):
    for cal in ("paper", "exact"):
        o = LGRR(k, ep, e1, calibration=cal)
        m = o.channel_matrix()
        np.testing.assert_allclose(m.sum(axis=1), 1, atol=1e-12)
        loss = max_log_ratio(m)
        assert loss <= e1 + 1e-9
        assert loss == pytest.approx(o.single_report_epsilon(), abs=1e-12)
        if cal == "exact" or k == 2:
            assert loss == pytest.approx(e1, abs=1e-9)
        assert max_log_ratio(o.first_round_matrix()) == pytest.approx(ep, abs=1e-9)


@pytest.mark.parametrize("cls", [LSUE, LOUE, LOSUE, LSOUE])
def test_lue_exact_privacy_of_report_and_memo(cls):
    o = cls(4, 2.0, 0.8)
    m = o.channel_matrix()
    np.testing.assert_allclose(m.sum(axis=1), 1, atol=1e-12)
    assert max_log_ratio(m) == pytest.approx(0.8, abs=1e-9)
    assert max_log_ratio(o.first_round_matrix()) == pytest.approx(2.0, abs=1e-9)


def test_loloha_and_dbitflip_exact_privacy_given_the_hash_or_buckets():
    rng = np.random.default_rng(3)
    for cal in ("paper", "exact"):
        o = LOLOHA(6, 4.0, 2.0, calibration=cal)  # g = 7
        a, b = hashing.draw_hash_params(30, rng)
        for ai, bi in zip(a, b, strict=False):
            assert max_log_ratio(o.channel_matrix(ai, bi)) <= 2.0 + 1e-9
        assert max_log_ratio(o.hashed_channel_matrix()) == pytest.approx(o.single_report_epsilon(), abs=1e-12)
        assert max_log_ratio(o.first_round_matrix()) == pytest.approx(4.0, abs=1e-9)
    assert LOLOHA(6, 4.0, 2.0, calibration="exact").single_report_epsilon() == pytest.approx(2.0, abs=1e-9)
    assert LOLOHA(6, 4.0, 2.0).single_report_epsilon() < 2.0
    d = DBitFlipPM(8, 1.5, b=8, d=3)
    for J in ([0, 1, 2], [5, 7, 3]):
        assert max_log_ratio(d.channel_matrix(J)) == pytest.approx(1.5, abs=1e-9)


def test_memoized_channel_matches_sampler():
    """One L-GRR report from a population follows channel_matrix (5-sigma per output)."""
    o = LGRR(4, 2.0, 0.8)
    rng = np.random.default_rng(8)
    n = 80_000
    pop = ClientPopulation(o, n, rng)
    rep = pop.report(np.full(n, 2), rng)
    freq = np.bincount(rep, minlength=4) / n
    p = o.channel_matrix()[2]
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / n))


# --------------------------------------------------------------------------------------------- memoization
@pytest.mark.parametrize("name", ["L-GRR", "L-OSUE", "LOLOHA", "dBitFlipPM"])
def test_memoization_across_calls_and_restarts(name, tmp_path):
    proto = PROTOCOLS[name]()
    rng = np.random.default_rng(12)
    n = 2_000
    pop = ClientPopulation(proto, n, rng)
    values = rng.integers(0, K, size=n)
    first = pop.report(values, rng)
    keys, payload = pop.memo_keys.copy(), pop.memo_payload.copy()
    pop.report(values, rng)
    np.testing.assert_array_equal(pop.memo_keys, keys)  # same values: nothing new drawn
    np.testing.assert_array_equal(pop.memo_payload, payload)
    assert np.all(pop.distinct_memoized() == 1)
    changed = values.copy()
    changed[:100] = (changed[:100] + 1) % K
    pop.report(changed, rng)
    if name == "L-GRR" or name == "L-OSUE":
        assert np.all(pop.distinct_memoized()[:100] == 2) and np.all(pop.distinct_memoized()[100:] == 1)
    # memoized entries are never redrawn
    pos = np.searchsorted(pop.memo_keys, keys)
    np.testing.assert_array_equal(pop.memo_payload[pos], payload)
    if name == "LOLOHA":  # the hash function is the user's for every report
        np.testing.assert_array_equal(first[:, :2], pop.report(values, rng)[:, :2])
    # restart: save, load, and the continued collection is identical
    path = tmp_path / "pop.npz"
    pop.save(path)
    again = ClientPopulation.load(path)
    assert again.protocol == proto
    r1 = pop.report(changed, np.random.default_rng(99))
    r2 = again.report(changed, np.random.default_rng(99))
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_array_equal(pop.privacy_spent(), again.privacy_spent())


def test_partial_rounds_and_report_counts():
    o = LGRR(10, 2.0, 1.0)
    rng = np.random.default_rng(1)
    pop = ClientPopulation(o, 100, rng)
    pop.report(np.zeros(100, dtype=int), rng)
    pop.report(np.ones(10, dtype=int), rng, users=np.arange(10))
    assert pop.n_reports[:10].tolist() == [2] * 10 and pop.n_reports[10:].max() == 1
    assert pop.distinct_memoized()[:10].tolist() == [2] * 10


# ----------------------------------------------------------------------------------------- privacy over time
def test_privacy_spent_after_tau_reports():
    rng = np.random.default_rng(2)
    n, tau = 500, 30
    # LOLOHA: at most g * eps_perm whatever the values
    lo = LOLOHA(100, EP, E1, g=3)
    pop = ClientPopulation(lo, n, rng)
    for _ in range(tau):
        pop.report(rng.integers(0, 100, size=n), rng)
    spent = pop.privacy_spent()
    assert spent.max() <= lo.max_privacy_spent() == 3 * EP
    np.testing.assert_allclose(spent, np.minimum(tau * lo.single_report_epsilon(), pop.distinct_memoized() * EP))
    assert pop.distinct_memoized().max() == 3
    ev = pop.privacy_event(0)
    assert ev == SelfComposedEvent(RandomizedResponseEvent(EP, 3), int(pop.distinct_memoized()[0]))
    # L-GRR with a new value every round: tau * eps_1; with a constant value: eps_perm
    lg = LGRR(1000, EP, E1, calibration="exact")
    moving, still = ClientPopulation(lg, n, rng), ClientPopulation(lg, n, rng)
    for t in range(tau):
        moving.report(np.full(n, t), rng)
        still.report(np.full(n, 7), rng)
    np.testing.assert_allclose(moving.privacy_spent(), tau * E1)
    np.testing.assert_allclose(still.privacy_spent(), EP)
    ev = moving.privacy_event(0)
    assert ev.count == tau and ev.event.num_buckets == 1000 and ev.event.epsilon == pytest.approx(E1)
    assert still.privacy_event(0) == SelfComposedEvent(RandomizedResponseEvent(EP, 1000), 1)
    ev = LOSUE(10, EP, E1).privacy_event()
    assert isinstance(ev, PureDpEvent) and ev.epsilon == pytest.approx(E1)
    d = DBitFlipPM(10, 1.0, d=2)
    assert d.privacy_spent(100, 3) == 3.0 and d.privacy_spent(2, 3) == 2.0


# ------------------------------------------------------------------------------------------------- bad input
def test_bad_longitudinal_parameters():
    with pytest.raises(ValueError, match=r"eps_1 must be in \(0, eps_perm=1.0\), got 1.0"):
        LGRR(5, 1.0, 1.0)
    with pytest.raises(ValueError, match="eps_perm"):
        LOSUE(5, float("nan"), 0.5)
    with pytest.raises(ValueError, match="eps_1"):
        LOLOHA(5, 1.0, -0.1)
    with pytest.raises(ValueError, match=r"eps_1 must be in \(0, 0.76"):
        LOUE(5, 1.0, 0.9)  # beyond the p2 = 1/2 feasibility limit (0.763 eps_perm)
    with pytest.raises(ValueError, match="calibration"):
        LGRR(5, 2.0, 1.0, calibration="fast")
    with pytest.raises(ValueError, match="k must be"):
        LSUE(1, 2.0, 1.0)
    with pytest.raises(ValueError, match="d must be"):
        DBitFlipPM(10, 1.0, b=4, d=5)
    pop = ClientPopulation(LGRR(5, 2.0, 1.0), 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="values must have one entry per reporting user"):
        pop.report(np.zeros(9, dtype=int), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"values must be in \[0, 5\), got 5"):
        pop.report(np.full(10, 5), np.random.default_rng(0))
    with pytest.raises(TypeError, match="values must be an integer array"):
        pop.report(np.zeros(10), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"users must be in \[0, 10\)"):
        pop.report(np.zeros(1, dtype=int), np.random.default_rng(0), users=np.array([10]))
    with pytest.raises(ValueError, match="reports must have shape"):
        LOLOHA(10, 2.0, 1.0).aggregate(np.zeros((3, 2), dtype=np.uint64))
    assert math.isfinite(LOLOHA(10, 2.0, 1.0).variance(5))


# ------------------------------------------------------------------------------------------- dBitFlipPM IBU
def _dbit_channel(o: DBitFlipPM) -> np.ndarray:
    """P(observation | bucket) of one sampled bucket, rows (j, bit 1) then (j, bit 0), built from channel_matrix
    (the marginal of the bit of j in a report whose sampled buckets J start with j; j is uniform over the b)."""
    one_value = [int(np.flatnonzero(o.bucket(np.arange(o.k)) == u)[0]) for u in range(o.b)]
    first_bit = enumerate_bit_vectors(o.d)[:, 0]
    A = np.zeros((2, o.b, o.b))
    for j in range(o.b):
        m = o.channel_matrix([(j + i) % o.b for i in range(o.d)])[one_value]
        A[0, j], A[1, j] = m[:, first_bit].sum(axis=1) / o.b, m[:, ~first_bit].sum(axis=1) / o.b
    return A.reshape(2 * o.b, o.b)


@pytest.mark.parametrize("k,b,d,eps", [(20, 10, 1, 2.0), (40, 8, 3, 1.0), (80, 40, 4, 2.0)])
def test_dbitflip_ibu(k, b, d, eps):
    """IBU on the bucketized channel: the dense EM's iterates, a probability vector; from the expected state
    (sum z_j = n d f_j / b) it recovers f; at n = 1e6 every bucket is within 5 sigma of the truth (sigma^2 the raw
    estimator's exact variance: the EM is consistent since the expected observations are in the channel's range)."""
    o = DBitFlipPM(k, eps, b=b, d=d)
    A = _dbit_channel(o)
    np.testing.assert_allclose(A.sum(axis=0), 1.0, atol=1e-12)
    rng = np.random.default_rng(60 + d)
    n = 1_000_000 if eps == 2.0 else 50_000
    values, _ = zipf_population(n, k)
    fb = np.bincount(o.bucket(values), minlength=b) / n
    state = o.aggregate(o.perturb(values, rng))
    h, m = math.exp(eps / 2), n * d / b
    ones = np.clip(((h - 1) * state.counts + m) / (h + 1), 0, m)  # S_j with N_j -> n d / b (the docstring)
    dense = em_channel(np.concatenate([ones, m - ones]), lambda f: A @ f, lambda w: A.T @ w, b, n_iter=300)
    np.testing.assert_allclose(o.ibu(state, n_iter=300), dense, atol=1e-12)
    if eps == 2.0:
        g = o.estimate(state, postprocess="ibu")
        assert np.all(g >= 0) and g.sum() == pytest.approx(1.0, abs=1e-12)
        assert np.all(np.abs(g - fb) < 5 * np.sqrt(o.variance(n, fb)))
    if b == 10:  # EM converges within its 1e4 iterations here (with 40 buckets the tail needs many more)
        expected = SupportCounts(n * d / b * fb, n, o.key)
        np.testing.assert_allclose(o.estimate(expected, postprocess="ibu"), fb, atol=1e-6)
    with pytest.raises(ValueError, match="postprocess must be one of"):
        o.estimate(state, postprocess="magic")
    with pytest.raises(ValueError, match=rf"shape \({b},\)"):
        o.ibu(SupportCounts(np.zeros(b + 1), 5))
