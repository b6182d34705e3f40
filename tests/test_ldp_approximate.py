"""(epsilon, delta)-LDP protocols: AGRR, ASUE, ABLH, AOLH, GM, AGM (frequency oracles) and BoundedGaussian.

Against the math (test vectors, the exact delta of the discrete channels from their output distributions, the
Gaussian mechanism's exact privacy profile), against references (dp_accounting's Gaussian privacy loss, dpkit's PLD
accountant on ``privacy_event()``), by simulation (unbiased, variance within 5 sigma), with the auditor (the delta
term of the bound, a leaky protocol flagged, the command line), and bad input.
"""

from __future__ import annotations

import dataclasses
import json
import math

import click
import numpy as np
import pytest
from click.testing import CliRunner

from dpkit.accountants import DpEvent, GaussianEvent, PLDAccountant
from dpkit.audits.ldp import audit, resolve
from dpkit.audits.ldp.attacks import fo_family_attack, fo_statistic, numeric_family_attack, numeric_statistic
from dpkit.audits.ldp.bounds import epsilon_lower_bound, side_level
from dpkit.audits.ldp.targets import NumericTarget, ProtocolTarget
from dpkit.cli.audit_ldp import audit_ldp
from dpkit.mechanisms import (
    ABLH,
    AGM,
    AGRR,
    AOLH,
    APPROXIMATE_ORACLES,
    ASUE,
    BLH,
    GM,
    GRR,
    OLH,
    SUE,
    BoundedGaussian,
    FrequencyOracle,
    analytic_gaussian_sigma,
    classical_gaussian_sigma,
    gaussian_delta,
    make_oracle,
)
from dpkit.mechanisms.channels import max_log_ratio
from dpkit.mechanisms.frequency_oracles import aolh_g

DELTA = 1e-5
SQRT2 = math.sqrt(2.0)


def channel_delta(matrix: np.ndarray, epsilon: float) -> float:
    """max over (v, v') of sum_y max(0, P(y|v) - e^eps P(y|v')) for a k x |Y| channel matrix (exact delta)."""
    m = np.asarray(matrix, dtype=np.float64)
    diff = m[:, None, :] - math.exp(epsilon) * m[None, :, :]
    return float(np.max(np.sum(np.maximum(diff, 0.0), axis=2)))


def make(name: str, k: int, eps: float, delta: float = DELTA) -> FrequencyOracle:
    return make_oracle(name, k, eps, delta=delta)


# ------------------------------------------------------------------------------------------- test vectors
@pytest.mark.parametrize(
    "eps,sigma_gm,sigma_agm,p,q,g",
    [
        (0.25, 27.4064, 18.7886, 0.531214, 0.468786, 2),
        (1.0, 6.8516, 5.2759, 0.622462, 0.377538, 4),
        (4.0, 1.7129, 1.5290, 0.880798, 0.119202, 56),
    ],
)
def test_vectors_at_delta_1e5(eps, sigma_gm, sigma_agm, p, q, g):
    # Dwork-Roth's formula (GM itself is defined for eps <= 1 only)
    assert SQRT2 * math.sqrt(2 * math.log(1.25 / DELTA)) / eps == pytest.approx(sigma_gm, abs=1e-4)
    if eps <= 1:
        assert GM(10, eps, delta=DELTA).sigma == pytest.approx(sigma_gm, abs=1e-4)
    else:
        with pytest.raises(ValueError, match="epsilon must be in"):
            GM(10, eps, delta=DELTA)
    assert AGM(10, eps, delta=DELTA).sigma == pytest.approx(sigma_agm, abs=1e-4)
    asue = ASUE(10, eps, delta=DELTA)
    assert (asue.p, asue.q) == (pytest.approx(p, abs=1e-6), pytest.approx(q, abs=1e-6))
    assert AOLH(10, eps, delta=DELTA).g == aolh_g(eps, DELTA) == g


def test_aolh_g_is_the_variance_minimizer_and_olh_at_delta_0():
    """The closed form rounds the minimizer over g of (E - 1 + g)^2 / ((g - 1)(E - 1 + g delta)^2) (the local one:
    with delta > 0 the variance falls again for astronomically large g, where y reveals H(v) w.p. ~delta)."""
    for eps in (0.1, 0.5, 1.0, 2.0, 4.0, 6.0, 8.0):
        e = math.exp(eps)
        assert aolh_g(eps, 0.0) == OLH(10, eps).g
        for delta in (1e-9, 1e-5, 1e-3):
            if delta > (e - 1) / (9 * e - 1):
                continue
            gs = np.arange(2, 40 * int(e) + 40, dtype=np.float64)
            var = (e - 1 + gs) ** 2 / ((gs - 1) * (e - 1 + gs * delta) ** 2)
            best = int(gs[np.argmax(np.diff(var) > 0)]) if (np.diff(var) > 0).any() else int(gs[-1])
            assert abs(aolh_g(eps, delta) - best) <= 1, (eps, delta)


