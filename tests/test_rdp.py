"""RDP accountant tests: closed forms, numerical integration, cross-checks vs Opacus and dp_accounting."""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import pytest
from scipy import integrate
from scipy.special import logsumexp

import dpkit.accountants.rdp_analysis as ra
from dpkit.accountants.accountant import create_accountant
from dpkit.accountants.errors import UnsupportedEventError
from dpkit.accountants.events import (
    ComposedEvent,
    GaussianEvent,
    LaplaceEvent,
    NonPrivateEvent,
    NoOpEvent,
    PoissonSampledEvent,
    PureDpEvent,
    RandomizedResponseEvent,
    SampledWithoutReplacementEvent,
    SelfComposedEvent,
    dpsgd_event,
)
from dpkit.accountants.rdp import RDPAccountant
from dpkit.accountants.rdp_analysis import (
    DEFAULT_ORDERS,
    randomized_response_pair,
    rdp_discrete,
    rdp_gaussian,
    rdp_laplace,
    rdp_poisson_gaussian,
    rdp_sampled_without_replacement_gaussian,
    rdp_to_delta,
    rdp_to_epsilon,
)

OPACUS_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
DP_ACCOUNTING_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(11, 64)) + [128, 256, 512, 1024]


# ----------------------------------------------------------------------------------------------- orders
def test_default_orders_superset_of_anchor_grids():
    assert len(DEFAULT_ORDERS) == 99 + 53 + 11
    assert np.all(np.diff(DEFAULT_ORDERS) > 0)
    for grid in (OPACUS_ORDERS, DP_ACCOUNTING_ORDERS):
        assert np.all(np.isin(np.array(grid, float), DEFAULT_ORDERS))


# ----------------------------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("sigma", [0.3, 1.0, 4.5])
def test_gaussian_closed_form_and_q_one(sigma):
    expected = DEFAULT_ORDERS / (2 * sigma**2)
    np.testing.assert_allclose(rdp_gaussian(sigma), expected, rtol=1e-15)
    np.testing.assert_allclose(rdp_poisson_gaussian(1.0, sigma), expected, rtol=1e-15)


@pytest.mark.parametrize("q,sigma", [(0.1, 0.6), (0.01, 1.0), (0.3, 2.0), (0.7, 0.8), (1e-4, 5.0)])
def test_integer_orders_through_fractional_series_agree(q, sigma):
    alphas = np.array([2.0, 3.0, 5.0, 10.0, 17.0])
    log_a_series = ra._log_a_series(q, sigma, alphas)
    log_a_int = np.logaddexp(0.0, ra._log_a_minus_1_integer(q, sigma, alphas))
    np.testing.assert_allclose(log_a_series / (alphas - 1), log_a_int / (alphas - 1), rtol=1e-9)


def _log_a_by_quadrature(q, sigma, alpha):
    """log A_alpha = log E_{z~N(0,s^2)}[((1-q) + q exp((2z-1)/(2s^2)))^alpha] by adaptive quadrature."""
    s2 = sigma * sigma

    def log_integrand(z):
        log_ratio = (2 * z - 1) / (2 * s2)
        log_mix = np.logaddexp(math.log1p(-q), math.log(q) + log_ratio)
        return -z * z / (2 * s2) - 0.5 * math.log(2 * math.pi * s2) + alpha * log_mix

    # locate the peak on a grid, integrate exp(log f - peak) over a range holding all but ~e^-800 of the mass
    grid = np.linspace(-20 * sigma, alpha + 20 * sigma, 4001)
    values = np.array([log_integrand(z) for z in grid])
    peak, mode = float(values.max()), float(grid[values.argmax()])
    lo, hi = -40 * sigma - 1, alpha + 40 * sigma + 1
    z0 = s2 * math.log(1 / q - 1) + 0.5
    pts = sorted({p for p in (0.0, 0.5, 1.0, z0, float(alpha), mode) if lo < p < hi})
    total, _ = integrate.quad(
        lambda z: math.exp(log_integrand(z) - peak), lo, hi, points=pts, epsabs=0.0, epsrel=1e-13, limit=1000
    )
    return peak + math.log(total)


