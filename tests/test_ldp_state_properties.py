"""Property-based tests (hypothesis) of the LDP servers' states and loaders.

* Loaders: every state's ``to_dict`` / ``from_dict`` (through JSON) round-trips; a tampered dict is refused with a
  one-line error and neither the dict nor the state it came from changes; a ``ClientPopulation`` file round-trips
  and a tampered one is refused.
* Server: merging the states of any partition of the reports, in any order, equals aggregating the union; a state
  of another protocol (or of the same protocol with other parameters) is refused by ``estimate`` and by merges.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dpkit.mechanisms as m
from dpkit.mechanisms.base import SupportCounts
from dpkit.mechanisms.frequency_oracles import FREQUENCY_ORACLES, make_oracle
from dpkit.mechanisms.longitudinal import LONGITUDINAL_PROTOCOLS, ClientPopulation
from dpkit.mechanisms.multidimensional import RSFD, SMP, SPL, MultiState
from dpkit.mechanisms.range_queries import FlatRange, HaarHRR, HierarchicalHistogram, RangeState

NAMES = [*FREQUENCY_ORACLES, *LONGITUDINAL_PROTOCOLS]


def build(name: str, k: int, eps: float):
    if name in FREQUENCY_ORACLES:
        return make_oracle(name, k, eps)
    cls = LONGITUDINAL_PROTOCOLS[name]
    return cls(k, eps, b=max(2, k // 2), d=2) if name == "dBitFlipPM" else cls(k, 2 * eps, eps)


def reports_of(o, n: int, seed: int):
    rng = np.random.default_rng(seed)
    return o.perturb(rng.integers(0, o.k, n), rng)


def same_state(a: SupportCounts, b: SupportCounts) -> bool:
    """Equal states; float sums (SHE, dBitFlipPM) up to the rounding of their summation order."""
    if a.counts.dtype.kind == "f" or b.counts.dtype.kind == "f":
        return a.n == b.n and a.protocol == b.protocol and np.allclose(a.counts, b.counts, rtol=1e-12, atol=1e-9)
    return a == b


# ---------------------------------------------------------------------------------------------------- loaders
counts_and_n = st.integers(0, 50).flatmap(
    lambda n: st.tuples(st.lists(st.integers(0, n), min_size=1, max_size=12), st.just(n))
)


@given(counts_and_n, st.text(max_size=20), st.booleans())
def test_support_counts_round_trip_through_json(cn, protocol, as_float):
    counts, n = cn
    state = SupportCounts(np.asarray(counts, dtype=np.float64 if as_float else np.int64), n, protocol)
    again = SupportCounts.from_dict(json.loads(json.dumps(state.to_dict())))
    assert again == state and again.counts.dtype.kind == state.counts.dtype.kind


TAMPERS = {
    "count below 0": lambda d: d["counts"].__setitem__(0, -1),
    "count above n": lambda d: d["counts"].__setitem__(0, d["n"] + 1),
    "count NaN": lambda d: d["counts"].__setitem__(0, math.nan),
    "count inf": lambda d: d["counts"].__setitem__(0, math.inf),
    "count a string": lambda d: d["counts"].__setitem__(0, "3"),
    "counts nested": lambda d: d.__setitem__("counts", [d["counts"]]),
    "counts missing": lambda d: d.pop("counts"),
    "n missing": lambda d: d.pop("n"),
    "protocol missing": lambda d: d.pop("protocol"),
    "unknown field": lambda d: d.__setitem__("counts2", []),
    "n negative": lambda d: d.__setitem__("n", -1),
    "n fractional": lambda d: d.__setitem__("n", 1.5),
    "n a string": lambda d: d.__setitem__("n", "7"),
    "protocol not a str": lambda d: d.__setitem__("protocol", 3),
}


@given(counts_and_n, st.sampled_from(sorted(TAMPERS)))
def test_a_tampered_support_counts_dict_is_refused_without_change(cn, tamper):
    counts, n = cn
    state = SupportCounts(np.asarray(counts), n, "GRR(k=3, epsilon=1.0)")
    before = state.counts.copy()
    d = state.to_dict()
    TAMPERS[tamper](d)
    frozen = copy.deepcopy(d)
    with pytest.raises((TypeError, ValueError)) as info:
        SupportCounts.from_dict(d)
    assert "\n" not in str(info.value)
    assert json.dumps(d, default=str) == json.dumps(frozen, default=str)  # the dict is not changed
    assert np.array_equal(state.counts, before) and state.n == n  # nor the state it came from


def _range_state(seed: int) -> RangeState:
    o = HierarchicalHistogram(9, 1.0, branching=3)
    rng = np.random.default_rng(seed)
    return o.perturb_aggregate(rng.integers(0, 9, 60), rng)


def _multi_state(seed: int) -> MultiState:
    o = SPL((3, 4), 1.0)
    rng = np.random.default_rng(seed)
    return o.aggregate(o.perturb(rng.integers(0, 3, (40, 2)), rng))


@given(st.integers(0, 2**16), st.sampled_from([RangeState, MultiState]), st.sampled_from(sorted(TAMPERS)))
def test_nested_states_round_trip_and_refuse_tampering(seed, cls, tamper):
    state = _range_state(seed) if cls is RangeState else _multi_state(seed)
    assert cls.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    d = state.to_dict()
    part = d["levels" if cls is RangeState else "states"][seed % 2]
    TAMPERS[tamper](part)
    with pytest.raises((TypeError, ValueError)) as info:
        cls.from_dict(d)
    assert "\n" not in str(info.value)
    assert cls.from_dict(state.to_dict()) == state  # the state itself is untouched


POPULATION_TAMPERS = {
    "negative report count": lambda e: e["n_reports"].__setitem__(0, -2),
    "truncated report counts": lambda e: e.__setitem__("n_reports", e["n_reports"][:-3]),
    "report counts below the memo": lambda e: e.__setitem__("n_reports", np.zeros_like(e["n_reports"])),
    "memo keys unsorted": lambda e: e.__setitem__("memo_keys", e["memo_keys"][::-1].copy()),
    "memo key of no user": lambda e: e["memo_keys"].__setitem__(-1, np.uint64(2**63)),
    "payload rows dropped": lambda e: e.__setitem__("memo_payload", e["memo_payload"][1:]),
    "meta dropped": lambda e: e.pop("meta"),
    "meta not JSON": lambda e: e.__setitem__("meta", np.array("{")),
}


@settings(max_examples=40)
@given(
    st.sampled_from(sorted(LONGITUDINAL_PROTOCOLS)), st.integers(0, 2**16), st.sampled_from(sorted(POPULATION_TAMPERS))
)
def test_client_population_files_round_trip_and_refuse_tampering(tmp_path_factory, name, seed, tamper):
    o = build(name, 5, 1.0)
    rng = np.random.default_rng(seed)
    pop = ClientPopulation(o, 12, rng)
    for _ in range(2):
        pop.report(rng.integers(0, 5, 12), rng)
    path = tmp_path_factory.mktemp("pop") / "population"
    pop.save(path)
    again = ClientPopulation.load(path)
    np.testing.assert_array_equal(again.memo_keys, pop.memo_keys)
    np.testing.assert_array_equal(again.privacy_spent(), pop.privacy_spent())
    with np.load(path, allow_pickle=False) as z:
        entries = {k: z[k].copy() for k in z.files}
    POPULATION_TAMPERS[tamper](entries)
    with open(path, "wb") as f:
        np.savez(f, **entries)
    with pytest.raises(ValueError) as info:
        ClientPopulation.load(path)
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------------------------------- server
@settings(max_examples=60)
@given(
    st.sampled_from(NAMES),
    st.integers(2, 9),
    st.lists(st.integers(0, 40), min_size=1, max_size=6),
    st.randoms(use_true_random=False),
    st.integers(0, 2**16),
)
def test_merging_in_any_order_equals_aggregating_the_union(name, k, sizes, order, seed):
    o = build(name, k, 1.0)
    parts = [reports_of(o, n, seed + i) for i, n in enumerate(sizes)]
    whole = o.aggregate(np.concatenate(parts))
    states = [o.aggregate(p) for p in parts]
    order.shuffle(states)
    while len(states) > 1:  # a random merge tree
        i = order.randrange(len(states) - 1)
        states[i : i + 2] = [states[i] + states[i + 1]]
    assert same_state(states[0], whole)
    assert same_state(sum(o.aggregate(p) for p in parts), whole)
    assert same_state(o.aggregate_stream(iter(parts)), whole)


def _protocol_pairs():
    """Two different protocols, or one protocol with two different parameters, over the same domain."""
    return st.tuples(st.sampled_from(NAMES), st.sampled_from(NAMES), st.integers(2, 7), st.sampled_from([1.0, 2.0]))


@settings(max_examples=60)
@given(_protocol_pairs(), st.integers(0, 2**16))
def test_a_state_from_another_protocol_is_refused(pair, seed):
    a_name, b_name, k, eps = pair
    a = build(a_name, k, 1.0)
    b = build(b_name, k, eps)
    if a.key == b.key:
        b = build(b_name, k, 1.5)
    state = a.aggregate(reports_of(a, 30, seed))
    with pytest.raises((TypeError, ValueError)) as info:
        b.estimate(state)
    assert "\n" not in str(info.value)
    other = b.aggregate(reports_of(b, 30, seed))
    with pytest.raises(ValueError, match="cannot merge|shape"):
        state + other
    assert a.estimate(state).shape == (a.state_shape[0] if a.name == "dBitFlipPM" else a.k,)


@settings(max_examples=30)
@given(
    st.sampled_from(["SPL", "SMP", "RSFD", "Flat", "HH", "Haar"]), st.sampled_from([1.0, 2.0]), st.integers(0, 2**16)
)
def test_structured_states_merge_only_with_their_own_protocol(kind, eps, seed):
    rng = np.random.default_rng(seed)
    if kind in ("SPL", "SMP", "RSFD"):
        cls = {"SPL": SPL, "SMP": SMP, "RSFD": RSFD}[kind]
        a, b = cls((3, 4), 1.0), cls((3, 4), 1.0 + eps)
        data = rng.integers(0, 3, (80, 2))
        sa, sb = (o.aggregate(o.perturb(data, rng)) for o in (a, b))
    else:
        cls = {"Flat": FlatRange, "HH": HierarchicalHistogram, "Haar": HaarHRR}[kind]
        a, b = cls(12, 1.0), cls(12, 1.0 + eps)
        values = rng.integers(0, 12, 300)
        sa, sb = (o.perturb_aggregate(values, rng) for o in (a, b))
    with pytest.raises(ValueError, match="cannot merge"):
        sa + sb
    with pytest.raises(ValueError, match="aggregated by"):
        b.estimate(sa) if kind in ("SPL", "SMP", "RSFD") else b.answer(sa, [[0, 5]])
    assert sa + sa == sum([sa, sa])


def test_every_registered_protocol_is_covered():
    assert set(NAMES) == set(FREQUENCY_ORACLES) | set(LONGITUDINAL_PROTOCOLS)
    assert all(isinstance(build(n, 4, 1.0), m.FrequencyOracle) for n in NAMES)
