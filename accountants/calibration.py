"""Calibration: the noise a target (epsilon, delta) needs, and the number of steps a budget allows.

Every result is verified: the returned noise multiplier (or step count) is re-accounted and its epsilon is at most
the target. Noise multipliers are tight: the search stops when the valid and the invalid end of the bracket are
within ``rtol`` (relative) of each other, so the result is within ``rtol`` of the smallest valid one (given that
epsilon decreases with the noise, which holds for every mechanism here).

With the PLD accountant the search starts from the RDP calibration (when the RDP accountant can analyse the event):
the PLD accountant's epsilon is never above the RDP one, so its calibrated noise is never above RDP's.
Every function takes an optional ``progress`` hook ``(fraction, message)`` (:mod:`dpkit.accountants.progress`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

from dpkit.accountants.accountant import PrivacyAccountant, create_accountant
from dpkit.accountants.errors import UnsupportedEventError
from dpkit.accountants.events import MAX_COUNT, MAX_SCALE, MIN_SCALE, DpEvent, dpsgd_event
from dpkit.accountants.progress import Progress, ProgressHook, check_progress
from dpkit.accountants.validation import check_count, check_delta, check_positive, check_probability, check_range

AccountantSpec = str | PrivacyAccountant


def _accountant(spec: AccountantSpec, **options: Any) -> PrivacyAccountant:
    if isinstance(spec, PrivacyAccountant):
        if options:
            raise TypeError(f"options {sorted(options)} are for a new accountant, not for the given {spec!r}")
        return spec.fresh()
    return create_accountant(spec, **options)


class _Converged(Exception):
    """The bracket is within rtol: stop the root finder early."""


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
    progress: ProgressHook | None = None,
    **options: Any,
) -> float:
    """Smallest noise multiplier ``s`` (within ``rtol``) with epsilon(``make_event(s)``) <= ``target_epsilon``.

    Brackets the crossing around ``guess`` (stepping by a factor ``growth``), then runs Brent's method on
    log(s) (evaluations are cached); the returned value is re-accounted and is on the valid side. Noise
    multipliers are searched in [1e-6, ``max_noise``] (``max_noise`` <= 1e100); a target that needs more
    noise raises ValueError naming the limit.
    """
    if not callable(make_event):
        raise TypeError(f"make_event must be a callable noise -> DpEvent, got {make_event!r}")
    target_epsilon = check_positive("target_epsilon", target_epsilon)
    delta = check_delta("delta", delta)
    rtol = check_range("rtol", rtol, 1e-12, 1.0)
    hi = check_range("guess", guess, 1e-6, MAX_SCALE)
    growth = check_range("growth", growth, 1.0 + 1e-9, 1e3)
    max_noise = check_range("max_noise", max_noise, 1e-6, MAX_SCALE)
    report = Progress(check_progress("progress", progress))
    acc = _accountant(accountant, **options)
    if acc.name == "pld":  # start from the RDP calibration: PLD's epsilon is at most RDP's at every noise
        rdp = create_accountant("rdp", neighbouring_relation=acc.neighbouring_relation)
        try:
            rdp_sigma = calibrate_noise(
                make_event, target_epsilon, delta, rdp, rtol=rtol, guess=hi, growth=1.5, max_noise=max_noise
            )
        except UnsupportedEventError:
            pass  # RDP cannot analyse this event: search from the given guess
        else:
            hi, growth = rdp_sigma, min(growth, 1.1)
    report(0.0, f"calibrating noise for epsilon <= {target_epsilon:g} at delta = {delta:g}")

    def make(sigma: float) -> DpEvent:
        event = make_event(sigma)
        if not isinstance(event, DpEvent):
            raise TypeError(f"make_event must return a DpEvent, got {event!r} for noise {sigma!r}")
        return event

    valid, invalid = math.inf, 0.0  # the bracket seen so far: eps(valid) <= target < eps(invalid)
    width0 = math.log(growth) * 2

    @functools.cache
    def eps(sigma: float) -> float:
        nonlocal valid, invalid
        e = acc.epsilon_if(make(sigma), delta)
        if e <= target_epsilon:
            valid = min(valid, sigma)
        else:
            invalid = max(invalid, sigma)
        if 0 < invalid < valid < math.inf:
            width = math.log(valid / invalid)
            done = math.log(width0 / width) / math.log(width0 / math.log1p(rtol)) if width < width0 else 0.0
            report(0.1 + 0.9 * done, f"noise multiplier in ({invalid:.6g}, {valid:.6g}]")
        else:
            report(0.05, f"noise multiplier {sigma:.6g}: epsilon {e:.6g}")
        return e

    def excess(log_sigma: float) -> float:
        if valid / invalid - 1.0 <= rtol:
            raise _Converged
        e = eps(math.exp(log_sigma))
        return 1.0 if math.isinf(e) else math.log(e / target_epsilon) if e > 0 else -1.0

    lo = hi
    if eps(hi) > target_epsilon:
        while eps(hi) > target_epsilon:
            lo, hi = hi, hi * growth
            if hi > max_noise:
                if eps(max_noise) <= target_epsilon:
                    hi = max_noise
                    break
                raise ValueError(
                    f"target_epsilon={target_epsilon} at delta={delta} needs a noise multiplier above "
                    f"max_noise={max_noise:g}"
                )
    else:
        lo = hi / growth
        while eps(lo) <= target_epsilon:
            hi, lo = lo, lo / growth
            if lo < 1e-6:
                report(1.0, f"noise multiplier {hi:.6g}")
                return hi
    # eps(lo) > target >= eps(hi)
    if hi / lo - 1.0 > rtol:
        try:
            from scipy import optimize  # imported here: the command line starts faster without it

            root = optimize.brentq(excess, math.log(lo), math.log(hi), xtol=rtol / 4)
        except _Converged:
            pass
        else:
            candidate = math.exp(root) * (1 + rtol / 2)
            while candidate < valid and eps(candidate) > target_epsilon:
                candidate *= 1 + rtol / 2
    result = min(hi, valid)
    report(1.0, f"noise multiplier {result:.6g}")
    return result


def calibrate_count(
    epsilon_for_count: Callable[[int], float],
    target_epsilon: float,
    *,
    max_count: int = 10**9,
    progress: ProgressHook | None = None,
) -> int:
    """Largest ``n`` in [0, max_count] with ``epsilon_for_count(n) <= target_epsilon`` (epsilon grows with n)."""
    if not callable(epsilon_for_count):
        raise TypeError(f"epsilon_for_count must be a callable count -> epsilon, got {epsilon_for_count!r}")
    target_epsilon = check_positive("target_epsilon", target_epsilon, allow_inf=True)
    max_count = check_count("max_count", max_count, minimum=1, maximum=MAX_COUNT)
    report = Progress(check_progress("progress", progress))
    report(0.0, f"counting steps within epsilon {target_epsilon:g}")

    def fits(n: int) -> bool:
        e = epsilon_for_count(n)
        if e != e:  # NaN: a broken epsilon function must not pass for a small one
            raise ValueError(f"epsilon_for_count({n}) returned NaN")
        return e <= target_epsilon

    if not fits(1):
        report(1.0, "0 steps")
        return 0
    lo, hi = 1, 2
    doublings = max(1, max_count.bit_length())
    while hi <= max_count and fits(hi):
        lo, hi = hi, hi * 2
        report(0.5 * lo.bit_length() / doublings, f"at least {lo} steps")
    if hi > max_count:
        if fits(max_count):
            report(1.0, f"{max_count} steps (max_count)")
            return max_count
        hi = max_count
    # Invariant: eps(lo) <= target < eps(hi).
    span = max(1, (hi - lo).bit_length())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
        report(0.5 + 0.5 * (1 - (hi - lo).bit_length() / span), f"between {lo} and {hi} steps")
    report(1.0, f"{lo} steps")
    return lo


def calibrate_noise_multiplier(
    target_epsilon: float,
    delta: float,
    sampling_probability: float,
    steps: int,
    accountant: AccountantSpec = "pld",
    *,
    rtol: float = 1e-3,
    progress: ProgressHook | None = None,
    **options: Any,
) -> float:
    """Noise multiplier for DP-SGD with Poisson sampling rate ``q`` over ``steps`` steps at (epsilon, delta)."""
    q = check_probability("sampling_probability", sampling_probability)
    steps = check_count("steps", steps, minimum=1, maximum=MAX_COUNT)
    return calibrate_noise(
        lambda s: dpsgd_event(s, q, steps),
        target_epsilon,
        delta,
        accountant,
        rtol=rtol,
        growth=1.5,
        progress=progress,
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
    progress: ProgressHook | None = None,
    **options: Any,
) -> int:
    """Largest number of DP-SGD steps whose epsilon at ``delta`` is at most ``target_epsilon``."""
    target_epsilon = check_positive("target_epsilon", target_epsilon)
    delta = check_delta("delta", delta)
    q = check_probability("sampling_probability", sampling_probability)
    sigma = check_range("noise_multiplier", noise_multiplier, MIN_SCALE, MAX_SCALE)
    max_steps = check_count("max_steps", max_steps, minimum=1, maximum=MAX_COUNT)
    acc = _accountant(accountant, **options)
    return calibrate_count(
        lambda n: acc.epsilon_if(dpsgd_event(sigma, q, n), delta),
        target_epsilon,
        max_count=max_steps,
        progress=progress,
    )
