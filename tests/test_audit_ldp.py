"""The LDP auditor: bound validity, tightness, broken fixtures flagged, every dpkit protocol passes, anchors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dpkit.audits.ldp import audit, dpkit_protocol_names, resolve
from dpkit.audits.ldp.bounds import (
    choose_event,
    cp_lower,
    cp_upper,
    epsilon_lower_bound,
    ldp_auditor_epsilon,
    measurable_cap,
    side_level,
)
from dpkit.audits.ldp.broken import (
    ForgetfulPopulation,
    LeakyTrueBitOUE,
    LeakyTrueBitSUE,
    TooHonestGRR,
    WrongQOUE,
)
from dpkit.audits.ldp.targets import NUMERIC_NAMES, LongitudinalTarget, MultidimensionalTarget, ProtocolTarget
from dpkit.mechanisms.frequency_oracles import APPROXIMATE_ORACLES, GRR, OUE, SUE
from dpkit.mechanisms.longitudinal import LGRR, LOLOHA, LOSUE
from dpkit.mechanisms.multidimensional import RSFD


# ------------------------------------------------------------------------------------------------ bounds
def test_cap_matches_ldp_auditor_numbers():
    # LDP-Auditor's bound: eps_OPT = 12.0252 for N = 1e6 and 9.7226 for N = 1e5 (alpha = 0.01 -> quantiles at alpha/4)
    assert measurable_cap(10**6, beta=0.0025) == pytest.approx(12.0252, abs=1e-4)
    assert measurable_cap(10**5, beta=0.0025) == pytest.approx(9.7226, abs=1e-4)
    assert ldp_auditor_epsilon(10**6, 0, 10**6) == pytest.approx(12.0252, abs=1e-4)
    # cap ~ ln(N / ln(1/beta)); more tests (smaller beta) lower it; delta lowers it
    assert measurable_cap(10**6, beta=side_level(0.99, 5)) < measurable_cap(10**6, beta=side_level(0.99, 1))
    assert measurable_cap(10**6, beta=0.001, delta=0.5) == pytest.approx(
        math.log(0.001**1e-6 - 0.5) - math.log(1 - 0.001**1e-6), rel=1e-9
    )


def test_clopper_pearson_quantiles():
    from scipy.stats import beta as B

    assert float(cp_lower(30, 100, 0.01)) == pytest.approx(B.ppf(0.01, 30, 71), rel=1e-10)
    assert float(cp_upper(30, 100, 0.01)) == pytest.approx(B.ppf(0.99, 31, 70), rel=1e-10)
    assert float(cp_lower(0, 100, 0.01)) == 0.0 and float(cp_upper(100, 100, 0.01)) == 1.0
    # one-sided coverage: P(p < lower) <= beta exactly for the binomial, checked against the exact pmf
    from scipy.stats import binom

    n, p, b = 50, 0.3, 0.05
    x = np.arange(n + 1)
    assert binom.pmf(x, n, p)[cp_lower(x, n, b) > p].sum() <= b
    assert binom.pmf(x, n, p)[cp_upper(x, n, b) < p].sum() <= b


@pytest.mark.parametrize("eps,delta", [(1.0, 0.0), (0.25, 0.0), (0.5, 0.1)])
def test_lower_bound_valid_by_simulation(eps, delta):
    """The bound is below the true epsilon at least at the nominal rate, for a test whose ratio is tight.

    The event's rates satisfy TPR = e^eps FPR + delta exactly (the worst case for validity), N = 200 trials, 20000
    repetitions at confidence 0.9: the failure rate must be <= 0.1 (+ 4 Monte Carlo standard errors).
    """
    rng = np.random.default_rng(11)
    fpr = 1 / (math.exp(eps) + 1) if delta == 0 else 0.2
    tpr = math.exp(eps) * fpr + delta
    N, M, conf = 200, 20_000, 0.9
    tp, fp = rng.binomial(N, tpr, M), rng.binomial(N, fpr, M)
    lb = epsilon_lower_bound(tp, fp, N, beta=side_level(conf, 1), delta=delta)
    fail = float(np.mean(lb > eps))
    assert fail <= (1 - conf) + 4 * math.sqrt(0.1 * 0.9 / M)
    assert fail > 0 or eps == 0.5  # the bound is not vacuous: it is sometimes close to eps


def test_choose_event_uses_only_the_model():
    mask, expected = choose_event([0.6, 0.3, 0.1], [0.1, 0.3, 0.6], 10_000, beta=0.005)
    assert mask.tolist() == [True, False, False]
    assert expected == pytest.approx(float(epsilon_lower_bound(6000, 1000, 10_000, beta=0.005)), rel=1e-12)
    mask, _ = choose_event([0.5, 0.5], [0.5, 0.5], 100, beta=0.005)  # nothing to see: the bound is <= 0
    assert mask.any()


# ------------------------------------------------------------------------------------------ tightness
def test_lr_attack_attains_grr_epsilon():
    """GRR, k = 10, eps = 1, N = 1e6: the LR event {y = v1} has ratio exactly e^eps; the bound is within the CP
    slack: with 2 tests at confidence 0.99 each quantile sits ~2.8 sd out, sd(ln ratio) = 0.0037 here, so the
    bound lies in (eps - 0.05, eps] (~ 10 sd of room below)."""
    r = audit(ProtocolTarget(GRR(10, 1.0)), 10**6, seed=5, attacks=("lr",))
    assert 0.95 < r.epsilon_lower_bound <= 1.0
    assert not r.violation
    lr = r.tests[0]
    assert lr.tpr == pytest.approx(GRR(10, 1.0).p, abs=5 * math.sqrt(0.25 / 10**6))
    assert lr.epsilon_lower_bound == pytest.approx(lr.expected, abs=0.02)  # the model's prediction


def test_family_attack_matches_ldp_auditor_analytic_rates():
    # LDP-Auditor's UE attack, in closed form: TPR = Z0 + p E[1/(1 + Bin(k-1, q))] with Z0 = (1-p)(1-q)^(k-1)/k
    from scipy.stats import binom

    k, o = 25, OUE(25, 1.0)
    j = np.arange(k)
    tpr = (1 - o.p) * (1 - o.q) ** (k - 1) / k + o.p * np.sum(binom.pmf(j, k - 1, o.q) / (1 + j))
    r = audit(ProtocolTarget(o), 200_000, seed=2, attacks=("family",))
    assert r.tests[0].tpr == pytest.approx(tpr, abs=5 * math.sqrt(tpr / 200_000))


# -------------------------------------------------------------------------------------- broken fixtures
BROKEN = [
    # (randomizer, trials): true epsilon is well above the claim and below the cap (asserted below)
    (LeakyTrueBitOUE(25, 1.0), 100_000),  # pure-LDP 1.1.2: true 1.551 vs claimed 1
    (LeakyTrueBitSUE(25, 0.25), 100_000),  # true 1.229 vs 0.25
    (WrongQOUE(25, 0.25), 100_000),  # q = (e+1)/(2e+1): true ln(1 + e^-0.25) = 0.576 vs 0.25
    (TooHonestGRR(10, 1.0, favourite=0, p_leak=0.6), 100_000),  # true ln(0.6/q) = 1.95 vs 1
]


@pytest.mark.parametrize("proto,trials", BROKEN, ids=lambda x: getattr(x, "name", str(x)))
def test_broken_fixture_flagged(proto, trials):
    true_eps = proto.true_epsilon()
    r = audit(ProtocolTarget(proto), trials, seed=1)
    assert proto.epsilon + 0.3 < true_eps < r.cap  # the setting can show the bug
    assert r.violation, r.to_dict()
    assert proto.epsilon < r.epsilon_lower_bound <= true_eps + 0.02  # valid, and close to the true loss
    correct = {LeakyTrueBitOUE: OUE, LeakyTrueBitSUE: SUE, WrongQOUE: OUE, TooHonestGRR: GRR}[type(proto)]
    ok = audit(ProtocolTarget(correct(proto.k, proto.epsilon)), trials, seed=1)
    assert not ok.violation


def test_pure_ldp_bug_table():
    # pure-LDP <= 1.1.2's UE client bug, in closed form
    for eps, oue, sue in [(0.25, 1.189, 1.229), (1, 1.551, 1.680), (4, 4.036, 4.143)]:
        assert LeakyTrueBitOUE(10, eps).true_epsilon() == pytest.approx(oue, abs=1e-3)
        assert LeakyTrueBitSUE(10, eps).true_epsilon() == pytest.approx(sue, abs=1e-3)


@pytest.mark.parametrize(
    "proto,tau",
    [(LGRR(2, 1.0, 0.5), 8), (LOSUE(10, 2.0, 0.5), 10), (LOLOHA(10, 2.0, 0.5), 10)],
    ids=["L-GRR", "L-OSUE", "LOLOHA"],
)
def test_forgetful_longitudinal_client_flagged(proto, tau):
    """The memo forgotten: tau fresh reports leak tau * eps_1 (4 or 5) instead of eps_perm (1 or 2); cap ~ 8."""
    true_eps = ForgetfulPopulation.true_epsilon(proto, tau)
    bad = audit(LongitudinalTarget(proto, tau, population=ForgetfulPopulation), 20_000, seed=4)
    assert bad.epsilon_claimed == pytest.approx(proto.eps_perm)
    assert bad.epsilon_claimed + 1 < true_eps < bad.cap
    assert bad.violation and bad.epsilon_lower_bound <= true_eps
    good = audit(LongitudinalTarget(proto, tau), 20_000, seed=4)
    assert not good.violation


# -------------------------------------------------------------------------------------------- self-audit
SELF_EPS = (0.25, 1.0, 4.0)


APPROXIMATE = (*APPROXIMATE_ORACLES, *NUMERIC_NAMES)  # (epsilon, delta)-LDP: audited at delta = 1e-5


def _self_target(name, eps, tau=5, scope="tuple"):
    k = 2 if name.endswith("-r]") else 6  # RS+FD[*-r] is attribute-level epsilon-LDP only for k = 2 (dpkit docs)
    delta = 1e-5 if name in APPROXIMATE else 0.0
    return resolve(f"dpkit:{name}", k=k, epsilon=eps, delta=delta, tau=tau, d=3, scope=scope)


@pytest.mark.parametrize("name", dpkit_protocol_names())
def test_self_audit_every_dpkit_protocol(name):
    """Every protocol in the mechanisms registries, eps in {0.25, 1, 4} (GM: eps <= 1, its classical calibration's
    range); the (epsilon, delta)-LDP ones at delta = 1e-5; longitudinal over tau in {1, 5, 20}; multidimensional at
    both scopes. No violation; the LR bound is informative (> 0 at eps >= 1)."""
    from dpkit.mechanisms.longitudinal import LONGITUDINAL_PROTOCOLS

    taus = (1, 5, 20) if name in LONGITUDINAL_PROTOCOLS else (None,)
    scopes = ("tuple", "attribute") if "[" in name else ("tuple",)
    for i, eps in enumerate(SELF_EPS):
        if name == "GM" and eps > 1:
            continue
        for tau in taus:
            for scope in scopes:
                target = _self_target(name, eps, tau or 1, scope)
                r = audit(target, 20_000, seed=100 + i)
                assert not r.violation, r.to_dict()
                assert r.cap > r.epsilon_claimed or eps == 4.0
                if eps >= 1:  # informative: the LR test sees a good part of the claim (reduced statistics for
                    # dBitFlipPM's sampled buckets and RS+FD's attribute scope see less)
                    # the Gaussian mechanisms' loss is unbounded: 2e4 trials see its bulk, not its delta tail
                    gaussian = name in ("GM", "AGM", *NUMERIC_NAMES)
                    share = 0.1 if name == "dBitFlipPM" or scope == "attribute" or gaussian else 0.3
                    assert r.epsilon_lower_bound > share * min(r.epsilon_claimed, 4.0), r.to_dict()


def test_rsfd_whole_tuple_finding_not_violation():
    """RS+FD: changing every attribute leaks eps' = ln(d(e^eps - 1) + 1) > eps (Arcolezi et al., CIKM 2021). dpkit
    claims eps per attribute only, so the audit reports a finding and checks the tuple claim eps'."""
    proto = RSFD((2, 2, 2), 0.25, "GRR")
    assert proto.exact_epsilon("tuple") == pytest.approx(proto.tuple_epsilon, rel=1e-9)  # 0.616
    r = audit(MultidimensionalTarget(proto, scope="tuple"), 200_000, seed=7)
    assert not r.violation and r.epsilon_claimed == pytest.approx(proto.tuple_epsilon)
    assert r.finding is not None and r.epsilon_lower_bound > 0.25 + 0.2
    attr = audit(MultidimensionalTarget(proto, scope="attribute"), 200_000, seed=7)
    assert not attr.violation and attr.finding is None and attr.epsilon_claimed == 0.25


