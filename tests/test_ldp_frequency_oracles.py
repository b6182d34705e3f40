"""Frequency oracles: unbiasedness, variance, exact epsilon-LDP, streaming merges, hashing and bad input.

Statistical tolerances are derived, not tuned:

* Unbiasedness: with R independent repeats the mean estimate of item v has standard deviation sqrt(Var_v / R)
  (Var_v the exact analytic variance for this fixed population); every item must lie within 5 sigma. For k = 100
  items the family-wise false-alarm probability is <= 100 * 5.7e-7 < 1e-4.
* MSE: each squared error (f_hat_v - f_v)^2 is Var_v * chi2_1 (the estimator is a normalized sum of 1e5 bounded
  terms, so it is normal to a very good approximation), whose relative standard deviation is sqrt(2). Averaging
  k * R = 100 * 32 = 3200 (nearly independent) terms gives a relative sd of sqrt(2 / 3200) = 2.5%, so the 10%
  band is a 4-sigma band (false alarm ~ 6e-5 per protocol).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from dpkit.accountants import PureDpEvent, RandomizedResponseEvent
from dpkit.mechanisms import (
    BLH,
    GRR,
    OLH,
    OUE,
    SHE,
    SUE,
    THE,
    FrequencyOracle,
    HadamardResponse,
    HadamardResponseGeneral,
    SubsetSelection,
    SupportCounts,
    choose_protocol,
    clip_normalize,
    hashing,
    ibu,
    ibu_structured,
    make_oracle,
    max_log_ratio,
    norm_sub,
    project_simplex,
)
from dpkit.mechanisms.postprocessing import em_channel

N, K, R = 100_000, 100, 32
EPS = 1.0


def zipf_population(n: int, k: int, s: float = 1.1) -> tuple[np.ndarray, np.ndarray]:
    """A fixed population whose empirical frequencies are known exactly."""
    w = 1.0 / np.arange(1, k + 1) ** s
    counts = np.floor(n * w / w.sum()).astype(np.int64)
    counts[0] += n - counts.sum()
    values = np.repeat(np.arange(k), counts)
    return values, counts / n


VALUES, F_TRUE = zipf_population(N, K)

ORACLES = {
    "GRR": lambda: GRR(K, EPS),
    "SUE": lambda: SUE(K, EPS),
    "OUE": lambda: OUE(K, EPS),
    "BLH": lambda: BLH(K, EPS),
    "OLH": lambda: OLH(K, EPS),
    "SS": lambda: SubsetSelection(K, EPS),
    "HR": lambda: HadamardResponse(K, EPS),
    "HR-general": lambda: HadamardResponseGeneral(K, EPS),
}


def check_unbiased_and_mse(estimates: np.ndarray, oracle: FrequencyOracle, f: np.ndarray, n: int) -> None:
    var = oracle.variance(n, f)
    reps = estimates.shape[0]
    z = (estimates.mean(axis=0) - f) / np.sqrt(var / reps)
    assert np.abs(z).max() < 5.0, f"{oracle}: max |z| = {np.abs(z).max():.2f}"
    mse = np.mean((estimates - f) ** 2)
    ratio = mse / np.mean(var)
    assert abs(ratio - 1) < 0.10, f"{oracle}: MSE / analytic variance = {ratio:.4f}"


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "SS" else n for n in ORACLES])
def test_unbiased_and_mse_matches_analytic_variance(name):
    oracle = ORACLES[name]()
    rng = np.random.default_rng(1000 + list(ORACLES).index(name))
    est = np.stack([oracle.estimate(oracle.perturb_aggregate(VALUES, rng)) for _ in range(R)])
    check_unbiased_and_mse(est, oracle, F_TRUE, N)


@pytest.mark.slow
def test_she_and_the_unbiased_and_mse():
    """SHE and THE share the client, so one set of reports serves both servers."""
    she, the = SHE(K, EPS), THE(K, EPS)
    rng = np.random.default_rng(2024)
    est_she, est_the = [], []
    for _ in range(R):
        s_she, s_the = she.empty_state(), the.empty_state()
        for start in range(0, N, 1 << 14):
            rep = she.perturb(VALUES[start : start + (1 << 14)], rng)
            s_she = s_she + she.aggregate(rep)
            s_the = s_the + the.aggregate(rep)
        est_she.append(she.estimate(s_she))
        est_the.append(the.estimate(s_the))
    check_unbiased_and_mse(np.stack(est_she), she, F_TRUE, N)
    check_unbiased_and_mse(np.stack(est_the), the, F_TRUE, N)


# ------------------------------------------------------------------------------------------ exact epsilon
SMALL = [(2, 0.25), (3, 1.0), (5, 1.0), (6, 0.5), (8, 3.0)]


@pytest.mark.parametrize("cls", [GRR, SUE, OUE, SubsetSelection, HadamardResponse, HadamardResponseGeneral])
@pytest.mark.parametrize("k,eps", SMALL)
def test_exact_epsilon_ldp_from_every_output_probability(cls, k, eps):
    oracle = cls(k, eps)
    m = oracle.channel_matrix()
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-12)
    loss = max_log_ratio(m)
    assert loss <= eps + 1e-9
    assert loss >= eps - 1e-9  # every protocol here is tight


@pytest.mark.parametrize("k,eps", SMALL)
def test_local_hashing_exact_epsilon_for_every_sampled_hash(k, eps):
    rng = np.random.default_rng(7)
    for cls in (BLH, OLH):
        oracle = cls(k, eps)
        a, b = hashing.draw_hash_params(50, rng)
        for ai, bi in zip(a, b, strict=False):
            m = oracle.channel_matrix(ai, bi)
            np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-12)
            assert max_log_ratio(m) <= eps + 1e-9


@pytest.mark.parametrize("eps", [0.5, 2.0])
def test_she_density_ratio_bounded(eps):
    she = SHE(4, eps)
    rng = np.random.default_rng(3)
    y = rng.normal(0.5, 2.0, size=(20_000, 4))
    y[:100] = np.array([1.0, 0.0, 0.5, 0.5])  # the worst case: y_v >= 1 and y_v' <= 0
    worst = 0.0
    for v in range(4):
        for w in range(4):
            worst = max(worst, np.max(np.log(she.output_density(y, v)) - np.log(she.output_density(y, w))))
    assert worst <= eps + 1e-9
    assert worst >= eps - 1e-9


def empirical_matches(samples_idx: np.ndarray, probs: np.ndarray) -> None:
    """Empirical output frequencies within 5 sigma of the exact distribution (every output)."""
    n = len(samples_idx)
    freq = np.bincount(samples_idx, minlength=len(probs)) / n
    sd = np.sqrt(probs * (1 - probs) / n)
    assert np.all(np.abs(freq - probs) <= 5 * sd + 1e-12)


@pytest.mark.parametrize("cls", [GRR, SUE, OUE, SubsetSelection, HadamardResponse, HadamardResponseGeneral])
def test_sampler_follows_the_exact_distribution(cls):
    """The exact channel used in the epsilon checks is the one the client actually samples from."""
    oracle = cls(5, 1.0)
    rng = np.random.default_rng(11)
    n = 60_000
    for v in (0, 4):
        rep = oracle.perturb(np.full(n, v), rng)
        if cls in (SUE, OUE):
            idx = rep.astype(np.int64) @ (1 << np.arange(oracle.k - 1, -1, -1))
        elif cls is SubsetSelection:
            outs = {s: i for i, s in enumerate(oracle.enumerate_outputs())}
            idx = np.array([outs[tuple(sorted(r))] for r in rep.tolist()])
        else:
            idx = rep
        empirical_matches(idx, oracle.output_probabilities(v))


def test_local_hashing_report_is_grr_of_the_hash():
    oracle = OLH(50, 1.5)
    rng = np.random.default_rng(5)
    n = 200_000
    rep = oracle.perturb(np.full(n, 17), rng)
    h = oracle.hash(rep[:, 0], rep[:, 1], np.full(n, 17))
    kept = np.mean(h == rep[:, 2].astype(np.int64))
    assert abs(kept - oracle.p) < 5 * math.sqrt(oracle.p * (1 - oracle.p) / n)


# ----------------------------------------------------------------------------------------------- hashing
def test_hash_family_collision_probability_is_one_over_g():
    rng = np.random.default_rng(9)
    n = 400_000
    a, b = hashing.draw_hash_params(n, rng)
    for g in (2, 4, 7):
        h1 = hashing.hash_values(a, b, np.full(n, 3), g)
        h2 = hashing.hash_values(a, b, np.full(n, 1_000_003), g)
        rate = np.mean(h1 == h2)
        assert abs(rate - 1 / g) < 5 * math.sqrt((1 / g) * (1 - 1 / g) / n)
        assert np.all((h1 >= 0) & (h1 < g))
        marg = np.bincount(h1, minlength=g) / n
        assert np.all(np.abs(marg - 1 / g) < 5 * math.sqrt((1 / g) * (1 - 1 / g) / n))


@pytest.mark.parametrize("g", [2, 3, 1000, 2**31 + 11])
def test_support_counts_equal_brute_force(g):
    rng = np.random.default_rng(g % 1000)
    n, k = 3_000, 37
    a, b = hashing.draw_hash_params(n, rng)
    y = rng.integers(0, min(g, 50), size=n)
    if g > 1000:  # make some supports non-empty for huge g
        y = hashing.hash_values(a, b, rng.integers(0, k, size=n), g)
    brute = np.array([(hashing.hash_values(a, b, np.full(n, v), g) == y).sum() for v in range(k)])
    np.testing.assert_array_equal(hashing.support_counts(a, b, y, g, k, block=1000), brute)


# -------------------------------------------------------------------------------------- streaming merges
@pytest.mark.parametrize("name", [*ORACLES, "SHE", "THE"])
def test_chunked_aggregation_equals_one_shot(name):
    oracle = make_oracle(name, 30, 1.0)
    rng = np.random.default_rng(21)
    values = rng.integers(0, 30, size=5_000)
    reports = oracle.perturb(values, rng)
    whole = oracle.aggregate(reports)
    chunks = np.array_split(reports, 7)
    streamed = oracle.aggregate_stream(iter(chunks))
    if name == "SHE":  # float sums: equal up to summation order
        np.testing.assert_allclose(streamed.counts, whole.counts, rtol=1e-12, atol=1e-9)
        assert streamed.n == whole.n
    else:
        assert streamed == whole
        assert sum(oracle.aggregate(c) for c in chunks) == whole
        assert oracle.aggregate(chunks[0]).merge(oracle.aggregate(np.concatenate(chunks[1:]))) == whole
    np.testing.assert_allclose(oracle.estimate(streamed), oracle.estimate(whole), atol=1e-9)


def test_state_serializes_and_refuses_foreign_merges():
    g = GRR(10, 1.0)
    s = g.aggregate(np.arange(10))
    assert SupportCounts.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="different protocols"):
        s + GRR(10, 2.0).aggregate(np.arange(10))
    with pytest.raises(ValueError, match="shape"):
        SupportCounts(np.zeros(3), 1) + SupportCounts(np.zeros(4), 1)


# ----------------------------------------------------------------------------------- analytic test vectors
# Per-user V* (n = 1) at k = 100 (Wang et al., USENIX Security 2017; Acharya-Sun-Zhang 2019 for HR).
TABLE = {
    0.5: {
        "GRR": 236.7857,
        "SUE": 15.9169,
        "OUE": 15.6708,
        "BLH": 16.6708,
        "OLH": 15.8174,
        "SS": 15.3399,
        "THE": 17.8278,
        "SHE": 32,
        "HR": 16.6708,
    },
    1.0: {
        "GRR": 34.1130,
        "SUE": 3.9177,
        "OUE": 3.6827,
        "BLH": 4.6827,
        "OLH": 3.6917,
        "SS": 3.5896,
        "THE": 4.8072,
        "SHE": 8,
        "HR": 4.6827,
    },
    4.0: {
        "GRR": 0.0531,
        "SUE": 0.1810,
        "OUE": 0.0760,
        "BLH": 1.0760,
        "OLH": 0.0760,
        "SS": 0.0559,
        "THE": 0.2852,
        "SHE": 0.5,
        "HR": 1.0760,
    },
}


@pytest.mark.parametrize("eps", list(TABLE))
def test_variance_test_vectors(eps):
    for name, want in TABLE[eps].items():
        got = make_oracle(name, 100, eps).variance(1)
        assert got == pytest.approx(want, abs=6e-5, rel=1e-4), name
    ss = SubsetSelection(100, 1.0)
    assert (ss.omega, round(ss.p_star, 6), round(ss.q_star, 6)) == (27, 0.501344, 0.267663)
    assert OLH(100, 2.0).g == 8 and OLH(100, 4.0).g == 56
    assert THE(100, 1.0).theta == pytest.approx(0.6186, abs=1e-4)


def test_variance_shapes_and_exact_form():
    o = OUE(10, 1.0)
    assert o.variance(1000) == pytest.approx(4 * math.e / (1000 * (math.e - 1) ** 2))
    f = np.linspace(0, 0.2, 10)
    v = o.variance(1000, f)
    p, q = o.p, o.q
    np.testing.assert_allclose(v, (f * p * (1 - p) + (1 - f) * q * (1 - q)) / (1000 * (p - q) ** 2))


def test_adaptive_chooser_picks_least_variance():
    for k in (2, 5, 10, 50, 200, 2000):
        for eps in (0.5, 1.0, 2.0, 4.0):
            best = choose_protocol(k, eps)
            for name in ("GRR", "OUE", "OLH", "SS", "HR", "THE", "SUE", "BLH", "SHE"):
                assert best.variance(1) <= make_oracle(name, k, eps).variance(1) * (1 + 1e-12)
            adp = choose_protocol(k, eps, candidates=("GRR", "OUE"))
            assert isinstance(adp, GRR) == (k < 3 * math.exp(eps) + 2)
    assert isinstance(make_oracle("adp", 10, 1.0), FrequencyOracle)


def test_privacy_events():
    assert GRR(7, 1.0).privacy_event() == RandomizedResponseEvent(1.0, 7)
    assert OLH(100, 1.0).privacy_event() == RandomizedResponseEvent(1.0, 4)
    for cls in (SUE, OUE, SubsetSelection, HadamardResponse, HadamardResponseGeneral, SHE, THE):
        o = cls(10, 0.7)
        assert o.privacy_event() == PureDpEvent(0.7)
        assert (o.epsilon, o.delta) == (0.7, 0.0)


# ------------------------------------------------------------------------------------------ post-processing
def test_postprocessing_is_consistent():
    o = GRR(20, 0.5)
    rng = np.random.default_rng(4)
    values, f = zipf_population(20_000, 20)
    state = o.aggregate(o.perturb(values, rng))
    raw = o.estimate(state)
    assert (raw < 0).any()
    for method in ("clip", "norm-sub", "ibu"):
        g = o.estimate(state, postprocess=method)
        assert np.all(g >= 0) and g.sum() == pytest.approx(1.0, abs=1e-9), method
    # IBU inverts the GRR channel exactly: fed the expected counts n (q + (p - q) f) it returns f.
    # (EM converges slowly when p - q is small, so use epsilon = 3 here.)
    o3 = GRR(20, 3.0)
    expected = SupportCounts(1e6 * (o3.q + (o3.p - o3.q) * f), 10**6, o3.key)
    np.testing.assert_allclose(o3.estimate(expected, postprocess="ibu"), f, atol=1e-6)
    with pytest.raises(ValueError, match="postprocess"):
        o.estimate(state, postprocess="magic")


def test_norm_sub_and_clip_by_hand():
    np.testing.assert_allclose(norm_sub(np.array([0.5, 0.7, -0.2])), [0.4, 0.6, 0.0])
    np.testing.assert_allclose(clip_normalize(np.array([1.0, -1.0, 3.0])), [0.25, 0.0, 0.75])
    np.testing.assert_allclose(norm_sub(np.array([-1.0, -2.0])), [0.5, 0.5])
    np.testing.assert_allclose(ibu(np.array([10.0, 0.0]), 0.9, 0.1), [1.0, 0.0], atol=1e-6)


# ------------------------------------------------------------------------------------------------ bad input
ALL = [GRR, SUE, OUE, BLH, OLH, SubsetSelection, SHE, THE, HadamardResponse, HadamardResponseGeneral]


@pytest.mark.parametrize("cls", ALL)
def test_bad_parameters_name_the_parameter(cls):
    for eps in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="epsilon"):
            cls(10, eps)
    with pytest.raises(TypeError, match="epsilon"):
        cls(10, "1")
    for k in (1, 0, -3):
        with pytest.raises(ValueError, match=r"k must be .*>= 2"):
            cls(k, 1.0)
    with pytest.raises(TypeError, match="k"):
        cls(2.5, 1.0)


@pytest.mark.parametrize("cls", ALL)
def test_bad_values_and_reports(cls):
    o = cls(10, 1.0)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"values must be in \[0, 10\), got 10"):
        o.perturb(np.array([1, 10]), rng)
    with pytest.raises(ValueError, match=r"values must be in \[0, 10\), got -1"):
        o.perturb(np.array([-1, 3]), rng)
    with pytest.raises(TypeError, match="values must be an integer array"):
        o.perturb(np.array([1.0, 2.0]), rng)
    with pytest.raises(TypeError, match="values must be an integer array"):
        o.perturb(np.array([1.0, np.nan]), rng)
    with pytest.raises(ValueError, match="values must be a 1-dimensional"):
        o.perturb(np.zeros((2, 2), dtype=int), rng)
    with pytest.raises(TypeError, match="rng"):
        o.perturb(np.array([1, 2]), 42)
    good = o.perturb(np.array([1, 2, 3]), rng)
    bad = good[:, :-1] if good.ndim == 2 else good.reshape(-1, 1)
    with pytest.raises(ValueError, match="reports must have shape"):
        o.aggregate(bad)
    with pytest.raises(TypeError, match="reports"):
        o.aggregate(np.array(["a", "b"]))
    with pytest.raises(ValueError, match="state.n"):
        o.estimate(o.empty_state())


# ----------------------------------------------------------------------- Hadamard Response, general epsilon
@pytest.mark.parametrize(
    "k,eps,want",
    [(100, 4.0, (32, 8)), (100, 1.0, (2, 64)), (100, 8.0, (128, 2)), (1000, 0.5, (1, 1024)), (7, 2.5, (8, 2))]
    + [(5, 20.0, (8, 2)), (3, 1.2, (2, 4))],  # B capped by 2k; one block used although B = 2
)
def test_hr_general_blocks_follow_the_reference(k, eps, want):
    """B = 2^floor(log2 min(e^eps, 2k)), b = 2^ceil(log2(k/B + 1)) (Acharya, Sun and Zhang, AISTATS 2019), computed
    here in floating point."""
    o = HadamardResponseGeneral(k, eps)
    B = 2 ** math.floor(math.log2(min(math.exp(eps), 2 * k)))
    b = 2 ** math.ceil(math.log2(k / B + 1))
    assert (o.B, o.b) == (B, b) == want
    assert o.K == B * b and o.D == pytest.approx(2 * B - 1 + math.exp(eps))
    assert (o.b - 1) * o.B >= k  # every value has a cell


@pytest.mark.parametrize("eps", [4.0, 8.0])
def test_hr_general_unbiased_and_mse_at_large_epsilon(eps):
    """Blocks of 7 values (eps = 4) and of one value (eps = 8); the Zipf head makes the block masses F_v unequal."""
    oracle = HadamardResponseGeneral(K, eps)
    assert oracle.B > 1
    rng = np.random.default_rng(int(eps * 100))
    est = np.stack([oracle.estimate(oracle.perturb_aggregate(VALUES, rng)) for _ in range(R)])
    check_unbiased_and_mse(est, oracle, F_TRUE, N)


@pytest.mark.parametrize("k,eps", [(7, 0.5), (13, 1.5), (13, 3.0), (20, 6.0), (9, 12.0)])
def test_hr_general_variance_is_exact(k, eps):
    """The closed form (D (2 + (e^eps - 1) F_v)/(e^eps - 1)^2 - f_v)/n equals the variance computed from the exact
    channel: f_hat_v = D/(e^eps - 1) mean(s_v(y)), s_v = +1 on C_v, -1 on the rest of v's block, 0 elsewhere."""
    o = HadamardResponseGeneral(k, eps)
    m = o.channel_matrix()
    f = np.random.default_rng(k).dirichlet(np.full(k, 0.7))
    c = o.D / (math.exp(eps) - 1)
    y = np.arange(o.K)
    want = []
    for v in range(k):
        blk, row = o.cell(v)
        score = np.where(y // o.b == blk, np.where(np.bitwise_count(int(row) & (y % o.b)) % 2 == 0, 1.0, -1.0), 0.0)
        mean, second = m @ score, m @ score**2
        np.testing.assert_allclose(c * mean, np.arange(k) == v, atol=1e-12)  # unbiased: E = f_v exactly
        want.append(c * c * np.sum(f * (second - mean**2)))
    np.testing.assert_allclose(o.variance(1000, f), np.array(want) / 1000, rtol=1e-10)
    # the expected state decodes to f exactly (the estimator inverts the channel)
    np.testing.assert_allclose(o.estimate(SupportCounts(1e6 * (f @ m), 10**6, o.key)), f, atol=1e-12)


def test_hr_general_variance_against_hr_and_the_chooser():
    for k in (10, 100, 1000):
        for eps in (0.3, 0.6):  # B = 1: the same channel and variance as HR
            general, high = HadamardResponseGeneral(k, eps), HadamardResponse(k, eps)
            assert general.variance(1) == pytest.approx(high.variance(1), rel=1e-12)
        for eps in (4.0, 6.0, 8.0, 10.0):  # HR's V* tends to 1; the block variant keeps falling
            assert HadamardResponseGeneral(k, eps).variance(1) < HadamardResponse(k, eps).variance(1) / 4
    for eps in (10.0, 12.0, 14.0):  # V* ~ 2/e^eps once every block holds one value
        assert 2.0 <= HadamardResponseGeneral(10, eps).variance(1) * math.exp(eps) < 2.1
    assert HadamardResponseGeneral(7, 3.0).channel_matrix().shape == (7, 16)
    general, high = HadamardResponseGeneral(7, 0.5), HadamardResponse(7, 0.5)
    np.testing.assert_allclose(general.channel_matrix(), high.channel_matrix())
    # never the least V*, so not a default candidate (the docstring's claim, on a grid); it can be named
    for k in (2, 3, 10, 30, 100, 1000):
        for eps in np.linspace(0.1, 12.0, 40):
            best = choose_protocol(k, eps)
            assert HadamardResponseGeneral(k, eps).variance(1) >= best.variance(1)
    pick = choose_protocol(100, 8.0, candidates=("HR", "HR-general", "OUE"))
    assert isinstance(pick, HadamardResponseGeneral)
    assert isinstance(make_oracle("hr_general", 10, 1.0), HadamardResponseGeneral)


@pytest.mark.parametrize("k,eps", [(12, 0.5), (30, 2.0), (100, 4.0), (300, 0.4)])
def test_hr_general_ibu_is_em_on_the_exact_channel(k, eps):
    """Block transforms (dense H_b for b <= 256, FWHT above: k = 300 at eps = 0.4 has b = 512) give the iterates of
    the dense EM on channel_matrix() (300 iterations: at small epsilon EM needs thousands to converge)."""
    o = HadamardResponseGeneral(k, eps)
    rng = np.random.default_rng(k)
    values, f = zipf_population(20_000, k)
    state = o.perturb_aggregate(values, rng)
    chan = o.channel_matrix()
    got = o.ibu(state, n_iter=300)
    dense = em_channel(state.counts, lambda f: f @ chan, lambda w: chan @ w, k, n_iter=300)
    np.testing.assert_allclose(got, dense, atol=1e-12)
    assert np.all(got >= 0) and got.sum() == pytest.approx(1.0, abs=1e-12)
    if eps >= 2:  # converged: postprocess='ibu' is a probability vector; from the expected histogram it recovers f
        g = o.estimate(state, postprocess="ibu")
        assert np.all(g >= 0) and g.sum() == pytest.approx(1.0, abs=1e-12)
        expected = SupportCounts(1e6 * (f @ chan), 10**6, o.key)
        np.testing.assert_allclose(o.estimate(expected, postprocess="ibu"), f, atol=1e-7)


def test_hr_general_bad_input():
    o = HadamardResponseGeneral(10, 3.0)  # B = 16, b = 2, K = 32
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"reports must be in \[0, 32\), got 32"):
        o.aggregate(np.array([0, 32]))
    with pytest.raises(ValueError, match=r"state.counts must have shape \(32,\)"):
        o.estimate(SupportCounts(np.zeros(10), 5))
    with pytest.raises(ValueError, match="f must be the length-10 vector"):
        o.variance(100, 0.1)
    with pytest.raises(ValueError, match="postprocess must be one of"):
        o.estimate(o.aggregate(o.perturb(np.arange(10), rng)), postprocess="magic")