@pytest.mark.parametrize(
    "q,sigma,alpha",
    [
        (0.01, 1.0, 2.0),
        (0.1, 0.6, 5.0),
        (0.2, 2.0, 3.0),
        (0.1, 0.6, 1.1),
        (0.1, 0.6, 1.5),
        (0.2, 2.0, 1.5),
        (0.05, 0.8, 7.7),
        (0.5, 1.0, 3.3),
        (0.001, 2.0, 10.9),
        (0.9, 3.0, 2.25),
    ],
)
def test_a_alpha_matches_numerical_integration(q, sigma, alpha):
    expected_log_a = _log_a_by_quadrature(q, sigma, alpha)
    log_a = rdp_poisson_gaussian(q, sigma, [alpha])[0] * (alpha - 1)
    # A_alpha itself to 1e-7 relative  <=>  log A_alpha to 1e-7 absolute
    assert abs(log_a - expected_log_a) <= 1e-7 * max(1.0, abs(expected_log_a))
    if alpha == int(alpha):
        via_int = np.logaddexp(0.0, ra._log_a_minus_1_integer(q, sigma, np.array([alpha])))[0]
        assert abs(via_int - expected_log_a) <= 1e-7 * max(1.0, abs(expected_log_a))


def test_series_is_an_upper_bound_and_tight():
    # the hard corner: orders just above 1 need ~3e4 terms; every order is evaluated, none is dropped
    orders = np.array([1.1, 1.2, 1.3, 1.4, 1.5, 1.6])
    rdp = rdp_poisson_gaussian(0.1, 0.6, orders)
    assert np.all(np.isfinite(rdp)) and np.all(np.diff(rdp) > 0)
    for a, r in zip(orders, rdp, strict=True):
        exact = _log_a_by_quadrature(0.1, 0.6, a) / (a - 1)
        assert exact * (1 - 1e-9) <= r <= exact * (1 + 1e-7)


def test_series_non_convergence_raises(monkeypatch):
    monkeypatch.setattr(ra, "_MAX_TERMS", 1000)
    with pytest.raises(RuntimeError, match=r"q=0\.1.*sigma=0\.6.*order=1\.1"):
        rdp_poisson_gaussian(0.1, 0.6, [1.1, 2.0, 3.5])


# ----------------------------------------------------------------------------------------------- Opacus
@functools.cache
def _opacus_rdp_one_step(q, sigma):
    from opacus.accountants.analysis.rdp import compute_rdp

    return np.array(compute_rdp(q=q, noise_multiplier=sigma, steps=1, orders=OPACUS_ORDERS))


def _opacus_epsilon(q, sigma, steps, delta):
    from opacus.accountants.analysis.rdp import get_privacy_spent

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eps, _ = get_privacy_spent(orders=OPACUS_ORDERS, rdp=steps * _opacus_rdp_one_step(q, sigma), delta=delta)
    return float(eps)


GRID = [(q, s, t) for q in (0.001, 0.01, 0.1) for s in (0.6, 1.0, 2.0) for t in (100, 1000, 10000)]


@pytest.mark.anchors
@pytest.mark.parametrize("q,sigma", sorted({(q, s) for q, s, _ in GRID}))
def test_rdp_matches_opacus_per_order(q, sigma):
    ours = rdp_poisson_gaussian(q, sigma, OPACUS_ORDERS)
    # Opacus truncates its fractional series at terms < e^-30 (absolute), so it is accurate to ~1e-8 relative
    # when A_alpha - 1 is tiny; ours carries a rigorous remainder and agrees with quadrature to ~1e-13.
    np.testing.assert_allclose(ours, _opacus_rdp_one_step(q, sigma), rtol=1e-6)


@pytest.mark.anchors
@pytest.mark.parametrize("q,sigma,steps", GRID)
def test_epsilon_matches_opacus(q, sigma, steps):
    delta = 1e-5
    expected = _opacus_epsilon(q, sigma, steps, delta)
    acc = RDPAccountant(orders=OPACUS_ORDERS).compose(dpsgd_event(sigma, q, steps))
    assert acc.get_epsilon(delta) == pytest.approx(expected, rel=1e-6)
    default = RDPAccountant().compose(dpsgd_event(sigma, q, steps)).get_epsilon(delta)
    assert default <= expected * (1 + 1e-9)


