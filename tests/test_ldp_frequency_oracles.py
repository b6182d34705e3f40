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

from accountants import PureDpEvent, RandomizedResponseEvent
from mechanisms import (
    BLH,
    GRR,
    OLH,
    OUE,
    SHE,
    SUE,
    THE,
    FrequencyOracle,
    HadamardResponse,
    SubsetSelection,
    SupportCounts,
    choose_protocol,
    clip_normalize,
    hashing,
    ibu,
    make_oracle,
    max_log_ratio,
    norm_sub,
)

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
}


def check_unbiased_and_mse(estimates: np.ndarray, oracle: FrequencyOracle, f: np.ndarray, n: int) -> None:
    var = oracle.variance(n, f)
    reps = estimates.shape[0]
    z = (estimates.mean(axis=0) - f) / np.sqrt(var / reps)
    assert np.abs(z).max() < 5.0, f"{oracle}: max |z| = {np.abs(z).max():.2f}"
    mse = np.mean((estimates - f) ** 2)
    ratio = mse / np.mean(var)
    assert abs(ratio - 1) < 0.10, f"{oracle}: MSE / analytic variance = {ratio:.4f}"


@pytest.mark.parametrize("name", list(ORACLES))
def test_unbiased_and_mse_matches_analytic_variance(name):
    oracle = ORACLES[name]()
    rng = np.random.default_rng(1000 + list(ORACLES).index(name))
    est = np.stack([oracle.estimate(oracle.perturb_aggregate(VALUES, rng)) for _ in range(R)])
    check_unbiased_and_mse(est, oracle, F_TRUE, N)


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


@pytest.mark.parametrize("cls", [GRR, SUE, OUE, SubsetSelection, HadamardResponse])
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


@pytest.mark.parametrize("cls", [GRR, SUE, OUE, SubsetSelection, HadamardResponse])
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
# ldp.md 2.10: per-user V* (n = 1) at k = 100.
TABLE = {
    0.5: {"GRR": 236.7857, "SUE": 15.9169, "OUE": 15.6708, "BLH": 16.6708, "OLH": 15.8174, "SS": 15.3399,
          "THE": 17.8278, "SHE": 32, "HR": 16.6708},
    1.0: {"GRR": 34.1130, "SUE": 3.9177, "OUE": 3.6827, "BLH": 4.6827, "OLH": 3.6917, "SS": 3.5896,
          "THE": 4.8072, "SHE": 8, "HR": 4.6827},
    4.0: {"GRR": 0.0531, "SUE": 0.1810, "OUE": 0.0760, "BLH": 1.0760, "OLH": 0.0760, "SS": 0.0559,
          "THE": 0.2852, "SHE": 0.5, "HR": 1.0760},
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
    for cls in (SUE, OUE, SubsetSelection, HadamardResponse, SHE, THE):
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
ALL = [GRR, SUE, OUE, BLH, OLH, SubsetSelection, SHE, THE, HadamardResponse]


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
