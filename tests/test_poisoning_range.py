"""Range-query poisoning (hierarchical histograms, HIO): fake reports consistent across levels, the closed-form
gain of the raw and consistent answers against simulation, Norm-Sub's answer bounded, the 'best' allocation."""

from __future__ import annotations

import numpy as np
import pytest

from dpkit.audits.poisoning import level_targets, range_attack, simulate_range
from dpkit.mechanisms.range_queries import HH, HIO

D, N, BETA = 64, 100_000, 0.05


@pytest.fixture(scope="module")
def values():
    w = 1 / np.arange(1, D + 1) ** 1.1
    return np.random.default_rng(0).choice(D, size=N, p=w / w.sum())


def test_level_targets_cover_the_range():
    hh = HH(D, 1.0, branching=4)  # levels of 4, 16, 64 nodes
    assert [level_targets(hh, lvl, (20, 27)).tolist() for lvl in range(3)] == [[1], [5, 6], list(range(20, 28))]
    hio = HIO(("x", "y"), (16, 16), 1.0, branching=4)
    cells = level_targets(hio, hio.layers.index((2, 1)), {"x": (4, 7), "y": 5})
    # layer (2, 1): x at its leaves (16 nodes), y at level 1 (4 nodes): cells x * 4 + y // 4, x in 4..7, y = 5
    assert cells.tolist() == [x * 4 + 1 for x in range(4, 8)]


@pytest.mark.parametrize("attack", ["rpa", "ria", "mga"])
@pytest.mark.parametrize("eps", [1.0, 3.0])
def test_hh_closed_form(values, attack, eps):
    hh = HH(D, eps, branching=4)
    res = simulate_range(hh, attack, values, (20, 27), BETA, np.random.default_rng(1))
    for mode in ("raw", "consistent"):
        m = res.modes[mode]
        assert abs(m["gain"] - m["analytic_gain"]) < 0.05 + 0.05 * abs(m["analytic_gain"]), (mode, m)
    ns = res.modes["norm-sub"]
    assert ns["analytic_gain"] is None and 0 <= ns["after"] <= 1 + 1e-9
    assert res.target_frequency == pytest.approx(np.mean((values >= 20) & (values <= 27)))


def test_fake_reports_valid_and_best_allocation(values):
    hh = HH(D, 1.0, branching=4)
    rng = np.random.default_rng(2)
    fakes = range_attack(hh, "mga", (20, 27), rng.integers(0, 3, size=500), rng)
    for fo, f in zip(hh.oracles, fakes, strict=True):
        fo.aggregate(f.reports)  # the level oracle's own report check
    uni = simulate_range(hh, "mga", values, (20, 27), BETA, rng)
    best = simulate_range(hh, "mga", values, (20, 27), BETA, rng, allocation="best")
    assert len(best.fake_levels) == 1
    assert best.modes["consistent"]["analytic_gain"] >= uni.modes["consistent"]["analytic_gain"] - 1e-9
    assert best.modes["consistent"]["gain_per_beta"] > 5  # a fake user moves the answer far more than 1/n


def test_hio(values):
    hio = HIO(("x", "y"), (16, 16), 1.0, branching=4)
    rng = np.random.default_rng(3)
    data = rng.integers(0, 16, size=(N, 2))
    res = simulate_range(hio, "mga", data, {"x": (2, 5), "y": (8, 11)}, BETA, rng, n_hashes=1 << 14)
    raw = res.modes["raw"]
    assert list(res.modes) == ["raw"]
    assert abs(raw["gain"] - raw["analytic_gain"]) < 0.05 + 0.05 * abs(raw["analytic_gain"])


def test_range_bad_input(values):
    hh = HH(D, 1.0, branching=4)
    rng = np.random.default_rng(4)
    with pytest.raises(ValueError, match=r"target must be a range \(a, b\) with 0 <= a <= b < 64"):
        simulate_range(hh, "mga", values, (30, 64), BETA, rng)
    with pytest.raises(ValueError, match="allocation must be 'uniform' or 'best'"):
        simulate_range(hh, "mga", values, (3, 4), BETA, rng, allocation="all")
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\)"):
        simulate_range(hh, "mga", values, (3, 4), 1.0, rng)
    hio = HIO(("x", "y"), (16, 16), 1.0, branching=4)
    with pytest.raises(ValueError, match="target names unknown columns"):
        simulate_range(hio, "mga", np.zeros((10, 2), int), {"z": 1}, BETA, rng)
