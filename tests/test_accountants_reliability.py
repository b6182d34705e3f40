"""Reliability of the accountants: any delta, large epsilons, bounded memory, progress, atomic state loads."""

import math
import sys
import tracemalloc

import pytest

from dpkit.accountants import (
    BudgetExceededError,
    GaussianEvent,
    LaplaceEvent,
    PLDAccountant,
    PoissonSampledEvent,
    PrivacyBudget,
    PureDpEvent,
    RandomizedResponseEvent,
    RDPAccountant,
    calibrate_noise,
    calibrate_noise_multiplier,
    calibrate_steps,
    dpsgd_event,
)

TINY = sys.float_info.min * sys.float_info.epsilon  # 5e-324, the smallest positive float (check_delta accepts it)
DELTAS = [1e-5, 1e-10, 1e-13, 1e-15, 1e-16, 1e-30, 1e-100, 1e-300, TINY]

# (name, noise -> event, noises in increasing order); every event here is also analysed by the RDP accountant
# except the Poisson-subsampled Laplace mechanism.
FAMILIES = [
    ("dpsgd", lambda s: dpsgd_event(s, 0.01, 1000), [0.6, 0.8, 1.0, 1.5, 3.0]),
    ("laplace x10", lambda b: _times(LaplaceEvent(b), 10), [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
    ("sampled laplace x200", lambda b: _times(PoissonSampledEvent(0.05, LaplaceEvent(b)), 200), [0.5, 1.0, 2.0, 4.0]),
    ("pure dp x50", lambda s: _times(PureDpEvent(1.0 / s), 50), [1.0, 2.0, 5.0, 10.0]),
    ("3-ary rr x20", lambda s: _times(RandomizedResponseEvent(1.0 / s, 3), 20), [0.5, 1.0, 2.0]),
]


def _times(event, count):
    from dpkit.accountants import SelfComposedEvent

    return SelfComposedEvent(event, count)


def test_pld_bounds_are_finite_at_small_delta():
    # Before: (inf, inf) for delta <= ~1e-13 (tail mass accumulated over the steps exceeded delta).
    acc = PLDAccountant().compose(dpsgd_event(1.0, 0.01, 1000))
    rdp = RDPAccountant().compose(dpsgd_event(1.0, 0.01, 1000)).get_epsilon(1e-15)
    lower, upper = acc.get_epsilon_bounds(1e-15)
    assert math.isfinite(lower) and math.isfinite(upper)
    assert 0 < lower <= upper <= rdp
    # The lower bound at 1e-15 is at least the one at a larger delta (epsilon does not grow with delta).
    assert lower >= acc.get_epsilon_bounds(1e-8)[0]


@pytest.mark.parametrize("delta", DELTAS, ids=lambda d: f"{d:g}")
@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f[0])
def test_pld_is_finite_monotone_and_below_rdp_at_any_delta(family, delta):
    _, make, noises = family
    uppers = []
    for s in noises:
        event = make(s)
        pld = PLDAccountant().compose(event)
        lower, upper = pld.get_epsilon_bounds(delta)
        assert math.isfinite(upper) and math.isfinite(lower), (s, lower, upper)
        assert 0 <= lower <= upper
        assert pld.get_epsilon(delta) == upper
        rdp = RDPAccountant()
        if rdp.supports(event):
            assert upper <= rdp.compose(event).get_epsilon(delta)
        uppers.append(upper)
    assert uppers == sorted(uppers, reverse=True), uppers  # more noise never costs more epsilon


def test_laplace_composition_is_monotone_in_the_noise_at_tiny_delta():
    # Before: inf, then finite, then inf again as the scale grew (delta = 1e-16).
    eps = [PLDAccountant().compose(LaplaceEvent(b), 10).get_epsilon(1e-16) for b in (1, 2, 4, 8, 16, 32, 64)]
    assert all(math.isfinite(e) for e in eps)
    assert eps == sorted(eps, reverse=True)
    assert all(e <= 10 / b + 1e-12 for e, b in zip(eps, (1, 2, 4, 8, 16, 32, 64), strict=True))  # basic composition


@pytest.mark.parametrize("delta", [1e-5, 1e-12, 1e-14, 1e-16, 1e-100, TINY], ids=lambda d: f"{d:g}")
@pytest.mark.parametrize("target", [1.0, 3.0])
def test_pld_calibration_never_needs_more_noise_than_rdp(delta, target):
    # Before: delta = 1e-14 gave PLD 42.98 against RDP 1.263; delta = 1e-16 raised "above 1e6".
    pld = calibrate_noise_multiplier(target, delta, 0.01, 1000, accountant="pld")
    rdp = calibrate_noise_multiplier(target, delta, 0.01, 1000, accountant="rdp")
    assert pld <= rdp
    assert PLDAccountant().compose(dpsgd_event(pld, 0.01, 1000)).get_epsilon(delta) <= target


def test_pld_calibration_of_sampled_laplace_at_tiny_delta():
    # RDP cannot analyse it; PLD must still find a finite, verified noise at any delta.
    def make(b):
        return _times(PoissonSampledEvent(0.05, LaplaceEvent(b)), 100)

    for delta in (1e-5, 1e-16, TINY):
        b = calibrate_noise(make, 2.0, delta, "pld")
        assert PLDAccountant().compose(make(b)).get_epsilon(delta) <= 2.0


def _peak_mib(fn):
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_large_epsilon_calibration_uses_a_coarser_grid_not_more_memory():
    # Before: PLD calibration to epsilon 1000 peaked at about 2.4 GB.
    sigma, peak = _peak_mib(lambda: calibrate_noise_multiplier(1000.0, 1e-5, 0.01, 1000, accountant="pld"))
    assert peak < 256, peak
    eps = PLDAccountant().compose(dpsgd_event(sigma, 0.01, 1000)).get_epsilon(1e-5)
    assert eps <= 1000.0
    assert sigma <= calibrate_noise_multiplier(1000.0, 1e-5, 0.01, 1000, accountant="rdp")


@pytest.mark.slow
def test_large_budget_counts_steps_in_bounded_memory():
    # Before: PrivacyBudget(1e4, 1e-5).remaining(step) peaked at about 2.4 GB.
    step = PoissonSampledEvent(0.01, GaussianEvent(1.0))
    n, peak = _peak_mib(lambda: PrivacyBudget(1e4, 1e-5).remaining(step))
    assert peak < 256, peak
    assert PLDAccountant().compose(step, n).get_epsilon(1e-5) <= 1e4
    assert n >= calibrate_steps(1e4, 1e-5, 0.01, 1.0, accountant="rdp", max_steps=2**40)


def _recorder():
    calls = []

    def hook(fraction, message):
        assert isinstance(message, str)
        calls.append(fraction)

    return calls, hook


def _check_calls(calls):
    assert calls, "the hook was never called"
    assert all(0.0 <= f <= 1.0 for f in calls)
    assert calls == sorted(calls)
    assert calls[-1] == 1.0


@pytest.mark.slow
def test_progress_hooks():
    calls, hook = _recorder()
    calibrate_noise_multiplier(3.0, 1e-5, 0.01, 1000, progress=hook)
    _check_calls(calls)
    calls, hook = _recorder()
    calibrate_steps(2.0, 1e-5, 0.01, 1.0, progress=hook)
    _check_calls(calls)
    calls, hook = _recorder()
    PrivacyBudget(5.0, 1e-5).remaining(PoissonSampledEvent(0.02, GaussianEvent(0.9)), progress=hook)
    _check_calls(calls)
    calls, hook = _recorder()
    PLDAccountant().compose(dpsgd_event(0.95, 0.01, 700)).get_epsilon(1e-5, progress=hook)
    _check_calls(calls)
    with pytest.raises(TypeError, match="progress"):
        calibrate_noise_multiplier(3.0, 1e-5, 0.01, 1000, progress="bar")


def test_refused_budget_load_changes_nothing():
    # Before: a refused load had already raised the budget's cap.
    step = PoissonSampledEvent(0.01, GaussianEvent(1.0))
    budget = PrivacyBudget(1.0, 1e-5)
    budget.spend(step, 100)
    state = budget.state_dict()
    state["target_epsilon"] = 50.0
    state["accountant"]["ledger"][0][1] = -3  # tampered: refused
    before = (budget.target_epsilon, budget.target_delta, budget.accountant.ledger)
    with pytest.raises(ValueError):
        budget.load_state_dict(state)
    assert (budget.target_epsilon, budget.target_delta, budget.accountant.ledger) == before
    with pytest.raises(BudgetExceededError):
        budget.spend(step, 10**6)  # over the original target: still refused


def test_budget_load_keeps_its_accountant_object():
    acc = PLDAccountant()
    budget = PrivacyBudget(2.0, 1e-5, accountant=acc)
    other = PrivacyBudget(2.0, 1e-5)
    other.spend(PoissonSampledEvent(0.01, GaussianEvent(1.0)), 50)
    budget.load_state_dict(other.state_dict())
    assert budget.accountant is acc and acc.ledger == other.accountant.ledger
