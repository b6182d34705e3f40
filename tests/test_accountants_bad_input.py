"""Bad input at every public entry point of dpkit.accountants: a clear error naming the parameter, or a documented
result; loaders validate everything and change nothing when they refuse (property-based with hypothesis)."""

import copy
import json
import math
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpkit.accountants import (
    PLDAccountant,
    PrivacyAccountant,
    PrivacyBudget,
    RDPAccountant,
    calibrate_count,
    calibrate_noise,
    calibrate_noise_multiplier,
    calibrate_steps,
    create_accountant,
    group_epsilon,
    group_event,
    group_privacy,
)
from dpkit.accountants import events as ev

NAN, INF = math.nan, math.inf
TINY = sys.float_info.min * sys.float_info.epsilon
STEP = ev.PoissonSampledEvent(0.01, ev.GaussianEvent(1.0))


def _budget():
    b = PrivacyBudget(2.0, 1e-5, accountant="rdp")
    b.spend(STEP, 10)
    return b


def _state():
    return _budget().state_dict()


def _acc_state():
    return RDPAccountant().compose(STEP, 10).state_dict()


def _with(d, path, value):
    out = copy.deepcopy(d)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def _without(d, path):
    out = copy.deepcopy(d)
    node = out
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return out


# (label, call, parameter name that the message must contain)
CASES = [
    # ---------------------------------------------------------------- events
    *[
        (f"gaussian {v!r}", lambda v=v: ev.GaussianEvent(v), "noise_multiplier")
        for v in (NAN, INF, 0, -1, 1e-300, 1e300)
    ],
    ("gaussian str", lambda: ev.GaussianEvent("1"), "noise_multiplier"),
    ("gaussian bool", lambda: ev.GaussianEvent(True), "noise_multiplier"),
    *[(f"laplace {v!r}", lambda v=v: ev.LaplaceEvent(v), "scale") for v in (NAN, INF, 0, -2, 1e-300, None)],
    *[(f"pure {v!r}", lambda v=v: ev.PureDpEvent(v), "epsilon") for v in (NAN, INF, 0, -1, 1e300, [1])],
    ("rr epsilon", lambda: ev.RandomizedResponseEvent(NAN, 3), "epsilon"),
    *[
        (f"rr k {v!r}", lambda v=v: ev.RandomizedResponseEvent(1.0, v), "num_buckets")
        for v in (1, 2.5, 2**60, "3", NAN)
    ],
    *[
        (f"poisson q {v!r}", lambda v=v: ev.PoissonSampledEvent(v, STEP), "sampling_probability")
        for v in (NAN, 0, 1.5, -0.1)
    ],
    ("poisson event", lambda: ev.PoissonSampledEvent(0.1, "gauss"), "event"),
    ("swor n", lambda: ev.SampledWithoutReplacementEvent(0, 0, ev.GaussianEvent(1.0)), "source_dataset_size"),
    ("swor m", lambda: ev.SampledWithoutReplacementEvent(10, 11, ev.GaussianEvent(1.0)), "sample_size"),
    ("swor huge n", lambda: ev.SampledWithoutReplacementEvent(2**60, 1, ev.GaussianEvent(1.0)), "source_dataset_size"),
    *[
        (f"self count {v!r}", lambda v=v: ev.SelfComposedEvent(STEP, v), "count")
        for v in (-1, 1.5, 2**53 + 1, NAN, "2")
    ],
    ("self event", lambda: ev.SelfComposedEvent(3, 2), "event"),
    ("composed not a list", lambda: ev.ComposedEvent(5), "events"),
    ("composed entry", lambda: ev.ComposedEvent([STEP, "x"]), "events[1]"),
    *[(f"dpsgd steps {v!r}", lambda v=v: ev.dpsgd_event(1.0, 0.01, v), "steps") for v in (-1, 2**60, 0.5, None)],
    ("dpsgd sigma", lambda: ev.dpsgd_event(NAN, 0.01, 10), "noise_multiplier"),
    ("dpsgd q", lambda: ev.dpsgd_event(1.0, 0.0, 10), "sampling_probability"),
    ("relation", lambda: ev.NeighbouringRelation.parse("swap"), "neighbouring_relation"),
    # ---------------------------------------------------------------- further events
    *[(f"zcdp rho {v!r}", lambda v=v: ev.ZCDPEvent(v), "rho") for v in (NAN, INF, -0.1, 1e300, "1", None, True)],
    *[(f"zcdp xi {v!r}", lambda v=v: ev.ZCDPEvent(0.1, v), "xi") for v in (NAN, -1.0, INF)],
    *[(f"dg sigma {v!r}", lambda v=v: ev.DiscreteGaussianEvent(v), "sigma") for v in (NAN, INF, 0, -1, 1e300, "2")],
    *[
        (f"dg sensitivity {v!r}", lambda v=v: ev.DiscreteGaussianEvent(1.0, v), "sensitivity")
        for v in (0, -1, 1.5, 10**7, NAN, "1")
    ],
    *[(f"dl a {v!r}", lambda v=v: ev.DiscreteLaplaceEvent(v, 1), "noise_parameter") for v in (NAN, INF, 0, -1, None)],
    ("dl sensitivity", lambda: ev.DiscreteLaplaceEvent(1.0, 0), "sensitivity"),
    ("dl epsilon", lambda: ev.DiscreteLaplaceEvent(1e99, 100), "epsilon"),
    *[(f"em {v!r}", lambda v=v: ev.ExponentialMechanismEvent(v), "epsilon") for v in (NAN, INF, 0, -1, 1e300, [1])],
    *[(f"pf {v!r}", lambda v=v: ev.PermuteAndFlipEvent(v), "epsilon") for v in (NAN, 0, -1)],
    *[(f"ed delta {v!r}", lambda v=v: ev.EpsilonDeltaEvent(1.0, v), "delta") for v in (NAN, INF, -1e-9, 1.0, 1.5, "0")],
    *[(f"ed epsilon {v!r}", lambda v=v: ev.EpsilonDeltaEvent(v, 1e-6), "epsilon") for v in (NAN, INF, -1, 1e300)],
    ("mog sigma", lambda: ev.MixtureOfGaussiansEvent(0.0, (1.0,), (1.0,)), "standard_deviation"),
    ("mog weights sum", lambda: ev.MixtureOfGaussiansEvent(1.0, (0.0, 1.0), (0.5, 0.6)), "sum to 1"),
    ("mog weight negative", lambda: ev.MixtureOfGaussiansEvent(1.0, (0.0, 1.0), (1.0, -0.5)), "probabilities[1]"),
    ("mog weight nan", lambda: ev.MixtureOfGaussiansEvent(1.0, (0.0, 1.0), (NAN, 1.0)), "probabilities[0]"),
    ("mog sensitivity negative", lambda: ev.MixtureOfGaussiansEvent(1.0, (-1.0,), (1.0,)), "sensitivities[0]"),
    ("mog sensitivity inf", lambda: ev.MixtureOfGaussiansEvent(1.0, (INF,), (1.0,)), "sensitivities[0]"),
    ("mog lengths", lambda: ev.MixtureOfGaussiansEvent(1.0, (0.0, 1.0), (1.0,)), "same length"),
    ("mog empty", lambda: ev.MixtureOfGaussiansEvent(1.0, (), ()), "sensitivities"),
    ("mog not a list", lambda: ev.MixtureOfGaussiansEvent(1.0, 1.0, (1.0,)), "sensitivities"),
    ("mog entry type", lambda: ev.MixtureOfGaussiansEvent(1.0, ("1",), (1.0,)), "sensitivities[0]"),
    ("mog huge", lambda: ev.MixtureOfGaussiansEvent(1.0, (0.0,) * 20000, (5e-5,) * 20000), "sensitivities"),
    ("swr n", lambda: ev.SampledWithReplacementEvent(0, 1, ev.GaussianEvent(1.0)), "source_dataset_size"),
    ("swr m", lambda: ev.SampledWithReplacementEvent(10, -1, ev.GaussianEvent(1.0)), "sample_size"),
    ("swr m huge", lambda: ev.SampledWithReplacementEvent(10, 10**9, ev.GaussianEvent(1.0)), "sample_size"),
    ("swr event", lambda: ev.SampledWithReplacementEvent(10, 1, 1.0), "event"),
    *[(f"ras mean {v!r}", lambda v=v: ev.RepeatAndSelectEvent(STEP, v, 1.0), "mean") for v in (NAN, 0.5, INF, "2")],
    *[(f"ras shape {v!r}", lambda v=v: ev.RepeatAndSelectEvent(STEP, 2.0, v), "shape") for v in (NAN, -1.0, "1", None)],
    ("ras event", lambda: ev.RepeatAndSelectEvent("x", 2.0, 1.0), "event"),
    ("tree sigma", lambda: ev.SingleEpochTreeAggregationEvent(-1.0, (10,)), "noise_multiplier"),
    ("tree steps", lambda: ev.SingleEpochTreeAggregationEvent(1.0, (10, -1)), "step_counts[1]"),
    ("tree steps empty", lambda: ev.SingleEpochTreeAggregationEvent(1.0, ()), "step_counts"),
    ("tree steps type", lambda: ev.SingleEpochTreeAggregationEvent(1.0, "10"), "step_counts"),
    ("group size", lambda: ev.GroupEvent(STEP, 0), "group_size"),
    ("group event", lambda: ev.GroupEvent(None, 2), "event"),
    ("group_event size", lambda: group_event(STEP, 1.5), "group_size"),
    ("group_event event", lambda: group_event("x", 2), "event"),
    ("group_privacy accountant", lambda: group_privacy("acc", 2), "accountant"),
    ("group_privacy size", lambda: group_privacy(RDPAccountant(), 0), "group_size"),
    ("group_epsilon delta", lambda: group_epsilon(RDPAccountant().compose(STEP), 2, 0.0), "delta"),
    ("group_epsilon size", lambda: group_epsilon(RDPAccountant().compose(STEP), NAN, 1e-5), "group_size"),
    (
        "dict mixture not a list",
        lambda: ev.event_from_dict({**ev.MixtureOfGaussiansEvent(1.0, (1.0,), (1.0,)).to_dict(), "probabilities": 1.0}),
        "probabilities",
    ),
    (
        "dict mixture nested list",
        lambda: ev.event_from_dict(
            {**ev.MixtureOfGaussiansEvent(1.0, (1.0,), (1.0,)).to_dict(), "probabilities": [[1]]}
        ),
        "probabilities",
    ),
    # ---------------------------------------------------------------- event loaders
    ("json not text", lambda: ev.event_from_json(3), "text"),
    ("json invalid", lambda: ev.event_from_json("{"), "text"),
    ("json truncated", lambda: ev.event_from_json(STEP.to_json()[:-5]), "text"),
    ("json list", lambda: ev.event_from_json("[1, 2]"), "event"),
    ("json nan", lambda: ev.event_from_json('{"type": "gaussian", "noise_multiplier": NaN}'), "noise_multiplier"),
    ("dict no type", lambda: ev.event_from_dict({"noise_multiplier": 1.0}), "type"),
    ("dict type not str", lambda: ev.event_from_dict({"type": ["gaussian"]}), "type"),
    ("dict unknown type", lambda: ev.event_from_dict({"type": "teleport"}), "type"),
    ("dict missing key", lambda: ev.event_from_dict({"type": "gaussian"}), "noise_multiplier"),
    (
        "dict missing default key",
        lambda: ev.event_from_dict({"type": "randomized_response", "epsilon": 1.0}),
        "num_buckets",
    ),
    ("dict unknown key", lambda: ev.event_from_dict({**ev.GaussianEvent(1.0).to_dict(), "x": 1}), "unknown keys"),
    (
        "dict nested bad",
        lambda: ev.event_from_dict(_with(STEP.to_dict(), ["event", "noise_multiplier"], -1)),
        "event.event",
    ),
    ("dict nested not a dict", lambda: ev.event_from_dict(_with(STEP.to_dict(), ["event"], 1.0)), "event.event"),
    ("dict events not a list", lambda: ev.event_from_dict({"type": "composed", "events": 3}), "events"),
    (
        "dict number is a dict",
        lambda: ev.event_from_dict({"type": "gaussian", "noise_multiplier": {}}),
        "noise_multiplier",
    ),
    # ---------------------------------------------------------------- accountants
    ("create name", lambda: create_accountant("magic"), "accountant"),
    ("create name type", lambda: create_accountant(["rdp"]), "accountant"),
    ("pld h", lambda: PLDAccountant(value_discretization_interval=NAN), "value_discretization_interval"),
    ("pld h big", lambda: PLDAccountant(value_discretization_interval=5.0), "value_discretization_interval"),
    ("pld tail", lambda: PLDAccountant(tail_mass=0.5), "tail_mass"),
    ("pld relation", lambda: PLDAccountant("swap"), "neighbouring_relation"),
    ("rdp orders", lambda: RDPAccountant(orders=[0.5, 2]), "orders"),
    ("rdp orders nan", lambda: RDPAccountant(orders=[NAN]), "orders"),
    ("rdp orders str", lambda: RDPAccountant(orders="2,3"), "orders"),
    *[
        (f"{kind} compose {label}", lambda kind=kind, args=args: create_accountant(kind).compose(*args), name)
        for kind in ("rdp", "pld")
        for label, args, name in [
            ("event", ("x",), "event"),
            ("count -1", (STEP, -1), "count"),
            ("count 1.5", (STEP, 1.5), "count"),
            ("count huge", (STEP, 2**60), "count"),
            ("total huge", (ev.SelfComposedEvent(STEP, 2**40), 2**40), "count"),
        ]
    ],
    *[
        (
            f"{kind} get_epsilon {d!r}",
            lambda kind=kind, d=d: create_accountant(kind).compose(STEP).get_epsilon(d),
            "delta",
        )
        for kind in ("rdp", "pld")
        for d in (NAN, INF, 0, 1, -1e-5, 1.5, "1e-5", None, True)
    ],
    *[
        (
            f"{kind} get_delta {e!r}",
            lambda kind=kind, e=e: create_accountant(kind).compose(STEP).get_delta(e),
            "epsilon",
        )
        for kind in ("rdp", "pld")
        for e in (NAN, INF, -1, "1", None)
    ],
    ("pld bounds delta", lambda: PLDAccountant().compose(STEP).get_epsilon_bounds(0.0), "delta"),
    ("epsilon_if event", lambda: RDPAccountant().epsilon_if("x", 1e-5), "event"),
    ("epsilon_if count", lambda: RDPAccountant().epsilon_if(STEP, 1e-5, -2), "count"),
    ("get_epsilon progress", lambda: PLDAccountant().compose(STEP).get_epsilon(1e-5, progress=3), "progress"),
    # ---------------------------------------------------------------- accountant state
    ("state not a dict", lambda: RDPAccountant().load_state_dict([1]), "state"),
    ("state missing key", lambda: RDPAccountant().load_state_dict(_without(_acc_state(), ["ledger"])), "ledger"),
    ("state unknown key", lambda: RDPAccountant().load_state_dict({**_acc_state(), "x": 1}), "x"),
    ("state kind", lambda: PLDAccountant().load_state_dict(_acc_state()), "accountant"),
    (
        "state relation",
        lambda: RDPAccountant("replace_one").load_state_dict(_acc_state()),
        "neighbouring_relation",
    ),
    ("state options", lambda: RDPAccountant(orders=[2, 3]).load_state_dict(_acc_state()), "options"),
    ("state ledger type", lambda: RDPAccountant().load_state_dict(_with(_acc_state(), ["ledger"], 3)), "ledger"),
    ("state entry", lambda: RDPAccountant().load_state_dict(_with(_acc_state(), ["ledger", 0], [1])), "ledger[0]"),
    (
        "state count",
        lambda: RDPAccountant().load_state_dict(_with(_acc_state(), ["ledger", 0, 1], 0)),
        "ledger[0][1]",
    ),
    (
        "state event",
        lambda: RDPAccountant().load_state_dict(_with(_acc_state(), ["ledger", 0, 0, "sampling_probability"], 7)),
        "ledger[0][0]",
    ),
    (
        "state unsupported event",
        lambda: PLDAccountant().load_state_dict(
            _with(
                PLDAccountant().state_dict(), ["ledger"], [[ev.SampledWithoutReplacementEvent(9, 3, STEP).to_dict(), 1]]
            )
        ),
        "ledger[0][0]",
    ),
    ("from_state options", lambda: PrivacyAccountant.from_state_dict(_with(_acc_state(), ["options"], 3)), "options"),
    (
        "from_state unknown option",
        lambda: PrivacyAccountant.from_state_dict(_with(_acc_state(), ["options"], {"speed": 3})),
        "options",
    ),
    (
        "from_state kind",
        lambda: PrivacyAccountant.from_state_dict(_with(_acc_state(), ["accountant"], 3)),
        "accountant",
    ),
    # ---------------------------------------------------------------- calibration
    ("noise make_event", lambda: calibrate_noise(3, 1.0, 1e-5), "make_event"),
    ("noise make_event returns", lambda: calibrate_noise(lambda s: "x", 1.0, 1e-5, "rdp"), "make_event"),
    *[
        (f"noise target {v!r}", lambda v=v: calibrate_noise(ev.GaussianEvent, v, 1e-5), "target_epsilon")
        for v in (NAN, INF, 0, -1, "3")
    ],
    *[
        (f"noise delta {v!r}", lambda v=v: calibrate_noise(ev.GaussianEvent, 1.0, v), "delta")
        for v in (NAN, 0, 1, None)
    ],
    ("noise rtol", lambda: calibrate_noise(ev.GaussianEvent, 1.0, 1e-5, rtol=NAN), "rtol"),
    ("noise guess", lambda: calibrate_noise(ev.GaussianEvent, 1.0, 1e-5, guess=0), "guess"),
    ("noise growth", lambda: calibrate_noise(ev.GaussianEvent, 1.0, 1e-5, growth=1.0), "growth"),
    ("noise max_noise", lambda: calibrate_noise(ev.GaussianEvent, 1.0, 1e-5, max_noise=INF), "max_noise"),
    ("noise accountant", lambda: calibrate_noise(ev.GaussianEvent, 1.0, 1e-5, accountant="magic"), "accountant"),
    ("noise needs too much", lambda: calibrate_noise(ev.GaussianEvent, 1e-9, 1e-5, "rdp", max_noise=10), "max_noise"),
    ("count fn", lambda: calibrate_count(None, 1.0), "epsilon_for_count"),
    ("count target", lambda: calibrate_count(lambda n: n, NAN), "target_epsilon"),
    ("count max_count", lambda: calibrate_count(lambda n: n, 1.0, max_count=0), "max_count"),
    ("count nan epsilon", lambda: calibrate_count(lambda n: NAN, 1.0), "epsilon_for_count"),
    ("multiplier q", lambda: calibrate_noise_multiplier(1.0, 1e-5, NAN, 10), "sampling_probability"),
    ("multiplier steps", lambda: calibrate_noise_multiplier(1.0, 1e-5, 0.01, 2**60), "steps"),
    ("multiplier steps type", lambda: calibrate_noise_multiplier(1.0, 1e-5, 0.01, "10"), "steps"),
    ("multiplier target", lambda: calibrate_noise_multiplier(INF, 1e-5, 0.01, 10), "target_epsilon"),
    ("steps sigma", lambda: calibrate_steps(1.0, 1e-5, 0.01, 0.0), "noise_multiplier"),
    ("steps tiny sigma", lambda: calibrate_steps(1.0, 1e-5, 0.01, 1e-200), "noise_multiplier"),
    ("steps max", lambda: calibrate_steps(1.0, 1e-5, 0.01, 1.0, max_steps=0), "max_steps"),
    ("steps delta", lambda: calibrate_steps(1.0, INF, 0.01, 1.0), "delta"),
    # ---------------------------------------------------------------- budget
    *[(f"budget target {v!r}", lambda v=v: PrivacyBudget(v, 1e-5), "target_epsilon") for v in (NAN, INF, 0, -1, "1")],
    *[(f"budget delta {v!r}", lambda v=v: PrivacyBudget(1.0, v), "target_delta") for v in (NAN, 0, 1, 2.0)],
    ("budget accountant", lambda: PrivacyBudget(1.0, 1e-5, accountant=3), "accountant"),
    ("budget options with instance", lambda: PrivacyBudget(1.0, 1e-5, RDPAccountant(), orders=[2]), "options"),
    ("spend event", lambda: PrivacyBudget(1.0, 1e-5).spend("x"), "event"),
    ("spend count", lambda: PrivacyBudget(1.0, 1e-5).spend(STEP, -1), "count"),
    ("spend huge count", lambda: PrivacyBudget(1.0, 1e-5).spend(STEP, 2**60), "count"),
    ("remaining event", lambda: PrivacyBudget(1.0, 1e-5).remaining(None), "event"),
    ("can_spend count", lambda: PrivacyBudget(1.0, 1e-5).can_spend(STEP, 1.5), "count"),
    ("budget state type", lambda: _budget().load_state_dict("x"), "state"),
    ("budget state keys", lambda: _budget().load_state_dict(_without(_state(), ["target_delta"])), "target_delta"),
    (
        "budget state target",
        lambda: _budget().load_state_dict(_with(_state(), ["target_epsilon"], NAN)),
        "target_epsilon",
    ),
    (
        "budget state ledger",
        lambda: _budget().load_state_dict(_with(_state(), ["accountant", "ledger"], None)),
        "ledger",
    ),
    ("budget from_state", lambda: PrivacyBudget.from_state_dict(_with(_state(), ["target_delta"], 0)), "target_delta"),
]


