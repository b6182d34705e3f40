"""Events: validation, JSON round trips, flattening."""

import json
import math

import pytest

from dpkit.accountants import PLDAccountant
from dpkit.accountants import events as ev

EVENTS = [
    ev.NoOpEvent(),
    ev.NonPrivateEvent(),
    ev.GaussianEvent(1.5),
    ev.LaplaceEvent(0.5),
    ev.RandomizedResponseEvent(1.0, 5),
    ev.PureDpEvent(0.1),
    ev.PoissonSampledEvent(0.01, ev.GaussianEvent(1.0)),
    ev.SampledWithoutReplacementEvent(1000, 10, ev.GaussianEvent(2.0)),
    ev.SelfComposedEvent(ev.PoissonSampledEvent(0.01, ev.GaussianEvent(1.0)), 100),
    ev.ComposedEvent([ev.GaussianEvent(1.0), ev.SelfComposedEvent(ev.LaplaceEvent(1.0), 3)]),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_json_round_trip(event):
    text = event.to_json()
    json.loads(text)  # valid JSON
    assert ev.event_from_json(text) == event
    assert hash(ev.event_from_dict(event.to_dict())) == hash(event)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: ev.GaussianEvent(0), "noise_multiplier"),
        (lambda: ev.GaussianEvent(-1), "noise_multiplier"),
        (lambda: ev.GaussianEvent(float("nan")), "noise_multiplier"),
        (lambda: ev.GaussianEvent(math.inf), "noise_multiplier"),
        (lambda: ev.LaplaceEvent(0), "scale"),
        (lambda: ev.PureDpEvent(-0.1), "epsilon"),
        (lambda: ev.RandomizedResponseEvent(1.0, 1), "num_buckets"),
        (lambda: ev.PoissonSampledEvent(0, ev.GaussianEvent(1)), "sampling_probability"),
        (lambda: ev.PoissonSampledEvent(1.01, ev.GaussianEvent(1)), "sampling_probability"),
        (lambda: ev.PoissonSampledEvent(float("nan"), ev.GaussianEvent(1)), "sampling_probability"),
        (lambda: ev.SampledWithoutReplacementEvent(10, 11, ev.GaussianEvent(1)), "sample_size"),
        (lambda: ev.SelfComposedEvent(ev.GaussianEvent(1), -1), "count"),
        (lambda: ev.dpsgd_event(1.0, 0.01, -5), "steps"),
        (lambda: ev.NeighbouringRelation.parse("swap"), "neighbouring_relation"),
    ],
)
def test_bad_input_names_the_parameter(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_error_message_gives_value_and_range():
    with pytest.raises(ValueError) as info:
        ev.PoissonSampledEvent(1.5, ev.GaussianEvent(1.0))
    assert "1.5" in str(info.value) and "(0, 1]" in str(info.value)


def test_events_need_events():
    with pytest.raises(TypeError, match="event"):
        ev.PoissonSampledEvent(0.1, 3.0)
    with pytest.raises(ValueError, match="unknown event type"):
        ev.event_from_dict({"type": "teleport"})


def test_flatten_and_run_length():
    step = ev.PoissonSampledEvent(0.01, ev.GaussianEvent(1.0))
    tail = ev.SelfComposedEvent(ev.ComposedEvent([step, ev.NoOpEvent()]), 5)
    ledger = ev.ComposedEvent([ev.SelfComposedEvent(step, 10), step, tail])
    pairs = list(ev.flatten(ledger))
    assert sum(c for e, c in pairs if e == step) == 16
    assert ev.run_length(pairs) == [(step, 16), (ev.NoOpEvent(), 5)]


def test_dpsgd_event_with_zero_noise_is_non_private():
    event = ev.dpsgd_event(0.0, 0.01, 10)
    assert event == ev.SelfComposedEvent(ev.NonPrivateEvent(), 10)
    assert math.isinf(PLDAccountant().compose(event).get_epsilon(1e-5))
    assert PLDAccountant().compose(event).get_delta(100.0) == 1.0


def test_accountant_state_round_trip_through_json():
    acc = PLDAccountant(value_discretization_interval=2e-4)
    acc.compose(ev.dpsgd_event(1.0, 0.01, 100)).compose(ev.LaplaceEvent(3.0), 2)
    state = json.loads(json.dumps(acc.state_dict()))
    restored = PLDAccountant.from_state_dict(state)
    assert restored.value_discretization_interval == 2e-4
    assert restored.ledger == acc.ledger
    assert restored.get_epsilon(1e-5) == acc.get_epsilon(1e-5)