def test_delta_zero_gives_back_the_pure_protocols():
    for eps in (0.5, 1.0, 3.0):
        assert AGRR(7, eps, delta=0.0).p == pytest.approx(GRR(7, eps).p, rel=1e-14)
        assert ASUE(7, eps, delta=0.0).p == pytest.approx(SUE(7, eps).p, rel=1e-14)
        assert ABLH(7, eps, delta=0.0).p == pytest.approx(BLH(7, eps).p, rel=1e-14)
        assert AOLH(7, eps, delta=0.0).g == OLH(7, eps).g


# ------------------------------------------------------------------------------ exact delta of the channels
@pytest.mark.parametrize("delta", [0.0, 1e-5, 0.01, 0.3])
@pytest.mark.parametrize("eps", [0.25, 1.0, 4.0])
def test_agrr_and_asue_exact_delta_from_the_output_distribution(eps, delta):
    for proto in (*(AGRR(k, eps, delta=delta) for k in (2, 5, 30)), *(ASUE(k, eps, delta=delta) for k in (2, 4, 8))):
        m = proto.channel_matrix()
        np.testing.assert_allclose(m.sum(axis=1), 1.0, rtol=1e-12)
        exact = channel_delta(m, eps)
        assert exact <= delta * (1 + 1e-9) + 1e-15, (proto, exact)
        assert exact >= delta * (1 - 1e-6) - 1e-15, (proto, exact)  # tight: the declared delta is the channel's
        # the channel is pure epsilon'-LDP with epsilon' = proto.pure_epsilon (what privacy_event describes)
        assert max_log_ratio(m) == pytest.approx(proto.pure_epsilon, rel=1e-9)


@pytest.mark.parametrize("cls", [ABLH, AOLH])
@pytest.mark.parametrize("eps", [0.25, 1.0, 4.0])
def test_local_hashing_exact_delta_given_every_hash_function(cls, eps):
    """The hash is drawn independently of the value and published: given (a, b) the channel is AGRR over [g] of
    H(v), so its delta is the declared one when the hash separates some pair, 0 when it is constant."""
    proto = cls(12, eps, delta=DELTA)
    rng = np.random.default_rng(5)
    for a, b in zip(*(rng.integers(0, 2**63, size=20, dtype=np.uint64) for _ in range(2)), strict=True):
        m = proto.channel_matrix(int(a), int(b))
        exact = channel_delta(m, eps)
        separates = len(np.unique(proto.hash(a, b, np.arange(12)))) > 1
        assert exact <= DELTA * (1 + 1e-9)
        assert exact == (pytest.approx(DELTA, rel=1e-6) if separates else 0.0)


# ------------------------------------------------------------------------------- Gaussian privacy profile
def test_gaussian_delta_matches_dp_accounting():
    pld = pytest.importorskip("dp_accounting.pld.privacy_loss_mechanism")
    for sigma, sens in ((0.5, 1.0), (5.2759, SQRT2), (30.0, 2.0)):
        ref = pld.GaussianPrivacyLoss(sigma, sensitivity=sens)
        for eps in (0.1, 1.0, 4.0):
            assert gaussian_delta(eps, sigma, sens) == pytest.approx(
                ref.get_delta_for_epsilon(eps), rel=1e-6, abs=1e-15
            )


@pytest.mark.parametrize("delta", [1e-12, 1e-5, 1e-2, 0.3])
@pytest.mark.parametrize("eps", [0.01, 0.25, 1.0, 4.0, 20.0])
def test_calibrations_against_the_exact_profile(eps, delta):
    sigma = analytic_gaussian_sigma(eps, delta, SQRT2)
    assert delta * (1 - 1e-9) <= gaussian_delta(eps, sigma, SQRT2) <= delta  # the smallest valid sigma
    assert gaussian_delta(eps, sigma * (1 - 1e-6), SQRT2) > delta
    assert AGM(5, eps, delta=delta).sigma == sigma
    if eps <= 1:  # Dwork-Roth: valid (and looser) in its range, including eps = 1
        classical = classical_gaussian_sigma(eps, delta, SQRT2)
        assert classical > sigma and gaussian_delta(eps, classical, SQRT2) <= delta
        assert GM(5, eps, delta=delta).sigma == classical