@pytest.mark.anchors
def test_hard_corner_matches_opacus_accountant():
    from opacus.accountants import RDPAccountant as OpacusRDP

    opacus = OpacusRDP()
    opacus.history = [(0.6, 0.1, 10000)]  # (noise_multiplier, sample_rate, num_steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = opacus.get_epsilon(delta=1e-5)
    assert expected == pytest.approx(487.4, abs=0.05)
    ours = RDPAccountant(orders=OPACUS_ORDERS).compose(dpsgd_event(0.6, 0.1, 10000))
    eps, order = ours.get_epsilon_and_order(1e-5)
    assert eps == pytest.approx(expected, rel=1e-6)
    assert order == pytest.approx(1.1)
    assert RDPAccountant().compose(dpsgd_event(0.6, 0.1, 10000)).get_epsilon(1e-5) <= expected * (1 + 1e-9)


# ---------------------------------------------------------------------------------------------- dp_accounting
# Conventions: dp_accounting's LaplaceDpEvent(noise_multiplier=b) has scale b x L1 sensitivity (eps = 1/b),
# i.e. our LaplaceEvent(scale=b). Its GaussianDpEvent(noise_multiplier) is relative to the sensitivity under
# the accountant's neighbouring relation, exactly like our GaussianEvent (so under REPLACE_ONE, sigma is
# relative to the replace-one sensitivity in both libraries, and the numbers map one to one);
# SampledWithoutReplacementDpEvent(n, m, event) is our SampledWithoutReplacementEvent(n, m, event).
# Its RandomizedResponseDpEvent(noise_parameter=p, k) reports a uniformly random bucket with probability p,
# i.e. our RandomizedResponseEvent(eps, k) with p = k / (e^eps + k - 1).
@pytest.mark.anchors
@pytest.mark.parametrize("scale", [0.3, 1.0, 5.0])
def test_laplace_matches_dp_accounting(scale):
    import dp_accounting
    from dp_accounting.rdp import rdp_privacy_accountant as rpa

    theirs = np.array([rpa._laplace_rdp(1 / scale, a) for a in DP_ACCOUNTING_ORDERS])
    np.testing.assert_allclose(rdp_laplace(scale, DP_ACCOUNTING_ORDERS), theirs, rtol=1e-12)
    acc = dp_accounting.rdp.RdpAccountant(orders=DP_ACCOUNTING_ORDERS)
    acc.compose(dp_accounting.LaplaceDpEvent(scale), 50)
    ours = RDPAccountant(orders=DP_ACCOUNTING_ORDERS).compose(LaplaceEvent(scale), 50)
    assert ours.get_epsilon(1e-6) == pytest.approx(acc.get_epsilon(1e-6), rel=1e-9)


@pytest.mark.anchors
@pytest.mark.parametrize("n,m,sigma", [(10000, 100, 1.0), (1000, 10, 0.7), (60000, 256, 1.1), (100, 50, 2.0)])
def test_sampled_without_replacement_vs_dp_accounting(n, m, sigma):
    import dp_accounting
    from dp_accounting.rdp import rdp_privacy_accountant as rpa

    orders = np.array(DP_ACCOUNTING_ORDERS, float)
    ours = rdp_sampled_without_replacement_gaussian(n, m, sigma, orders)
    theirs = rpa._compute_rdp_sample_wor_gaussian(m / n, sigma, orders)
    # dp_accounting takes, for alpha <= 256, the min with a forward-difference refinement (WBK19 Thm 27) and
    # applies Theorem 9 alone above 256; we take Theorem 9 capped by the plain Gaussian's alpha / (2 sigma^2).
    gauss = orders / (2 * sigma**2)
    high = orders > 256
    np.testing.assert_allclose(ours[high], np.minimum(theirs[high], gauss[high]), rtol=1e-9)
    assert np.all(ours <= gauss * (1 + 1e-12))
    if m / n <= 0.01:  # small sampling ratio: the refinement never wins, the bounds coincide at every order
        np.testing.assert_allclose(ours, theirs, rtol=1e-9)
        acc = dp_accounting.rdp.RdpAccountant(
            orders=DP_ACCOUNTING_ORDERS, neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE
        )
        acc.compose(dp_accounting.SampledWithoutReplacementDpEvent(n, m, dp_accounting.GaussianDpEvent(sigma)), 1000)
        mine = RDPAccountant("replace_one", orders=DP_ACCOUNTING_ORDERS).compose(
            SampledWithoutReplacementEvent(n, m, GaussianEvent(sigma)), 1000
        )
        assert mine.get_epsilon(1e-5) == pytest.approx(acc.get_epsilon(1e-5), rel=1e-9)


