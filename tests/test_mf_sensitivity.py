"""Sensitivity against brute force over every participation pattern (small n), and where each formula applies."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dpkit.mechanisms import matrix_factorization as mf
from dpkit.mechanisms.matrix_factorization import sensitivity as sens_mod
from dpkit.mechanisms.matrix_factorization import toeplitz as tp

N = 10
SCHEMAS = [
    mf.SingleParticipation(),
    mf.FixedEpoch(2, 5),
    mf.FixedEpoch(5, 2),
    mf.MinSeparation(1, max_participations=3),
    mf.MinSeparation(2, max_participations=3),
    mf.MinSeparation(3),
    mf.MinSeparation(4, max_participations=2),
]


def _subsets(pattern):
    for size in range(1, len(pattern) + 1):
        yield from itertools.combinations(pattern, size)


def brute_force_squared(C: np.ndarray, schema) -> float:
    """max over every index set an example may occupy, and every +-1 contribution, of ||C s||^2.

    Exact when each pattern's Gram block is non-negative or diagonal; a lower bound on the (vector) sensitivity
    otherwise.
    """
    X = C.T @ C
    best = 0.0
    seen = set()
    for pattern in schema.patterns(C.shape[0]):
        for pi in _subsets(pattern):
            if pi in seen:
                continue
            seen.add(pi)
            idx = np.asarray(pi)
            block = X[np.ix_(idx, idx)]
            signs = np.array(list(itertools.product([1.0, -1.0], repeat=len(pi) - 1)))
            signs = np.hstack([np.ones((signs.shape[0], 1)), signs]) if len(pi) > 1 else np.ones((1, 1))
            best = max(best, float(np.max(np.einsum("si,ij,sj->s", signs, block, signs))))
    return best


def _strategies():
    rng = np.random.default_rng(7)
    mixed = np.tril(rng.normal(size=(N, N))) + 3 * np.eye(N)
    positive = np.tril(rng.uniform(0.1, 1.0, size=(N, N))) + np.eye(N)
    return {
        "identity": mf.Identity(N),
        "sqrt": mf.ToeplitzStrategy.square_root(N),
        "nu": mf.ToeplitzStrategy.nu_dp_ftrl(N, 0.2),
        "banded-toeplitz-3": mf.optimize_banded_toeplitz(N, 3),
        "banded-sqrt-4": mf.ToeplitzStrategy.banded_square_root(N, 4),
        "toeplitz-signed": mf.ToeplitzStrategy(np.array([1.0, -0.6, 0.3, 0.5]), N),
        "banded-random-2": mf.ColumnNormalizedBanded(rng.uniform(-1, 1, (N, 2)) + np.array([2.0, 0.0])),
        "banded-random-4": mf.ColumnNormalizedBanded(rng.uniform(0.2, 1, (N, 4))),
        "blt": mf.optimize_blt(N, mf.MinSeparation(2, max_participations=3), buffers=2),
        "blt-given": mf.BufferedToeplitz.from_buf_decay_pair([0.9, 0.5], [0.7, 0.2], N),
        "dense-mixed": mf.DenseStrategy(mixed),
        "dense-positive": mf.DenseStrategy(positive),
        "dense-optimum": mf.optimize_dense(N, mf.FixedEpoch(2, 5)),
    }


STRATEGIES = _strategies()


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.describe())
def test_sensitivity_against_brute_force(name, schema):
    strategy = STRATEGIES[name]
    sens = strategy.sensitivity(schema)
    brute = brute_force_squared(strategy.strategy_matrix(), schema)
    assert sens.squared >= brute * (1 - 1e-12), "the sensitivity must never be below an attained value"
    if sens.exact:
        assert sens.squared == pytest.approx(brute, rel=1e-10)


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.describe())
def test_exact_where_the_theory_says(schema):
    for name in ("identity", "sqrt", "nu", "banded-toeplitz-3", "banded-sqrt-4", "blt", "blt-given"):
        assert STRATEGIES[name].sensitivity(schema).exact, name
    if not isinstance(schema, mf.MinSeparation):  # a non-negative Gram matrix: exact on fixed patterns
        assert STRATEGIES["dense-positive"].sensitivity(schema).exact
    banded = STRATEGIES["banded-random-4"]
    if 4 <= schema.separation(N):
        assert banded.sensitivity(schema).exact
    if isinstance(schema, mf.FixedEpoch) and schema.epochs == 2:
        assert STRATEGIES["dense-optimum"].sensitivity(schema).squared == pytest.approx(1.0, rel=1e-12)


def test_mixed_signs_give_a_bound_not_an_estimate():
    s = STRATEGIES["dense-mixed"]
    sens = s.sensitivity(mf.MinSeparation(1, max_participations=3))
    assert not sens.exact and "upper bound" in sens.method
    assert sens.squared >= brute_force_squared(s.strategy_matrix(), mf.MinSeparation(1, max_participations=3))


def test_vector_contributions_below_the_bound():
    """Random unit-vector contributions (d = 3) never exceed the reported sensitivity."""
    rng = np.random.default_rng(0)
    for name in ("dense-mixed", "toeplitz-signed", "banded-random-2"):
        C = STRATEGIES[name].strategy_matrix()
        for schema in (mf.FixedEpoch(5, 2), mf.MinSeparation(2, max_participations=3)):
            bound = STRATEGIES[name].sensitivity(schema).squared
            patterns = list(schema.patterns(N))
            for _ in range(300):
                pi = np.asarray(patterns[rng.integers(len(patterns))])
                g = rng.normal(size=(len(pi), 3))
                g /= np.linalg.norm(g, axis=1, keepdims=True)
                assert np.sum((C[:, pi] @ g) ** 2) <= bound * (1 + 1e-12)


def test_vecsens_against_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(30):
        x = rng.normal(size=9)
        b, k = int(rng.integers(1, 5)), int(rng.integers(1, 4))
        value, pattern = sens_mod.max_participation_for_linear_fn(x, b, k)
        brute = max(
            [0.0]
            + [
                float(x[list(c)].sum())
                for size in range(1, k + 1)
                for c in itertools.combinations(range(9), size)
                if all(j - i >= b for i, j in itertools.pairwise(c))
            ]
        )
        assert value == pytest.approx(brute, abs=1e-12)
        assert float(x[list(pattern)].sum()) == pytest.approx(value, abs=1e-12)
        assert len(pattern) <= k and all(j - i >= b for i, j in itertools.pairwise(pattern))


def test_toeplitz_formula_matches_gram_for_longer_n():
    n = 60
    c = tp.nu_dp_ftrl_coef(n, 0.05)
    C = tp.materialize_lower_triangular(c)
    for sep, k in ((7, 5), (10, None), (1, 3)):
        schema = mf.MinSeparation(sep, max_participations=k)
        exact = tp.minsep_sensitivity_squared(c, n, sep, k)
        pi = np.arange(0, n, sep)[: schema.participations(n)]
        assert exact == pytest.approx(np.sum(C[:, pi].sum(axis=1) ** 2), rel=1e-12)
        assert mf.sensitivity_from_gram(C.T @ C, schema).squared >= exact * (1 - 1e-12)


def test_toeplitz_formula_refuses_other_coefficients():
    with pytest.raises(ValueError, match="strategy_coef must be non-negative and non-increasing"):
        tp.minsep_sensitivity_squared([1.0, 1.2, 0.3], 10, 2, 3)
    with pytest.raises(ValueError, match="strategy_coef must be non-negative and non-increasing"):
        tp.minsep_sensitivity_squared([1.0, -0.1], 10, 2, 3)


def test_banded_formula_refuses_overlapping_columns():
    with pytest.raises(ValueError, match="bands=4 exceeds the separation 2"):
        sens_mod.banded_sensitivity(np.ones(N), 4, mf.MinSeparation(2))
    s = mf.ColumnNormalizedBanded.default(N, 4)
    brute = brute_force_squared(s.strategy_matrix(), mf.MinSeparation(2))
    assert s.sensitivity(mf.MinSeparation(2)).squared >= brute * (1 - 1e-12)
