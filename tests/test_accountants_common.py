"""Properties every accountant shares: registry, fail-closed, PLD <= RDP, state round trips."""

import dataclasses
import json
from typing import ClassVar

import pytest

from dpkit.accountants import (
    PLDAccountant,
    RDPAccountant,
    UnsupportedEventError,
    available_accountants,
    create_accountant,
)
from dpkit.accountants import events as ev
from dpkit.accountants.accountant import PrivacyAccountant

DELTA = 1e-5


@ev.register_event
@dataclasses.dataclass(frozen=True)
class _MysteryEvent(ev.DpEvent):
    """An event no accountant knows."""

    kind: ClassVar[str] = "test_mystery"


def test_registry():
    assert {"rdp", "pld"} <= set(available_accountants())
    assert isinstance(create_accountant("rdp"), RDPAccountant)
    assert isinstance(create_accountant("pld", value_discretization_interval=1e-3), PLDAccountant)
    with pytest.raises(ValueError, match="accountant must be one of"):
        create_accountant("prv-but-wrong")


@pytest.mark.parametrize("name", ["rdp", "pld"])
def test_unknown_events_fail_closed(name):
    acc = create_accountant(name).compose(ev.GaussianEvent(2.0))
    before = acc.get_epsilon(DELTA)
    assert not acc.supports(_MysteryEvent())
    with pytest.raises(UnsupportedEventError):
        acc.compose(_MysteryEvent())
    assert acc.get_epsilon(DELTA) == before


@pytest.mark.parametrize("q", [0.001, 0.01, 0.1])
@pytest.mark.parametrize("sigma", [0.6, 1.0, 2.0])
@pytest.mark.parametrize("steps", [100, 1000, 10000])
def test_pld_never_above_rdp(q, sigma, steps):
    event = ev.dpsgd_event(sigma, q, steps)
    pld = PLDAccountant().compose(event).get_epsilon(DELTA)
    rdp = RDPAccountant().compose(event).get_epsilon(DELTA)
    assert pld <= rdp


@pytest.mark.parametrize(
    "event",
    [
        ev.GaussianEvent(1.0),
        ev.LaplaceEvent(1.0),
        ev.PureDpEvent(0.5),
        ev.RandomizedResponseEvent(1.0, 4),
        ev.PoissonSampledEvent(0.1, ev.RandomizedResponseEvent(2.0, 3)),
    ],
    ids=lambda e: type(e).__name__,
)
def test_pld_never_above_rdp_other_mechanisms(event):
    pld = PLDAccountant().compose(event, 50).get_epsilon(DELTA)
    rdp = RDPAccountant().compose(event, 50).get_epsilon(DELTA)
    assert pld <= rdp * (1 + 1e-9)


@pytest.mark.parametrize("name", ["rdp", "pld"])
def test_state_round_trip(name):
    acc = create_accountant(name).compose(ev.dpsgd_event(1.0, 0.01, 100)).compose(ev.PureDpEvent(0.1), 3)
    state = json.loads(json.dumps(acc.state_dict()))
    restored = PrivacyAccountant.from_state_dict(state)
    assert type(restored) is type(acc)
    assert restored.get_epsilon(DELTA) == acc.get_epsilon(DELTA)
    with pytest.raises(ValueError, match="state is for accountant"):
        create_accountant("pld" if name == "rdp" else "rdp").load_state_dict(state)


@pytest.mark.parametrize("name", ["rdp", "pld"])
def test_epsilon_if_does_not_record(name):
    acc = create_accountant(name).compose(ev.dpsgd_event(1.0, 0.01, 100))
    ledger = acc.ledger
    more = acc.epsilon_if(ev.PoissonSampledEvent(0.01, ev.GaussianEvent(1.0)), DELTA, 100)
    assert acc.ledger == ledger
    assert more == pytest.approx(create_accountant(name).compose(ev.dpsgd_event(1.0, 0.01, 200)).get_epsilon(DELTA))
