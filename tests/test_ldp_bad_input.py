"""Bad input at every public LDP entry point: a one-line error naming the parameter (or the field, or the protocol),
or a documented result; nothing is counted, estimated or loaded from what the server cannot trust.

Walks every registered protocol (frequency oracles, longitudinal, multidimensional, heavy hitters, range queries)
through its constructor, ``perturb``, ``aggregate``, ``aggregate_stream``, ``perturb_aggregate``, ``estimate``,
merges and ``variance``, the states' ``to_dict``/``from_dict`` and ``ClientPopulation.save``/``load``, with NaN, inf,
zero, negative, huge, wrong type, wrong protocol and truncated files. The memory bounds of the clients are checked
as properties (chunk sizes through the ``_memory.row_chunks`` hook, temporaries next to the output), not as figures.
"""

from __future__ import annotations

import json
import math
import tracemalloc
import zipfile

import numpy as np
import pytest

import dpkit.mechanisms as m
from dpkit.mechanisms import _memory
from dpkit.mechanisms._validation import MAX_EPSILON
from dpkit.mechanisms.base import SupportCounts
from dpkit.mechanisms.frequency_oracles import FREQUENCY_ORACLES, make_oracle
from dpkit.mechanisms.heavy_hitters import PEM, SFP, TAP, CandidateHashing, TreeHist
from dpkit.mechanisms.longitudinal import LONGITUDINAL_PROTOCOLS, ClientPopulation
from dpkit.mechanisms.multidimensional import RSFD, RSRFD, SMP, SPL, MultiState
from dpkit.mechanisms.range_queries import HIO, FlatRange, HaarHRR, HierarchicalHistogram, RangeState

NAN, INF = math.nan, math.inf
K = 6


def one_line(excinfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text and text, f"not a one-line error: {text!r}"
    return text


def raises(exc, match: str):
    """pytest.raises that also checks the message is one line."""

    class _Check:
        def __enter__(self):
            self.ctx = pytest.raises(exc, match=match)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *args):
            out = self.ctx.__exit__(*args)
            one_line(self.info)
            return out

    return _Check()


def longitudinal(name: str, k: int = K):
    cls = LONGITUDINAL_PROTOCOLS[name]
    return cls(k, 2.0, b=3, d=2) if name == "dBitFlipPM" else cls(k, 2.0, 1.0)


def all_oracles():
    """One small instance of every registered frequency oracle and longitudinal protocol."""
    return [make_oracle(n, K, 1.0) for n in FREQUENCY_ORACLES] + [longitudinal(n) for n in LONGITUDINAL_PROTOCOLS]


ORACLE_IDS = [*FREQUENCY_ORACLES, *LONGITUDINAL_PROTOCOLS]


