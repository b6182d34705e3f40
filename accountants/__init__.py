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
    DiscreteGaussianEvent,
    DiscreteLaplaceEvent,
    DpEvent,
    EpsilonDeltaEvent,
    ExponentialMechanismEvent,
    GaussianEvent,
    GroupEvent,
    LaplaceEvent,
    MixtureOfGaussiansEvent,
    NeighbouringRelation,
    NonPrivateEvent,
    NoOpEvent,
    PermuteAndFlipEvent,
    PoissonSampledEvent,
    PureDpEvent,
    RandomizedResponseEvent,
    RepeatAndSelectEvent,
    SampledWithoutReplacementEvent,
    SampledWithReplacementEvent,
    SelfComposedEvent,
    SingleEpochTreeAggregationEvent,
    ZCDPEvent,
    dpsgd_event,
    event_from_dict,
    event_from_json,
    register_event,
)
from dpkit.accountants.gdp import GaussianDP, gdp_mu
from dpkit.accountants.group import group_epsilon, group_event, group_privacy
from dpkit.accountants.pld import PLDAccountant
from dpkit.accountants.profile import (
    plot_privacy_profile,
    plot_tradeoff_curve,
    privacy_profile,
    tradeoff_curve,
)
from dpkit.accountants.rdp import RDPAccountant

__all__ = [
    "BudgetExceededError",
    "ComposedEvent",
    "DiscreteGaussianEvent",
    "DiscreteLaplaceEvent",
    "DpEvent",
    "EpsilonDeltaEvent",
    "ExponentialMechanismEvent",
    "GaussianDP",
    "GaussianEvent",
    "GroupEvent",
    "LaplaceEvent",
    "MixtureOfGaussiansEvent",
    "NeighbouringRelation",
    "NoOpEvent",
    "NonPrivateEvent",
    "PLDAccountant",
    "PermuteAndFlipEvent",
    "PoissonSampledEvent",
    "PrivacyAccountant",
    "PrivacyBudget",
    "PrivacyError",
    "PureDpEvent",
    "RDPAccountant",
    "RandomizedResponseEvent",
    "RepeatAndSelectEvent",
    "SampledWithReplacementEvent",
    "SampledWithoutReplacementEvent",
    "SelfComposedEvent",
    "SingleEpochTreeAggregationEvent",
    "UnsupportedEventError",
    "ZCDPEvent",
    "available_accountants",
    "calibrate_count",
    "calibrate_noise",
    "calibrate_noise_multiplier",
    "calibrate_steps",
    "create_accountant",
    "dpsgd_event",
    "event_from_dict",
    "event_from_json",
    "gdp_mu",
    "group_epsilon",
    "group_event",
    "group_privacy",
    "plot_privacy_profile",
    "plot_tradeoff_curve",
    "privacy_profile",
    "register_accountant",
    "register_event",
    "tradeoff_curve",
]