@pytest.mark.anchors
@pytest.mark.parametrize("eps,k", [(1.0, 2), (2.0, 5), (0.1, 3), (6.0, 2)])
def test_randomized_response_matches_dp_accounting_replace_one(eps, k):
    from dp_accounting.rdp import rdp_privacy_accountant as rpa

    p = k / (math.exp(eps) + k - 1)
    theirs = np.array([rpa._randomized_response_rdp_replace_one(p, k, a) for a in DP_ACCOUNTING_ORDERS])
    np.testing.assert_allclose(
        rdp_discrete(*randomized_response_pair(eps, k), DP_ACCOUNTING_ORDERS), theirs, rtol=1e-10
    )
    acc = RDPAccountant("replace_one", orders=DP_ACCOUNTING_ORDERS).compose(RandomizedResponseEvent(eps, k))
    np.testing.assert_allclose(acc.get_rdp(), np.minimum(theirs, eps), rtol=1e-10)


# ----------------------------------------------------------------------------------------------- pure DP, RR
@pytest.mark.parametrize("eps", [0.01, 0.5, 2.0, 10.0])
@pytest.mark.parametrize("count", [1, 10, 1000])
@pytest.mark.parametrize("delta", [1e-10, 1e-5, 0.1])
def test_pure_dp_composition_never_exceeds_basic_composition(eps, count, delta):
    acc = RDPAccountant().compose(PureDpEvent(eps), count)
    assert acc.get_epsilon(delta) <= count * eps * (1 + 1e-12)


@pytest.mark.parametrize("eps", [0.01, 1.0, 5.0, 30.0])
@pytest.mark.parametrize("k", [2, 3, 10])
def test_randomized_response_rdp_at_most_epsilon(eps, k):
    rdp = rdp_discrete(*randomized_response_pair(eps, k))
    assert np.all(rdp <= eps * (1 + 1e-12))
    assert np.all(np.diff(rdp) >= -1e-12)  # non-decreasing in alpha
    acc = RDPAccountant().compose(RandomizedResponseEvent(eps, k))
    assert np.all(acc.get_rdp() <= eps)


def test_pure_dp_is_binary_randomized_response():
    a = RDPAccountant().compose(PureDpEvent(1.3), 7).get_rdp()
    b = RDPAccountant().compose(RandomizedResponseEvent(1.3, 2), 7).get_rdp()
    np.testing.assert_array_equal(a, b)


def test_randomized_response_pair_probabilities():
    p, q = randomized_response_pair(math.log(3.0), 3)
    np.testing.assert_allclose(p, [0.6, 0.2, 0.2])
    np.testing.assert_allclose(q, [0.2, 0.6, 0.2])


def test_rdp_discrete_closed_form_binary():
    # binary RR with probability t of truth: D_alpha = log(t^a (1-t)^(1-a) + (1-t)^a t^(1-a)) / (a-1)
    t = 0.8
    orders = np.array([1.5, 2.0, 7.0])
    expected = np.log(t**orders * (1 - t) ** (1 - orders) + (1 - t) ** orders * t ** (1 - orders)) / (orders - 1)
    np.testing.assert_allclose(rdp_discrete([t, 1 - t], [1 - t, t], orders), expected, rtol=1e-13)
    assert np.all(np.isinf(rdp_discrete([0.5, 0.5], [1.0, 0.0], orders)))