def reports_of(o, n: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    return o.perturb(rng.integers(0, o.k, n), rng)


# ------------------------------------------------------------------------------------------------ constructors
BAD_K = [(1, ValueError), (0, ValueError), (-3, ValueError), (2.5, TypeError), ("10", TypeError), (None, TypeError),
         (True, TypeError), (2**40, ValueError)]  # fmt: skip
BAD_EPS = [(0.0, ValueError), (-1.0, ValueError), (NAN, ValueError), (INF, ValueError), (1000.0, ValueError),
           ("1", TypeError), (None, TypeError), (True, TypeError)]  # fmt: skip


@pytest.mark.parametrize("name", list(FREQUENCY_ORACLES))
@pytest.mark.parametrize("bad,exc", BAD_K)
def test_frequency_oracle_constructors_refuse_a_bad_k(name, bad, exc):
    with raises(exc, r"\bk\b"):
        make_oracle(name, bad, 1.0)


@pytest.mark.parametrize("name", list(FREQUENCY_ORACLES))
@pytest.mark.parametrize("bad,exc", BAD_EPS)
def test_frequency_oracle_constructors_refuse_a_bad_epsilon(name, bad, exc):
    with raises(exc, "epsilon"):
        make_oracle(name, K, bad)


@pytest.mark.parametrize("name", [n for n in LONGITUDINAL_PROTOCOLS if n != "dBitFlipPM"])
@pytest.mark.parametrize("bad,exc", BAD_EPS)
def test_longitudinal_constructors_refuse_bad_budgets(name, bad, exc):
    cls = LONGITUDINAL_PROTOCOLS[name]
    with raises(exc, "eps_perm"):
        cls(K, bad, 0.5)
    with raises(exc, "eps_1"):
        cls(K, 2.0, bad)


def test_longitudinal_constructors_refuse_eps_1_not_below_eps_perm_and_bad_parameters():
    for name in LONGITUDINAL_PROTOCOLS:
        if name != "dBitFlipPM":
            with raises(ValueError, "eps_1"):
                LONGITUDINAL_PROTOCOLS[name](K, 1.0, 1.0)
    with raises(ValueError, r"\bd\b"):
        m.DBitFlipPM(K, 1.0, b=3, d=4)
    with raises(ValueError, "calibration"):
        m.LGRR(K, 2.0, 1.0, calibration="fast")
    with raises(ValueError, "eps_1 must be at most"):  # OLOLOHA's optimal g ~ e^eps_1 + 1 would pass 2^32 buckets
        m.LOLOHA(K, 40.0, 30.0)
    assert m.LOLOHA(K, 300.0, 1.0).g == m.loloha_optimal_g(300.0, 1 / 300) == 4  # ~ e + 1 (was 2: cancellation)


@pytest.mark.parametrize(
    "make,param",
    [
        (lambda: SPL((3, 1), 1.0), r"domain_sizes\[1\]"),
        (lambda: SPL((), 1.0), "domain_sizes"),
        (lambda: SMP((3, 4), NAN), "epsilon"),
        (lambda: SMP((3, 4), 1.0, "NOPE"), "protocol"),
        (lambda: RSFD((3, 4), 1.0, "OUE"), "protocol"),
        (lambda: RSFD((3, 4), 700.0), "epsilon"),  # the amplified epsilon would pass the shared limit
        (lambda: RSRFD((3, 2), 1.0, priors=((0.5, 0.5, 0.1), (0.5, 0.5))), r"priors\[0\]"),
        (lambda: PEM(0, 1.0), "bits"),
        (lambda: PEM(65, 1.0), "bits"),
        (lambda: PEM(8, 1.0, k=300), r"\bk\b"),
        (lambda: PEM(8, 30.0), "epsilon"),  # OLH's g would pass 2^32
        (lambda: TreeHist(8, 1.0, step=17), "step"),
        (lambda: TreeHist(8, 50.0), "epsilon"),
        (lambda: SFP(16, 1.0, fragment_bits=20), "fragment_bits"),
        (lambda: TAP(8, 1.0, extension=INF), "extension"),
        (lambda: TAP(8, 1.0, z=NAN), r"\bz\b"),
        (lambda: TAP(8, 1.0, consensus="yes"), "consensus"),
        (lambda: FlatRange(1, 1.0), "domain"),
        (lambda: FlatRange(10, -1.0), "epsilon"),
        (lambda: HierarchicalHistogram(10, 1.0, branching=2.5), "branching"),
        (lambda: HierarchicalHistogram(10, 1.0, branching=11), "branching"),
        (lambda: HaarHRR(10, INF), "epsilon"),
        (lambda: HIO(("a", "a"), (3, 3), 1.0), "columns"),
        (lambda: HIO(("a",), (3, 3), 1.0), "domains"),
    ],
)
def test_other_constructors_name_the_bad_parameter(make, param):
    with raises((TypeError, ValueError), param):
        make()


def test_epsilon_that_would_overflow_is_refused_with_its_limit_everywhere():
    """e^1000 overflows: every protocol refuses it by name (was OverflowError: math range error)."""
    with raises(ValueError, r"epsilon must be in \(0, 700\]"):
        m.choose_protocol(k=10, epsilon=1000)
    for name in FREQUENCY_ORACLES:
        with raises(ValueError, "epsilon"):
            make_oracle(name, 10, 1000.0)
    with raises(ValueError, "eps_perm"):
        m.LGRR(10, 1000.0, 1.0)
    for make in (lambda: SPL((3, 3), 1e300), lambda: FlatRange(10, 800.0), lambda: PEM(8, 1e3)):
        with raises(ValueError, "epsilon"):
            make()


@pytest.mark.parametrize("name", [n for n in FREQUENCY_ORACLES if n not in ("OLH",)])
def test_the_largest_epsilon_computes(name):
    """At the limit every protocol that exists there computes finite estimates and variances (no overflow)."""
    o = make_oracle(name, 10, MAX_EPSILON)
    state = o.aggregate(reports_of(o))
    assert np.isfinite(o.estimate(state)).all() and np.isfinite(o.variance(100))
    assert np.isfinite(o.variance(100, np.full(10, 0.1))).all()


def test_choose_protocol_leaves_out_the_protocols_that_do_not_exist_at_epsilon():
    assert m.choose_protocol(10, 30.0).name == "GRR"  # OLH's g would pass 2^32: left out, not an error
    with raises(ValueError, "OLH"):
        m.choose_protocol(10, 30.0, candidates=("OLH",))
    with raises(ValueError, "protocol must be one of"):
        m.choose_protocol(10, 1.0, candidates=("GRR", "NOPE"))


# ------------------------------------------------------------------------------------------------ clients
BAD_VALUES = [
    (np.array([0.0, NAN]), TypeError, "values"),
    (np.array([0, -1]), ValueError, "values"),
    (np.array([0, K]), ValueError, r"values must be in \[0, 6\)"),
    (np.array([[0, 1]]), ValueError, "values"),
    (np.array(["a", "b"]), TypeError, "values"),
    (np.array([True, False]), TypeError, "values"),
    ([0, None], TypeError, "values"),
]


@pytest.mark.parametrize("o", all_oracles(), ids=ORACLE_IDS)
def test_perturb_refuses_bad_values_and_generators(o):
    rng = np.random.default_rng(0)
    for values, exc, match in BAD_VALUES:
        with raises(exc, match):
            o.perturb(values, rng)
        with raises(exc, match):
            o.perturb_aggregate(values, rng)
    for bad_rng in (0, None, np.random.RandomState(0), "rng"):
        with raises(TypeError, "rng"):
            o.perturb(np.zeros(3, dtype=int), bad_rng)


@pytest.mark.parametrize("o", all_oracles(), ids=ORACLE_IDS)
def test_empty_input_is_no_user(o):
    """Documented: no value is no report, an empty state; estimating from it names n."""
    rng = np.random.default_rng(0)
    empty = o.perturb([], rng)
    assert len(empty) == 0
    state = o.aggregate(empty)
    assert state.n == 0 and state == o.empty_state() == o.aggregate_stream([]) == o.perturb_aggregate([], rng)
    with raises(ValueError, r"state.n must be >= 1"):
        o.estimate(state)


@pytest.mark.parametrize("o", all_oracles(), ids=ORACLE_IDS)
@pytest.mark.parametrize("chunk_size,exc", [(0, ValueError), (-1, ValueError), (2.5, TypeError), ("8", TypeError)])
def test_perturb_aggregate_refuses_a_bad_chunk_size(o, chunk_size, exc):
    """chunk_size=-1 used to drop every user, 0 to be replaced silently by the default."""
    with raises(exc, "chunk_size"):
        o.perturb_aggregate(np.zeros(5, dtype=int), np.random.default_rng(0), chunk_size=chunk_size)


# ------------------------------------------------------------------------------------------------ reports
@pytest.mark.parametrize("o", all_oracles(), ids=ORACLE_IDS)
def test_aggregate_refuses_reports_of_the_wrong_dtype_shape_or_range(o):
    good = reports_of(o, 20)
    with raises(TypeError, "reports"):
        o.aggregate(good.astype(np.float64) if good.dtype.kind != "f" else good.astype(np.complex128))
    with raises(ValueError, "reports"):
        o.aggregate(good[None] if good.ndim == 1 else good[:, :-1])
    with raises(TypeError, "chunks must be an iterable of report chunks"):
        o.aggregate_stream(good)
    if good.dtype.kind in "iub":
        bad = good.astype(np.int64)
        bad.reshape(len(bad), -1)[3, -1] = -1
        with raises(ValueError, "reports"):
            o.aggregate(bad)


@pytest.mark.parametrize("name", ["SUE", "OUE", "L-SUE", "L-OSUE"])
def test_unary_reports_must_be_bits(name):
    """A 2 in an integer report, or a byte 2 in a bool one (e.g. np.frombuffer(payload, bool)), used to be counted."""
    o = make_oracle(name, K, 1.0) if name in FREQUENCY_ORACLES else longitudinal(name)
    good = reports_of(o, 50)
    ints = good.astype(np.uint8)
    ints[7, 2] = 2
    with raises(ValueError, "reports must be bits"):
        o.aggregate(ints)
    raw = good.copy()
    raw.view(np.uint8)[7, 2] = 255
    with raises(ValueError, "reports must be bits"):
        o.aggregate(raw)


def test_subset_reports_must_be_subsets():
    """A report listing an item twice would add two supports from one user (it used to be counted)."""
    o = m.SS(20, 1.0)
    bad = reports_of(o, 50)
    bad[9, 1] = bad[9, 0]
    with raises(ValueError, r"reports\[9\] must list"):
        o.aggregate(bad)


@pytest.mark.parametrize("name", ["OLH", "BLH", "LOLOHA"])
def test_hash_reports_need_uint64_parameters_and_a_bucket_in_range(name):
    o = make_oracle(name, K, 1.0) if name in FREQUENCY_ORACLES else longitudinal(name)
    r = reports_of(o, 10).astype(np.int64)  # signed: the parameters would wrap around silently
    r[2, 0] = -5
    with raises(ValueError, "non-negative"):
        o.aggregate(r)
    r = reports_of(o, 10)
    r[3, 2] = o.g
    with raises(ValueError, r"reports\[:, 2\]"):
        o.aggregate(r)


def test_dbitflip_reports_need_distinct_buckets_and_bits():
    o = m.DBitFlipPM(K, 1.0, b=4, d=2)
    r = reports_of(o, 20)
    r[4, 1] = r[4, 0]
    with raises(ValueError, "distinct"):
        o.aggregate(r)
    r = reports_of(o, 20)
    r[4, 3] = 2
    with raises(ValueError, "bits"):
        o.aggregate(r)


# ------------------------------------------------------------------------------------------------ states
def test_a_state_of_another_protocol_or_parameters_is_refused():
    """OUE used to estimate from a GRR state, GRR(eps=2) from GRR(eps=1)'s, SPL from SMP's."""
    grr1, grr2, oue = m.GRR(K, 1.0), m.GRR(K, 2.0), m.OUE(K, 1.0)
    s1 = grr1.aggregate(reports_of(grr1))
    for other in (oue, grr2, m.THE(K, 1.0), m.LGRR(K, 2.0, 1.0)):
        with raises(ValueError, "aggregated by GRR"):
            other.estimate(s1)
    with raises(ValueError, "cannot merge states of different protocols"):
        s1 + grr2.aggregate(reports_of(grr2))
    with raises(ValueError, "unnamed protocol"):
        grr1.estimate(SupportCounts(s1.counts, s1.n))
    data = np.random.default_rng(0).integers(0, 3, (200, 2))
    spl, smp = SPL((3, 3), 1.0), SMP((3, 3), 1.0)
    s_smp = smp.aggregate(smp.perturb(data, np.random.default_rng(1)))
    with raises(ValueError, "aggregated by SMP"):
        spl.estimate(s_smp)
    with raises(ValueError, "cannot merge"):
        s_smp + spl.aggregate(spl.perturb(data, np.random.default_rng(1)))
    with raises(ValueError, "aggregated by SMP"):
        SMP((3, 3), 2.0).estimate(s_smp)
    rsfd = RSFD((3, 3), 1.0)
    with raises(ValueError, "aggregated by"):
        rsfd.estimate(s_smp)
    with raises(ValueError, "aggregated by"):
        rsfd.ibu(0, s_smp.states[0])


def test_range_and_candidate_states_are_keyed():
    values = np.random.default_rng(0).integers(0, 16, 400)
    a, b = HierarchicalHistogram(16, 1.0), HierarchicalHistogram(16, 2.0)
    sa = a.perturb_aggregate(values, np.random.default_rng(1))
    with raises(ValueError, "aggregated by"):
        b.answer(sa, [[0, 3]])
    with raises(ValueError, "cannot merge"):
        sa + b.perturb_aggregate(values, np.random.default_rng(1))
    haar = HaarHRR(16, 1.0)
    sh = haar.perturb_aggregate(values, np.random.default_rng(1))
    with raises(ValueError, "aggregated by"):
        HaarHRR(16, 1.5).answer(sh, [[0, 3]])
    ch = CandidateHashing(1.0)
    keys = np.arange(300, dtype=np.uint64) % np.uint64(7)
    rep = ch.perturb(keys, np.random.default_rng(2))
    s1 = ch.aggregate(rep, np.arange(4, dtype=np.uint64))
    with raises(ValueError, "cannot merge"):
        s1 + ch.aggregate(rep, np.arange(1, 5, dtype=np.uint64))  # the same number of other candidates
    with raises(ValueError, "aggregated by"):
        ch.estimate(s1, np.arange(1, 5, dtype=np.uint64))
    with raises(ValueError, "aggregated by"):
        CandidateHashing(2.0).estimate(s1)
    with raises(ValueError, "non-negative"):
        ch.aggregate(rep.astype(np.int64) * -1, np.arange(4, dtype=np.uint64))
    with raises(ValueError, "keys"):
        ch.perturb(np.array([-1, 2]), np.random.default_rng(0))


@pytest.mark.parametrize("o", all_oracles(), ids=ORACLE_IDS)
def test_a_tampered_state_is_refused_by_estimate(o):
    s = o.aggregate(reports_of(o, 100))
    lo, hi = o._count_bounds(s.n) or (-INF, INF)
    for bad in (hi + 5.0, lo - 5.0):
        if math.isfinite(bad):
            counts = s.counts.astype(np.float64)
            counts[1] = bad
            with raises(ValueError, r"state.counts\[1\] must be in"):
                o.estimate(SupportCounts(counts, s.n, s.protocol))
    with raises(ValueError, "shape"):
        o.estimate(SupportCounts(np.zeros(s.counts.size + 1), s.n, s.protocol))
    with raises(TypeError, "state must be a SupportCounts"):
        o.estimate(s.to_dict())
    with raises(ValueError, "postprocess"):
        o.estimate(s, postprocess="magic")


BAD_STATE_DICTS = [
    ({}, ValueError, "missing the field"),
    ([], TypeError, "must be a dict"),
    ({"counts": [1, 2], "n": 3}, ValueError, "missing the field.*protocol"),
    ({"counts": [1, 2], "n": 3, "protocol": "p", "extra": 1}, ValueError, "unknown field"),
    ({"counts": [1, -2], "n": 3, "protocol": "p"}, ValueError, r"counts\[1\] must be in \[0, n=3\]"),
    ({"counts": [1, 4], "n": 3, "protocol": "p"}, ValueError, r"counts\[1\] must be in \[0, n=3\]"),
    ({"counts": [1.0, NAN], "n": 3, "protocol": "p"}, ValueError, r"counts\[1\] must be finite"),
    ({"counts": [1.0, INF], "n": 3, "protocol": "p"}, ValueError, r"counts\[1\] must be finite"),
    ({"counts": [[1, 2]], "n": 3, "protocol": "p"}, ValueError, "1-dimensional"),
    ({"counts": ["a"], "n": 3, "protocol": "p"}, TypeError, "counts must be numbers"),
    ({"counts": [1, 2], "n": -1, "protocol": "p"}, ValueError, r"\.n must be"),
    ({"counts": [1, 2], "n": 2.5, "protocol": "p"}, TypeError, r"\.n must be"),
    ({"counts": [1, 2], "n": "3", "protocol": "p"}, TypeError, r"\.n must be"),
    ({"counts": [1, 2], "n": 3, "protocol": 7}, TypeError, "protocol must be a str"),
]


@pytest.mark.parametrize("d,exc,match", BAD_STATE_DICTS)
def test_support_counts_from_dict_refuses_a_bad_field(d, exc, match):
    """Negative, NaN and larger-than-n counts used to load; from_dict({}) gave a raw KeyError."""
    with raises(exc, match):
        SupportCounts.from_dict(d)


def test_nested_states_from_dict_name_the_field():
    o = FlatRange(8, 1.0)
    d = o.perturb_aggregate(np.arange(8), np.random.default_rng(0)).to_dict()
    d["levels"][0]["counts"][2] = -1
    with raises(ValueError, r"RangeState.levels\[0\].counts\[2\]"):
        RangeState.from_dict(d)
    with raises(ValueError, "missing the field"):
        RangeState.from_dict({"levels": []})
    s = SPL((3, 3), 1.0)
    d = s.aggregate(s.perturb(np.zeros((5, 2), int), np.random.default_rng(0))).to_dict()
    d["states"][1]["n"] = -4
    with raises(ValueError, r"MultiState.states\[1\].n"):
        MultiState.from_dict(d)


# ------------------------------------------------------------------------------------------------ variance
@pytest.mark.parametrize("o", all_oracles(), ids=ORACLE_IDS)
def test_variance_refuses_bad_n_and_f(o):
    for n, exc in ((0, ValueError), (-1, ValueError), (2.5, TypeError), (NAN, TypeError), (INF, TypeError)):
        with raises(exc, r"\bn\b"):
            o.variance(n)
    size = o.state_shape[0] if o.name == "dBitFlipPM" else o.k
    for f, exc in ((np.full(size, NAN), ValueError), (-0.1, ValueError), (np.ones(size + 1) / 2, ValueError)):
        with raises(exc, r"\bf\b"):
            o.variance(10, f)


def test_other_variances_refuse_bad_input():
    with raises(ValueError, r"\bf\b"):
        FlatRange(8, 1.0).variance(10, [[0, 3]], f=np.full(8, 0.2))  # not a distribution
    with raises(ValueError, r"\bf\b"):
        HaarHRR(8, 1.0).variance(10, [[0, 3]], f=np.full(8, NAN))
    with raises(ValueError, r"f must give one frequency vector per attribute"):
        SPL((3, 3), 1.0).variance(10, [np.ones(3) / 3])
    with raises(ValueError, r"f\[0\]"):
        RSFD((3, 3), 1.0).variance(10, [np.full(3, 2.0), np.ones(3) / 3])
    with raises((TypeError, ValueError), r"\bn\b"):
        CandidateHashing(1.0).variance(0)


# ------------------------------------------------------------------------------- heavy hitters, range queries
def test_heavy_hitters_refuse_bad_keys_reports_and_chunks():
    keys = np.arange(500, dtype=np.uint64) % np.uint64(9)
    for proto in (PEM(8, 2.0, k=3), TreeHist(8, 2.0, k=3), SFP(8, 2.0, k=3, fragment_bits=4, hash_bits=4)):
        rng = np.random.default_rng(0)
        for bad, exc in ((np.array([1.5]), TypeError), (np.array([-1]), ValueError), (np.array([256]), ValueError)):
            with raises(exc, "values"):
                proto.perturb(bad, rng)
        for size, exc in ((0, ValueError), (-1, ValueError), (1.5, TypeError)):
            with raises(exc, "chunk_size"):
                proto.run(keys, rng, chunk_size=size)
        with raises(ValueError, "reports must be a tuple"):
            proto.identify(np.zeros((3, 4), np.uint64))
        reports = proto.perturb(keys, rng)
        with raises(ValueError, "chunk 0 of the reports"):
            proto.identify(lambda r=reports: [r[:-1]])
        bad = list(reports)
        bad[-1] = bad[-1].astype(np.float64)
        with raises(TypeError, "reports"):
            proto.identify(tuple(bad))
    with raises(ValueError, "parties"):
        TAP(8, 2.0, k=3).perturb(keys, np.arange(len(keys)) * -1, np.random.default_rng(0))
    with raises(TypeError, "seed"):
        m.heavy_hitters.hash_bytes([b"a"], seed=1.5)


def test_range_queries_refuse_bad_queries_values_and_states():
    values = np.random.default_rng(0).integers(0, 16, 300)
    for proto in (FlatRange(16, 1.0), HierarchicalHistogram(16, 1.0), HaarHRR(16, 1.0)):
        rng = np.random.default_rng(0)
        with raises(ValueError, "values"):
            proto.perturb(np.array([16]), rng)
        state = proto.perturb_aggregate(values, rng)
        for q, exc, match in (([[3, 1]], ValueError, r"a <= b"), ([[0, 16]], ValueError, r"queries\[0\]"),
                              ([[0.5, 2]], TypeError, "queries"), ([1, 2, 3], ValueError, "shape")):  # fmt: skip
            with raises(exc, match):
                proto.answer(state, q)
        with raises(ValueError, "chunk_size"):
            proto.perturb_aggregate(values, rng, chunk_size=-1)
        with raises(TypeError, "state must be a RangeState"):
            proto.answer(state.to_dict(), [[0, 1]])
        with raises(TypeError, "chunks must be an iterable"):
            proto.aggregate_stream(np.zeros(3))
        with raises(ValueError, "reports must be a tuple"):
            proto.aggregate(np.zeros(3, int))
    hio = HIO(("a", "b"), (4, 5), 1.0)
    with raises(ValueError, "values"):
        hio.perturb(np.array([[0, 5]]), np.random.default_rng(0))
    with raises(ValueError, "unknown columns"):
        hio.answer(hio.perturb_aggregate(np.zeros((50, 2), int), np.random.default_rng(0)), [{"c": 1}])


# ------------------------------------------------------------------------------------- ClientPopulation files
@pytest.fixture
def population():
    o = m.LOLOHA(K, 2.0, 1.0)
    rng = np.random.default_rng(4)
    pop = ClientPopulation(o, 50, rng)
    for _ in range(3):
        pop.report(rng.integers(0, K, 50), rng)
    return pop


def _rewrite(path, **changes):
    with np.load(path, allow_pickle=False) as z:
        entries = {k: z[k] for k in z.files}
    for k, v in changes.items():
        if v is None:
            entries.pop(k)
        else:
            entries[k] = v
    with open(path, "wb") as f:
        np.savez(f, **entries)


@pytest.mark.parametrize("suffix", ["pop", "pop.npz", "pop.bin"])
def test_save_and_load_take_the_same_path(population, tmp_path, suffix):
    """save('pop') used to write pop.npz, which load('pop') could not find."""
    path = tmp_path / suffix
    population.save(path)
    again = ClientPopulation.load(path)
    assert again.protocol == population.protocol
    np.testing.assert_array_equal(again.privacy_spent(), population.privacy_spent())


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"n_reports": np.full(50, -1)}, "n_reports must be >= 0"),  # used to load and report negative privacy spent
        ({"n_reports": np.ones(10, np.int64)}, "user_"),  # truncated: fewer users than per-user parameters
        ({"n_reports": np.zeros(50, np.int64)}, "truncated"),  # below the memoized keys
        ({"meta": None}, "no 'meta' entry"),  # used to be a raw KeyError traceback
        ({"meta": np.array("{not json")}, "meta must be the JSON object"),
        ({"meta": np.array(json.dumps({"class": "Nope", "params": {}}))}, "meta.class must be one of"),
        ({"meta": np.array(json.dumps({"class": "LOLOHA", "params": {"k": 6}}))}, "meta.params"),
        ({"memo_keys": np.zeros(3, np.int64)}, "memo_keys must be a 1-D uint64"),
        ({"memo_payload": None}, "memo_payload must be present"),
        ({"memo_payload": np.zeros((2, 1), np.int64)}, "memo_payload must have one row per memo key"),
        ({"user_a": None}, "per-user parameters"),
        ({"user_a": np.full(50, -1, np.int64)}, "non-negative"),
        ({"extra": np.zeros(1)}, "unknown entries"),
    ],
)
def test_a_tampered_population_file_is_refused(population, tmp_path, changes, match):
    path = tmp_path / "pop.npz"
    population.save(path)
    _rewrite(path, **changes)
    with raises(ValueError, match):
        ClientPopulation.load(path)


