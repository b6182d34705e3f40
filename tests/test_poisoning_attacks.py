"""Poisoning attacks on the frequency oracles (Cao, Jia, Gong, USENIX Security 2021): the closed-form gains (the
test vector at eps = 1, k = 100, r = 10, beta = 0.05, f_T = 0.1), simulation within 5 sigma of the closed form for
every protocol and attack, the fake reports are valid reports, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dpkit.audits.poisoning import (
    ATTACKS,
    FakeReports,
    check_targets,
    fake_count,
    gain_table,
    mga,
    random_targets,
    report_scores,
    ria,
    rpa,
    simulate,
)
from dpkit.mechanisms import GRR, OLH, OUE, SHE, SS, HadamardResponse
from dpkit.mechanisms.frequency_oracles import FREQUENCY_ORACLES, make_oracle

K, EPS, R, BETA, F_T = 100, 1.0, 10, 0.05, 0.1
TARGETS = np.arange(R)


def _gain(proto, attack, **options):
    fake = ATTACKS[attack](proto, TARGETS, 2000, np.random.default_rng(0), **options)
    return fake.expected_gain(TARGETS, BETA, F_T)


@pytest.mark.parametrize(
    "proto, want",
    [
        (GRR(K, EPS), {"rpa": 0.0, "ria": 0.045, "mga": 2.6639}),
        (OUE(K, EPS), {"rpa": 0.495, "ria": 0.045, "mga": 1.577}),
    ],
    ids=["GRR", "OUE"],
)
def test_gain_vector(proto, want):
    for attack, g in want.items():
        assert _gain(proto, attack) == pytest.approx(g, abs=5e-5), attack


def test_gain_formulas():
    """GRR MGA: beta(1 - f_T) + beta(k - r)/(e^eps - 1); OUE MGA: beta(2r - f_T) + 2 beta r/(e^eps - 1) (OLH with
    g = e^eps + 1 gives the same; dpkit's OLH has the integer g = round(e^eps) + 1 = 4 and its own closed form)."""
    e = math.exp(EPS)
    assert _gain(GRR(K, EPS), "mga") == pytest.approx(BETA * (1 - F_T) + BETA * (K - R) / (e - 1), rel=1e-12)
    assert _gain(OUE(K, EPS), "mga") == pytest.approx(BETA * (2 * R - F_T) + 2 * BETA * R / (e - 1), rel=1e-12)
    olh = OLH(K, EPS)
    assert olh.g == 4
    fake = mga(olh, TARGETS, 100, np.random.default_rng(1))
    assert fake.info["collisions"] == R  # all ten targets in one bucket
    per_target = (1 - 1 / olh.g) / (olh.p - 1 / olh.g)
    assert fake.expected_gain(TARGETS, BETA, F_T) == pytest.approx(BETA * (R * per_target - F_T), rel=1e-12)
    assert _gain(olh, "rpa") == pytest.approx(-BETA * F_T, abs=1e-15)  # RPA on OLH: -beta f_T
    for name in FREQUENCY_ORACLES:  # RIA: beta (1 - f_T) on every (unbiased) protocol
        assert _gain(make_oracle(name, K, EPS), "ria") == pytest.approx(BETA * (1 - F_T), rel=1e-12), name


@pytest.mark.parametrize("name", list(FREQUENCY_ORACLES))
def test_simulation_matches_closed_form(name):
    """n = 5e4 genuine users (uniform), beta = 0.05: the simulated gain is within 5 sigma of the closed form, and
    every fake report passes the server's own report check."""
    proto = make_oracle(name, K, EPS)
    rng = np.random.default_rng(7)
    values = rng.integers(0, K, size=50_000)
    for attack in ATTACKS:
        res = simulate(proto, attack, values, TARGETS, BETA, rng)
        assert res.n_fake == fake_count(50_000, BETA) == 2632
        assert abs(res.gain - res.analytic_gain) < 5 * res.gain_std, (attack, res.to_dict())
        assert res.target_frequency_after - res.target_frequency_before == pytest.approx(res.gain)


@pytest.mark.parametrize("name", list(FREQUENCY_ORACLES))
def test_fake_reports_are_valid_reports(name):
    """The server's report check accepts every attack's reports; their scores average to the closed form."""
    proto = make_oracle(name, 30, 2.0)
    rng = np.random.default_rng(3)
    targets = random_targets(30, 4, rng)
    for attack, fn in ATTACKS.items():
        fake = fn(proto, targets, 5000, rng)
        assert isinstance(fake, FakeReports)
        state = proto.aggregate(fake.reports)  # the server's own check runs here
        assert state.n == 5000
        checked = proto._check_reports(fake.reports)
        assert len(checked) == 5000
        if name in ("SS", "ASS"):  # subsets of distinct items
            srt = np.sort(fake.reports, axis=1)
            assert (srt[:, 1:] != srt[:, :-1]).all()
        scores = report_scores(proto, fake.reports, np.arange(30)).mean(axis=0)
        sd = report_scores(proto, fake.reports, np.arange(30)).std(axis=0) / math.sqrt(5000)
        assert np.all(np.abs(scores - fake.expected_scores) <= 5 * sd + 1e-9), (attack, name)


def test_unary_padding_matches_honest_ones():
    """MGA on OUE: 'exact' pads exactly floor(p + (k - 1) q - r) ones; 'mean' matches the honest mean count."""
    proto = OUE(K, EPS)
    rng = np.random.default_rng(2)
    honest = proto.p + (K - 1) * proto.q
    exact = mga(proto, TARGETS, 3000, rng, padding="exact").reports
    assert (exact[:, TARGETS]).all() and (exact.sum(axis=1) == R + math.floor(honest - R)).all()
    mean = mga(proto, TARGETS, 20_000, rng, padding="mean").reports
    assert mean[:, TARGETS].all()
    assert abs(mean.sum(axis=1).mean() - honest) < 5 * math.sqrt(honest / 20_000)
    bare = mga(proto, TARGETS, 10, rng, padding=None).reports
    assert (bare.sum(axis=1) == R).all()
    with pytest.raises(ValueError, match="padding must be"):
        mga(proto, TARGETS, 10, rng, padding="many")


def test_mga_special_cases():
    rng = np.random.default_rng(4)
    hr = HadamardResponse(K, EPS)
    fake = mga(hr, TARGETS, 100, rng)
    assert 0 in set(fake.reports.tolist()) or fake.info["best_outputs"] > 1  # output 0 is in every set
    per = 1 / (2 * hr.p_star - 1)
    assert fake.expected_scores[TARGETS] == pytest.approx(np.full(R, per))  # every target supported
    she = SHE(K, EPS)
    assert mga(she, TARGETS, 5, rng, bound=3.0).expected_gain(TARGETS, BETA, F_T) == pytest.approx(BETA * (R * 3 - F_T))
    with pytest.raises(ValueError, match="bound must be finite"):
        mga(she, TARGETS, 5, rng, bound=float("inf"))
    ss = SS(K, 4.0)  # omega = 2 < r: a uniform 2-subset of the targets
    reports = mga(ss, TARGETS, 500, rng).reports
    assert np.isin(reports, TARGETS).all()
    with pytest.raises(TypeError, match="no MGA"):
        mga(object(), TARGETS, 5, rng)  # type: ignore[arg-type]


def test_smaller_epsilon_larger_gain():
    """The security-privacy tension: MGA's gain grows as epsilon falls (GRR, OUE, OLH)."""
    for cls in (GRR, OUE, OLH):
        gains = [_gain(cls(K, eps), "mga") for eps in (4.0, 2.0, 1.0, 0.5)]
        assert all(a < b for a, b in zip(gains, gains[1:], strict=False)), cls.__name__


def test_rpa_ria_registered_everywhere():
    rng = np.random.default_rng(0)
    for name in FREQUENCY_ORACLES:
        proto = make_oracle(name, 12, 1.0)
        assert rpa(proto, np.array([1, 2]), 3, rng).expected_scores.shape == (12,)
        assert ria(proto, np.array([1, 2]), 3, rng).expected_scores.sum() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"beta": 1.0}, ValueError, r"beta must be in \[0, 1\)"),
        ({"beta": -0.1}, ValueError, r"beta must be in \[0, 1\)"),
        ({"targets": [100]}, ValueError, r"targets must be items in \[0, 100\)"),
        ({"targets": [1, 1]}, ValueError, "targets must be distinct"),
        ({"targets": []}, ValueError, "targets must be a non-empty list"),
        ({"targets": [0.5]}, TypeError, "targets must be integer items"),
        ({"attack": "xyz"}, ValueError, "attack must be one of rpa, ria, mga"),
        ({"defense": "magic"}, ValueError, "defense must be one of none, normalize, detect"),
        ({"values": [100]}, ValueError, r"values must be in \[0, 100\)"),
        ({"values": np.array([], dtype=int)}, ValueError, "at least one genuine user"),
    ],
)
def test_bad_input(kwargs, exc, match):
    args = {"attack": "mga", "values": np.arange(100), "targets": TARGETS, "beta": 0.05}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        simulate(OUE(K, EPS), args.pop("attack"), args.pop("values"), args.pop("targets"), args.pop("beta"),
                 np.random.default_rng(0), **args)  # fmt: skip
    with pytest.raises(ValueError, match="has no fake-user detector"):
        simulate(GRR(K, EPS), "mga", np.arange(100), TARGETS, 0.05, np.random.default_rng(0), defense="detect")
    with pytest.raises(ValueError, match=r"targets must hold at most k=3 items"):
        check_targets("targets", [0, 1, 2, 3], 3)
    with pytest.raises(ValueError, match=r"r must be a whole number in \[1, 5\]"):
        random_targets(5, 6, np.random.default_rng(0))


