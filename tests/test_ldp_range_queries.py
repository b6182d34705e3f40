"""Range queries under LDP: flat, hierarchical histograms (HH), HaarHRR and HIO.

Checked against the math: unbiasedness and the analytic variances by simulation (5-sigma bands, fixed seeds), the
consistency step against the explicit least-squares solution, the Haar reconstruction against the exact
coefficients, and exact epsilon-LDP from the enumerated output distributions.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dpkit.accountants import PureDpEvent, RandomizedResponseEvent
from dpkit.mechanisms.range_queries import (
    HIO,
    FlatRange,
    HaarHRR,
    HierarchicalHistogram,
    RangeState,
    badic_decomposition,
    check_ranges,
    choose_branching,
    query_weights,
    tree_consistency,
)


def _max_log_ratio(m: np.ndarray) -> float:
    hi, lo = m.max(axis=0), m.min(axis=0)
    live = hi > 0
    assert (lo[live] > 0).all()
    return float(np.max(np.log(hi[live]) - np.log(lo[live])))


def _population(domain: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = 1.0 / np.arange(1, domain + 1)
    values = rng.choice(domain, n, p=w / w.sum())
    return values, np.bincount(values, minlength=domain) / n


def _truth(f: np.ndarray, q: np.ndarray) -> np.ndarray:
    cs = np.concatenate([[0.0], np.cumsum(f)])
    return cs[q[:, 1] + 1] - cs[q[:, 0]]


QUERIES = np.array([[0, 6], [3, 20], [10, 26], [5, 5], [13, 14], [1, 25]])
TRIALS = 150


def _simulate(protocol, values, queries, trials, seed, **kw):
    rng = np.random.default_rng(seed)
    return np.array([protocol.answer(protocol.perturb_aggregate(values, rng), queries, **kw) for _ in range(trials)])


def _check_moments(answers, truth, var, trials, slack=0.0):
    """Mean within 5 sigma of the truth; sample variance within 5 sigma of the formula (chi-square: relative sd
    sqrt(2/(T-1))), plus ``slack`` for formulas that are approximations."""
    assert np.all(np.abs(answers.mean(0) - truth) <= 5 * np.sqrt(var / trials) + 1e-12)
    ratio = answers.var(0, ddof=1) / var
    band = 5 * math.sqrt(2 / (trials - 1)) + slack
    assert np.all(np.abs(ratio - 1) <= band), ratio


# ---------------------------------------------------------------------------------------------- unbiasedness
@pytest.mark.parametrize("oracle", ["GRR", "OUE"])
def test_flat_unbiased_and_exact_variance(oracle):
    values, f = _population(27, 4000, seed=1)
    p = FlatRange(27, 1.0, oracle)
    ans = _simulate(p, values, QUERIES, TRIALS, seed=2)
    _check_moments(ans, _truth(f, QUERIES), p.variance(len(values), QUERIES, f=f), TRIALS)


@pytest.mark.parametrize("consistency", [False, True])
def test_hh_unbiased_and_variance(consistency):
    values, f = _population(27, 6000, seed=3)
    p = HierarchicalHistogram(27, 1.0, branching=3)
    assert p.height == 3 and [fo.name for fo in p.oracles] == ["GRR", "GRR", "OUE"]
    ans = _simulate(p, values, QUERIES, TRIALS, seed=4, consistency=consistency)
    _check_moments(ans, _truth(f, QUERIES), p.variance(len(values), QUERIES, f=f, consistency=consistency), TRIALS)


def test_hh_padded_domain_unbiased():
    values, f = _population(20, 5000, seed=5)  # 20 values in a 3-ary tree of 27 leaves
    p = HierarchicalHistogram(20, 2.0, branching=3, oracle="OUE")
    q = np.array([[0, 19], [4, 19], [0, 7], [8, 8]])
    ans = _simulate(p, values, q, TRIALS, seed=6, consistency=False)
    var = p.variance(len(values), q, f=f, consistency=False)
    assert var[0] == 0 and np.allclose(ans[:, 0], 1.0)  # the whole domain is the known root
    _check_moments(ans[:, 1:], _truth(f, q)[1:], var[1:], TRIALS)


def test_haar_unbiased_exact_variance_and_bound():
    values, f = _population(27, 6000, seed=7)
    p = HaarHRR(27, 1.0)
    ans = _simulate(p, values, QUERIES, TRIALS, seed=8)
    exact = p.variance(len(values), QUERIES, f=f)
    _check_moments(ans, _truth(f, QUERIES), exact, TRIALS)
    bound = p.variance(len(values), QUERIES)
    assert np.all(exact <= bound) and np.all(bound <= p.variance_bound(len(values)))
    h, e = 10, math.e  # the closed-form bound (h^2/2)((e+1)/(e-1))^2/n for h = 10, n = 1, eps = 1
    assert HaarHRR(1024, 1.0).variance_bound(1) == pytest.approx(h**2 / 2 * ((e + 1) / (e - 1)) ** 2)


def test_hio_unbiased_and_variance():
    rng = np.random.default_rng(9)
    n = 6000
    df = pd.DataFrame({"age": rng.integers(0, 9, n), "city": rng.integers(0, 3, n)})
    df.loc[: n // 3, "age"] = rng.integers(0, 3, n // 3 + 1)
    p = HIO(("age", "city"), (9, 3), 1.0, categorical=("city",), branching=3)
    qs = [{"age": (0, 4)}, {"age": (3, 8), "city": 2}, {"city": (1, 2)}, {"age": 7, "city": 0}]
    truth = np.array(
        [
            (df.age <= 4).mean(),
            ((df.age >= 3) & (df.city == 2)).mean(),
            df.city.isin([1, 2]).mean(),
            ((df.age == 7) & (df.city == 0)).mean(),
        ]
    )
    joint = np.zeros((9, 3))
    np.add.at(joint, (df.age.to_numpy(), df.city.to_numpy()), 1 / n)
    ans = _simulate(p, df, qs, TRIALS, seed=10)
    # OLH layers: the cells' covariances are neglected (a few percent), hence the slack
    _check_moments(ans, truth, p.variance(n, qs, f=joint), TRIALS, slack=0.15)


def test_hio_queries_as_dicts_or_array_and_known_total():
    rng = np.random.default_rng(11)
    df = pd.DataFrame({"a": rng.integers(0, 8, 3000), "b": rng.integers(0, 5, 3000)})
    p = HIO(("a", "b"), (8, 5), 2.0, branching=2)
    st = p.perturb_aggregate(df, rng)
    qs = [{}, {"a": (2, 5)}, {"a": (0, 7), "b": 3}]
    arr = np.array([[[0, 7], [0, 4]], [[2, 5], [0, 4]], [[0, 7], [3, 3]]])
    assert np.allclose(p.answer(st, qs), p.answer(st, arr))
    assert p.answer(st, qs)[0] == 1.0 and p.variance(3000, qs)[0] == 0.0
    assert np.allclose(p.answer(st, qs[1:]), p.answer(st, arr[1:]))


# ---------------------------------------------------------------------------------------------- consistency
def test_consistency_is_the_least_squares_tree():
    rng = np.random.default_rng(12)
    B, h, sig = 3, 3, [0.5, 1.0, 2.0]
    levels = [rng.normal(size=B**lv) for lv in range(1, h + 1)]
    out = tree_consistency(levels, B, sig, root=1.0)
    for lv in range(h - 1):  # every node equals the sum of its children
        assert np.allclose(out[lv], out[lv + 1].reshape(-1, B).sum(axis=1))
    assert out[0].sum() == pytest.approx(1.0)
    leaves = B**h
    A = np.vstack([np.kron(np.eye(B**lv), np.ones((1, B ** (h - lv)))) for lv in range(1, h + 1)])
    W = np.diag(np.concatenate([np.full(B**lv, 1 / sig[lv - 1]) for lv in range(1, h + 1)]))
    K = np.block([[A.T @ W @ A, np.ones((leaves, 1))], [np.ones((1, leaves)), np.zeros((1, 1))]])
    sol = np.linalg.solve(K, np.concatenate([A.T @ W @ np.concatenate(levels), [1.0]]))[:leaves]
    assert np.allclose(out[-1], sol, atol=1e-12)
    # query weights: the consistent answer is c + sum w x
    a = np.zeros((leaves, 1))
    a[4:20] = 1
    w = query_weights(a, B, sig)
    c = tree_consistency([np.zeros(B**lv) for lv in range(1, h + 1)], B, sig, 1.0)[-1][4:20].sum()
    assert out[-1][4:20].sum() == pytest.approx(c + sum(float(wi[:, 0] @ li) for wi, li in zip(w, levels, strict=True)))


def test_consistency_never_raises_the_variance():
    p = HierarchicalHistogram(100, 1.0, branching=4)
    rng = np.random.default_rng(13)
    a = rng.integers(0, 100, 300)
    q = np.stack([a, np.minimum(99, a + rng.integers(0, 60, 300))], axis=1)
    raw = p.variance(10**5, q, consistency=False)
    cons = p.variance(10**5, q, consistency=True)
    assert np.all(cons <= raw * (1 + 1e-9))
    assert np.mean(cons) < 0.9 * np.mean(raw)
    values, f = _population(100, 20000, seed=14)  # and in simulation: consistent MSE below raw
    rng = np.random.default_rng(15)
    states = [p.perturb_aggregate(values, rng) for _ in range(60)]
    err = lambda c: np.mean([(p.answer(s, q, consistency=c) - _truth(f, q)) ** 2 for s in states])  # noqa: E731
    assert err(True) < err(False)


def test_hh_consistent_estimates_are_a_tree_and_norm_sub():
    values, _ = _population(30, 5000, seed=16)
    p = HierarchicalHistogram(30, 1.0, branching=3)
    st = p.perturb_aggregate(values, np.random.default_rng(17))
    nodes = p.node_estimates(st)
    for lv in range(p.height - 1):
        assert np.allclose(nodes[lv], nodes[lv + 1].reshape(-1, 3).sum(axis=1))
    leaves = p.estimate(st, postprocess="norm-sub")
    assert leaves.min() >= 0 and leaves.sum() == pytest.approx(1.0)
    q = np.array([[0, 29], [2, 9]])
    ns = p.answer(st, q, postprocess="norm-sub")
    assert ns[0] == pytest.approx(1.0) and ns[1] == pytest.approx(leaves[2:10].sum())
    with pytest.raises(ValueError, match="consistency=True"):
        p.answer(st, q, consistency=False, postprocess="norm-sub")


# ------------------------------------------------------------------------------------------ structure, equalities
def test_badic_decomposition_covers_each_range_once():
    B, h = 3, 4
    rng = np.random.default_rng(18)
    a = rng.integers(0, B**h, 200)
    e = np.minimum(B**h, a + 1 + rng.integers(0, 60, 200))
    dec = badic_decomposition(a, e, B, h)
    for i in range(200):
        cover = np.zeros(B**h, dtype=int)
        for lv, (lo1, hi1, lo2, hi2) in enumerate(dec):
            s = B ** (h - lv)
            assert (hi1[i] - lo1[i]) + (hi2[i] - lo2[i]) <= 2 * (B - 1) or lv == 0
            for j in [*range(lo1[i], hi1[i]), *range(lo2[i], hi2[i])]:
                cover[j * s : (j + 1) * s] += 1
        assert np.array_equal(cover, ((np.arange(B**h) >= a[i]) & (np.arange(B**h) < e[i])).astype(int))


def test_hh_with_one_level_is_the_flat_protocol():
    values = np.random.default_rng(19).integers(0, 2, 5000)
    hh = HierarchicalHistogram(2, 1.0, branching=2, oracle="GRR")
    flat = FlatRange(2, 1.0, "GRR")
    assert hh.height == 1
    s1 = hh.perturb_aggregate(values, np.random.default_rng(20))
    s2 = flat.perturb_aggregate(values, np.random.default_rng(20))
    q = np.array([[0, 0], [1, 1], [0, 1]])
    assert np.array_equal(s1.levels[0].counts, s2.levels[0].counts)
    assert np.allclose(hh.answer(s1, q, consistency=False), flat.answer(s2, q))
    assert np.allclose(hh.variance(5000, q[:2], consistency=False), flat.variance(5000, q[:2]))
    assert hh.privacy_event() == flat.privacy_event() == RandomizedResponseEvent(1.0, 2)


def test_haar_reconstruction_is_exact_without_noise():
    rng = np.random.default_rng(21)
    for domain in (8, 27, 100):
        f = rng.random(domain)
        f /= f.sum()
        p = HaarHRR(domain, 1.0)
        coef = p.true_coefficients(f)
        assert np.allclose(p.reconstruct(coef), f, atol=1e-14)
        a = rng.integers(0, domain, 50)
        q = np.stack([a, rng.integers(a, domain)], axis=1)
        assert np.allclose(p.answer_from_coefficients(coef, q), _truth(f, q), atol=1e-14)
        w = p._cut_weights(*p._ends(q))
        assert all(np.abs(wl).max() <= 0.5 for _, wl, _, _ in w)


def test_states_merge_and_stream():
    values, _ = _population(27, 3000, seed=22)
    for p in (FlatRange(27, 1.0), HierarchicalHistogram(27, 1.0, branching=3), HaarHRR(27, 1.0)):
        rep = p.perturb(values, np.random.default_rng(23))
        whole = p.aggregate(rep)
        halves = [tuple(r[: len(r) // 2] for r in rep), tuple(r[len(r) // 2 :] for r in rep)]
        assert p.aggregate(halves[0]) + p.aggregate(halves[1]) == whole
        assert p.aggregate_stream(iter(halves)) == whole == sum(p.aggregate(h) for h in halves)
        assert RangeState.from_dict(whole.to_dict()) == whole and whole.n == 3000
        chunked = p.perturb_aggregate(values, np.random.default_rng(24), chunk_size=700)
        assert chunked.n == 3000


# --------------------------------------------------------------------------------------------- branching
def test_choose_branching_minimizes_the_formula():
    assert choose_branching(5**6, 1.0, "OUE") == 5  # (B-1) h^2: B=4 -> 147, B=5 -> 144, B=6 -> 180
    assert HierarchicalHistogram(5**6, 1.0, oracle="OUE").branching == 5
    for domain, eps in [(1000, 1.0), (4096, 3.0)]:
        b = choose_branching(domain, eps)
        # (B - 1) h sum_l V*_l; level_variances(1) are h V*_l (n/h users per level)
        cost = {
            B: (B - 1) * sum(HierarchicalHistogram(domain, eps, branching=B).level_variances(1)) for B in range(2, 17)
        }
        assert cost[b] == pytest.approx(min(cost.values()))


# ------------------------------------------------------------------------------------------------- privacy
def test_exact_ldp_of_the_clients():
    for eps in (0.5, 2.0):
        m = HaarHRR(8, eps).channel_matrix()
        assert np.allclose(m.sum(axis=1), 1.0)
        assert _max_log_ratio(m) == pytest.approx(eps)
        hh = HierarchicalHistogram(8, eps, branching=2)  # GRR and OUE levels (bit vectors of <= 8 bits)
        m = hh.channel_matrix()
        assert np.allclose(m.sum(axis=1), 1.0)
        assert _max_log_ratio(m) <= eps + 1e-12


def test_privacy_events():
    assert HaarHRR(64, 1.5).privacy_event() == RandomizedResponseEvent(1.5, 2)
    assert HierarchicalHistogram(64, 1.0, branching=4, oracle="OUE").privacy_event() == PureDpEvent(1.0)
    assert HierarchicalHistogram(64, 1.0, branching=4).privacy_event() == PureDpEvent(1.0)  # GRR + OUE levels
    assert FlatRange(64, 1.0, "GRR").privacy_event() == RandomizedResponseEvent(1.0, 64)


# ----------------------------------------------------------------------------------------------- bad input
def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match=r"queries\[1\] must have a <= b, got a=5 > b=3"):
        check_ranges("queries", [[0, 1], [5, 3]], 10)
    with pytest.raises(ValueError, match=r"queries\[0\] must lie in \[0, 9\]"):
        check_ranges("queries", [[0, 10]], 10)
    with pytest.raises(ValueError, match=r"shape \(m, 2\)"):
        check_ranges("queries", [1, 2, 3], 10)
    p = HierarchicalHistogram(10, 1.0)
    with pytest.raises(ValueError, match=r"values must be in \[0, 10\), got 10"):
        p.perturb([1, 10], np.random.default_rng(0))
    with pytest.raises(ValueError, match="epsilon"):
        HaarHRR(10, 0.0)
    with pytest.raises(ValueError, match="branching must be in"):
        HierarchicalHistogram(10, 1.0, branching=11)
    with pytest.raises(ValueError, match="domain"):
        FlatRange(1, 1.0)
    with pytest.raises(ValueError, match=r"no report at level"):
        p.answer(p.empty_state(), [[0, 3]])
    hio = HIO(("a", "b"), (4, 3), 1.0)
    with pytest.raises(ValueError, match=r"queries\[0\]\['a'\] must have lo <= hi"):
        hio.cells_per_layer([{"a": (3, 1)}])
    with pytest.raises(ValueError, match=r"values\['b'\] must be in \[0, 3\), got 3"):
        hio.perturb(np.array([[0, 3]]), np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown columns"):
        hio.cells_per_layer([{"c": 1}])
