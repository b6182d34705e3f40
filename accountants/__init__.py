"""Privacy accounting: events describe what ran; accountants turn them into (epsilon, delta).

>>> from dpkit.accountants import PLDAccountant, dpsgd_event
>>> acc = PLDAccountant().compose(dpsgd_event(noise_multiplier=1.0, sampling_probability=0.01, steps=1000))
>>> round(acc.get_epsilon(1e-5), 1)  # doctest: +SKIP
"""

from dpkit.accountants.accountant import (
    PrivacyAccountant,
    available_accountants,
    create_accountant,
    register_accountant,
)
from dpkit.accountants.budget import PrivacyBudget
from dpkit.accountants.calibration import (
    calibrate_count,
    calibrate_noise,
    calibrate_noise_multiplier,
    calibrate_steps,
)
from dpkit.accountants.errors import BudgetExceededError, PrivacyError, UnsupportedEventError
from dpkit.accountants.events import (
    ComposedEvent,
    DpEvent,
    GaussianEvent,
    LaplaceEvent,
    NeighbouringRelation,
    NonPrivateEvent,
    NoOpEvent,
    PoissonSampledEvent,
    PureDpEvent,
    RandomizedResponseEvent,
    SampledWithoutReplacementEvent,
    SelfComposedEvent,
    dpsgd_event,
    event_from_dict,
    event_from_json,
    register_event,
)
from dpkit.accountants.pld import PLDAccountant
from dpkit.accountants.rdp import RDPAccountant

__all__ = [
    "BudgetExceededError",
    "ComposedEvent",
    "DpEvent",
    "GaussianEvent",
    "LaplaceEvent",
    "NeighbouringRelation",
    "NoOpEvent",
    "NonPrivateEvent",
    "PLDAccountant",
    "PoissonSampledEvent",
    "PrivacyAccountant",
    "PrivacyBudget",
    "PrivacyError",
    "PureDpEvent",
    "RDPAccountant",
    "RandomizedResponseEvent",
    "SampledWithoutReplacementEvent",
    "SelfComposedEvent",
    "UnsupportedEventError",
    "available_accountants",
    "calibrate_count",
    "calibrate_noise",
    "calibrate_noise_multiplier",
    "calibrate_steps",
    "create_accountant",
    "dpsgd_event",
    "event_from_dict",
    "event_from_json",
    "register_accountant",
    "register_event",
]
