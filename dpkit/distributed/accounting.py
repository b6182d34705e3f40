"""Accounting shared by the distributed algorithms: ``rounds`` adaptive Gaussian mechanisms with one multiplier.

Both DIFF2 and CorN-DSGD release, each round, a Gaussian mechanism whose noise is ``z`` times the round's L2
sensitivity (conditioned on what was released before), so the whole run is the event
``SelfComposedEvent(GaussianEvent(z), rounds)`` and any dpkit accountant turns it into (epsilon, delta).

Calibration (:func:`calibrate_rounds`): with ``accountant="pld"`` (default) the smallest ``z`` is found on the single
Gaussian ``GaussianEvent(z / sqrt(rounds))``, which has exactly the privacy profile of the composition (the
composition of Gaussian mechanisms with shifts mu_i is the Gaussian mechanism with shift sqrt(sum mu_i^2): Dong,
Roth and Su, "Gaussian Differential Privacy", 2019). That is tight up to the PLD discretization (an upper bound),
and fast whatever the number of rounds. ``accountant="rdp"`` calibrates the composed event itself (RDP with the
improved conversion; a little more noise). :func:`zcdp_noise_multiplier` is the closed form through zero-concentrated
DP, rho = (sqrt(log(1/delta) + eps) - sqrt(log(1/delta)))^2 and z = sqrt(rounds / (2 rho)), the conversion used by
the DIFF2 and DECOR/CorN-DSGD papers; it needs the most noise of the three.
"""

from __future__ import annotations

import functools
import math

from dpkit.accountants import (
    DpEvent,
    GaussianEvent,
    NeighbouringRelation,
    NonPrivateEvent,
    SelfComposedEvent,
    calibrate_noise,
    create_accountant,
)
from dpkit.accountants.validation import check_count, check_delta, check_nonnegative, check_positive

__all__ = ["rounds_event", "calibrate_rounds", "zcdp_rho", "zcdp_noise_multiplier", "epsilon_of_rounds"]


def rounds_event(noise_multiplier: float, rounds: int) -> DpEvent:
    """``rounds`` x Gaussian(``noise_multiplier``); a multiplier of 0 is non-private."""
    z = check_nonnegative("noise_multiplier", noise_multiplier)
    rounds = check_count("rounds", rounds, minimum=1)
    return SelfComposedEvent(NonPrivateEvent() if z == 0 else GaussianEvent(z), rounds)


def calibrate_rounds(
    epsilon: float,
    delta: float,
    rounds: int,
    *,
    neighbouring_relation: NeighbouringRelation | str = NeighbouringRelation.REPLACE_ONE,
    accountant: str = "pld",
) -> float:
    """Smallest noise multiplier ``z`` (within 0.1%) with ``rounds_event(z, rounds)`` (epsilon, delta)-DP."""
    epsilon = check_positive("epsilon", epsilon)
    delta = check_delta("delta", delta)
    rounds = check_count("rounds", rounds, minimum=1)
    relation = NeighbouringRelation.parse(neighbouring_relation)
    if accountant not in ("pld", "rdp"):
        raise ValueError(f"accountant must be 'pld' or 'rdp', got {accountant!r}")
    return _calibrate(epsilon, delta, rounds, relation, accountant)


@functools.lru_cache(maxsize=256)
def _calibrate(epsilon: float, delta: float, rounds: int, relation: NeighbouringRelation, accountant: str) -> float:
    if accountant == "pld":
        single = calibrate_noise(GaussianEvent, epsilon, delta, "pld", neighbouring_relation=relation)
        return single * math.sqrt(rounds) * (1 + 1e-12)  # the margin keeps z / sqrt(rounds) >= single after rounding
    guess = zcdp_noise_multiplier(epsilon, delta, rounds)
    return calibrate_noise(
        lambda z: rounds_event(z, rounds), epsilon, delta, "rdp", guess=guess, neighbouring_relation=relation
    )


def epsilon_of_rounds(
    noise_multiplier: float,
    rounds: int,
    delta: float,
    *,
    neighbouring_relation: NeighbouringRelation | str = NeighbouringRelation.REPLACE_ONE,
    accountant: str = "pld",
) -> float:
    """Epsilon at ``delta`` of ``rounds_event(noise_multiplier, rounds)`` (PLD through the exact single-Gaussian
    equivalent, or RDP on the composed event)."""
    delta = check_delta("delta", delta)
    event = rounds_event(noise_multiplier, rounds)
    if noise_multiplier == 0:
        return math.inf
    if accountant == "pld":
        event = GaussianEvent(noise_multiplier / math.sqrt(rounds))
    return create_accountant(accountant, neighbouring_relation=neighbouring_relation).epsilon_if(event, delta)


def zcdp_rho(epsilon: float, delta: float) -> float:
    """The zCDP budget rho with rho + 2 sqrt(rho log(1/delta)) = epsilon."""
    epsilon = check_positive("epsilon", epsilon)
    log_inv = math.log(1.0 / check_delta("delta", delta))
    return (math.sqrt(log_inv + epsilon) - math.sqrt(log_inv)) ** 2


def zcdp_noise_multiplier(epsilon: float, delta: float, rounds: int) -> float:
    """``z = sqrt(rounds / (2 rho))``: ``rounds`` Gaussians of multiplier z are rho-zCDP, hence (epsilon, delta)-DP."""
    rounds = check_count("rounds", rounds, minimum=1)
    return math.sqrt(rounds / (2.0 * zcdp_rho(epsilon, delta)))
