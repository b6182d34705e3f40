"""Events: validation, JSON round trips, flattening."""

import json
import math

import pytest

from dpkit.accountants import (
    ComposedEvent,
    GaussianEvent,
    LaplaceEvent,
    NeighbouringRelation,
    NonPrivateEvent,
    NoOpEvent,
    PLDAccountant,
    PoissonSampledEvent,
    PureDpEvent,
    RandomizedResponseEvent,
    SampledWithoutReplacementEvent,
    SelfComposedEvent,
    dpsgd_event,
    event_from_dict,
    event_from_json,
)
from dpkit.accountants.events import flatten, run_length

EVENTS = [
    NoOpEvent(),
    NonPrivateEvent(),
    GaussianEvent(1.5),
    LaplaceEvent(0.5),
    RandomizedResponseEvent(1.0, 5),
    PureDpEvent(0.1),
    PoissonSampledEvent(0.01, GaussianEvent(1.0)),
    SampledWithoutReplacementEvent(1000, 10, GaussianEvent(2.0)),
    SelfComposedEvent(PoissonSampledEvent(0.01, GaussianEvent(1.0)), 100),
    ComposedEvent([GaussianEvent(1.0), SelfComposedEvent(LaplaceEvent(1.0), 3)]),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_json_round_trip(event):
    text = event.to_json()
    json.loads(text)  # valid JSON
    assert event_from_json(text) == event
    assert hash(event_from_dict(event.to_dict())) == hash(event)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: GaussianEvent(0), "noise_multiplier"),
        (lambda: GaussianEvent(-1), "noise_multiplier"),
        (lambda: GaussianEvent(float("nan")), "noise_multiplier"),
        (lambda: GaussianEvent(math.inf), "noise_multiplier"),
        (lambda: LaplaceEvent(0), "scale"),
        (lambda: PureDpEvent(-0.1), "epsilon"),
        (lambda: RandomizedResponseEvent(1.0, 1), "num_buckets"),
        (lambda: PoissonSampledEvent(0, GaussianEvent(1)), "sampling_probability"),
        (lambda: PoissonSampledEvent(1.01, GaussianEvent(1)), "sampling_probability"),
        (lambda: PoissonSampledEvent(float("nan"), GaussianEvent(1)), "sampling_probability"),
        (lambda: SampledWithoutReplacementEvent(10, 11, GaussianEvent(1)), "sample_size"),
        (lambda: SelfComposedEvent(GaussianEvent(1), -1), "count"),
        (lambda: dpsgd_event(1.0, 0.01, -5), "steps"),
        (lambda: NeighbouringRelation.parse("swap"), "neighbouring_relation"),
    ],
)
def test_bad_input_names_the_parameter(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_error_message_gives_value_and_range():
    with pytest.raises(ValueError) as info:
        PoissonSampledEvent(1.5, GaussianEvent(1.0))
    assert "1.5" in str(info.value) and "(0, 1]" in str(info.value)


def test_events_need_events():
    with pytest.raises(TypeError, match="event"):
        PoissonSampledEvent(0.1, 3.0)
    with pytest.raises(ValueError, match="unknown event type"):
        event_from_dict({"type": "teleport"})


def test_flatten_and_run_length():
    step = PoissonSampledEvent(0.01, GaussianEvent(1.0))
    tail = SelfComposedEvent(ComposedEvent([step, NoOpEvent()]), 5)
    ledger = ComposedEvent([SelfComposedEvent(step, 10), step, tail])
    pairs = list(flatten(ledger))
    assert sum(c for e, c in pairs if e == step) == 16
    assert run_length(pairs) == [(step, 16), (NoOpEvent(), 5)]


def test_dpsgd_event_with_zero_noise_is_non_private():
    event = dpsgd_event(0.0, 0.01, 10)
    assert event == SelfComposedEvent(NonPrivateEvent(), 10)
    assert math.isinf(PLDAccountant().compose(event).get_epsilon(1e-5))
    assert PLDAccountant().compose(event).get_delta(100.0) == 1.0


def test_accountant_state_round_trip_through_json():
    acc = PLDAccountant(value_discretization_interval=2e-4)
    acc.compose(dpsgd_event(1.0, 0.01, 100)).compose(LaplaceEvent(3.0), 2)
    state = json.loads(json.dumps(acc.state_dict()))
    restored = PLDAccountant.from_state_dict(state)
    assert restored.value_discretization_interval == 2e-4
    assert restored.ledger == acc.ledger
    assert restored.get_epsilon(1e-5) == acc.get_epsilon(1e-5)
