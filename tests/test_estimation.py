"""audits: eps_hat, Clopper-Pearson / Jeffreys baselines, the joint-Beta posterior (quadrature vs Monte Carlo,
reference numbers, edge cases, speed), scores and the canary game, and every bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dpkit.audits import (
    METHODS,
    AttackCounts,
    EpsilonPosterior,
    InsufficientEvidenceError,
    bayesian_interval,
    canary_game,
    clopper_pearson,
    counts_at_threshold,
    epsilon_from_rates,
    estimate_all,
    estimate_epsilon,
    estimate_from_scores,
    evidence_problem,
    jeffreys,
    region_lower,
    region_upper,
)


def symmetric_counts(n_total: int, eps: float) -> AttackCounts:
    """Counts at the expected values of a symmetric attack (FPR = FNR = 1 / (1 + e^eps)), n_total samples."""
    p = n_total // 2
    k = round(p / (1 + math.exp(eps)))
    return AttackCounts(tp=p - k, fp=k, tn=p - k, fn=k)


# ------------------------------------------------------------ eps_hat and the privacy region
def test_epsilon_from_rates_values():
    # max{log((1 - FPR) / FNR), log((1 - FNR) / FPR)} = log(0.8 / 0.1) here
    assert epsilon_from_rates(0.1, 0.2) == pytest.approx(math.log(0.8 / 0.1))
    assert epsilon_from_rates(0.2, 0.1) == pytest.approx(math.log(0.8 / 0.1))
    assert epsilon_from_rates(0.1, 0.2, delta=0.05) == pytest.approx(math.log(0.75 / 0.1))
    assert epsilon_from_rates(0.5, 0.5) == 0.0
    assert epsilon_from_rates(0.0, 0.3) == math.inf
    assert epsilon_from_rates(0.0, 1.0) == 0.0
    assert epsilon_from_rates(0.0, 0.99, delta=0.02) == 0.0  # inside the trivial band
    assert epsilon_from_rates(0.9, 0.8) == pytest.approx(epsilon_from_rates(0.2, 0.1))  # worse than random
    assert epsilon_from_rates(1.0, 1.0) == math.inf


def test_epsilon_from_rates_vectorized_matches_scalar():
    rng = np.random.default_rng(0)
    fpr, fnr = rng.random(500), rng.random(500)
    fpr[:10] = 0.0
    vec = epsilon_from_rates(fpr, fnr, 1e-3)
    assert vec.shape == (500,)
    assert np.array_equal(vec, [epsilon_from_rates(a, b, 1e-3) for a, b in zip(fpr, fnr, strict=True)])
    assert np.all(vec >= 0)


@pytest.mark.parametrize("eps,delta", [(0.7, 0.0), (2.0, 1e-3), (4.0, 0.05)])
def test_region_boundaries_have_eps_hat_equal_to_eps(eps, delta):
    t = np.linspace(0.0, 1.0, 201)
    for y in (region_lower(t, eps, delta), region_upper(t, eps, delta)):
        e = epsilon_from_rates(y, t, delta)
        on = (y > 1e-9) & (y < 1 - 1e-9) & (np.abs(t + y - 1) > delta + 1e-9)
        assert np.allclose(e[on], eps, atol=1e-9)
    assert np.all(region_lower(t, eps, delta) <= region_upper(t, eps, delta) + 1e-15)


# ------------------------------------------------------------ frequentist baselines
def test_clopper_pearson_is_rectangle_corners():
    c = AttackCounts(tp=450, fp=50, tn=450, fn=50)
    est = clopper_pearson(c, alpha=0.05)
    x = dict(est.extra)
    (fpr_l, fpr_r), (fnr_l, fnr_r) = x["fpr_interval"], x["fnr_interval"]
    from scipy.stats import beta  # each rate at alpha/2 two-sided -> alpha/4 per tail

    assert fpr_l == pytest.approx(beta.ppf(0.0125, 50, 451))
    assert fpr_r == pytest.approx(beta.ppf(1 - 0.0125, 51, 450))
    assert est.lower == pytest.approx(epsilon_from_rates(fpr_r, fnr_r))
    assert est.upper == pytest.approx(epsilon_from_rates(fpr_l, fnr_l))
    assert est.point == pytest.approx(math.log(0.9 / 0.1))
    assert est.lower < est.point < est.upper
    j = jeffreys(c, alpha=0.05)
    assert est.lower < j.lower and j.upper < est.upper  # Jeffreys is narrower


def test_one_sided_lower_bound():
    c = AttackCounts(tp=450, fp=50, tn=450, fn=50)
    for method in ("clopper-pearson", "jeffreys", "bayes"):
        one = estimate_epsilon(c, method, alpha=0.05, sided="lower")
        two = estimate_epsilon(c, method, alpha=0.05)
        assert one.upper == math.inf and one.sided == "lower"
        assert two.lower < one.lower < two.point  # one-sided 95% bound is above the two-sided 95% lower end
    post = EpsilonPosterior(c)
    assert bayesian_interval(c, 0.05, sided="lower").lower == pytest.approx(post.ppf(0.05), abs=1e-6)


# ------------------------------------------------------------ Bayesian posterior: accuracy
@pytest.mark.parametrize(
    "counts,delta",
    [
        (AttackCounts(tp=80, fp=20, tn=70, fn=30), 0.0),
        (AttackCounts(tp=487, fp=512, tn=1, fn=0), 1e-5),  # zero count, FPR ~ 1
        (AttackCounts(tp=3, fp=40, tn=2, fn=45), 0.0),  # worse than random
        (AttackCounts(tp=495_000, fp=5_000, tn=490_000, fn=10_000), 1e-6),  # n = 1e6, concentrated
        (AttackCounts(tp=60, fp=45, tn=55, fn=40), 0.05),  # atom at 0
    ],
)
def test_quadrature_matches_monte_carlo(counts, delta):
    """F(e) from the quadrature vs the empirical CDF of M = 2e6 posterior draws mapped through eps_hat.

    The empirical CDF at a fixed e is Binomial(M, F)/M: standard error sqrt(F(1-F)/M) <= 3.6e-4; accept within
    5 standard errors (+1e-6 for the quadrature, whose own error estimate is ~1e-8)."""
    m = 2_000_000
    rng = np.random.default_rng(12345)
    post = EpsilonPosterior(counts, delta)
    x = rng.beta(*post.fnr_params, m)
    y = rng.beta(*post.fpr_params, m)
    eps = np.sort(epsilon_from_rates(y, x, delta))
    grid = np.unique(np.quantile(eps[np.isfinite(eps)], [0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99]))
    emp = np.searchsorted(eps, grid, side="right") / m
    f = post.cdf(grid)
    se = np.sqrt(np.maximum(f * (1 - f), 1 / m) / m)
    assert np.all(np.abs(f - emp) <= 5 * se + 1e-6), (grid, f, emp)
    emp0 = np.mean(eps == 0)
    assert abs(post.prob_zero - emp0) <= 5 * math.sqrt(max(emp0 * (1 - emp0), 1 / m) / m) + 1e-6
    lo, hi = post.cdf_bounds(grid)  # the rigorous bracket contains the trapezoid value
    assert np.all(lo <= f + 1e-12) and np.all(f <= hi + 1e-12)
    assert np.all(post.cdf_error_estimate(grid) < 1e-6)


def test_density_integrates_to_cdf():
    post = EpsilonPosterior(AttackCounts(tp=80, fp=20, tn=70, fn=30))
    grid, dens = post.density_on_grid(upper=4.0, num=400)
    assert np.all(dens >= -1e-6)
    assert np.sum(dens) * (grid[1] - grid[0]) == pytest.approx(post.cdf(4.0) - post.prob_zero, abs=1e-6)
    e = np.array([0.8, 1.2, 1.6])
    h = 1e-4
    assert np.allclose(post.pdf(e), (post.cdf(e + h) - post.cdf(e - h)) / (2 * h), rtol=1e-3)


def test_reference_example_tn1_fn0():
    """The reference package's README example (TN = 1, FN = 0): package gives [0.145, 6.399] with loose
    tolerances (its own test uses +-0.02); an exact 1-D quadrature gives [0.1439, 6.4156]."""
    est = bayesian_interval(AttackCounts(tp=487, fp=512, tn=1, fn=0), alpha=0.1, delta=1e-5)
    assert est.lower == pytest.approx(0.145, abs=0.02) and est.upper == pytest.approx(6.399, abs=0.02)
    assert est.lower == pytest.approx(0.1439, abs=2e-3) and est.upper == pytest.approx(6.4156, abs=2e-3)
    cp, jf = clopper_pearson(est.counts, 0.1, 1e-5), jeffreys(est.counts, 0.1, 1e-5)
    assert (cp.lower, cp.upper) == (0.0, math.inf) and (jf.lower, jf.upper) == (0.0, math.inf)


@pytest.mark.parametrize("eps,lower,upper", [(2.0, 1.9532, 2.0878), (4.0, 3.8916, 4.2407)])
def test_correct_at_n_1e4_where_reference_is_wrong(eps, lower, upper):
    """Spec 3.4: at n = 1e4 the reference returns [2.0705, 2.0915] and [4.0571, 4.2477], both above the true
    epsilon; the correct intervals (1-D quadrature and Monte Carlo agree to 0.002) contain it."""
    est = bayesian_interval(symmetric_counts(10_000, eps))
    assert est.lower == pytest.approx(lower, abs=2e-3) and est.upper == pytest.approx(upper, abs=2e-3)
    assert est.lower < eps < est.upper


@pytest.mark.parametrize("n_total", [200, 1_000, 10_000])
@pytest.mark.parametrize("eps", [0.5, 1.0, 2.0, 4.0])
def test_bayes_at_least_25_percent_narrower_than_clopper_pearson(n_total, eps):
    c = symmetric_counts(n_total, eps)
    b, cp = bayesian_interval(c), clopper_pearson(c)
    assert math.isfinite(cp.upper)
    assert b.width <= 0.75 * cp.width, (b.width / cp.width, b, cp)


def test_large_counts_give_a_finite_ordered_interval():
    """10,000 samples per class (speed is a benchmark's business, not a test's)."""
    est = bayesian_interval(symmetric_counts(10_000, 2.0))
    assert 0.0 <= est.lower <= est.point <= est.upper < math.inf


# ------------------------------------------------------------ edge cases
NO_EVIDENCE = [
    (AttackCounts(0, 0, 0, 0), "no attack results"),
    (AttackCounts(tp=5, fp=0, tn=0, fn=3), "no non-member samples"),
    (AttackCounts(tp=0, fp=4, tn=6, fn=0), "no member samples"),
    (AttackCounts(tp=50, fp=50, tn=0, fn=0), "guessed 'member' for every sample"),  # constant scores
    (AttackCounts(tp=0, fp=0, tn=50, fn=50), "guessed 'non-member' for every sample"),
]


@pytest.mark.parametrize("counts,problem", NO_EVIDENCE, ids=[p for _, p in NO_EVIDENCE])
@pytest.mark.parametrize("method", METHODS)
def test_no_evidence_is_an_error_naming_the_problem(counts, problem, method):
    # The Bayesian interval used to come from the prior alone (e.g. (0.09, 8.3) for zero counts)
    with pytest.raises(InsufficientEvidenceError, match=problem):
        estimate_epsilon(counts, method)
    assert evidence_problem(counts) is not None and problem in evidence_problem(counts)


def test_the_prior_is_still_there_when_asked_for():
    with pytest.raises(InsufficientEvidenceError):
        EpsilonPosterior(AttackCounts(0, 0, 0, 0))
    prior = EpsilonPosterior(AttackCounts(0, 0, 0, 0), allow_no_evidence=True)
    lo, hi = prior.interval(0.05)
    assert 0 < lo < hi < math.inf
    assert evidence_problem(AttackCounts(tp=1, fp=0, tn=1, fn=0)) is None  # tiny, but evidence


@pytest.mark.parametrize("selection", ["holdout", "best"])
@pytest.mark.parametrize("method", METHODS)
def test_constant_scores_are_no_evidence(selection, method):
    b = np.r_[np.ones(100, dtype=bool), np.zeros(100, dtype=bool)]
    with pytest.raises(InsufficientEvidenceError, match="all equal"):
        estimate_from_scores(b, np.full(200, 0.3), method=method, selection=selection)


def test_a_holdout_split_without_members_is_no_evidence():
    b = np.zeros(40, dtype=bool)
    b[[0, 1]] = True
    s = np.arange(40.0)
    outcomes = set()
    for seed in range(30):  # both members land in the calibration split for about a quarter of the seeds
        ev = np.random.default_rng(seed).permutation(40)[20:]
        try:
            est = estimate_from_scores(b, s, method="clopper-pearson", seed=seed)
        except InsufficientEvidenceError as err:
            assert not b[ev].any(), err
            assert "no member samples" in str(err) and "counted on 20 of 40 samples" in str(err)
            outcomes.add("error")
        else:
            assert est.counts.positives > 0
            outcomes.add("estimate")
    assert outcomes == {"error", "estimate"}


def test_all_correct_and_all_wrong_attacks():
    right = AttackCounts(tp=100, fp=0, tn=100, fn=0)
    wrong = AttackCounts(tp=0, fp=100, tn=0, fn=100)  # always wrong = perfectly informative after reflection
    br, bw = bayesian_interval(right), bayesian_interval(wrong)
    assert br.lower == pytest.approx(bw.lower, abs=1e-6) and br.upper == pytest.approx(bw.upper, abs=1e-6)
    assert 3 < br.lower < br.upper < 30
    cp = clopper_pearson(right)
    assert cp.point == math.inf and cp.upper == math.inf and 0 < cp.lower < br.lower


def test_swapping_the_roles_of_fpr_and_fnr_is_a_symmetry():
    a = bayesian_interval(AttackCounts(tp=70, fp=5, tn=95, fn=30))
    b = bayesian_interval(AttackCounts(tp=95, fp=30, tn=70, fn=5))
    assert (a.lower, a.upper) == pytest.approx((b.lower, b.upper), abs=1e-6)


def test_upper_beyond_max_eps_is_inf_and_lower_is_capped():
    c = AttackCounts(tp=10_000, fp=0, tn=10_000, fn=0)
    est = bayesian_interval(c, max_eps=5.0)
    assert est.upper == math.inf and est.lower == 5.0
    assert bayesian_interval(c).upper < 30


def test_results_are_frozen_data():
    est = bayesian_interval(AttackCounts(tp=80, fp=20, tn=70, fn=30), alpha=0.1, delta=1e-5)
    d = est.to_dict()
    assert {"method", "point", "lower", "upper", "alpha", "delta", "counts"} <= d.keys()
    assert d["counts"] == {"tp": 80, "fp": 20, "tn": 70, "fn": 30} and d["alpha"] == 0.1 and d["delta"] == 1e-5
    with pytest.raises(AttributeError):
        est.lower = 0.0  # type: ignore[misc]
    assert set(estimate_all(est.counts, "all")) == {"bayes", "clopper-pearson", "jeffreys"}
    assert estimate_epsilon(est.counts, "joint-dirichlet").lower == estimate_epsilon(est.counts, "joint-beta").lower


# ------------------------------------------------------------ scores and thresholds
def _gaussian_scores(n: int, shift: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    b = rng.random(n) < 0.5
    return b, rng.normal(size=n) + shift * b


def test_counts_at_threshold_and_from_guesses():
    b = np.array([1, 1, 0, 0, 1, 0])
    s = np.array([0.9, 0.2, 0.8, 0.1, 0.5, 0.3])
    assert counts_at_threshold(b, s, 0.5) == AttackCounts(tp=2, fp=1, tn=2, fn=1)
    assert AttackCounts.from_guesses(b, s >= 0.5) == AttackCounts(tp=2, fp=1, tn=2, fn=1)


def test_scores_holdout_and_best():
    b, s = _gaussian_scores(4000, 2.0)
    hold = estimate_from_scores(b, s, method="clopper-pearson", alpha=0.05)
    x = dict(hold.extra)
    assert x["selection"] == "holdout" and x["comparisons"] == 1 and x["samples_used"] == 2000
    assert hold.counts.total == 2000 and 0 < hold.lower < hold.upper
    best = estimate_from_scores(b, s, method="clopper-pearson", selection="best", num_thresholds=10)
    y = dict(best.extra)
    assert y["comparisons"] == 10 and y["per_test_alpha"] == pytest.approx(0.005) and best.alpha == 0.05
    assert best.counts.total == 4000
    # the selected test's interval is the Bonferroni one: same counts at alpha / K
    assert best.lower == clopper_pearson(best.counts, 0.005).lower
    # low scores = member works too (worse-than-random test is reflected)
    flipped = estimate_from_scores(b, -s, method="clopper-pearson")
    assert flipped.lower > 0


# ------------------------------------------------------------ canary game (heuristic)
def test_canary_game_shapes_and_determinism():
    def train(mask, rng):
        return mask.astype(float) + rng.normal(scale=0.5, size=mask.size)  # a "model" that leaks each bit

    def attack(model):
        return model

    g1 = canary_game(train, attack, num_canaries=8, num_models=25, seed=3)
    g2 = canary_game(train, attack, num_canaries=8, num_models=25, seed=3)
    assert g1.is_member.shape == g1.scores.shape == (200,)
    assert np.array_equal(g1.scores, g2.scores) and np.array_equal(g1.is_member, g2.is_member)
    assert np.array_equal(g1.model_index, np.repeat(np.arange(25), 8))
    est = g1.estimate(method="bayes", selection="best", num_thresholds=5)
    assert est.lower > 0
    with pytest.raises(ValueError, match="one score per canary"):
        canary_game(train, lambda m: m[:3], num_canaries=8, num_models=2)


# ------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"tp": -1, "fp": 0, "tn": 0, "fn": 0}, ValueError, r"tp must be a whole number >= 0, got -1"),
        ({"tp": 1, "fp": 2.5, "tn": 0, "fn": 0}, TypeError, r"fp must be a whole number >= 0, got 2.5"),
        ({"tp": 1, "fp": 2, "tn": "3", "fn": 0}, TypeError, r"tn must be a whole number"),
        ({"tp": 1, "fp": 2, "tn": 3, "fn": True}, TypeError, r"fn must be a whole number"),
    ],
)
def test_bad_counts(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        AttackCounts(**kwargs)


C = AttackCounts(tp=80, fp=20, tn=70, fn=30)


@pytest.mark.parametrize("method", ["bayes", "clopper-pearson", "jeffreys"])
@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_bad_alpha(method, alpha):
    with pytest.raises(ValueError, match=r"alpha must be (in \(0, 1\)|a number)"):
        estimate_epsilon(C, method, alpha=alpha)


@pytest.mark.parametrize("method", ["bayes", "clopper-pearson", "jeffreys"])
@pytest.mark.parametrize("delta", [1.0, -1e-9, 2.0])
def test_bad_delta(method, delta):
    with pytest.raises(ValueError, match=r"delta must be in \[0, 1\), got"):
        estimate_epsilon(C, method, delta=delta)


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="method must be one of"):
        estimate_epsilon(C, "magic")
    with pytest.raises(ValueError, match="sided must be one of"):
        estimate_epsilon(C, "bayes", sided="upper")
    with pytest.raises(ValueError, match="sided must be one of"):
        clopper_pearson(C, sided="upper")
    with pytest.raises(TypeError, match="counts must be an AttackCounts"):
        bayesian_interval((1, 2, 3, 4))
    with pytest.raises(ValueError, match="prior"):
        EpsilonPosterior(C, prior=(0.5,))
    with pytest.raises(ValueError, match=r"prior\[0\] must be in \(0, inf\)"):
        EpsilonPosterior(C, prior=(0.0, 1.0))
    with pytest.raises(ValueError, match="grid_size must be a whole number >= 16"):
        EpsilonPosterior(C, grid_size=4)
    with pytest.raises(ValueError, match=r"max_eps must be in \(0, inf\)"):
        EpsilonPosterior(C, max_eps=-1)
    with pytest.raises(ValueError, match=r"fpr must be in \[0, 1\]"):
        epsilon_from_rates(1.5, 0.1)
    with pytest.raises(ValueError, match=r"fnr must be in \[0, 1\]"):
        epsilon_from_rates(0.1, float("nan"))


@pytest.mark.parametrize(
    "is_member,scores,kwargs,match",
    [
        ([], [], {}, "is_member must not be empty"),
        ([1, 0, 1], [0.1, 0.2], {}, "is_member has 3, scores has 2"),
        ([1, 0, 2], [0.1, 0.2, 0.3], {}, "is_member must hold only 0/1"),
        ([1, 0, 1], [0.1, float("nan"), 0.3], {}, "scores must be finite"),
        ([[1, 0]], [[0.1, 0.2]], {}, "is_member must be a 1-D array"),
        ([1, 0, 1, 0], [0.1, 0.2, 0.3, 0.4], {"selection": "peek"}, "selection must be one of"),
        ([1, 0, 1, 0], [0.1, 0.2, 0.3, 0.4], {"holdout_fraction": 1.0}, r"holdout_fraction must be in \(0, 1\)"),
        ([1, 0], [0.1, 0.2], {"holdout_fraction": 0.1}, "leaves an empty split"),
        ([1, 0, 1, 0], [0.1, 0.2, 0.3, 0.4], {"num_thresholds": 0}, "num_thresholds must be a whole number >= 1"),
        ([1, 0, 1, 0], [0.1, 0.2, 0.3, 0.4], {"alpha": 0}, r"alpha must be in \(0, 1\)"),
    ],
)
def test_bad_score_arrays(is_member, scores, kwargs, match):
    with pytest.raises(ValueError, match=match):
        estimate_from_scores(is_member, scores, **kwargs)


def test_bad_guess_arrays():
    with pytest.raises(ValueError, match="is_member has 2, guess has 3"):
        AttackCounts.from_guesses([1, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="guess must not be empty"):
        AttackCounts.from_guesses([1], [])
    with pytest.raises(TypeError, match="scores must hold real numbers"):
        estimate_from_scores([1, 0], ["a", "b"])


def test_a_canary_game_with_a_blind_attack_is_no_evidence():
    game = canary_game(lambda mask, rng: None, lambda model: np.zeros(4), num_canaries=4, num_models=10, seed=0)
    for method in METHODS:
        with pytest.raises(InsufficientEvidenceError, match="all equal"):
            game.estimate(method=method)