def test_a_truncated_or_foreign_population_file_is_refused(population, tmp_path):
    path = tmp_path / "pop.npz"
    population.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with raises(ValueError, "not a ClientPopulation file"):
        ClientPopulation.load(path)
    path.write_bytes(b"hello")
    with raises(ValueError, "not a ClientPopulation file"):
        ClientPopulation.load(path)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.txt", "nothing")
    with raises(ValueError, "no 'n_reports' entry|no 'meta' entry"):
        ClientPopulation.load(path)
    with pytest.raises(FileNotFoundError):
        ClientPopulation.load(tmp_path / "missing.npz")


def test_population_rounds_refuse_bad_input(population):
    rng = np.random.default_rng(0)
    with raises(ValueError, "users must be distinct"):
        population.report(np.zeros(2, int), rng, users=[3, 3])
    with raises(ValueError, "one entry per reporting user"):
        population.report(np.zeros(3, int), rng, users=[1, 2])
    with raises(ValueError, "user"):
        population.privacy_event(50)
    with raises(TypeError, "rng"):
        population.report(np.zeros(50, int), 0)
    with raises(ValueError, "n_users"):
        ClientPopulation(m.LGRR(K, 2.0, 1.0), 0, rng)


# ------------------------------------------------------------------------------------------------ memory
def test_subset_selection_draws_its_keys_in_bounded_chunks(monkeypatch):
    """The quick start's SS perturb used to draw one n x (k - 1) float64 array (8 GB at 1e6 users, k = 1000): its
    keys now come chunk by chunk through ``_memory.row_chunks``, and the reports do not depend on the chunks."""
    o = m.SS(200, 1.0)
    values = np.random.default_rng(0).integers(0, 200, 3000)
    whole = o.perturb(values, np.random.default_rng(1))
    seen = []
    real = _memory.row_chunks

    def spy(n, row_bytes, budget=None):
        chunks = list(real(n, row_bytes, budget))
        seen.append((row_bytes, [e - s for s, e in chunks]))
        return iter(chunks)

    monkeypatch.setattr(_memory, "CHUNK_BYTES", 1 << 16)
    monkeypatch.setattr(_memory, "row_chunks", spy)
    chunked = o.perturb(values, np.random.default_rng(1))
    np.testing.assert_array_equal(chunked, whole)
    row_bytes, sizes = seen[0]
    assert sum(sizes) == len(values) and len(sizes) > 10
    assert max(sizes) * row_bytes <= 1 << 16


