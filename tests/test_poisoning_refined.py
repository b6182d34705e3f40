"""ASR-MSE refined protocols (Arcolezi and Gambs, arXiv 2503.01482): the paper's table, exact epsilon-LDP, reduction
to the base protocols at w_mse = 1, closed-form ASR against the attack, the Pareto frontier, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner

from dpkit.audits.ldp.attacks import fo_family_attack
from dpkit.cli import main
from dpkit.mechanisms import BLH, GRR, OLH, OUE, SHE, SS, SUE, THE, max_log_ratio
from dpkit.mechanisms.frequency_oracles import (
    ALH,
    ASS,
    ATHE,
    AUE,
    FREQUENCY_ORACLES,
    REFINED_PROTOCOLS,
    expected_asr,
    make_oracle,
    pareto_frontier,
)
from dpkit.mechanisms.frequency_oracles.asr import local_hashing_asr_exact

# (k, eps): {protocol: (parameter, ASR, MSE)} at w = 0.5 / 0.5 (the paper's Fig. 6 at k = 100, eps = 4)
TABLE = {
    (100, 4.0): {"ASS": (7, 0.1149, 0.1066), "AUE": (0.818181, 0.1074, 0.1278), "ALH": (13, 0.1066, 0.1287),
                 "ATHE": (0.782828, 0.0647, 0.2863)},
    (100, 8.0): {"ASS": (9, 0.1107, 0.0886), "AUE": (0.994949, 0.1603, 0.0668), "ALH": (11, 0.1096, 0.1007),
                 "ATHE": (0.5, 0.1377, 0.0844)},
    (25, 4.0): {"ASS": (4, 0.2281, 0.1826), "AUE": (0.898989, 0.2508, 0.2093), "ALH": (7, 0.2523, 0.2130),
                "ATHE": (0.691919, 0.2253, 0.2998)},
}  # fmt: skip


@pytest.mark.parametrize("k, eps", list(TABLE))
@pytest.mark.parametrize("name", ["ASS", "AUE", "ALH", "ATHE"])
def test_paper_table(k, eps, name):
    param, a, m = TABLE[(k, eps)][name]
    proto = REFINED_PROTOCOLS[name](k, eps)
    assert getattr(proto, proto.parameter) == pytest.approx(param, abs=1e-6)
    assert proto.expected_asr() == pytest.approx(a, abs=5e-5)
    assert proto.mse() == pytest.approx(m, abs=5e-5)


def test_aue_q_and_table_row_k25_eps1():
    """AUE's q at k = 100, eps = 4 is 0.076144; at k = 25, eps = 1 MSE dominates and each is its baseline."""
    assert AUE(100, 4.0).q == pytest.approx(0.076144, abs=1e-6)
    assert ASS(25, 1.0).omega == SS(25, 1.0).omega == 7
    assert AUE(25, 1.0).p == 0.5
    assert ALH(25, 1.0).g == OLH(25, 1.0).g == 4
    assert ATHE(25, 1.0).theta == pytest.approx(0.616162, abs=1e-6)


def test_baseline_asrs():
    """Closed-form ASR of the base protocols at k = 100, eps = 4."""
    want = {GRR: 0.3555, SS: 0.2635, SUE: 0.0739, OUE: 0.2336, OLH: 0.2790, BLH: 0.0196}
    for cls, a in want.items():
        assert expected_asr(cls(100, 4.0)) == pytest.approx(a, abs=5e-5), cls.__name__
    with pytest.raises(TypeError, match="no closed-form"):
        expected_asr(make_oracle("HR", 10, 1.0))


@pytest.mark.parametrize("eps", [0.5, 0.9, 1.0, 2.0, 4.0, 6.0])
@pytest.mark.parametrize("k", [5, 25, 100])
def test_reduce_to_base_at_w_mse_1(k, eps):
    """w_mse = 1: exactly the base protocol's parameter and output distribution (eps = 0.9: a grid minimizer of V*
    for ALH would be g = 4, OLH's rounding gives 3)."""
    assert ASS(k, eps, w_asr=0.0, w_mse=1.0).omega == SS(k, eps).omega
    aue = AUE(k, eps, 0.0, 1.0)
    assert (aue.p, aue.q) == (OUE(k, eps).p, pytest.approx(OUE(k, eps).q, rel=1e-15))
    assert ALH(k, eps, 0.0, 1.0).g == OLH(k, eps).g
    assert ATHE(k, eps, 0.0, 1.0).theta == THE(k, eps).theta
    if k == 5:
        np.testing.assert_allclose(ASS(k, eps, 0, 1).channel_matrix(), SS(k, eps).channel_matrix(), rtol=1e-14)
        np.testing.assert_allclose(aue.channel_matrix(), OUE(k, eps).channel_matrix(), rtol=1e-14)
        np.testing.assert_allclose(ALH(k, eps, 0, 1).channel_matrix(3, 7), OLH(k, eps).channel_matrix(3, 7), rtol=1e-14)


