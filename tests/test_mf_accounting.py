"""MF accounting through the existing accountant API: calibration, budgets and epsilon work unchanged."""

from __future__ import annotations

import math

import pytest

from dpkit.accountants import (
    PLDAccountant,
    PrivacyBudget,
    RDPAccountant,
    calibrate_noise,
    calibrate_noise_multiplier,
    dpsgd_event,
)
from dpkit.mechanisms.matrix_factorization import (
    FixedEpoch,
    amplified_banded_event,
    mf_event,
    noise_stddev,
    optimize_banded_toeplitz,
    optimize_blt,
)


def test_calibrated_mf_noise_meets_the_target():
    eps, delta = 2.0, 1e-5
    sigma = calibrate_noise(mf_event, eps, delta)
    assert PLDAccountant().epsilon_if(mf_event(sigma), delta) <= eps
    assert PLDAccountant().epsilon_if(mf_event(sigma * 0.99), delta) > eps
    assert RDPAccountant().epsilon_if(mf_event(sigma), delta) >= PLDAccountant().epsilon_if(mf_event(sigma), delta)


def test_budget_spends_one_mf_run():
    budget = PrivacyBudget(4.0, 1e-5)
    budget.spend(mf_event(1.5))
    assert 0 < budget.spent() <= 4.0
    assert PrivacyBudget(0.5, 1e-5).can_spend(mf_event(1.5)) is False


def test_amplified_banded_calibrates_like_dp_sgd_over_fewer_steps():
    n, bands, q, eps, delta = 1000, 10, 0.02, 3.0, 1e-6
    strategy = optimize_banded_toeplitz(n, bands)
    sigma_mf = calibrate_noise(lambda s: amplified_banded_event(strategy, s, q), eps, delta)
    steps = math.ceil(n / bands)
    assert sigma_mf == calibrate_noise(lambda s: dpsgd_event(s, q, steps), eps, delta)
    assert sigma_mf == pytest.approx(calibrate_noise_multiplier(eps, delta, q, steps), rel=2e-3)  # both within rtol


def test_noise_std_for_a_strategy():
    schema = FixedEpoch(10, 100)
    blt = optimize_blt(1000, schema)
    sens = blt.sensitivity(schema).value
    assert noise_stddev(1.2, 0.5, sens) == pytest.approx(1.2 * 0.5 * sens)
    # at equal noise multiplier (equal privacy), the BLT's expected squared error of the model is far below DP-SGD's
    assert blt.evaluate(schema).rmse < 0.2 * math.sqrt(10 * 1001 / 2)
