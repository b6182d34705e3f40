"""Countermeasures (Cao, Jia, Gong 2021, Section 6): normalization caps the gain, the frequent-itemset detector
catches MGA on unary encoding, SS and THE with few false positives and flags nothing on genuine users alone, the
conditional-probability detector on local hashing; each with its false-positive rate."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from dpkit.audits.poisoning import (
    conditional_probability_detector,
    default_detector,
    itemset_detector,
    simulate,
    support_bound,
)
from dpkit.mechanisms import GRR, OLH, OUE, SHE, SS, SUE, THE
from dpkit.mechanisms.longitudinal import LOLOHA, LOSUE

K, EPS, BETA = 60, 1.0, 0.05
TARGETS = np.array([3, 11, 17, 29, 33, 41, 50, 58])


@pytest.fixture(scope="module")
def values():
    return np.random.default_rng(0).integers(0, K, size=40_000)


@pytest.mark.parametrize("cls", [OUE, SUE, SS, THE])
def test_itemset_detection_catches_mga(cls, values):
    res = simulate(cls(K, EPS), "mga", values, TARGETS, BETA, np.random.default_rng(1), defense="detect")
    assert res.detected_fraction > 0.99
    assert res.false_positive_rate < 1e-3
    assert abs(res.gain) < 0.1 * res.analytic_gain  # the attack is undone
    found = res.info["detection"]["itemsets"][0]["items"]
    assert set(found) <= set(TARGETS.tolist()) and len(found) >= 4


@pytest.mark.parametrize("cls", [OUE, SS])
def test_itemset_detector_silent_on_genuine_users(cls, values):
    """With genuine users alone no itemset is significant (the test's level alpha = 1e-3 is a union bound)."""
    proto = cls(K, EPS)
    reports = proto.perturb(values, np.random.default_rng(2))
    det = itemset_detector(proto, reports)
    assert not det.flags.any() and det.info["itemsets"] == []


def test_ria_evades_detection(values):
    """RIA's fake users are honest clients: nothing to detect, and the gain stays."""
    res = simulate(OUE(K, EPS), "ria", values, TARGETS, BETA, np.random.default_rng(3), defense="detect")
    assert res.detected_fraction < 0.01 and res.false_positive_rate < 1e-3


def test_support_bound_dominates_genuine_rates():
    """b_z is at least the probability that one genuine report supports a fixed z-set, whatever its value."""
    rng = np.random.default_rng(4)
    for proto in (OUE(8, 1.0), THE(8, 1.0), SS(8, 1.0), LOSUE(8, 2.0, 1.0)):
        items = np.array([1, 4, 6])
        for v in (1, 0):  # the value in the set, and not
            s = np.ones(100_000, dtype=bool)
            reports = proto.perturb(np.full(100_000, v), rng)
            from dpkit.audits.poisoning import item_support

            s = item_support(proto, reports, items).all(axis=1)
            assert s.mean() <= support_bound(proto, 3) + 5 * np.sqrt(support_bound(proto, 3) / 100_000)
    assert support_bound(SS(8, 4.0), SS(8, 4.0).omega + 1) == 0.0


def test_normalization_caps_the_gain(values):
    for cls in (GRR, OUE, OLH):
        res = simulate(cls(K, EPS), "mga", values, TARGETS, BETA, np.random.default_rng(5), defense="normalize")
        assert res.target_frequency_after <= 1 + 1e-9
        assert res.gain < res.analytic_gain
        assert res.detected_fraction is None


def test_conditional_probability_detector(values):
    """Local hashing: fake users who share a searched hash function with another fake user are flagged by the
    repeats (m draws from a pool of P functions: a share 1 - (1 - 1/P)^(m - 1) of them); genuine users alone are
    flagged at a rate near alpha."""
    proto = OLH(K, EPS)
    res = simulate(proto, "mga", values, TARGETS, BETA, np.random.default_rng(6), defense="detect")
    pool, m = res.info["pool"], res.n_fake
    assert res.detected_fraction > 1 - (1 - 1 / pool) ** (m - 1) - 0.03
    assert res.false_positive_rate < 2e-3
    genuine = proto.perturb(values, np.random.default_rng(7))
    det = conditional_probability_detector(proto, genuine, candidates=TARGETS)
    assert det.flags.mean() < 3e-3  # about alpha = 1e-3 (the null law is simulated)
    contiguous = np.arange(8)
    no_repeats = functools.partial(conditional_probability_detector, repeats=False, candidates=contiguous)
    res = simulate(proto, "mga", values, contiguous, BETA, np.random.default_rng(8), defense=no_repeats)
    assert res.false_positive_rate < 3e-3


def test_default_detectors():
    assert default_detector(GRR(5, 1.0)) is None and default_detector(SHE(5, 1.0)) is None
    assert default_detector(OUE(5, 1.0)) is itemset_detector
    assert default_detector(OLH(5, 1.0)) is conditional_probability_detector
    assert default_detector(LOLOHA(5, 2.0, 1.0)) is conditional_probability_detector
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\)"):
        itemset_detector(OUE(5, 1.0), np.zeros((3, 5), bool), alpha=0)
