"""Poisoning the longitudinal protocols (fake users with consistent memoized responses) and RS+FD: simulated gains
within 5 sigma of the closed forms, valid reports, consistency of a fake user's reports over collections."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dpkit.audits.poisoning import crafted_memo, mga, simulate, simulate_longitudinal, simulate_rsfd
from dpkit.mechanisms.longitudinal import LGRR, LOLOHA, LOSUE, LOUE, LSUE, DBitFlipPM
from dpkit.mechanisms.multidimensional import RSFD, RSRFD

K, N, BETA = 30, 20_000, 0.05
TARGETS = np.array([2, 7, 19])
PROTOCOLS = [LGRR(K, 2.0, 1.0), LSUE(K, 2.0, 1.0), LOUE(K, 2.0, 1.0), LOSUE(K, 2.0, 1.0), LOLOHA(K, 2.0, 1.0),
             DBitFlipPM(K, 1.0, d=2)]  # fmt: skip


@pytest.mark.parametrize("proto", PROTOCOLS, ids=lambda p: p.name)
@pytest.mark.parametrize("attack", ["rpa", "ria", "mga"])
def test_longitudinal_gains_match_closed_form(proto, attack):
    rng = np.random.default_rng(9)
    values = rng.integers(0, K, size=N)
    for consistent in (True, False):
        res = simulate_longitudinal(proto, attack, values, TARGETS, BETA, rng, tau=3, consistent=consistent,
                                    **({"n_hashes": 1 << 16} if proto.name == "LOLOHA" else {}))  # fmt: skip
        assert abs(res.gain - res.analytic_gain) < 5 * res.gain_std, (consistent, res.to_dict())
        assert len(res.info["gain_per_round"]) == 3


def test_consistent_fakes_send_irrs_of_one_memo():
    """L-GRR MGA with a consistent memo: a fake user reports its memoized target with probability p2 at every
    collection (an honest IRR), while the direct attack repeats the target; both are valid reports, and the memo's
    gain per collection is smaller than the direct one's."""
    proto = LGRR(K, 2.0, 1.0)
    rng = np.random.default_rng(10)
    memo = crafted_memo(proto, "mga", TARGETS, 20_000, rng)
    same = np.mean([np.mean(memo.reports(proto, rng)[:] == memo.payload[:, 0]) for _ in range(3)])
    assert abs(same - proto.p2) < 5 * math.sqrt(proto.p2 * (1 - proto.p2) / 60_000)
    assert (memo.reports(proto, rng, consistent=False) == memo.payload[:, 0]).all()
    proto.aggregate(memo.reports(proto, rng))
    assert memo.consistent_scores[TARGETS].sum() < memo.direct_scores[TARGETS].sum()
    ria = crafted_memo(proto, "ria", TARGETS, 10, rng)
    assert ria.direct is None and ria.info["honest"]


def test_single_report_attacks_on_longitudinal_classes():
    rng = np.random.default_rng(11)
    values = rng.integers(0, K, size=N)
    for proto in PROTOCOLS:
        fake = mga(proto, TARGETS, 50, rng, **({"n_hashes": 1 << 14} if proto.name == "LOLOHA" else {}))
        proto.aggregate(fake.reports)
        res = simulate(proto, "rpa", values, TARGETS, BETA, rng)
        assert abs(res.gain - res.analytic_gain) < 5 * res.gain_std


def test_longitudinal_bad_input():
    proto = LGRR(K, 2.0, 1.0)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="tau must be a whole number >= 1"):
        simulate_longitudinal(proto, "mga", np.zeros(5, int), [1], 0.1, rng, tau=0)
    with pytest.raises(ValueError, match=r"values must be \(n,\) or \(tau=2, n\)"):
        simulate_longitudinal(proto, "mga", np.zeros((3, 5), int), [1], 0.1, rng, tau=2)
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\)"):
        simulate_longitudinal(proto, "mga", np.zeros(5, int), [1], 1.5, rng)


@pytest.mark.parametrize("fo", ["GRR", "OUE-z", "OUE-r", "SUE-z", "SUE-r"])
def test_rsfd_gains(fo):
    """RS+FD's estimator multiplies by d, and so does the gain of a fake user's crafted slot."""
    proto = RSFD((8, 8, 8), 1.0, fo)
    rng = np.random.default_rng(12)
    data = rng.integers(0, 8, size=(N, 3))
    for attack in ("rpa", "ria", "mga"):
        res = simulate_rsfd(proto, attack, data, [1, 5], BETA, rng, attribute=2)
        assert abs(res.gain - res.analytic_gain) < 5 * res.gain_std, (attack, res.to_dict())
    if fo == "GRR":
        p, q = proto.pq[2]
        a0 = q / 3 + (2 / 3) / 8  # a user not holding v supports it: own report (q) or fake data (1/k)
        f_t = res.target_frequency
        assert res.analytic_gain == pytest.approx(res.beta * (3 * (1 - 2 * a0) / (p - q) - f_t), rel=1e-9)


def test_rsrfd_and_bad_attribute():
    proto = RSRFD((4, 4), 1.0, "GRR", priors=((0.7, 0.1, 0.1, 0.1), (0.25,) * 4))
    rng = np.random.default_rng(13)
    data = rng.integers(0, 4, size=(N, 2))
    res = simulate_rsfd(proto, "mga", data, [3], BETA, rng, attribute=0)
    assert abs(res.gain - res.analytic_gain) < 5 * res.gain_std
    with pytest.raises(ValueError, match=r"attribute must be in \[0, 2\)"):
        simulate_rsfd(proto, "mga", data, [3], BETA, rng, attribute=2)
    with pytest.raises(ValueError, match=r"targets must be items in \[0, 4\)"):
        simulate_rsfd(proto, "mga", data, [4], BETA, rng)