def test_classical_formula_fails_beyond_its_range():
    """Why GM refuses eps > 1: Dwork-Roth's sigma at eps = 20, delta = 1e-5 leaks delta(20) ~ 150 x 1e-5."""
    sigma = SQRT2 * math.sqrt(2 * math.log(1.25 / DELTA)) / 20
    assert gaussian_delta(20.0, sigma, SQRT2) > 100 * DELTA
    with pytest.raises(ValueError, match=r"epsilon must be in \(0, 1\]"):
        classical_gaussian_sigma(20.0, DELTA)


# ----------------------------------------------------------------------------------------- privacy events
@pytest.mark.parametrize("name", list(APPROXIMATE_ORACLES))
@pytest.mark.parametrize("eps", [0.25, 1.0])
def test_privacy_event_gives_the_declared_delta(name, eps):
    """An accountant reading privacy_event() finds delta(eps) <= the declared delta, tight for all but GM (whose
    classical calibration is loose); the PLD accountant adds its FFT error estimate (1e-14) to the delta."""
    proto = make(name, 10, eps, 1e-3)
    acc = PLDAccountant(neighbouring_relation="replace_one").compose(proto.privacy_event())
    assert acc.get_delta(eps) <= 1e-3 + 1e-13
    if name == "GM":
        assert acc.get_epsilon(1e-3) < 0.9 * eps
    else:
        assert acc.get_delta(eps) == pytest.approx(1e-3, rel=1e-9)
        assert acc.get_epsilon(1e-3) == pytest.approx(eps, rel=1e-9)


def test_gaussian_events_are_the_exact_curves():
    assert AGM(10, 1.0, delta=DELTA).privacy_event() == GaussianEvent(AGM(10, 1.0, delta=DELTA).sigma / SQRT2)
    bg = BoundedGaussian(1.0, DELTA, lower=-2.0, upper=3.0)
    assert bg.privacy_event() == GaussianEvent(bg.sigma / 5.0)
    assert gaussian_delta(1.0, bg.sigma, 5.0) == pytest.approx(DELTA, rel=1e-9)
    classical = BoundedGaussian(0.5, DELTA, calibration="classical")
    assert classical.sigma == classical_gaussian_sigma(0.5, DELTA) > BoundedGaussian(0.5, DELTA).sigma


# ------------------------------------------------------------------------------------- the shared interface
@pytest.mark.parametrize("name", list(APPROXIMATE_ORACLES))
def test_every_approximate_oracle_implements_the_interface_and_is_audited(name):
    cls = APPROXIMATE_ORACLES[name]
    assert issubclass(cls, FrequencyOracle) and dataclasses.is_dataclass(cls)
    assert not getattr(cls, "__abstractmethods__", None)
    o = cls(7, 1.0, delta=DELTA)
    assert o.delta == DELTA and o.name == name and "delta=1e-05" in o.key
    assert isinstance(o.privacy_event(), DpEvent)
    s = fo_statistic(o, 0, 6)
    assert s.pmf is not None and all(p.sum() == pytest.approx(1.0) for p in s.pmf)
    assert fo_family_attack(o, 0, 6) is not None
    with pytest.raises(TypeError, match="delta"):
        cls(7, 1.0)  # delta is required (keyword-only)
    assert numeric_statistic.dispatch(BoundedGaussian) is not numeric_statistic.dispatch(object)
    assert numeric_family_attack(BoundedGaussian(1.0, DELTA), 0.0, 1.0) is not None


# ------------------------------------------------------------------------------ unbiased, variance by simulation
def _population(k: int, n: int) -> np.ndarray:
    f = np.arange(1, k + 1, dtype=np.float64) ** -1.0
    counts = np.floor(f / f.sum() * n).astype(np.int64)
    counts[0] += n - counts.sum()
    return np.repeat(np.arange(k), counts)


