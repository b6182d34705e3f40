"""Calibration (verified and tight) and the privacy budget (refusal, exact save/restore)."""

import json

import pytest

from dpkit.accountants import (
    BudgetExceededError,
    GaussianEvent,
    PLDAccountant,
    PoissonSampledEvent,
    PrivacyBudget,
    calibrate_noise_multiplier,
    calibrate_steps,
    dpsgd_event,
)

DELTA = 1e-5


def pld_eps(sigma, q, steps):
    return PLDAccountant().compose(dpsgd_event(sigma, q, steps)).get_epsilon(DELTA)


@pytest.mark.parametrize("target", [1.0, 3.0, 8.0])
def test_noise_calibration_is_verified_and_tight(target):
    q, steps = 0.01, 1000
    sigma = calibrate_noise_multiplier(target, DELTA, q, steps, accountant="pld")
    assert pld_eps(sigma, q, steps) <= target
    assert pld_eps(sigma * 0.99, q, steps) > target  # within 1% of the smallest valid sigma


def test_step_calibration_is_the_largest_valid_count():
    q, sigma, target = 0.01, 1.0, 2.0
    steps = calibrate_steps(target, DELTA, q, sigma, accountant="pld")
    assert pld_eps(sigma, q, steps) <= target < pld_eps(sigma, q, steps + 1)


def test_noise_and_steps_round_trip():
    q, target = 0.02, 2.0
    sigma = calibrate_noise_multiplier(target, DELTA, q, 500)
    assert calibrate_steps(target, DELTA, q, sigma) >= 500


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(target_epsilon=0, delta=DELTA, sampling_probability=0.01, steps=10), "target_epsilon"),
        (dict(target_epsilon=1, delta=0, sampling_probability=0.01, steps=10), "delta"),
        (dict(target_epsilon=1, delta=DELTA, sampling_probability=0, steps=10), "sampling_probability"),
        (dict(target_epsilon=1, delta=DELTA, sampling_probability=0.01, steps=0), "steps"),
        (dict(target_epsilon=float("nan"), delta=DELTA, sampling_probability=0.01, steps=10), "target_epsilon"),
    ],
)
def test_calibration_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        calibrate_noise_multiplier(**kwargs)


STEP = PoissonSampledEvent(0.01, GaussianEvent(1.0))


def test_budget_refuses_the_step_that_would_exceed():
    budget = PrivacyBudget(target_epsilon=1.0, target_delta=DELTA, accountant="pld")
    allowed = budget.remaining(STEP)
    assert pld_eps(1.0, 0.01, allowed) <= 1.0 < pld_eps(1.0, 0.01, allowed + 1)
    budget.spend(STEP, allowed - 1)
    budget.spend(STEP)
    before = budget.accountant.ledger
    with pytest.raises(BudgetExceededError) as info:
        budget.spend(STEP)
    assert info.value.epsilon > 1.0 and info.value.target_epsilon == 1.0
    assert budget.accountant.ledger == before  # nothing recorded
    assert budget.spent() <= 1.0
    assert budget.remaining(STEP) == 0 and not budget.can_spend(STEP)


def test_budget_mixed_events():
    budget = PrivacyBudget(2.0, DELTA, accountant="pld")
    budget.spend(STEP, 200)
    other = PoissonSampledEvent(0.02, GaussianEvent(1.5))
    n = budget.remaining(other)
    assert n > 0
    budget.spend(other, n)
    with pytest.raises(BudgetExceededError):
        budget.spend(other)
    assert budget.spent() <= 2.0


def test_budget_state_restores_exactly():
    budget = PrivacyBudget(1.5, DELTA, accountant="pld")
    budget.spend(STEP, 300)
    state = json.loads(json.dumps(budget.state_dict()))
    restored = PrivacyBudget.from_state_dict(state)
    assert restored.spent() == budget.spent()
    assert restored.remaining(STEP) == budget.remaining(STEP)
    other = PrivacyBudget(1.5, DELTA, accountant="pld")
    other.load_state_dict(state)
    assert other.accountant.ledger == budget.accountant.ledger


def test_budget_bad_input():
    with pytest.raises(ValueError, match="target_epsilon"):
        PrivacyBudget(-1, DELTA)
    with pytest.raises(ValueError, match="target_delta"):
        PrivacyBudget(1, 2.0)
    with pytest.raises(ValueError, match="accountant"):
        PrivacyBudget(1, DELTA, accountant="magic")
    with pytest.raises(ValueError, match="count"):
        PrivacyBudget(1, DELTA).spend(STEP, -1)