@pytest.mark.parametrize("call,name", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_an_error_naming_the_parameter(call, name):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert name in str(info.value), str(info.value)


def test_limits_are_stated_in_the_errors():
    with pytest.raises(ValueError, match=r"\[1e-100, 1e\+100\]"):
        ev.GaussianEvent(1e-300)
    with pytest.raises(ValueError, match=str(ev.MAX_COUNT)):
        ev.SelfComposedEvent(STEP, ev.MAX_COUNT + 1)


# ---------------------------------------------------------------------------- documented results at the limits
@pytest.mark.parametrize("kind", ["rdp", "pld"])
def test_extreme_but_valid_inputs_compute(kind):
    events = [
        ev.GaussianEvent(ev.MIN_SCALE),
        ev.GaussianEvent(1e100),
        ev.LaplaceEvent(ev.MIN_SCALE),
        ev.PureDpEvent(ev.MAX_EPSILON),
        ev.RandomizedResponseEvent(1.0, ev.MAX_COUNT),
        ev.PoissonSampledEvent(1e-300, ev.GaussianEvent(1.0)),
        ev.PoissonSampledEvent(0.5, ev.PureDpEvent(ev.MAX_EPSILON)),
    ]
    for event in events:
        for count in (1, ev.MAX_COUNT):
            acc = create_accountant(kind).compose(event, count)
            for delta in (0.5, 1e-5, TINY):
                eps = acc.get_epsilon(delta)
                assert 0 <= eps < INF, (event, count, delta, eps)
            for eps in (0.0, 1.0, 1e300):
                assert 0 <= acc.get_delta(eps) <= 1
    # Non-private: the documented results
    acc = create_accountant(kind).compose(ev.dpsgd_event(0, 0.01, 10))
    assert acc.get_epsilon(1e-5) == INF and acc.get_delta(1e6) == 1.0
    assert create_accountant(kind).get_epsilon(1e-5) == 0.0  # empty ledger


def test_calibration_at_the_limits():
    # A huge target needs almost no noise; the search floor is 1e-6 (documented), and the result is verified.
    sigma = calibrate_noise_multiplier(1e300, 1e-5, 0.01, 10, accountant="rdp")
    assert 0 < sigma <= 1e-5
    assert calibrate_steps(1e300, 1e-5, 0.01, 1.0, accountant="rdp", max_steps=1000) == 1000
    assert calibrate_steps(1e-300, 1e-5, 0.01, 1.0, accountant="rdp") == 0
    assert PrivacyBudget(1e-300, 1e-5).remaining(STEP) == 0


def test_state_loads_do_not_leak_through_the_budget_object():
    budget = _budget()
    before = (budget.target_epsilon, budget.accountant.ledger)
    for bad in (None, {}, _with(_state(), ["accountant", "accountant"], "pld")):
        with pytest.raises((ValueError, TypeError)):
            budget.load_state_dict(bad)
        assert (budget.target_epsilon, budget.accountant.ledger) == before


# ---------------------------------------------------------------------------- property-based loaders
floats = st.floats

base_events = st.one_of(
    st.builds(ev.GaussianEvent, floats(1e-3, 1e3)),
    st.builds(ev.LaplaceEvent, floats(1e-3, 1e3)),
    st.builds(ev.PureDpEvent, floats(1e-6, 50)),
    st.builds(ev.RandomizedResponseEvent, floats(1e-6, 50), st.integers(2, 10**6)),
    st.just(ev.NoOpEvent()),
)
sampled = st.builds(ev.PoissonSampledEvent, floats(1e-9, 1.0, exclude_min=True), base_events)
events = st.recursive(
    st.one_of(base_events, sampled),
    lambda inner: st.one_of(
        st.builds(ev.SelfComposedEvent, inner, st.integers(0, 10**6)),
        st.builds(ev.ComposedEvent, st.lists(inner, max_size=4).map(tuple)),
    ),
    max_leaves=6,
)
pld_ledgers = st.lists(st.tuples(st.one_of(base_events, sampled), st.integers(1, 10**6)), max_size=5)


further_events = st.one_of(
    st.builds(ev.ZCDPEvent, floats(0, 1e3), floats(0, 1e3)),
    st.builds(ev.DiscreteGaussianEvent, floats(1e-3, 1e3), st.integers(1, 10**6)),
    st.builds(ev.DiscreteLaplaceEvent, floats(1e-3, 10), st.integers(1, 1000)),
    st.builds(ev.ExponentialMechanismEvent, floats(1e-6, 50)),
    st.builds(ev.PermuteAndFlipEvent, floats(1e-6, 50)),
    st.builds(ev.EpsilonDeltaEvent, floats(0, 50), floats(0, 1, exclude_max=True)),
    st.integers(1, 5).flatmap(
        lambda n: st.builds(
            lambda s, cs, ws: ev.MixtureOfGaussiansEvent(s, cs, tuple(w / sum(ws) for w in ws)),
            floats(1e-3, 1e3),
            st.lists(floats(0, 1e3), min_size=n, max_size=n).map(tuple),
            st.lists(floats(0.01, 1.0), min_size=n, max_size=n),
        )
    ),
    st.builds(
        ev.SingleEpochTreeAggregationEvent, floats(1e-3, 1e3), st.lists(st.integers(0, 10**6), min_size=1).map(tuple)
    ),
)
wrapped_events = st.one_of(
    further_events,
    st.builds(ev.SampledWithReplacementEvent, st.integers(1, 10**9), st.integers(0, 10**6), further_events),
    st.builds(ev.RepeatAndSelectEvent, further_events, floats(1, 1e6), st.one_of(floats(0, 100), st.just(INF))),
    st.builds(
        ev.GroupEvent,
        st.builds(ev.PoissonSampledEvent, floats(1e-9, 1.0, exclude_min=True), further_events),
        st.integers(1, 100),
    ),
)


@given(wrapped_events)
def test_further_events_json_round_trip(event):
    text = event.to_json()
    assert ev.event_from_json(text) == event
    assert hash(ev.event_from_json(text)) == hash(event)
    assert ev.event_from_dict(json.loads(json.dumps(event.to_dict()))) == event


@given(events)
def test_event_json_round_trip(event):
    assert ev.event_from_json(event.to_json()) == event
    assert ev.event_from_dict(json.loads(json.dumps(event.to_dict()))) == event


@given(pld_ledgers, st.sampled_from(["rdp", "pld"]))
@settings(max_examples=50, deadline=None)
def test_accountant_and_budget_state_round_trip(ledger, kind):
    acc = create_accountant(kind)
    for event, count in ledger:
        if acc.supports(event):
            acc.compose(event, count)
    state = json.loads(json.dumps(acc.state_dict()))
    assert PrivacyAccountant.from_state_dict(state).ledger == acc.ledger
    fresh = create_accountant(kind)
    fresh.load_state_dict(state)
    assert fresh.ledger == acc.ledger
    budget = PrivacyBudget(3.0, 1e-6, accountant=acc)
    again = PrivacyBudget.from_state_dict(json.loads(json.dumps(budget.state_dict())))
    assert (again.target_epsilon, again.target_delta, again.accountant.ledger) == (3.0, 1e-6, acc.ledger)


def _paths(node, prefix=()):
    """Paths to every entry (dict key or list index) of a JSON-like tree."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield (*prefix, key)
        yield from _paths(value, (*prefix, key))


BAD_VALUES = [NAN, INF, -1.0, "x", None, [], {}, True]
STATE = _state()
PATHS = list(_paths(STATE))


@given(st.sampled_from(PATHS), st.sampled_from(BAD_VALUES + ["delete", "extra key"]))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_tampered_budget_state_is_refused_without_state_change(path, mutation):
    if mutation == "delete":
        parent = STATE
        for key in path[:-1]:
            parent = parent[key]
        if not isinstance(parent, dict):
            return  # deleting a list entry can leave a valid (shorter) ledger
        tampered = _without(STATE, path)
    elif mutation == "extra key":
        target = STATE
        for key in path:
            target = target[key]
        if not isinstance(target, dict):
            return
        tampered = _with(STATE, (*path, "tampered"), 1)
    else:
        current = STATE
        for key in path:
            current = current[key]
        if current == mutation and type(current) is type(mutation):
            return  # not a change
        if path[-1] == "ledger" and mutation == []:
            return  # an empty ledger is a valid state (states carry no integrity check)
        tampered = _with(STATE, path, mutation)
    budget = _budget()
    acc = budget.accountant
    before = (budget.target_epsilon, budget.target_delta, acc.ledger, acc.state_dict())
    with pytest.raises((ValueError, TypeError)):
        budget.load_state_dict(tampered)
    assert (budget.target_epsilon, budget.target_delta, acc.ledger, acc.state_dict()) == before
    assert budget.accountant is acc
    with pytest.raises((ValueError, TypeError)):
        PrivacyBudget.from_state_dict(tampered)