@pytest.mark.parametrize("name", list(APPROXIMATE_ORACLES))
def test_unbiased_and_variance_within_5_sigma(name):
    k, n, reps = 8, 2_000, 300
    proto = make(name, k, 1.0, 1e-3)
    values = _population(k, n)
    f = np.bincount(values, minlength=k) / n
    rng = np.random.default_rng(11)
    est = np.stack([proto.estimate(proto.perturb_aggregate(values, rng, chunk_size=700)) for _ in range(reps)])
    var = np.asarray(proto.variance(n, f))
    # unbiased: each item's mean over reps within 5 sigma of f
    assert np.all(np.abs(est.mean(axis=0) - f) <= 5 * np.sqrt(var / reps)), (est.mean(axis=0) - f) / np.sqrt(var / reps)
    # variance: the mean over items of the empirical variance, within 5 sd of the sample variance (~ var sqrt(2/R))
    emp = est.var(axis=0, ddof=1).mean()
    assert abs(emp - var.mean()) <= 5 * var.max() * math.sqrt(2 / (reps - 1)), (emp, var.mean())


def test_bounded_gaussian_unbiased_and_variance_within_5_sigma():
    mech = BoundedGaussian(1.0, DELTA, lower=-1.0, upper=2.0)
    rng = np.random.default_rng(3)
    values = rng.uniform(-1.0, 2.0, size=1_000)
    reps = 400
    est = np.array([mech.estimate(mech.perturb_aggregate(values, rng, chunk_size=300)) for _ in range(reps)])
    var = mech.variance(len(values))
    assert abs(est.mean() - values.mean()) <= 5 * math.sqrt(var / reps)
    assert abs(est.var(ddof=1) - var) <= 5 * var * math.sqrt(2 / (reps - 1))
    # states merge: chunked equals one shot on the same reports
    reports = mech.perturb(values, rng)
    whole = mech.aggregate(reports)
    assert sum(mech.aggregate(c) for c in np.array_split(reports, 3)).n == whole.n
    assert mech.estimate(sum(mech.aggregate(c) for c in np.array_split(reports, 3))) == pytest.approx(
        mech.estimate(whole), rel=1e-12
    )


# ------------------------------------------------------------------------------------------------ auditor
def test_delta_term_keeps_the_audit_tight_and_valid():
    """AGRR at eps = 0.5, delta = 0.1, k = 2 is pure 0.66-LDP: the test {y = v1} has TPR - delta = e^eps FPR exactly.
    With the delta term the bound is close to 0.5 and below it; without it the same counts would exceed 0.5."""
    proto = AGRR(2, 0.5, delta=0.1)
    assert proto.pure_epsilon == pytest.approx(math.log((math.exp(0.5) + 0.1) / 0.9))
    r = audit(ProtocolTarget(proto), 200_000, seed=4)
    assert r.delta == 0.1 and not r.violation and 0.45 < r.epsilon_lower_bound <= 0.5, r.to_dict()
    best = max(r.tests, key=lambda t: t.epsilon_lower_bound)
    beta = side_level(r.confidence, r.params["n_tests"])
    assert epsilon_lower_bound(best.tp, best.fp, r.trials, beta=beta, delta=0.0) > 0.6


class LeakyAGRR(AGRR):
    """Declares delta = 1e-5 but keeps the true value as often as AGRR at delta = 0.1."""

    @property
    def p(self) -> float:  # type: ignore[override]
        return AGRR(self.k, self.epsilon, delta=0.1).p

    @property
    def q(self) -> float:  # type: ignore[override]
        return AGRR(self.k, self.epsilon, delta=0.1).q


def test_auditor_flags_an_understated_delta():
    r = audit(ProtocolTarget(LeakyAGRR(2, 0.5, delta=DELTA)), 100_000, seed=8)
    assert r.violation and r.epsilon_lower_bound > 0.55, r.to_dict()


@pytest.mark.parametrize("name", ["AGM", "BoundedGaussian"])
def test_gaussian_audit_is_informative_with_many_trials(name):
    """At 1e6 trials per input the LR test on y_v1 - y_v2 (resp. y) sees most of eps = 1 and stays below it."""
    target = resolve(f"dpkit:{name}", k=5, epsilon=1.0, delta=DELTA)
    assert isinstance(target, NumericTarget if name == "BoundedGaussian" else ProtocolTarget)
    r = audit(target, 1_000_000, seed=2, attacks=("lr",))
    assert not r.violation and 0.6 < r.epsilon_lower_bound <= 1.0, r.to_dict()
    assert r.tests[0].expected == pytest.approx(r.epsilon_lower_bound, abs=0.08)