@pytest.mark.parametrize("inner", [PureDpEvent(1.0), RandomizedResponseEvent(2.0, 4)])
def test_poisson_sampled_randomized_response(inner):
    q = 0.05
    base = RDPAccountant().compose(inner).get_rdp()
    sampled = RDPAccountant().compose(PoissonSampledEvent(q, inner)).get_rdp()
    assert np.all(sampled <= base) and np.all(sampled > 0)
    eps = inner.epsilon
    assert np.all(sampled <= math.log1p(q * math.expm1(eps)) + 1e-15)
    full = RDPAccountant().compose(PoissonSampledEvent(1.0, inner)).get_rdp()
    np.testing.assert_allclose(full, base, rtol=1e-12)
    # independent check of the mixture pair in both directions (remove: (mix, Q); add: (Q, mix))
    k = getattr(inner, "num_buckets", 2)
    p, qq = randomized_response_pair(eps, k)
    mix = (1 - q) * qq + q * p
    orders = RDPAccountant().orders

    def renyi(x, y):
        return logsumexp(np.outer(orders, np.log(x)) + np.outer(1 - orders, np.log(y)), axis=1) / (orders - 1)

    np.testing.assert_allclose(sampled, np.maximum(renyi(mix, qq), renyi(qq, mix)), rtol=1e-9)


# ----------------------------------------------------------------------------------------------- conversions
def test_rdp_to_epsilon_monotone_in_delta():
    rdp = 1000 * rdp_poisson_gaussian(0.01, 1.0)
    eps = [rdp_to_epsilon(DEFAULT_ORDERS, rdp, d)[0] for d in (1e-12, 1e-9, 1e-6, 1e-3, 0.1, 0.5)]
    assert all(a > b for a, b in zip(eps, eps[1:], strict=False))


def test_rdp_to_epsilon_formula_inf_and_clamp():
    orders = np.array([2.0, 5.0, 33.0])
    rdp = np.array([0.5, 1.0, 3.0])
    delta = 1e-5
    eps, order = rdp_to_epsilon(orders, rdp, delta)
    candidates = rdp + np.log1p(-1 / orders) - (math.log(delta) + np.log(orders)) / (orders - 1)
    assert eps == pytest.approx(candidates.min(), rel=1e-15)
    assert order == orders[np.argmin(candidates)]
    # infinite entries are skipped; all infinite -> inf
    eps2, order2 = rdp_to_epsilon(orders, [np.inf, 1.0, np.inf], delta)
    assert order2 == 5.0 and eps2 == pytest.approx(candidates[1])
    assert rdp_to_epsilon(orders, [np.inf] * 3, delta)[0] == math.inf
    # tiny RDP at large delta: never negative
    assert rdp_to_epsilon(orders, [1e-9, 1e-9, 1e-9], 0.5)[0] == 0.0


def test_rdp_to_delta_round_trip():
    rdp = 1000 * rdp_poisson_gaussian(0.01, 1.0)
    for delta in (1e-8, 1e-5, 1e-2):
        eps, _ = rdp_to_epsilon(DEFAULT_ORDERS, rdp, delta)
        d, _ = rdp_to_delta(DEFAULT_ORDERS, rdp, eps)
        assert d == pytest.approx(delta, rel=1e-6)
    assert rdp_to_delta(DEFAULT_ORDERS, rdp, 0.0)[0] <= 1.0
    assert rdp_to_delta([2.0, 3.0], [np.inf, np.inf], 1.0)[0] == 1.0
    assert rdp_to_delta([2.0, 3.0], [0.0, 0.0], 0.0)[0] == 0.0


def test_accountant_get_delta_consistent_with_get_epsilon():
    acc = RDPAccountant().compose(dpsgd_event(1.1, 0.02, 3000))
    eps = acc.get_epsilon(1e-6)
    assert acc.get_delta(eps) == pytest.approx(1e-6, rel=1e-6)
    d, order = acc.get_delta_and_order(eps)
    assert d == pytest.approx(1e-6, rel=1e-6) and order in DEFAULT_ORDERS