def test_longitudinal_memo_is_reused_over_many_reports():
    """L-GRR, tau = 50 reports of one value: dpkit claims min(50 eps_1, eps_perm) = eps_perm = 1; the bound stays
    below it (a sequential-composition auditor would allow up to 50 eps_1 = 25)."""
    r = audit(LongitudinalTarget(LGRR(4, 1.0, 0.5), 50), 20_000, seed=9)
    assert r.epsilon_claimed == pytest.approx(1.0)
    assert 0.3 < r.epsilon_lower_bound <= 1.0


# ---------------------------------------------------------------------------------------------- anchors
@pytest.mark.anchors
@pytest.mark.parametrize(
    "spec,trials",
    [("multi-freq-ldpy:GRR", 20_000), ("multi-freq-ldpy:OUE", 5_000), ("pure-ldp:OUE", 5_000), ("pure-ldp:OLH", 5_000)],
)
def test_anchor_libraries_pass(spec, trials):
    pytest.importorskip("multi_freq_ldpy" if spec.startswith("multi") else "pure_ldp")
    r = audit(resolve(spec, k=10, epsilon=1.0), trials, seed=3)
    assert not r.violation, r.to_dict()
    assert r.epsilon_lower_bound > 0.5  # the LR test sees most of the claimed epsilon