# ---------------------------------------------------------------------- IBU for the protocols without (p*, q*)
def test_ibu_structured_equals_the_pure_protocol_ibu():
    rng = np.random.default_rng(8)
    for p, q in [(0.7, 0.1), (0.5, 0.2), (0.3, 0.01)]:
        obs = rng.integers(0, 1000, size=25).astype(float)
        np.testing.assert_allclose(ibu_structured(obs, q, p - q, n_iter=500), ibu(obs, p, q, n_iter=500), atol=1e-12)
    # and the dense EM on the same channel
    k, p, q = 6, 0.6, 0.08
    chan = np.full((k, k), q) + np.eye(k) * (p - q)
    chan /= chan.sum(axis=1, keepdims=True)
    obs = rng.integers(0, 100, size=k).astype(float)
    dense = em_channel(obs, lambda f: f @ chan, lambda w: chan @ w, k, n_iter=500)
    np.testing.assert_allclose(ibu_structured(obs, q, p - q, n_iter=500), dense, atol=1e-12)
    with pytest.raises(ValueError, match="non-negative"):
        ibu_structured(obs, 0.1, -0.2)


def test_she_ibu_is_the_simplex_maximum_likelihood():
    """SHE's state (the sum of the reports) is Gaussian N(n f, 8 n/eps^2 I) by the CLT, so IBU's target, the MLE on
    the simplex, is the Euclidean projection of the raw estimate. Checked by its optimality (KKT) conditions:
    g = max(f_hat - theta, 0) with sum 1. The projection is non-expansive and f is in the simplex, so
    ||g - f|| <= ||f_hat - f|| holds exactly; per item, g is within 5 sigma (sigma^2 = 8/(n eps^2)) at n = 1e6."""
    she = SHE(20, 1.0)
    rng = np.random.default_rng(12)
    for n in (20_000, 1_000_000):
        values, f = zipf_population(n, 20)
        state = she.perturb_aggregate(values, rng)
        raw, g = she.estimate(state), she.estimate(state, postprocess="ibu")
        assert np.all(g >= 0) and g.sum() == pytest.approx(1.0, abs=1e-12)
        pos = g > 0
        theta = raw[pos] - g[pos]
        np.testing.assert_allclose(theta, theta[0], atol=1e-12)
        assert np.all(raw[~pos] <= theta[0] + 1e-12)
        assert np.linalg.norm(g - f) <= np.linalg.norm(raw - f) + 1e-12
        if n == 1_000_000:
            assert np.all(np.abs(g - f) < 5 * np.sqrt(she.variance(n, f)))
        else:
            assert (raw < 0).any() and not pos.all()  # the projection had work to do
    # the expected state is returned unchanged; a uniform shift of a simplex point is undone exactly
    np.testing.assert_allclose(she.estimate(SupportCounts(1e4 * f, 10**4, she.key), postprocess="ibu"), f, atol=1e-12)
    np.testing.assert_allclose(project_simplex(f + 0.3), f, atol=1e-12)
    np.testing.assert_allclose(project_simplex(np.array([2.0, 0.5, -1.0])), [1.0, 0.0, 0.0])
    # unlike Norm-Sub, the projection lifts a small negative entry when the clipped sum is below 1
    np.testing.assert_allclose(project_simplex(np.array([0.2, 0.2, -0.05])), [5 / 12, 5 / 12, 2 / 12])
    np.testing.assert_allclose(norm_sub(np.array([0.2, 0.2, -0.05])), [0.5, 0.5, 0.0])
    with pytest.raises(ValueError, match="postprocess must be one of"):
        she.estimate(state, postprocess="magic")