# ----------------------------------------------------------------------------------------------- accountant
def test_registry_options_and_state_round_trip():
    acc = create_accountant("rdp")
    assert isinstance(acc, RDPAccountant) and acc._options() == {}
    custom = RDPAccountant(orders=[1.5, 2, 8])
    assert custom._options() == {"orders": [1.5, 2.0, 8.0]}
    custom.compose(dpsgd_event(1.0, 0.01, 100)).compose(LaplaceEvent(10.0), 3)
    clone = RDPAccountant.from_state_dict(custom.state_dict())
    assert isinstance(clone, RDPAccountant) and list(clone.orders) == [1.5, 2.0, 8.0]
    assert clone.get_epsilon(1e-5) == custom.get_epsilon(1e-5)
    assert custom.fresh().get_epsilon(1e-5) == 0.0


def test_composition_is_additive_and_flattened():
    g = PoissonSampledEvent(0.01, GaussianEvent(1.0))
    a = RDPAccountant().compose(g, 30).compose(LaplaceEvent(2.0), 2)
    b = RDPAccountant().compose(
        ComposedEvent(
            (
                SelfComposedEvent(g, 10),
                SelfComposedEvent(g, 20),
                LaplaceEvent(2.0),
                LaplaceEvent(2.0),
                NoOpEvent(),
            )
        )
    )
    np.testing.assert_allclose(a.get_rdp(), b.get_rdp(), rtol=1e-14)
    np.testing.assert_allclose(a.get_rdp(), 30 * rdp_poisson_gaussian(0.01, 1.0) + 2 * rdp_laplace(2.0), rtol=1e-14)
    assert a.epsilon_if(g, 1e-5, count=10) > a.get_epsilon(1e-5)


def test_composed_gaussians_inside_sampling_equal_effective_gaussian():
    inner = ComposedEvent((GaussianEvent(2.0), SelfComposedEvent(GaussianEvent(4.0), 2)))
    sigma_eff = (2.0**-2 + 2 * 4.0**-2) ** -0.5
    a = RDPAccountant().compose(PoissonSampledEvent(0.03, inner)).get_rdp()
    np.testing.assert_allclose(a, rdp_poisson_gaussian(0.03, sigma_eff), rtol=1e-12)
    wor = RDPAccountant("replace_one").compose(SampledWithoutReplacementEvent(1000, 10, inner)).get_rdp()
    np.testing.assert_allclose(wor, rdp_sampled_without_replacement_gaussian(1000, 10, sigma_eff), rtol=1e-12)


def test_trivial_events():
    assert RDPAccountant().get_epsilon(1e-5) == 0.0
    assert RDPAccountant().compose(PoissonSampledEvent(0.5, NoOpEvent())).get_epsilon(1e-5) == 0.0
    wor0 = SampledWithoutReplacementEvent(10, 0, GaussianEvent(1.0))
    assert RDPAccountant("replace_one").compose(wor0, 5).get_epsilon(1e-5) == 0.0
    assert RDPAccountant().compose(NonPrivateEvent()).get_epsilon(1e-5) == math.inf
    assert RDPAccountant().compose(NonPrivateEvent()).get_delta(10.0) == 1.0
    assert RDPAccountant().compose(NonPrivateEvent()).get_epsilon_and_order(1e-5)[0] == math.inf
    np.testing.assert_array_equal(rdp_sampled_without_replacement_gaussian(10, 0, 1.0), 0.0)
    np.testing.assert_allclose(rdp_sampled_without_replacement_gaussian(10, 10, 1.5), rdp_gaussian(1.5))


def test_wor_fractional_orders_interpolate_integer_bounds():
    orders = np.array([1.5, 2.0, 2.5, 3.0, 7.25, 8.0])
    rdp = rdp_sampled_without_replacement_gaussian(5000, 50, 0.9, orders)
    assert rdp[0] == pytest.approx(rdp[1])  # (1, 2) uses the alpha = 2 value
    cgf = (orders - 1) * rdp
    assert cgf[2] == pytest.approx(0.5 * (cgf[1] + cgf[3]))
    k7 = 6 * rdp_sampled_without_replacement_gaussian(5000, 50, 0.9, [7.0])[0]
    assert cgf[4] == pytest.approx(0.75 * k7 + 0.25 * cgf[5])
    # sanity: never below the exact Poisson-subsampled (add/remove) value at the same rate
    assert np.all(rdp >= rdp_poisson_gaussian(0.01, 0.9, orders))


