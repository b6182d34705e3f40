"""Calibration: the noise a target (epsilon, delta) needs, and the number of steps a budget allows.

Every result is verified: the returned noise multiplier (or step count) is re-accounted and its epsilon is at most
the target. Noise multipliers are tight: the search stops when the valid and the invalid end of the bracket are
within ``rtol`` (relative) of each other, so the result is within ``rtol`` of the smallest valid one (given that
epsilon decreases with the noise, which holds for every mechanism here).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

from scipy import optimize

from dpkit.accountants.accountant import PrivacyAccountant, create_accountant
from dpkit.accountants.events import DpEvent, dpsgd_event
from dpkit.accountants.validation import check_count, check_delta, check_positive, check_probability

AccountantSpec = str | PrivacyAccountant


def _accountant(spec: AccountantSpec, **options: Any) -> PrivacyAccountant:
    return spec.fresh() if isinstance(spec, PrivacyAccountant) else create_accountant(spec, **options)


def _epsilon(accountant: PrivacyAccountant, event: DpEvent, delta: float) -> float:
    return accountant.epsilon_if(event, delta)


def calibrate_noise(
    make_event: Callable[[float], DpEvent],
    target_epsilon: float,
    delta: float,
    accountant: AccountantSpec = "pld",
    *,
    rtol: float = 1e-3,
    guess: float = 1.0,
    growth: float = 1.5,
    max_noise: float = 1e6,
    **options: Any,
) -> float:
    """Smallest noise multiplier ``s`` (within ``rtol``) with epsilon(``make_event(s)``) <= ``target_epsilon``.

    Brackets the crossing around ``guess`` (stepping by a factor ``growth``), then runs Brent's method on
    log(s) (evaluations are cached); the returned value is re-accounted and is on the valid side.
    """
    target_epsilon = check_positive("target_epsilon", target_epsilon)
    delta = check_delta("delta", delta)
    rtol = check_positive("rtol", rtol)
    hi = check_positive("guess", guess)
    if not growth > 1:
        raise ValueError(f"growth must be in (1, inf), got {growth!r}")
    acc = _accountant(accountant, **options)

    @functools.cache
    def eps(sigma: float) -> float:
        return _epsilon(acc, make_event(sigma), delta)

    def excess(log_sigma: float) -> float:
        e = eps(math.exp(log_sigma))
        return 1.0 if math.isinf(e) else math.log(e / target_epsilon) if e > 0 else -1.0

    lo = hi
    if eps(hi) > target_epsilon:
        while eps(hi) > target_epsilon:
            lo, hi = hi, hi * growth
            if hi > max_noise:
                raise ValueError(
                    f"target_epsilon={target_epsilon} at delta={delta} needs a noise multiplier above {max_noise}"
                )
    else:
        lo = hi / growth
        while eps(lo) <= target_epsilon:
            hi, lo = lo, lo / growth
            if lo < 1e-6:
                return hi
    # eps(lo) > target >= eps(hi)
    if hi / lo - 1.0 > rtol:
        root = optimize.brentq(excess, math.log(lo), math.log(hi), xtol=rtol / 4)
        candidate = math.exp(root) * (1 + rtol / 2)
        while candidate < hi and eps(candidate) > target_epsilon:
            candidate *= 1 + rtol / 2
        hi = min(hi, candidate)
    return hi


def calibrate_count(
    epsilon_for_count: Callable[[int], float],
    target_epsilon: float,
    *,
    max_count: int = 10**9,
) -> int:
    """Largest ``n`` in [0, max_count] with ``epsilon_for_count(n) <= target_epsilon`` (epsilon grows with n)."""
    if epsilon_for_count(1) > target_epsilon:
        return 0
    lo, hi = 1, 2
    while epsilon_for_count(hi) <= target_epsilon:
        lo, hi = hi, hi * 2
        if lo >= max_count:
            return max_count
    # Invariant: eps(lo) <= target < eps(hi).
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if epsilon_for_count(mid) <= target_epsilon:
            lo = mid
        else:
            hi = mid
    return lo


def calibrate_noise_multiplier(
    target_epsilon: float,
    delta: float,
    sampling_probability: float,
    steps: int,
    accountant: AccountantSpec = "pld",
    *,
    rtol: float = 1e-3,
    **options: Any,
) -> float:
    """Noise multiplier for DP-SGD with Poisson sampling rate ``q`` over ``steps`` steps at (epsilon, delta)."""
    q = check_probability("sampling_probability", sampling_probability)
    steps = check_count("steps", steps, minimum=1)
    guess = 1.0
    if accountant == "pld":  # bracket the tight calibration with a cheap RDP one (PLD needs a little less noise)
        guess = calibrate_noise(lambda s: dpsgd_event(s, q, steps), target_epsilon, delta, "rdp", rtol=1e-2)
    return calibrate_noise(
        lambda s: dpsgd_event(s, q, steps),
        target_epsilon,
        delta,
        accountant,
        rtol=rtol,
        guess=guess,
        growth=1.1 if accountant == "pld" else 1.5,
        **options,
    )


def calibrate_steps(
    target_epsilon: float,
    delta: float,
    sampling_probability: float,
    noise_multiplier: float,
    accountant: AccountantSpec = "pld",
    *,
    max_steps: int = 10**7,
    **options: Any,
) -> int:
    """Largest number of DP-SGD steps whose epsilon at ``delta`` is at most ``target_epsilon``."""
    target_epsilon = check_positive("target_epsilon", target_epsilon)
    delta = check_delta("delta", delta)
    q = check_probability("sampling_probability", sampling_probability)
    sigma = check_positive("noise_multiplier", noise_multiplier)
    acc = _accountant(accountant, **options)
    return calibrate_count(
        lambda n: _epsilon(acc, dpsgd_event(sigma, q, n), delta), target_epsilon, max_count=max_steps
    )
