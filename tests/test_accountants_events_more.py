"""The further events (zCDP, discrete Gaussian / Laplace, exponential mechanism, permute-and-flip, (eps, delta),
mixture of Gaussians, sampling with replacement, repeat-and-select, tree aggregation, replace-one Poisson sampling):
closed forms, exact privacy profiles, PLD against RDP, refusals with reasons, and dp_accounting cross-checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special, stats

from dpkit.accountants import (
    DiscreteGaussianEvent,
    DiscreteLaplaceEvent,
    EpsilonDeltaEvent,
    ExponentialMechanismEvent,
    GaussianEvent,
    LaplaceEvent,
    MixtureOfGaussiansEvent,
    PermuteAndFlipEvent,
    PLDAccountant,
    PoissonSampledEvent,
    PureDpEvent,
    RDPAccountant,
    RepeatAndSelectEvent,
    SampledWithReplacementEvent,
    SingleEpochTreeAggregationEvent,
    UnsupportedEventError,
    ZCDPEvent,
    create_accountant,
)
from dpkit.accountants.rdp_analysis import DEFAULT_ORDERS

DP_ACCOUNTING_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(11, 64)) + [128, 256, 512, 1024]


# ------------------------------------------------------------------------------------------------ exact references
def _dg_log_pmf(sigma: float, x: np.ndarray) -> np.ndarray:
    half = np.arange(-int(60 * sigma) - 50, int(60 * sigma) + 51, dtype=float)
    return -(x**2) / (2 * sigma**2) - special.logsumexp(-(half**2) / (2 * sigma**2))


def _dg_profile(sigma: float, d: int, eps: float) -> float:
    """Canonne-Kamath-Steinke 2020, Theorem 7: P[X > eps s^2/d - d/2] - e^eps P[X > eps s^2/d + d/2]."""
    x = np.arange(-int(60 * sigma) - 50, int(60 * sigma) + 51, dtype=float)
    p = np.exp(_dg_log_pmf(sigma, x))
    a, b = eps * sigma**2 / d - d / 2, eps * sigma**2 / d + d / 2
    return float(p[x > a].sum() - math.exp(eps) * p[x > b].sum())


def _dl_profile(a: float, d: int, eps: float) -> float:
    """sum_x (P(x) - e^eps Q(x))_+ for P = DLap(0, a), Q = DLap(d, a), summed directly over the integers."""
    x = np.arange(-2000, 2000 + d, dtype=float)
    p = math.tanh(a / 2) * np.exp(-a * np.abs(x))
    q = math.tanh(a / 2) * np.exp(-a * np.abs(x - d))
    return float(np.clip(p - math.exp(eps) * q, 0, None).sum())


def _hockey_stick(p_pdf, q_pdf, eps: float, lo: float, hi: float) -> float:
    value, _ = integrate.quad(lambda z: max(0.0, p_pdf(z) - math.exp(eps) * q_pdf(z)), lo, hi, limit=400)
    return value


# ------------------------------------------------------------------------------------------------ zCDP
def test_zcdp_rdp_is_xi_plus_rho_alpha_and_matches_gaussian():
    acc = RDPAccountant().compose(ZCDPEvent(2.71828, 3.14159)).compose(ZCDPEvent(6.28319, 1.23456))
    np.testing.assert_allclose(acc.get_rdp(), 3.14159 + 1.23456 + DEFAULT_ORDERS * (2.71828 + 6.28319))
    sigma = 3.14159
    gauss = RDPAccountant().compose(GaussianEvent(sigma), 7)
    zcdp = RDPAccountant().compose(ZCDPEvent(1 / (2 * sigma**2)), 7)
    np.testing.assert_allclose(zcdp.get_rdp(), gauss.get_rdp(), rtol=1e-12)
    assert zcdp.get_epsilon(1e-6) == pytest.approx(gauss.get_epsilon(1e-6), rel=1e-12)


def test_rdp_only_events_are_refused_by_pld_with_the_reason():
    for event in (ZCDPEvent(0.1), RepeatAndSelectEvent(GaussianEvent(2.0), 10, 1)):
        with pytest.raises(UnsupportedEventError, match=r"PLDAccountant.*RDP accountant") as info:
            PLDAccountant().compose(event)
        assert type(event).__name__ in str(info.value)


# ------------------------------------------------------------------------------------------------ discrete Gaussian
@pytest.mark.parametrize("sigma,d", [(0.7, 1), (1.0, 2), (3.0, 1)])
def test_discrete_gaussian_pld_matches_the_exact_profile(sigma, d):
    acc = PLDAccountant().compose(DiscreteGaussianEvent(sigma, d))
    for eps in (0.0, 0.3, 1.0, 2.0):
        exact = _dg_profile(sigma, d, eps)
        got = acc.get_delta(eps)
        assert got >= exact - 1e-12
        assert got <= exact * (1 + 1e-3) + 1e-9, (eps, got, exact)


def test_discrete_gaussian_rdp_is_exact():
    sigma, d = 0.6, 1
    orders = np.array([1.5, 2.0, 2.5, 7.0, 10.3])
    acc = RDPAccountant(orders=orders).compose(DiscreteGaussianEvent(sigma, d))
    x = np.arange(-200, 201, dtype=float)
    lp, lq = _dg_log_pmf(sigma, x), _dg_log_pmf(sigma, x - d)
    exact = [special.logsumexp(a * lp + (1 - a) * lq) / (a - 1) for a in orders]
    np.testing.assert_allclose(acc.get_rdp(), exact, rtol=1e-9)
    assert np.all(acc.get_rdp() <= orders * d * d / (2 * sigma**2) + 1e-12)  # CKS20: (d^2/(2 sigma^2))-zCDP
    # large sigma: the Gaussian's alpha d^2 / (2 sigma^2)
    big = RDPAccountant(orders=orders).compose(DiscreteGaussianEvent(50.0, 3))
    np.testing.assert_allclose(big.get_rdp(), orders * 9 / (2 * 2500), rtol=1e-12)


def test_pld_refuses_huge_discrete_gaussian_but_rdp_takes_it():
    event = DiscreteGaussianEvent(1e6, 1)
    assert "sigma" in PLDAccountant().unsupported_reason(event)
    assert RDPAccountant().supports(event)


# ------------------------------------------------------------------------------------------------ discrete Laplace
@pytest.mark.parametrize("a,d", [(1.0, 1), (0.3, 4), (2.0, 3)])
def test_discrete_laplace_exact_profile_and_pure_epsilon(a, d):
    acc = PLDAccountant().compose(DiscreteLaplaceEvent(a, d))
    for eps in (0.0, 0.5 * a * d, 0.9 * a * d):
        assert acc.get_delta(eps) == pytest.approx(_dl_profile(a, d, eps), rel=1e-4, abs=1e-12)
    assert acc.get_delta(a * d) <= 1e-12  # (a d)-DP
    assert acc.get_epsilon(1e-12) <= a * d + 1e-9
    rdp = RDPAccountant().compose(DiscreteLaplaceEvent(a, d))
    assert rdp.get_epsilon(1e-12) <= a * d + 1e-12  # pure-DP composition bound
    assert np.all(rdp.get_rdp() <= a * d + 1e-12)


def test_discrete_laplace_composition_value_of_dp_accounting():
    # dp_accounting's test: 3 x DLap(1, 1) and 2 x DLap(0.5, 1) is exactly 4-DP.
    acc = PLDAccountant().compose(DiscreteLaplaceEvent(1.0, 1), 3).compose(DiscreteLaplaceEvent(0.5, 1), 2)
    assert acc.get_delta(4.0) <= 1e-12
    assert acc.get_epsilon(1e-12) == pytest.approx(4.0, abs=1e-6)


def test_discrete_laplace_rdp_matches_a_direct_sum():
    a, d = 0.8, 2
    orders = np.array([1.5, 3.0, 12.0])
    x = np.arange(-3000, 3000 + d, dtype=float)
    lp = math.log(math.tanh(a / 2)) - a * np.abs(x)
    lq = math.log(math.tanh(a / 2)) - a * np.abs(x - d)
    exact = [special.logsumexp(o * lp + (1 - o) * lq) / (o - 1) for o in orders]
    got = RDPAccountant(orders=orders).compose(DiscreteLaplaceEvent(a, d)).get_rdp()
    np.testing.assert_allclose(got, exact, rtol=1e-9)


# ------------------------------------------------------------------------------------------------ selection mechanisms
@pytest.mark.parametrize("event_type", [ExponentialMechanismEvent, PermuteAndFlipEvent])
@pytest.mark.parametrize("eps", [0.1, 1.0, 3.0])
def test_selection_mechanisms_are_epsilon_dp(event_type, eps):
    for kind in ("pld", "rdp"):
        acc = create_accountant(kind).compose(event_type(eps))
        assert acc.get_epsilon(1e-15) <= eps + 1e-9
        assert acc.get_delta(eps) <= 1e-12
    # the PLD of an epsilon-DP mechanism is randomized response's: delta(0) = tanh(eps / 2)
    assert PLDAccountant().compose(event_type(eps)).get_delta(0.0) <= math.tanh(eps / 2) + 1e-9


def test_exponential_mechanism_composes_better_than_pure_dp():
    # epsilon-bounded range is epsilon^2/8-zCDP (Cesar-Rogers 2021): 100 runs of 0.1
    em = RDPAccountant().compose(ExponentialMechanismEvent(0.1), 100)
    pf = RDPAccountant().compose(PermuteAndFlipEvent(0.1), 100)
    rho = 100 * 0.01 / 8
    assert np.all(em.get_rdp() <= DEFAULT_ORDERS * rho + 1e-12)
    assert em.get_epsilon(1e-6) < pf.get_epsilon(1e-6)
    assert PLDAccountant().compose(ExponentialMechanismEvent(0.1), 100).get_epsilon(1e-6) <= em.get_epsilon(1e-6)


# ------------------------------------------------------------------------------------------------ (eps, delta)
def _kov_composed_delta(eps: float, delta: float, k: int, target: float) -> float:
    """Exact delta of k-fold (eps, delta)-DP (the KOV15 pair): infinite loss w.p. 1 - (1 - delta)^k, else the
    binomial loss (k - 2j) eps of k randomized responses."""
    p = math.exp(eps) / (1 + math.exp(eps))
    j = np.arange(k + 1)
    w = stats.binom.pmf(j, k, 1 - p)
    loss = (k - 2 * j) * eps
    rr = float(np.sum(w * np.clip(1 - np.exp(target - loss), 0, None)))
    keep = (1 - delta) ** k
    return 1 - keep + keep * rr


@pytest.mark.parametrize("eps,delta,k", [(0.5, 1e-6, 1), (0.5, 1e-6, 10), (0.1, 1e-7, 50), (1.0, 0.0, 5)])
def test_epsilon_delta_pld_is_the_optimal_composition(eps, delta, k):
    acc = PLDAccountant().compose(EpsilonDeltaEvent(eps, delta), k)
    for target in (0.0, 0.5 * k * eps, 0.9 * k * eps):
        exact = _kov_composed_delta(eps, delta, k, target)
        got = acc.get_delta(target)
        assert exact - 1e-12 <= got <= exact * (1 + 5e-3) + 1e-12  # pessimistic, within the discretization
    if k == 1 and delta > 0:
        assert acc.get_epsilon(delta * 1.001) <= eps + 1e-6


def test_epsilon_delta_with_delta_is_refused_by_rdp_and_composed_by_pld():
    with pytest.raises(UnsupportedEventError, match="EpsilonDeltaEvent.*infinite Renyi divergence.*PLD"):
        RDPAccountant().compose(EpsilonDeltaEvent(1.0, 1e-6))
    assert RDPAccountant().supports(EpsilonDeltaEvent(1.0, 0.0))
    # below the deltas spent, no epsilon holds; above, the analytic bound is basic composition
    acc = PLDAccountant().compose(EpsilonDeltaEvent(1.0, 1e-6), 10).compose(GaussianEvent(2.0), 10)
    assert acc.get_epsilon(5e-6) == math.inf
    assert math.isfinite(acc.get_epsilon(1e-5))
    assert acc.get_epsilon(1e-5) <= 10 + RDPAccountant().compose(GaussianEvent(2.0), 10).get_epsilon(1e-9)


def test_poisson_sampled_epsilon_delta():
    acc = PLDAccountant().compose(PoissonSampledEvent(0.1, EpsilonDeltaEvent(1.0, 1e-6)), 20)
    unsampled = PLDAccountant().compose(EpsilonDeltaEvent(1.0, 1e-6), 20)
    assert acc.get_epsilon(1e-5) < unsampled.get_epsilon(1e-5)


# ------------------------------------------------------------------------------------------------ mixture of Gaussians
def test_mixture_of_gaussians_value_of_dp_accounting():
    # dp_accounting's test (its expected value, computed by its own PLD): epsilon = 17.193115 at delta = 1e-6
    acc = PLDAccountant()
    acc.compose(MixtureOfGaussiansEvent(1.0, (0.0, 1.0, 2.0), (0.2, 0.6, 0.2)), 3)
    acc.compose(MixtureOfGaussiansEvent(2.0, (0.0, 2.0, 3.0), (0.33, 0.34, 0.33)), 2)
    assert acc.get_epsilon(1e-6) == pytest.approx(17.193115, abs=2e-3)


def test_mixture_of_gaussians_single_profile_by_integration():
    s, cs, ps = 1.0, (0.0, 1.0, 2.0), (0.5, 0.3, 0.2)
    acc = PLDAccountant().compose(MixtureOfGaussiansEvent(s, cs, ps))

    def mix(z):
        return sum(p * stats.norm.pdf(z, c, s) for c, p in zip(cs, ps, strict=True))

    def base(z):
        return stats.norm.pdf(z, 0, s)

    for eps in (0.0, 0.5, 1.5):
        exact = max(_hockey_stick(mix, base, eps, -30, 30), _hockey_stick(base, mix, eps, -30, 30))
        assert acc.get_delta(eps) == pytest.approx(exact, rel=2e-3, abs=1e-10)
    # RDP: the Jensen bound is an upper bound of the exact divergence
    rdp = RDPAccountant(orders=[2.0, 4.0]).compose(MixtureOfGaussiansEvent(s, cs, ps)).get_rdp()
    for order, bound in zip((2.0, 4.0), rdp, strict=True):
        remove, _ = integrate.quad(lambda z, o=order: mix(z) ** o * base(z) ** (1 - o), -12, 14)
        add, _ = integrate.quad(lambda z, o=order: base(z) ** o * mix(z) ** (1 - o), -12, 14)
        assert max(math.log(remove), math.log(add)) / (order - 1) <= bound + 1e-9


def test_mixture_of_gaussians_is_add_remove_only():
    with pytest.raises(UnsupportedEventError, match="replace_special"):
        PLDAccountant("replace_one").compose(MixtureOfGaussiansEvent(1.0, (1.0,), (1.0,)))
    single = PLDAccountant().compose(MixtureOfGaussiansEvent(2.0, (1.0,), (1.0,)), 5).get_epsilon(1e-6)
    assert single == pytest.approx(PLDAccountant().compose(GaussianEvent(2.0), 5).get_epsilon(1e-6), abs=1e-3)


# ------------------------------------------------------------------------------------------------ replace-one Poisson
def _replace_pair_pdfs(q: float, sigma: float):
    return (
        lambda z: (1 - q) * stats.norm.pdf(z, 0, sigma) + q * stats.norm.pdf(z, 0.5, sigma),
        lambda z: (1 - q) * stats.norm.pdf(z, 0, sigma) + q * stats.norm.pdf(z, -0.5, sigma),
    )


@pytest.mark.parametrize("q,sigma", [(0.1, 0.5), (0.3, 1.0), (0.01, 0.3)])
def test_replace_one_poisson_gaussian_profile_by_integration(q, sigma):
    acc = PLDAccountant("replace_one").compose(PoissonSampledEvent(q, GaussianEvent(sigma)))
    p, qd = _replace_pair_pdfs(q, sigma)
    for eps in (0.0, 0.2, 1.0):
        exact = _hockey_stick(p, qd, eps, -40 * sigma - 1, 40 * sigma + 1)
        assert acc.get_delta(eps) == pytest.approx(exact, rel=2e-3, abs=1e-10)


def test_replace_one_poisson_gaussian_rdp_bound_and_relations():
    q, sigma = 0.05, 0.6
    orders = np.array([2.0, 3.0, 5.5])
    rdp = RDPAccountant("replace_one", orders=orders).compose(PoissonSampledEvent(q, GaussianEvent(sigma))).get_rdp()
    p, qd = _replace_pair_pdfs(q, sigma)
    for order, bound in zip(orders, rdp, strict=True):
        value, _ = integrate.quad(lambda z, o=order: p(z) ** o * qd(z) ** (1 - o), -8, 8)
        assert math.log(value) / (order - 1) <= bound + 1e-9  # a sound upper bound
    event = PoissonSampledEvent(0.01, GaussianEvent(0.5))  # DP-SGD with sigma = 1 under replace-one
    pld = PLDAccountant("replace_one").compose(event, 1000).get_epsilon(1e-5)
    assert pld <= RDPAccountant("replace_one").compose(event, 1000).get_epsilon(1e-5)
    # replacing is removing then adding: never cheaper than add/remove with the same clipping
    assert pld >= PLDAccountant().compose(PoissonSampledEvent(0.01, GaussianEvent(1.0)), 1000).get_epsilon(1e-5)
    # q = 1: the plain Gaussian
    full = PLDAccountant("replace_one").compose(PoissonSampledEvent(1.0, GaussianEvent(0.5)), 10).get_epsilon(1e-5)
    assert full == pytest.approx(PLDAccountant("replace_one").compose(GaussianEvent(0.5), 10).get_epsilon(1e-5))


# ---------------------------------------------------------------------------------------------- with replacement
def test_sampling_with_replacement():
    # one draw from one record: the record is always in, once
    one = SampledWithReplacementEvent(1, 1, GaussianEvent(1.0))
    for kind in ("pld", "rdp"):
        got = create_accountant(kind, neighbouring_relation="replace_one").compose(one, 5).get_epsilon(1e-5)
        want = create_accountant(kind, neighbouring_relation="replace_one").compose(GaussianEvent(1.0), 5)
        assert got == pytest.approx(want.get_epsilon(1e-5), rel=1e-6)
    # more records: each is drawn less often
    eps = [
        PLDAccountant("replace_one").compose(SampledWithReplacementEvent(n, 10, PureDpEvent(1.0)), 50).get_epsilon(1e-6)
        for n in (20, 200, 2000)
    ]
    assert eps[0] > eps[1] > eps[2]
    rdp = RDPAccountant("replace_one").compose(SampledWithReplacementEvent(200, 10, PureDpEvent(1.0)), 50)
    assert eps[1] <= rdp.get_epsilon(1e-6) * (1 + 1e-9)
    with pytest.raises(UnsupportedEventError, match="replace-one"):
        PLDAccountant().compose(SampledWithReplacementEvent(100, 10, GaussianEvent(1.0)))


# ------------------------------------------------------------------------------------------------ tree aggregation
def test_tree_aggregation_is_a_gaussian_with_depth_times_the_sensitivity_squared():
    tree = SingleEpochTreeAggregationEvent(2.0, (1000, 10))
    assert tree.depth == 10  # ceil(log2(1001))
    for kind in ("pld", "rdp"):
        got = create_accountant(kind, neighbouring_relation="replace_special").compose(tree, 3).get_epsilon(1e-6)
        want = create_accountant(kind, neighbouring_relation="replace_special").compose(
            GaussianEvent(2.0 / math.sqrt(10)), 3
        )
        assert got == pytest.approx(want.get_epsilon(1e-6), rel=1e-9)
        with pytest.raises(UnsupportedEventError, match="replace_special"):
            create_accountant(kind).compose(tree)


@pytest.mark.parametrize("sigma,bound", [(1.13, 19.74), (8.83, 2.04)])
def test_tree_aggregation_values_of_dp_accounting(sigma, bound):
    # dp_accounting's StackOverflow setting: one tree of 1600 steps, delta = 1e-6, epsilon below these values
    orders = [1 + x / 10 for x in range(1, 100)] + list(range(12, 64))
    acc = RDPAccountant("replace_special", orders=orders).compose(SingleEpochTreeAggregationEvent(sigma, (1600,)))
    assert acc.get_epsilon(1e-6) < bound


# ------------------------------------------------------------------------------------------------ repeat and select
@pytest.mark.parametrize("mean,shape", [(1000, 0.0), (1000, 1.0), (1000, 0.5), (100, 2.0), (1000, 5.0)])
def test_repeat_and_select_pure_case(mean, shape):
    # Papernot-Steinke 2022, Corollary 3: an eps-DP run repeated is eps (2 + shape)-DP (order -> infinity)
    eps = 1.0
    acc = RDPAccountant(orders=[1e10]).compose(RepeatAndSelectEvent(LaplaceEvent(1 / eps), mean, shape))
    assert acc.get_rdp()[0] == pytest.approx(eps * (2 + shape), rel=1e-6)


@pytest.mark.parametrize("rho,gamma,shape", [(0.01, 0.01, 0.0), (1.0, 0.1, 0.5), (1.0, 0.1, 1.0), (10, 0.99, 5.0)])
def test_repeat_and_select_gaussian_corollary_4(rho, gamma, shape):
    if shape == 0:
        mean = (1 - gamma) / (gamma * math.log(1 / gamma))
    else:
        mean = shape * (1 - gamma) / (gamma * (1 - gamma**shape))
    rho = min(rho, -math.log(gamma))
    orders = sorted(
        {1.1, 2.0, math.sqrt(-math.log(gamma) / rho), 1 + math.sqrt(math.log(mean) / rho), 3.0, 5.0, 10.0, 100.0}
        - {1.0}
    )
    orders = [o for o in orders if o > 1]
    acc = RDPAccountant(orders=orders).compose(RepeatAndSelectEvent(GaussianEvent(math.sqrt(0.5 / rho)), mean, shape))
    for order, got in zip(orders, acc.get_rdp(), strict=True):
        const = 2 * (1 + shape) * math.sqrt(-rho * math.log(gamma)) - shape * rho
        if order <= 1 + math.sqrt(math.log(mean) / rho):
            want = 2 * math.sqrt(rho * math.log(mean)) + const
        else:
            want = rho * (order - 1) + math.log(mean) / (order - 1) + const
        assert got == pytest.approx(want, rel=1e-6, abs=1e-9), order


def test_repeat_and_select_poisson_pure():
    eps, mean = 1.0, 10.0
    alpha = 1 + 1 / math.expm1(eps)
    acc = RDPAccountant(orders=[alpha, 1e10, 1e100]).compose(
        RepeatAndSelectEvent(LaplaceEvent(1 / eps), mean, math.inf)
    )
    want = (
        eps
        + math.log1p(math.expm1((1 - 2 * alpha) * eps) * (alpha - 1) / (2 * alpha - 1)) / (alpha - 1)
        + math.log(mean) * math.expm1(eps)
    )
    assert acc.get_rdp()[0] == pytest.approx(want, rel=1e-3)


def test_repeat_and_select_with_one_run_changes_nothing():
    base = RDPAccountant().compose(GaussianEvent(1.0))
    again = RDPAccountant().compose(RepeatAndSelectEvent(GaussianEvent(1.0), 1.0, 1.0))
    np.testing.assert_allclose(again.get_rdp(), base.get_rdp(), rtol=1e-9)


# ------------------------------------------------------------------------------------------------ PLD <= RDP
@pytest.mark.parametrize(
    "relation,event",
    [
        ("add_or_remove", DiscreteGaussianEvent(1.5, 1)),
        ("add_or_remove", DiscreteLaplaceEvent(0.4, 2)),
        ("add_or_remove", PermuteAndFlipEvent(0.3)),
        ("add_or_remove", MixtureOfGaussiansEvent(1.0, (0.0, 1.0), (0.9, 0.1))),
        ("add_or_remove", PoissonSampledEvent(0.05, DiscreteLaplaceEvent(1.0, 1))),
        ("replace_special", SingleEpochTreeAggregationEvent(3.0, (100,))),
        ("replace_special", PoissonSampledEvent(0.02, GaussianEvent(1.0))),
        ("replace_one", PoissonSampledEvent(0.02, GaussianEvent(0.5))),
    ],
    ids=lambda x: x if isinstance(x, str) else type(x).__name__,
)
def test_pld_never_above_rdp_for_new_events(relation, event):
    pld = PLDAccountant(relation).compose(event, 40).get_epsilon(1e-6)
    rdp = RDPAccountant(relation).compose(event, 40).get_epsilon(1e-6)
    assert pld <= rdp * (1 + 1e-9)


def test_replace_special_matches_add_remove_for_additive_mechanisms():
    event = PoissonSampledEvent(0.02, GaussianEvent(1.0))
    for kind in ("pld", "rdp"):
        special_ = create_accountant(kind, neighbouring_relation="replace_special").compose(event, 100)
        add_remove = create_accountant(kind).compose(event, 100)
        assert special_.get_epsilon(1e-6) == pytest.approx(add_remove.get_epsilon(1e-6))


# ------------------------------------------------------------------------------------------------ dp_accounting live
@pytest.mark.slow
@pytest.mark.anchors
def test_new_events_against_dp_accounting():
    dpa = pytest.importorskip("dp_accounting")
    from dp_accounting import dp_event as de
    from dp_accounting.pld import privacy_loss_distribution as pld_lib

    rel = dpa.NeighboringRelation
    # zCDP, repeat-and-select, tree aggregation: RDP on the same orders
    cases = [
        (de.ZCDpEvent(0.3, 0.1), ZCDPEvent(0.3, 0.1), rel.ADD_OR_REMOVE_ONE, "add_or_remove"),
        (
            de.RepeatAndSelectDpEvent(de.GaussianDpEvent(2.0), 10.0, 1.0),
            RepeatAndSelectEvent(GaussianEvent(2.0), 10.0, 1.0),
            rel.ADD_OR_REMOVE_ONE,
            "add_or_remove",
        ),
        (
            de.SingleEpochTreeAggregationDpEvent(1.5, [500]),
            SingleEpochTreeAggregationEvent(1.5, (500,)),
            rel.REPLACE_SPECIAL,
            "replace_special",
        ),
    ]
    for theirs, ours, their_rel, our_rel in cases:
        ref = dpa.rdp.RdpAccountant(orders=DP_ACCOUNTING_ORDERS, neighboring_relation=their_rel)
        ref.compose(theirs, 5)
        got = RDPAccountant(our_rel, orders=DP_ACCOUNTING_ORDERS).compose(ours, 5)
        assert got.get_epsilon(1e-6) == pytest.approx(ref.get_epsilon(1e-6), rel=1e-6), ours

    # discrete Laplace, mixture of Gaussians: PLD
    ref = dpa.pld.PLDAccountant()
    ref.compose(de.DiscreteLaplaceDpEvent(0.4, 3), 20)
    got = PLDAccountant().compose(DiscreteLaplaceEvent(0.4, 3), 20).get_epsilon(1e-6)
    assert got == pytest.approx(ref.get_epsilon(1e-6), abs=5e-3)
    ref = dpa.pld.PLDAccountant()
    ref.compose(de.MixtureOfGaussiansDpEvent(1.5, [0.0, 1.0, 2.0], [0.7, 0.2, 0.1]), 10)
    got = PLDAccountant().compose(MixtureOfGaussiansEvent(1.5, (0.0, 1.0, 2.0), (0.7, 0.2, 0.1)), 10)
    assert got.get_epsilon(1e-6) == pytest.approx(ref.get_epsilon(1e-6), abs=5e-3)

    # discrete Gaussian and (eps, delta): dp_accounting's PLD constructors
    dg = pld_lib.from_discrete_gaussian_mechanism(1.2, sensitivity=2).self_compose(5)
    got = PLDAccountant().compose(DiscreteGaussianEvent(1.2, 2), 5).get_epsilon(1e-6)
    assert got == pytest.approx(dg.get_epsilon_for_delta(1e-6), abs=5e-3)
    params = dpa.pld.common.DifferentialPrivacyParameters(0.5, 1e-7)
    ed = pld_lib.from_privacy_parameters(params).self_compose(10)
    got = PLDAccountant().compose(EpsilonDeltaEvent(0.5, 1e-7), 10).get_epsilon(1e-5)
    assert got == pytest.approx(ed.get_epsilon_for_delta(1e-5), abs=5e-3)

    # Poisson-subsampled Gaussian under replace-one: dp_accounting's noise multiplier is relative to the
    # add/remove sensitivity C, dpkit's to the replace-one sensitivity 2C.
    ref = dpa.pld.PLDAccountant(neighboring_relation=rel.REPLACE_ONE)
    ref.compose(de.PoissonSampledDpEvent(0.02, de.GaussianDpEvent(1.0)), 300)
    got = PLDAccountant("replace_one").compose(PoissonSampledEvent(0.02, GaussianEvent(0.5)), 300)
    assert got.get_epsilon(1e-6) == pytest.approx(ref.get_epsilon(1e-6), abs=5e-3)