def test_zero_fake_users_and_gain_table():
    values = np.random.default_rng(1).integers(0, K, size=2000)
    res = simulate(GRR(K, EPS), "mga", values, TARGETS, 0.0, np.random.default_rng(1))
    assert res.n_fake == 0 and res.gain == 0.0 and res.gain_std is None
    rows = gain_table(20, 1.0, values % 20, [1, 2], 0.05, np.random.default_rng(2), protocols=["GRR", "OUE"])
    assert [(r["protocol"], r["attack"]) for r in rows] == [(p, a) for p in ("GRR", "OUE") for a in ATTACKS]
    detect = gain_table(20, 1.0, values % 20, [1, 2], 0.05, np.random.default_rng(2), protocols=["GRR", "OUE"],
                        attacks=["mga"], defense="detect")  # fmt: skip
    assert detect[0]["detected_fraction"] is None and detect[0]["defense"].startswith("detect (no detector")
    assert detect[1]["detected_fraction"] is not None


def test_fakes_aggregated_in_chunks():
    """aggregate_fakes: the state of m fake reports crafted in chunks; E phi weighted over the chunks; the simulation
    without a detector uses it (memory bounded by one chunk)."""
    from dpkit.audits.poisoning import aggregate_fakes

    rng = np.random.default_rng(5)
    for proto in (OUE(K, EPS), GRR(K, EPS), OLH(K, EPS)):
        agg = aggregate_fakes(proto, "mga", TARGETS, 10_001, rng, chunk_size=4096, **({"n_hashes": 1 << 14}
                              if proto.name == "OLH" else {}))  # fmt: skip
        assert agg.state.n == 10_001 and agg.expected_scores.shape == (K,)
        one = ATTACKS["mga"](proto, TARGETS, 10, rng, **({"n_hashes": 1 << 14} if proto.name == "OLH" else {}))
        if proto.name != "OLH":  # the closed form does not depend on the chunk
            np.testing.assert_allclose(agg.expected_scores, one.expected_scores, rtol=1e-12)
    empty = aggregate_fakes(GRR(K, EPS), "rpa", TARGETS, 0, rng)
    assert empty.state.n == 0 and empty.expected_scores is not None