@pytest.mark.parametrize("eps", [0.25, 1.0, 4.0, 8.0])
@pytest.mark.parametrize("w", [0.0, 0.2, 0.5, 0.9, 1.0])
def test_refined_protocols_are_epsilon_ldp_exactly(eps, w):
    """Enumerated output distributions: the worst log-ratio is at most eps (and exactly eps where the base is
    tight: AUE on its tight curve, SS, LH with distinct buckets)."""
    k = 6
    aue, ass, alh = AUE(k, eps, w, 1 - w), ASS(k, eps, w, 1 - w), ALH(k, eps, w, 1 - w)
    assert max_log_ratio(aue.channel_matrix()) == pytest.approx(eps, rel=1e-9)
    assert max_log_ratio(ass.channel_matrix()) <= eps * (1 + 1e-12)
    rng = np.random.default_rng(0)
    for a, b in rng.integers(0, 2**63, size=(20, 2)):
        assert max_log_ratio(alh.channel_matrix(int(a), int(b))) <= eps * (1 + 1e-12)
    # ATHE: SHE's client and its density; the log-ratio of two inputs is at most eps everywhere
    athe = ATHE(k, eps, w, 1 - w)
    y = rng.normal(0.5, 3.0, size=(20_000, k))
    ratio = np.log(athe.output_density(y, 0)) - np.log(athe.output_density(y, k - 1))
    assert np.abs(ratio).max() <= eps * (1 + 1e-12)
    r1 = athe.perturb(np.arange(k), np.random.default_rng(3))
    r2 = SHE(k, eps).perturb(np.arange(k), np.random.default_rng(3))
    np.testing.assert_array_equal(r1, r2)
    for proto in (aue, ass, alh, athe):
        assert proto.privacy_event().epsilon == eps


@pytest.mark.parametrize("name", ["ASS", "AUE", "ALH", "ATHE"])
def test_closed_form_asr_matches_the_attack(name):
    """LDP-Auditor's guess on 2e5 reports of a uniform value: its success rate is the closed form within 5 sigma.
    ALH: the closed forms assume a fully random hash function; dpkit's family is pairwise independent (its
    multi-collisions differ a little), so the measured rate is within 5% of the random-hash form."""
    k, eps, n = 30, 3.0, 200_000
    proto = REFINED_PROTOCOLS[name](k, eps)
    rng = np.random.default_rng(11)
    values = rng.integers(0, k, size=n)
    reports = proto.perturb(values, rng)
    hits = 0
    for v in range(k):  # the attack returns guess == v1 per trial: run it per value on that value's reports
        sel = values == v
        hits += int(fo_family_attack(proto, v, (v + 1) % k)(reports[sel], rng).sum())
    if name == "ALH":
        want = float(local_hashing_asr_exact(k, eps, proto.g))
        assert hits / n == pytest.approx(want, rel=0.05)
        assert proto.expected_asr() == pytest.approx(want, rel=0.05)  # the paper's form, which ALH optimizes
    else:
        want = proto.expected_asr()
        assert abs(hits / n - want) < 5 * math.sqrt(want * (1 - want) / n)


@pytest.mark.parametrize("name", ["ASS", "AUE", "ALH", "ATHE"])
def test_pareto_frontier_is_monotone(name):
    """Along the grid weights ASR rises and MSE falls; the last row (w_mse = 1) is the base protocol, whose
    parameter need not be on the grid (THE's theta*), with the least MSE of all."""
    rows = pareto_frontier(name, 50, 3.0)
    assert all(r["pareto"] for r in rows)
    assert rows[-1]["mse"] <= min(r["mse"] for r in rows) + 1e-12
    asr = [r["asr"] for r in rows[:-1]]
    mse = [r["mse"] for r in rows[:-1]]
    assert all(a <= b + 1e-12 for a, b in zip(asr, asr[1:], strict=False))  # more weight on MSE: ASR rises
    assert all(a >= b - 1e-12 for a, b in zip(mse, mse[1:], strict=False))  # and MSE falls
    base = REFINED_PROTOCOLS[name](50, 3.0, w_asr=0.0, w_mse=1.0)
    assert rows[-1]["parameter"] == pytest.approx(getattr(base, base.parameter))


def test_unbiased_and_registered():
    """The refined protocols keep their base estimators (unbiased) and are in the registry and the auditor."""
    for name in REFINED_PROTOCOLS:
        assert FREQUENCY_ORACLES[name] is REFINED_PROTOCOLS[name]
    k, n = 20, 200_000
    rng = np.random.default_rng(5)
    f = np.arange(1, k + 1) / np.arange(1, k + 1).sum()
    values = rng.choice(k, size=n, p=f)
    for name in REFINED_PROTOCOLS:
        proto = make_oracle(name, k, 2.0)
        est = proto.estimate(proto.aggregate(proto.perturb(values, rng)))
        emp = np.bincount(values, minlength=k) / n
        z = (est - emp) / np.sqrt(proto.variance(n, emp))
        assert np.abs(z).max() < 5, name
    res = CliRunner().invoke(main, ["audit-ldp", "dpkit:AUE", "--epsilon", "1", "--k", "8", "--trials", "20000"])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"w_asr": -0.1}, "w_asr must be a finite number >= 0"),
        ({"w_mse": float("nan")}, "w_mse must be a finite number >= 0"),
        ({"w_asr": 0, "w_mse": 0}, "w_asr \\+ w_mse must be > 0"),
    ],
)
def test_bad_weights(kwargs, match):
    for cls in REFINED_PROTOCOLS.values():
        with pytest.raises(ValueError, match=match):
            cls(10, 1.0, **kwargs)
    with pytest.raises(ValueError, match="epsilon must be in"):
        AUE(10, -1.0)
    with pytest.raises(ValueError, match="k must be"):
        ALH(1, 1.0)


def test_weights_are_renormalized():
    a = AUE(50, 2.0, w_asr=2.0, w_mse=2.0)
    assert (a.w_asr, a.w_mse) == (0.5, 0.5) and a.p == AUE(50, 2.0).p