@pytest.fixture
def cli():
    @click.group()
    def g():
        pass

    g.add_command(audit_ldp)
    return lambda *args: CliRunner().invoke(g, ["audit-ldp", *args])


def test_cli_audits_approximate_protocols_at_their_delta(cli):
    r = cli("dpkit:AGRR", "--epsilon", "1", "--delta", "1e-5", "--k", "10", "--trials", "50000", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["delta"] == 1e-5 and not out["violation"] and out["epsilon_lower_bound"] > 0.8
    assert "AGRR(k=10, epsilon=1.0, delta=1e-05)" in out["params"]["protocol"]
    r = cli("dpkit:BoundedGaussian", "--epsilon", "1", "--delta", "1e-5", "--k", "2", "--trials", "20000")
    assert r.exit_code == 0 and "delta=1e-05" in r.output, r.output


@pytest.mark.parametrize(
    "args,words",
    [
        (["dpkit:GM", "--epsilon", "4", "--delta", "1e-5"], ["epsilon must be in (0, 1]", "4.0"]),
        (["dpkit:AGM", "--epsilon", "1"], ["delta must be in (0, 1)", "delta = 0"]),
        (["dpkit:GRR", "--epsilon", "1", "--delta", "1e-5"], ["delta=1e-05", "GRR is epsilon-LDP"]),
        (["dpkit:AGRR", "--epsilon", "1", "--delta", "1"], ["--delta", "[0, 1)"]),
    ],
)
def test_cli_bad_delta_or_epsilon(cli, args, words):
    r = cli(*args, "--k", "10", "--trials", "1000")
    assert r.exit_code == 2, r.output
    for w in words:
        assert w in r.output


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("name", list(APPROXIMATE_ORACLES))
@pytest.mark.parametrize("delta", [1.0, -0.1, float("nan"), 2])
def test_delta_outside_0_1_is_refused(name, delta):
    with pytest.raises(ValueError, match=r"delta must be in [\[(]0, 1\)"):
        make(name, 10, 0.5, delta)


@pytest.mark.parametrize(
    "build", [lambda: GM(5, 0.5, delta=0.0), lambda: AGM(5, 0.5, delta=0), lambda: BoundedGaussian(1.0, 0.0)]
)
def test_gaussian_mechanisms_need_delta_positive(build):
    with pytest.raises(ValueError, match=r"delta must be in \(0, 1\) for the Gaussian mechanism"):
        build()


def test_other_bad_input():
    with pytest.raises(ValueError, match=r"epsilon must be in \(0, 1\].*got 1.5"):
        GM(5, 1.5, delta=DELTA)
    with pytest.raises(TypeError, match="delta must be a real number"):
        AGRR(5, 1.0, delta="0.1")
    with pytest.raises(ValueError, match="give delta"):
        make_oracle("AOLH", 10, 1.0)
    with pytest.raises(ValueError, match=r"delta must be in \[0, 0\.0\d+\] for AOLH"):
        AOLH(10, 1.0, delta=0.2)
    assert AOLH(10, 1.0, g=4, delta=0.2).g == 4  # an explicit g needs no optimum
    with pytest.raises(ValueError, match="g must be 2 for ABLH"):
        ABLH(10, 1.0, g=3, delta=DELTA)
    with pytest.raises(ValueError, match="upper must be > lower"):
        BoundedGaussian(1.0, DELTA, lower=1.0, upper=1.0)
    with pytest.raises(ValueError, match="calibration must be one of"):
        BoundedGaussian(1.0, DELTA, calibration="tight")
    with pytest.raises(ValueError, match=r"epsilon must be in \(0, 1\]"):
        BoundedGaussian(2.0, DELTA, calibration="classical")
    mech = BoundedGaussian(1.0, DELTA)
    with pytest.raises(ValueError, match=r"values must be in \[0, 1\], got 1.5"):
        mech.perturb(np.array([0.5, 1.5]), np.random.default_rng(0))
    with pytest.raises(ValueError, match="values must be in"):
        mech.perturb(np.array([np.nan]), np.random.default_rng(0))
    with pytest.raises(ValueError, match="reports.* must be finite"):
        mech.aggregate(np.array([np.inf]))
    with pytest.raises(ValueError, match="reports.* must be finite"):
        AGM(3, 1.0, delta=DELTA).aggregate(np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match=r"reports must be in \[0, 4\)"):
        AGRR(4, 1.0, delta=DELTA).aggregate(np.array([0, 4]))