@pytest.mark.parametrize(
    "relation,event,needle",
    [
        ("replace_one", PoissonSampledEvent(0.1, LaplaceEvent(1.0)), "add_or_remove"),
        ("add_or_remove", SampledWithoutReplacementEvent(100, 10, GaussianEvent(1.0)), "replace-one"),
        ("add_or_remove", PoissonSampledEvent(0.1, LaplaceEvent(1.0)), "PLD"),
        ("add_or_remove", PoissonSampledEvent(0.1, PoissonSampledEvent(0.5, GaussianEvent(1.0))), "nested"),
        ("replace_one", SampledWithoutReplacementEvent(100, 10, LaplaceEvent(1.0)), "Gaussian"),
        (
            "replace_one",
            SampledWithoutReplacementEvent(100, 10, SampledWithoutReplacementEvent(10, 5, GaussianEvent(1.0))),
            "nested",
        ),
    ],
)
def test_unsupported_events_fail_closed(relation, event, needle):
    acc = RDPAccountant(relation).compose(GaussianEvent(3.0))
    assert not acc.supports(event)
    assert needle in acc.unsupported_reason(event)
    with pytest.raises(UnsupportedEventError, match=needle):
        acc.compose(event)
    assert len(acc.ledger.events) == 1  # nothing was recorded


def test_pure_dp_composition_is_the_order_infinity():
    acc = RDPAccountant().compose(PureDpEvent(0.2), 5)
    eps, order = acc.get_epsilon_and_order(1e-12)
    assert eps == pytest.approx(1.0) and order == math.inf
    assert acc.get_delta(1.0) == 0.0 and acc.get_delta_and_order(1.5) == (0.0, math.inf)
    assert 0 < acc.get_delta(0.5) < 1
    # Laplace and Poisson-subsampled pure DP have pure-DP epsilons 1/scale and log(1 + q (e^eps - 1))
    acc = RDPAccountant().compose(LaplaceEvent(4.0), 2).compose(PoissonSampledEvent(0.1, PureDpEvent(1.0)))
    pure = 0.5 + math.log1p(0.1 * math.expm1(1.0))
    assert acc.get_epsilon(1e-15) <= pure and acc.get_delta(pure) == 0.0
    # a Gaussian has no pure-DP epsilon: the RDP conversion decides, delta > 0 at every epsilon
    acc.compose(GaussianEvent(50.0))
    assert acc.get_delta(pure) > 0


@pytest.mark.parametrize("relation", ["add_or_remove", "replace_one"])
def test_basic_events_supported_under_both_relations(relation):
    acc = RDPAccountant(relation)
    for e in (GaussianEvent(1.0), LaplaceEvent(1.0), RandomizedResponseEvent(1.0, 3), PureDpEvent(0.5)):
        acc.compose(e)
    assert 0 < acc.get_epsilon(1e-5) < 0.5 + 1 + 1 + 10


