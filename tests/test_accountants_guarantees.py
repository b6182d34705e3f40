"""Other ways to state a run's guarantee: mu-GDP, the privacy profile and trade-off curve (tables and plots), and
group privacy (pure, approximate, RDP and PLD bounds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from dpkit.accountants import (
    PLDAccountant,
    RDPAccountant,
    UnsupportedEventError,
    create_accountant,
    gdp_mu,
    group_epsilon,
    group_event,
    group_privacy,
    plot_privacy_profile,
    plot_tradeoff_curve,
    privacy_profile,
    tradeoff_curve,
)
from dpkit.accountants import events as ev
from dpkit.accountants.gdp import gdp_delta, pure_dp_to_gdp_mu


# ------------------------------------------------------------------------------------------------ GDP
def test_gdp_of_gaussians_is_exact():
    event = ev.dpsgd_event(2.0, 1.0, 9)  # q = 1: nine Gaussians with sigma 2
    g = gdp_mu(event)
    assert g.exact and g.mu == pytest.approx(1.5)
    acc = PLDAccountant().compose(ev.GaussianEvent(2.0), 9)
    for eps in (0.0, 1.0, 3.0):
        assert g.delta(eps) == pytest.approx(acc.get_delta(eps), rel=1e-3, abs=1e-12)
    assert g.epsilon(1e-5) == pytest.approx(acc.get_epsilon(1e-5), rel=1e-3)
    # heterogeneous: mu^2 adds up
    mixed = PLDAccountant().compose(ev.GaussianEvent(1.0)).compose(ev.GaussianEvent(0.5), 2)
    assert gdp_mu(mixed).mu == pytest.approx(math.sqrt(1 + 2 * 4))


@pytest.mark.parametrize("eps", [0.1, 1.0, 4.0])
def test_pure_dp_to_gdp_is_the_smallest_mu(eps):
    mu = pure_dp_to_gdp_mu(eps)
    # At the symmetric point alpha* = 1 / (1 + e^eps) the Gaussian trade-off curve meets randomized response's.
    alpha = 1 / (1 + math.exp(eps))
    assert stats.norm.cdf(stats.norm.ppf(1 - alpha) - mu) == pytest.approx(alpha, rel=1e-9)
    # mu-GDP implies the (eps, delta_mu(eps)) profile; randomized response's delta(eps) = 0 must be... above it
    assert gdp_mu(ev.PureDpEvent(eps)).mu == pytest.approx(mu)
    for event in (ev.RandomizedResponseEvent(eps, 2), ev.ExponentialMechanismEvent(eps), ev.LaplaceEvent(1 / eps)):
        assert gdp_mu(event).mu == pytest.approx(mu)
    # a valid GDP statement: its profile lies above the exact one of randomized response
    acc = PLDAccountant().compose(ev.PureDpEvent(eps))
    for e in np.linspace(0, eps, 5):
        assert gdp_delta(mu, e) >= acc.get_delta(e) - 1e-6


def test_gdp_clt_against_pld_as_documented():
    # Bu-Dong-Long-Su's CLT is an approximation: close in its regime, not a bound elsewhere (numbers in gdp.py)
    close = ev.dpsgd_event(1.0, 0.01, 10_000)
    g = gdp_mu(close)
    assert not g.exact and g.mu == pytest.approx(0.01 * math.sqrt(10_000 * math.expm1(1.0)))
    acc = PLDAccountant().compose(close)
    for eps in (1.0, 3.0):
        assert g.delta(eps) == pytest.approx(acc.get_delta(eps), rel=0.03)
    few = ev.dpsgd_event(1.0, 0.01, 100)
    assert gdp_mu(few).delta(1.0) < 1e-6 * PLDAccountant().compose(few).get_delta(1.0)  # under-states the loss


def test_gdp_refuses_what_it_cannot_state():
    for event in (ev.ZCDPEvent(0.1), ev.EpsilonDeltaEvent(1.0, 1e-6), ev.MixtureOfGaussiansEvent(1.0, (1.0,), (1.0,))):
        with pytest.raises(UnsupportedEventError, match=type(event).__name__):
            gdp_mu(event)
    with pytest.raises(UnsupportedEventError, match="add/remove"):
        gdp_mu(PLDAccountant("replace_one").compose(ev.PoissonSampledEvent(0.1, ev.GaussianEvent(1.0))))
    with pytest.raises(TypeError, match="source"):
        gdp_mu("gaussian")
    assert gdp_mu(ev.dpsgd_event(0.0, 0.1, 3)).mu == math.inf


# ------------------------------------------------------------------------------------------------ profile, trade-off
def test_privacy_profile_table():
    acc = PLDAccountant().compose(ev.dpsgd_event(1.0, 0.01, 1000))
    table = privacy_profile(acc)
    assert list(table.columns) == ["epsilon", "delta"]
    assert np.all(np.diff(table["delta"]) <= 1e-15) and table["delta"].iloc[-1] < 1e-11
    at = privacy_profile(acc, [2.0, 0.5])
    assert at["epsilon"].tolist() == [0.5, 2.0]
    assert at["delta"].tolist() == [acc.get_delta(0.5), acc.get_delta(2.0)]


def test_tradeoff_curve_of_a_gaussian_is_close_to_the_exact_curve():
    mu = 1.0
    acc = PLDAccountant().compose(ev.GaussianEvent(1 / mu))
    table = tradeoff_curve(acc, epsilons=np.linspace(0, 8, 800))
    exact = stats.norm.cdf(stats.norm.ppf(1 - table["fpr"]) - mu)
    assert np.all(table["fnr"] <= exact + 1e-6)  # a valid lower bound on every test's FNR
    assert np.max(exact - table["fnr"]) < 0.01  # and a tight one on a fine grid
    assert table["fnr"].iloc[0] == pytest.approx(1.0) and table["fnr"].iloc[-1] == 0.0
    assert np.all(np.diff(table["fnr"]) <= 1e-12)


def test_tradeoff_curve_of_pure_dp():
    eps = 1.0
    acc = PLDAccountant().compose(ev.PureDpEvent(eps))
    table = tradeoff_curve(acc, fprs=[0.0, 0.1, 0.5], epsilons=np.linspace(0, 2, 201))
    want = np.array([max(0, 1 - math.exp(eps) * a, math.exp(-eps) * (1 - a)) for a in (0.0, 0.1, 0.5)])
    assert np.all(table["fnr"] <= want + 1e-9)
    np.testing.assert_allclose(table["fnr"], want, atol=1e-6)


def test_plots(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = RDPAccountant().compose(ev.dpsgd_event(1.0, 0.01, 500))
    ax = plot_privacy_profile(acc)
    assert ax.get_yscale() == "log" and len(ax.lines) == 1
    fig, axes = plt.subplots(1, 2)
    assert plot_tradeoff_curve(acc, ax=axes[1], label="DP-SGD") is axes[1]
    assert len(axes[1].lines) == 2  # the curve and the no-privacy diagonal
    fig.savefig(tmp_path / "tradeoff.png")
    assert (tmp_path / "tradeoff.png").stat().st_size > 0
    plt.close("all")


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda: privacy_profile("acc"), "accountant"),
        (lambda: privacy_profile(PLDAccountant(), [-1.0]), "epsilons"),
        (lambda: privacy_profile(PLDAccountant(), [math.nan]), "epsilons"),
        (lambda: privacy_profile(PLDAccountant(), []), "epsilons"),
        (lambda: tradeoff_curve(PLDAccountant(), fprs=[1.5]), "fprs"),
        (lambda: tradeoff_curve(PLDAccountant(), fprs="x"), "fprs"),
    ],
)
def test_profile_bad_input(call, name):
    with pytest.raises((TypeError, ValueError), match=name):
        call()


# ------------------------------------------------------------------------------------------------ group privacy
def test_group_events_closed_forms():
    assert group_event(ev.GaussianEvent(3.0), 3) == ev.GaussianEvent(1.0)
    assert group_event(ev.LaplaceEvent(2.0), 4) == ev.LaplaceEvent(0.5)
    assert group_event(ev.RandomizedResponseEvent(0.5, 4), 2) == ev.PureDpEvent(1.0)
    assert group_event(ev.ZCDPEvent(0.1), 3).rho == pytest.approx(0.9)
    ed = group_event(ev.EpsilonDeltaEvent(1.0, 1e-6), 3)
    assert ed.epsilon == 3.0 and ed.delta == pytest.approx(1e-6 * (1 + math.e + math.e**2))
    assert group_event(ev.PoissonSampledEvent(0.1, ev.GaussianEvent(1.0)), 2) == ev.GroupEvent(
        ev.PoissonSampledEvent(0.1, ev.GaussianEvent(1.0)), 2
    )
    assert group_event(ev.GaussianEvent(1.0), 1) == ev.GaussianEvent(1.0)
    for event, why in [
        (ev.MixtureOfGaussiansEvent(1.0, (1.0,), (1.0,)), "participate"),
        (ev.ZCDPEvent(0.1, 0.5), "xi"),
    ]:
        with pytest.raises(UnsupportedEventError, match=why):
            group_event(event, 2)


def test_group_privacy_bounds():
    # pure DP: k epsilon
    acc = PLDAccountant().compose(ev.PureDpEvent(0.5), 4)
    assert group_privacy(acc, 3).get_epsilon(1e-12) == pytest.approx(6.0, abs=1e-6)
    # zCDP in RDP: k^2 rho
    rdp = RDPAccountant().compose(ev.ZCDPEvent(0.05), 10)
    np.testing.assert_allclose(group_privacy(rdp, 2).get_rdp(), 4 * rdp.get_rdp())
    # Gaussian: exactly a Gaussian with sigma / k, whatever the accountant
    for kind in ("pld", "rdp"):
        acc = create_accountant(kind).compose(ev.GaussianEvent(4.0), 5)
        want = create_accountant(kind).compose(ev.GaussianEvent(2.0), 5).get_epsilon(1e-6)
        assert group_epsilon(acc, 2, 1e-6) == pytest.approx(want)
    # the original accountant is unchanged; group size 1 is the run itself
    acc = PLDAccountant().compose(ev.dpsgd_event(1.0, 0.01, 300))
    before = acc.get_epsilon(1e-5)
    assert group_epsilon(acc, 1, 1e-5) == before
    eps2 = group_epsilon(acc, 2, 1e-5)
    assert before < eps2 < math.inf and acc.get_epsilon(1e-5) == before


def test_group_of_poisson_sampled_gaussians_is_sound():
    # Compare with a brute-force bound: a group of 2 whose sampling is revealed is at least as private as the
    # unsampled Gaussian with sigma / 2 and at most as private as one record.
    acc = PLDAccountant().compose(ev.dpsgd_event(1.0, 0.05, 200))
    eps1 = acc.get_epsilon(1e-5)
    mixture = group_privacy(acc, 2).get_epsilon(1e-5)
    chained = group_epsilon(acc, 2, 1e-5)
    unsampled = PLDAccountant().compose(ev.GaussianEvent(0.5), 200).get_epsilon(1e-5)
    assert eps1 < chained <= mixture < unsampled or eps1 < mixture <= chained < unsampled
    # the approximate-DP chain: (2 e, d(e) (1 + e^e)) holds at the epsilon it reports
    e = chained / 2
    assert acc.get_delta(e) * (1 + math.exp(e)) <= 1e-5 * (1 + 1e-9)
    with pytest.raises(UnsupportedEventError, match="replace"):
        group_privacy(PLDAccountant("replace_one").compose(ev.PoissonSampledEvent(0.1, ev.GaussianEvent(1.0))), 2)


@pytest.mark.parametrize("kind", ["rdp", "pld"])
def test_group_event_refusals_name_the_reason(kind):
    # both accountants analyse a GroupEvent as the mixture over the group's sampled records: that needs a
    # Poisson-sampled sub-event and add/remove (or replace-special) neighbours
    sampled = ev.GroupEvent(ev.PoissonSampledEvent(0.1, ev.GaussianEvent(1.0)), 2)
    with pytest.raises(UnsupportedEventError, match="Poisson-sampled events only"):
        create_accountant(kind).compose(ev.GroupEvent(ev.GaussianEvent(1.0), 2))
    with pytest.raises(UnsupportedEventError, match="under add/remove"):
        create_accountant(kind, neighbouring_relation="replace_one").compose(sampled)
    assert create_accountant(kind, neighbouring_relation="replace_special").compose(sampled).get_epsilon(1e-5) < 10