@pytest.mark.parametrize("name", ["OUE", "SUE", "L-OSUE"])
def test_unary_perturb_temporaries_do_not_grow_with_the_output(name, monkeypatch):
    """Ties are marked in the output's own bytes: besides its (n, k) reports (and L-UE's packed PRR bits), perturb
    allocates a few blocks and O(n) bytes, not a list of the n k / 16 ties (two int64 copies: more than the output
    itself). Four times the users adds at most ~16 bytes per user to the temporaries, whatever k."""
    monkeypatch.setattr(m.bernoulli, "_threads", 1)
    k = 500
    o = make_oracle(name, k, 1.0) if name in FREQUENCY_ORACLES else m.LOSUE(k, 2.0, 1.0)
    extra = {}
    for n in (10_000, 40_000):
        values = np.random.default_rng(0).integers(0, k, n)
        tracemalloc.start()
        try:
            reports = o.perturb(values, np.random.default_rng(1))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        extra[n] = peak - reports.nbytes * (1.125 if name.startswith("L-") else 1.0)
    assert extra[40_000] - extra[10_000] < 16 * 30_000, extra


def test_a_client_output_too_large_for_memory_names_n_k_and_the_bytes(monkeypatch):
    """OUE at k = 100000 with 1e5 users needs a 10 GB report matrix: where memory cannot hold it the error says
    so (it used to die with a MemoryError traceback), before any work, and points to perturb_aggregate."""
    monkeypatch.setattr(_memory, "available_memory", lambda: 1 << 30)
    values = np.zeros(100_000, dtype=np.int64)
    with raises(_memory.ReportsTooLarge, r"n=100000 .*100000 x 100000 bool \(10 GB\).*perturb_aggregate"):
        m.OUE(100_000, 1.0).perturb(values, np.random.default_rng(0))
    with raises(MemoryError, "SHE"):
        m.SHE(100_000, 1.0).perturb(values, np.random.default_rng(0))
    with raises(MemoryError, "SS"):
        m.SS(100_000, 1.0).perturb(values, np.random.default_rng(0))
    small = m.OUE(100, 1.0).perturb_aggregate(values, np.random.default_rng(0))  # never holds the reports
    assert small.n == len(values)