# ----------------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    "call,exc,needle",
    [
        (lambda: rdp_poisson_gaussian(0.0, 1.0), ValueError, r"^q must"),
        (lambda: rdp_poisson_gaussian(1.5, 1.0), ValueError, r"^q must"),
        (lambda: rdp_poisson_gaussian(-0.1, 1.0), ValueError, r"^q must"),
        (lambda: rdp_poisson_gaussian(float("nan"), 1.0), ValueError, r"^q must"),
        (lambda: rdp_poisson_gaussian("0.1", 1.0), TypeError, r"^q must"),
        (lambda: rdp_poisson_gaussian(0.1, 0.0), ValueError, r"^noise_multiplier must"),
        (lambda: rdp_poisson_gaussian(0.1, -1.0), ValueError, r"^noise_multiplier must"),
        (lambda: rdp_poisson_gaussian(0.1, float("nan")), ValueError, r"^noise_multiplier must"),
        (lambda: rdp_poisson_gaussian(0.1, float("inf")), ValueError, r"^noise_multiplier must"),
        (lambda: rdp_gaussian(0.0), ValueError, r"^noise_multiplier must"),
        (lambda: rdp_gaussian(1.0, [1.0, 2.0]), ValueError, r"^orders must"),
        (lambda: rdp_gaussian(1.0, [0.5]), ValueError, r"^orders must"),
        (lambda: rdp_gaussian(1.0, [2.0, float("nan")]), ValueError, r"^orders must"),
        (lambda: rdp_gaussian(1.0, [2.0, float("inf")]), ValueError, r"^orders must"),
        (lambda: rdp_gaussian(1.0, []), ValueError, r"^orders must"),
        (lambda: rdp_gaussian(1.0, ["a"]), TypeError, r"^orders must"),
        (lambda: rdp_laplace(0.0), ValueError, r"^scale must"),
        (lambda: rdp_laplace(float("nan")), ValueError, r"^scale must"),
        (lambda: rdp_discrete([0.5, 0.5], [0.5, 0.6]), ValueError, r"^q_ must"),
        (lambda: rdp_discrete([1.5, -0.5], [0.5, 0.5]), ValueError, r"^p must"),
        (lambda: rdp_discrete([0.5, 0.5], [1.0]), ValueError, "same length"),
        (lambda: rdp_discrete([0.5, float("nan")], [0.5, 0.5]), ValueError, r"^p must"),
        (lambda: randomized_response_pair(-1.0, 2), ValueError, r"^epsilon must"),
        (lambda: randomized_response_pair(1.0, 1), ValueError, r"^num_buckets must"),
        (lambda: rdp_sampled_without_replacement_gaussian(10, 11, 1.0), ValueError, r"^m must"),
        (lambda: rdp_sampled_without_replacement_gaussian(0, 0, 1.0), ValueError, r"^n must"),
        (lambda: rdp_sampled_without_replacement_gaussian(10, -1, 1.0), ValueError, r"^m must"),
        (lambda: rdp_sampled_without_replacement_gaussian(10, 2.5, 1.0), TypeError, r"^m must"),
        (lambda: rdp_sampled_without_replacement_gaussian(10, 2, 0.0), ValueError, r"^noise_multiplier must"),
        (lambda: rdp_to_epsilon([2.0], [1.0], 0.0), ValueError, r"^delta must"),
        (lambda: rdp_to_epsilon([2.0], [1.0], 1.0), ValueError, r"^delta must"),
        (lambda: rdp_to_epsilon([2.0], [1.0], float("nan")), ValueError, r"^delta must"),
        (lambda: rdp_to_epsilon([2.0], [-1.0], 1e-5), ValueError, r"^rdp must"),
        (lambda: rdp_to_epsilon([2.0], [float("nan")], 1e-5), ValueError, r"^rdp must"),
        (lambda: rdp_to_epsilon([2.0, 3.0], [1.0], 1e-5), ValueError, r"^rdp must"),
        (lambda: rdp_to_delta([2.0], [1.0], -1.0), ValueError, r"^epsilon must"),
        (lambda: rdp_to_delta([2.0], [1.0], float("nan")), ValueError, r"^epsilon must"),
        (lambda: RDPAccountant(orders=[1.0, 2.0]), ValueError, r"^orders must"),
        (lambda: RDPAccountant(neighbouring_relation="swap"), ValueError, r"^neighbouring_relation must"),
        (lambda: RDPAccountant().compose(GaussianEvent(1.0), -1), ValueError, r"^count must"),
        (lambda: RDPAccountant().compose(GaussianEvent(1.0), 1.5), TypeError, r"^count must"),
        (lambda: RDPAccountant().get_epsilon(0.0), ValueError, r"^delta must"),
        (lambda: RDPAccountant().get_epsilon(1.5), ValueError, r"^delta must"),
        (lambda: RDPAccountant().get_epsilon_and_order(float("nan")), ValueError, r"^delta must"),
        (lambda: RDPAccountant().get_delta(-0.5), ValueError, r"^epsilon must"),
        (lambda: PoissonSampledEvent(0.0, GaussianEvent(1.0)), ValueError, r"^sampling_probability must"),
        (lambda: GaussianEvent(-1.0), ValueError, r"^noise_multiplier must"),
    ],
)
def test_bad_inputs_raise_naming_the_parameter(call, exc, needle):
    with pytest.raises(exc, match=needle):
        call()
