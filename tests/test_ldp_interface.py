"""The LDP protocol contract: abstract bases, frozen parameters with cached derived values, and the auditor's
per-class registrations (every protocol dpkit ships has its likelihood-ratio statistic and family attack)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pytest

from dpkit.accountants import DpEvent
from dpkit.audits.ldp.attacks import (
    fo_family_attack,
    fo_statistic,
    longitudinal_family_attack,
    longitudinal_statistic,
    multidimensional_family_attack,
    multidimensional_statistic,
)
from dpkit.mechanisms import (
    FREQUENCY_ORACLES,
    GRR,
    LGRR,
    LONGITUDINAL_PROTOCOLS,
    OLH,
    OUE,
    RSFD,
    RSRFD,
    SMP,
    SPL,
    DBitFlipPM,
    FrequencyOracle,
    LongitudinalProtocol,
    PureFrequencyOracle,
)
from dpkit.mechanisms._validation import set_fields
from dpkit.mechanisms.base import SupportCounts
from dpkit.mechanisms.multidimensional import MultidimensionalProtocol


def _registered(dispatcher, cls) -> bool:
    """True iff ``cls`` dispatches to a registration, not to the generic fallback."""
    return dispatcher.dispatch(cls) is not dispatcher.dispatch(object)


@pytest.mark.parametrize("name", list(FREQUENCY_ORACLES))
def test_every_frequency_oracle_implements_the_interface_and_is_audited(name):
    cls = FREQUENCY_ORACLES[name]
    assert issubclass(cls, FrequencyOracle) and dataclasses.is_dataclass(cls)
    assert not getattr(cls, "__abstractmethods__", None), f"{name} leaves {cls.__abstractmethods__} abstract"
    o = cls(7, 1.0)
    assert isinstance(o.privacy_event(), DpEvent) and o.delta == 0.0
    assert _registered(fo_statistic, cls) and _registered(fo_family_attack, cls)
    s = fo_statistic(o, 0, 6)
    assert s.pmf is not None and all(p.sum() == pytest.approx(1.0) for p in s.pmf)


@pytest.mark.parametrize("name", list(LONGITUDINAL_PROTOCOLS))
def test_every_longitudinal_protocol_implements_the_interface_and_is_audited(name):
    cls = LONGITUDINAL_PROTOCOLS[name]
    assert issubclass(cls, LongitudinalProtocol) and dataclasses.is_dataclass(cls)
    assert not getattr(cls, "__abstractmethods__", None)
    assert _registered(longitudinal_statistic, cls)
    if cls is not DBitFlipPM:  # LDP-Auditor defines no argmax attack on dBitFlipPM's bucket bits
        assert _registered(longitudinal_family_attack, cls)


@pytest.mark.parametrize("cls", [SPL, SMP, RSFD, RSRFD])
def test_every_multidimensional_protocol_implements_the_interface_and_is_audited(cls):
    assert issubclass(cls, MultidimensionalProtocol) and not getattr(cls, "__abstractmethods__", None)
    assert _registered(multidimensional_statistic, cls)
    if cls is not SMP:  # SMP's reports name their attribute: LDP-Auditor's random-attribute attack does not apply
        assert _registered(multidimensional_family_attack, cls)


def test_multidimensional_protocols_state_their_neighbouring_relation():
    for proto in (SPL((3, 4), 1.0), SMP((3, 4), 1.0)):
        assert proto.neighbouring == "tuple" and proto.tuple_epsilon == proto.epsilon
    rs = RSFD((3, 4), 1.0)
    assert rs.neighbouring == "attribute" and rs.tuple_epsilon == rs.epsilon_amplified > rs.epsilon


def test_abstract_bases_refuse_incomplete_protocols():
    with pytest.raises(TypeError):
        FrequencyOracle()  # type: ignore[abstract]

    @dataclass(frozen=True)
    class NoGuarantee(PureFrequencyOracle):  # a protocol that forgets to state its privacy event
        k: int
        epsilon: float
        p_star = 0.6
        q_star = 0.2

        def _perturb(self, values, rng):
            return values

        def _check_reports(self, reports):
            return np.asarray(reports)

        def _support_counts(self, reports):
            return np.bincount(reports, minlength=self.k)

    with pytest.raises(TypeError, match="privacy_event"):
        NoGuarantee(3, 1.0)  # type: ignore[abstract]


def test_derived_parameters_are_cached_and_frozen():
    o = OLH(50, 2.0)
    assert o.g == round(math.exp(2.0)) + 1 and o.p is o.p and o.q_star == 1.0 / o.g
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.p = 0.9  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.k = 3  # type: ignore[misc]
    # derived values are not fields: equality, hashing and the state's key are the parameters'
    assert OLH(50, 2.0) == o and hash(OLH(50, 2.0)) == hash(o) and o.key == "OLH(k=50, epsilon=2.0, g=8)"
    assert [f.name for f in dataclasses.fields(LGRR)] == ["k", "eps_perm", "eps_1", "calibration"]
    lg = LGRR(5, 2.0, 1.0)
    assert lg.epsilon == lg.eps_1 == 1.0 and lg.n_keys == 5


def test_fields_are_normalized_once_and_only_fields():
    o = GRR(np.int64(4), 1)
    assert type(o.k) is int and type(o.epsilon) is float and o.key == "GRR(k=4, epsilon=1.0)"
    with pytest.raises(AttributeError, match="p"):
        set_fields(o, p=0.5)


def test_subclasses_inherit_their_familys_registration():
    @dataclass(frozen=True)
    class MyOUE(OUE):
        name = "my OUE"

    proto = MyOUE(6, 1.0)
    assert fo_statistic(proto, 0, 5).name == fo_statistic(OUE(6, 1.0), 0, 5).name == "(bit v1, bit v2)"
    state = proto.perturb_aggregate(np.zeros(100, dtype=np.int64), np.random.default_rng(0))
    assert isinstance(state, SupportCounts) and state.n == 100
