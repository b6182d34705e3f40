"""Cross-check against jax-privacy 2.0.0's matrix_factorization (skipped unless ``pip install dpkit[mf-anchors]``).

Same quantities, two independent implementations: coefficients, per-query error, sensitivity, materialized noising
matrices, and optimized RMSE (dpkit's within 0.2% of jax-privacy's, or better). Small n keeps JIT time short.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.anchors

jax = pytest.importorskip("jax")
pytest.importorskip("jax_privacy")

from jax_privacy.matrix_factorization import banded as jbanded  # noqa: E402
from jax_privacy.matrix_factorization import buffered_toeplitz as jblt  # noqa: E402
from jax_privacy.matrix_factorization import dense as jdense  # noqa: E402
from jax_privacy.matrix_factorization import sensitivity as jsens  # noqa: E402
from jax_privacy.matrix_factorization import toeplitz as jtoeplitz  # noqa: E402

from dpkit.mechanisms.matrix_factorization import (  # noqa: E402
    BufferedToeplitz,
    ColumnNormalizedBanded,
    DenseStrategy,
    FixedEpoch,
    MinSeparation,
    ToeplitzStrategy,
    optimize_banded_toeplitz,
    optimize_blt,
    optimize_dense,
)
from dpkit.mechanisms.matrix_factorization import sensitivity as sens  # noqa: E402
from dpkit.mechanisms.matrix_factorization import toeplitz as tp  # noqa: E402


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _np(x):
    return np.asarray(x, dtype=np.float64)


def test_toeplitz_tools_agree():
    n = 64
    c = tp.nu_dp_ftrl_coef(n, 0.03)
    np.testing.assert_allclose(tp.square_root_coef(n), _np(jtoeplitz.optimal_max_error_strategy_coefs(n)), rtol=1e-13)
    np.testing.assert_allclose(tp.inverse_coef(c), _np(jtoeplitz.inverse_coef(c)), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(
        ToeplitzStrategy(c, n).per_query_error(), _np(jtoeplitz.per_query_error(strategy_coef=c)), rtol=1e-10
    )
    for sep, k in ((1, 1), (8, 4), (5, None)):
        ours = tp.minsep_sensitivity_squared(c, n, sep, k)
        theirs = float(jtoeplitz.minsep_sensitivity_squared(c, sep, n=n, max_participations=k))
        assert ours == pytest.approx(theirs, rel=1e-12)


def test_gram_sensitivities_agree():
    rng = np.random.default_rng(0)
    n = 24
    C = np.tril(rng.normal(size=(n, n))) + 3 * np.eye(n)
    X = C.T @ C
    for sep, k in ((1, 3), (4, 2), (6, None)):
        x = rng.normal(size=n)
        kk = MinSeparation(sep, k).participations(n)
        assert sens.max_participation_for_linear_fn(x, sep, kk)[0] == pytest.approx(
            max(0.0, float(jsens.max_participation_for_linear_fn(x, sep, k))), abs=1e-12
        )
        ours = np.sqrt(sens.minsep_sensitivity_upper_bound_squared(X, sep, kk))
        assert ours == pytest.approx(jsens.get_min_sep_sensitivity_upper_bound_for_X(X, sep, k), rel=1e-12)
    for epochs in (2, 3, 4):
        upper, _ = sens.fixed_epoch_sensitivity_squared(X, epochs)
        assert np.sqrt(upper) == pytest.approx(jsens.fixed_epoch_sensitivity_for_X(X, epochs), rel=1e-12)


def test_noising_matrices_agree():
    n = 40
    blt = BufferedToeplitz.from_buf_decay_pair([0.95, 0.7], [0.85, 0.4], n)
    theirs = jblt.BufferedToeplitz.build(buf_decay=blt.buf_decay, output_scale=blt.output_scale)
    np.testing.assert_allclose(blt.toeplitz_coef(), _np(theirs.toeplitz_coefs(n)), rtol=1e-12)
    inv = theirs.inverse_as_streaming_matrix().materialize(n)
    np.testing.assert_allclose(blt.noising_matrix(), _np(inv), rtol=1e-10, atol=1e-12)
    coef = tp.square_root_coef(5) / np.linalg.norm(tp.square_root_coef(5))
    banded = ColumnNormalizedBanded.from_banded_toeplitz(n, coef)
    inv = jtoeplitz.inverse_as_streaming_matrix(coef, column_normalize_for_n=n).materialize(n)
    np.testing.assert_allclose(banded.noising_matrix(), _np(inv), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        banded.strategy_matrix(), _np(jbanded.ColumnNormalizedBanded.from_banded_toeplitz(n, coef).materialize())
    )


def test_banded_toeplitz_optimum_agrees():
    n, bands = 128, 8
    ours = optimize_banded_toeplitz(n, bands).evaluate().rmse
    coef = _np(jtoeplitz.optimize_banded_toeplitz(n, bands))
    theirs = ToeplitzStrategy(coef, n).evaluate().rmse
    assert ours <= theirs * 1.002
    assert ours == pytest.approx(theirs, rel=1e-6)


def test_blt_optimum_agrees():
    n, sep, k = 128, 16, 4
    schema = MinSeparation(sep, max_participations=k)
    theirs_blt = jblt.optimize(n=n, min_sep=sep, max_participations=k, error="mean", max_buffers=3)
    theirs = BufferedToeplitz(_np(theirs_blt.buf_decay), _np(theirs_blt.output_scale), n)
    loss = float(jblt.LossFn.build_min_sep(n=n, error="mean", min_sep=sep, max_participations=k).loss(theirs_blt))
    assert theirs.evaluate(schema).rmse ** 2 == pytest.approx(loss, rel=1e-9)  # the same loss, computed twice
    ours = optimize_blt(n, schema, max_buffers=3).evaluate(schema).rmse
    assert ours <= theirs.evaluate(schema).rmse * 1.002


def test_dense_optimum_agrees():
    n, epochs = 32, 2
    schema = FixedEpoch(epochs, n // epochs)
    theirs = DenseStrategy(np.tril(_np(jdense.optimize(n, epochs=epochs))))
    ours = optimize_dense(n, schema)
    assert ours.evaluate(schema).rmse <= theirs.evaluate(schema).rmse * 1.002
    assert ours.evaluate(schema).rmse == pytest.approx(theirs.evaluate(schema).rmse, rel=1e-3)
