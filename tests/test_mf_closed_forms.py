"""Matrix-factorization strategies against closed forms: DP-SGD, the square root, nu-DP-FTRL, one band, workloads."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from dpkit.accountants import GaussianEvent, PLDAccountant, dpsgd_event
from dpkit.mechanisms.matrix_factorization import (
    BufferedToeplitz,
    ColumnNormalizedBanded,
    FixedEpoch,
    Identity,
    MinSeparation,
    SingleParticipation,
    ToeplitzStrategy,
    Workload,
    amplified_banded_event,
    mf_event,
    momentum_sgd,
    optimize_banded_toeplitz,
)
from dpkit.mechanisms.matrix_factorization import toeplitz as tp

SCHEMAS = [
    (12, SingleParticipation(), 1),
    (12, FixedEpoch(3, 4), 3),
    (12, FixedEpoch(12, 1), 12),
    (12, MinSeparation(5), 3),
    (12, MinSeparation(2, max_participations=4), 4),
]


@pytest.mark.parametrize("n", [1, 2, 7, 1000])
def test_dp_sgd_errors(n):
    report = Identity(n).evaluate()
    assert report.mean_error == pytest.approx((n + 1) / 2, rel=1e-14)
    assert report.max_error == n
    np.testing.assert_allclose(report.per_query_error, np.arange(1, n + 1))


@pytest.mark.parametrize(("n", "schema", "k"), SCHEMAS)
def test_dp_sgd_sensitivity_is_sqrt_k(n, schema, k):
    sens = Identity(n).sensitivity(schema)
    assert sens.squared == pytest.approx(k, rel=1e-14) and sens.exact


def test_dp_sgd_rmse_at_1000_steps():
    assert Identity(1000).evaluate().rmse == pytest.approx(22.37, abs=5e-3)
    assert Identity(1000).evaluate(FixedEpoch(10, 100)).rmse == pytest.approx(70.75, abs=5e-3)


def test_identity_generic_path_matches_closed_form():
    n = 9
    generic = ToeplitzStrategy(np.ones(1), n)
    np.testing.assert_allclose(generic.per_query_error(), Identity(n).per_query_error(), rtol=1e-14)
    X = np.eye(n)
    from dpkit.mechanisms.matrix_factorization import sensitivity_from_gram

    for schema in (FixedEpoch(3, 3), MinSeparation(2)):
        assert sensitivity_from_gram(X, schema).value == pytest.approx(Identity(n).sensitivity(schema).value)


def _sqrt_coef_exact(n):
    c, out = Fraction(1), []
    for t in range(n):
        if t:
            c *= Fraction(2 * t - 1, 2 * t)
        out.append(c)
    return out


def test_square_root_coefficients_are_binomials():
    n = 30
    c = tp.square_root_coef(n)
    exact = [math.comb(2 * t, t) / 4**t for t in range(n)]
    np.testing.assert_allclose(c, exact, rtol=1e-15)
    C = tp.materialize_lower_triangular(c)
    np.testing.assert_allclose(C @ C, np.tri(n), atol=1e-13)  # A = C C


@pytest.mark.parametrize("n", [1, 8, 50, 1000])
def test_square_root_max_error_equals_sensitivity_squared_equals_sum_of_squares(n):
    s = ToeplitzStrategy.square_root(n)
    exact = float(sum(x * x for x in _sqrt_coef_exact(n)))
    report = s.evaluate()
    assert report.sensitivity.squared == pytest.approx(exact, rel=1e-13)
    assert report.max_error == pytest.approx(exact, rel=1e-12)
    assert report.sensitivity.exact


def test_square_root_known_values():
    assert ToeplitzStrategy.square_root(8).sensitivity().value == pytest.approx(1.310870, abs=1e-6)
    assert ToeplitzStrategy.square_root(1000).sensitivity().squared == pytest.approx(3.265003, abs=1e-6)


def test_square_root_sum_of_squares_asymptotics():
    n = 10**6
    total = float(np.sum(tp.square_root_coef(n) ** 2))
    asymptote = (math.log(n) + 0.5772156649015329 + 4 * math.log(2)) / math.pi
    assert abs(total - asymptote) < 10 / n


def test_square_root_noising_coefficients():
    n = 40
    d = tp.square_root_noising_coef(n)
    np.testing.assert_allclose(d, tp.inverse_coef(tp.square_root_coef(n)), atol=1e-15)
    np.testing.assert_allclose(tp.multiply(tp.square_root_coef(n), d), np.eye(1, n)[0], atol=1e-14)


def test_nu_zero_is_the_square_root():
    n = 200
    nu0 = ToeplitzStrategy.nu_dp_ftrl(n, 0.0)
    sq = ToeplitzStrategy.square_root(n)
    np.testing.assert_array_equal(nu0.coef, sq.coef)
    for schema in (SingleParticipation(), FixedEpoch(4, 50), MinSeparation(30)):
        a, b = nu0.evaluate(schema), sq.evaluate(schema)
        assert a.rmse == b.rmse and a.max_rmse == b.max_rmse


def test_nu_dp_ftrl_coefficients_and_sensitivities():
    nu = 0.1
    c = tp.nu_dp_ftrl_coef(6, nu)
    np.testing.assert_allclose(c, [1, 0.45, 0.30375, 0.2278125, 0.179402, 0.145316], atol=1e-6)
    beta = tp.inverse_coef(c)
    np.testing.assert_allclose(beta, [1, -0.45, -0.10125, -0.0455625, -0.025629, -0.016146], atol=1e-6)
    # beta_t = (-1)^t binom(1/2, t) (1 - nu)^t: beta_0 = 1, beta_t = beta_{t-1} (1 - nu) (t - 3/2) / t
    rec = [1.0]
    for t in range(1, 6):
        rec.append(rec[-1] * (1 - nu) * (t - 1.5) / t)
    np.testing.assert_allclose(beta, rec, rtol=1e-12)
    assert ToeplitzStrategy.nu_dp_ftrl(8, nu).sensitivity().value == pytest.approx(1.193472, abs=1e-6)
    assert ToeplitzStrategy.nu_dp_ftrl(64, nu).sensitivity().value == pytest.approx(1.204924, abs=1e-6)
    s = ToeplitzStrategy.nu_dp_ftrl(8, nu).sensitivity(MinSeparation(2, max_participations=4))
    assert s.value == pytest.approx(3.108251, abs=1e-6) and s.exact


def test_nu_dp_ftrl_sensitivity_stays_bounded():
    nu = 0.05
    values = [ToeplitzStrategy.nu_dp_ftrl(n, nu).sensitivity().squared for n in (10**2, 10**4, 10**5)]
    assert values[0] < values[1] == pytest.approx(values[2], abs=1e-12)
    assert values[2] < math.log(1 / nu) / math.pi + 1.2
    assert ToeplitzStrategy.square_root(10**5).sensitivity().squared > values[2] + 1.0


def _one_band_strategies(n):
    return [
        ToeplitzStrategy(np.ones(1), n),
        ColumnNormalizedBanded(np.ones((n, 1))),
        optimize_banded_toeplitz(n, 1),
        BufferedToeplitz(np.zeros(0), np.zeros(0), n),
    ]


@pytest.mark.parametrize(("n", "schema", "k"), SCHEMAS)
def test_one_band_is_dp_sgd(n, schema, k):
    dpsgd = Identity(n).evaluate(schema)
    for s in _one_band_strategies(n):
        r = s.evaluate(schema)
        np.testing.assert_allclose(r.per_query_error, dpsgd.per_query_error, rtol=1e-14)
        assert r.sensitivity.squared == pytest.approx(k, rel=1e-14)
        assert r.rmse == pytest.approx(dpsgd.rmse, rel=1e-14)


def test_one_band_amplified_accounting_is_dp_sgd():
    n, sigma, q = 100, 1.1, 0.01
    for s in _one_band_strategies(n)[:3]:
        event = amplified_banded_event(s, sigma, q)
        assert event == dpsgd_event(sigma, q, n)
    acc = PLDAccountant()
    eps_banded = acc.epsilon_if(amplified_banded_event(Identity(n), sigma, q), 1e-5)
    assert eps_banded == acc.epsilon_if(dpsgd_event(sigma, q, n), 1e-5)


def test_amplified_banded_composes_ceil_n_over_bands_steps():
    s = optimize_banded_toeplitz(100, 8)
    event = amplified_banded_event(s, 2.0, 0.05)
    assert event == dpsgd_event(2.0, 0.05, 13)


def test_mf_event_is_one_gaussian_mechanism():
    assert mf_event(2.0) == GaussianEvent(2.0)
    assert mf_event(2.0, neighbouring_relation="replace_one") == GaussianEvent(1.0)
    # The Gaussian mechanism's exact privacy curve (Balle & Wang 2018) at sensitivity 1 and std sigma.
    from scipy.stats import norm

    sigma, delta = 2.0, 1e-5
    eps = PLDAccountant().epsilon_if(mf_event(sigma), delta)
    curve = norm.cdf(-eps * sigma + 1 / (2 * sigma)) - math.exp(eps) * norm.cdf(-eps * sigma - 1 / (2 * sigma))
    assert curve <= delta * (1 + 1e-6)
    assert curve >= delta * 0.99


def test_momentum_workload_matches_the_optimizer_loop():
    n, beta = 12, 0.8
    lr = np.linspace(1.0, 0.2, n)
    A = momentum_sgd(n, beta, lr).matrix()
    # Heavy ball on unit gradient impulses: column s of A is -(theta_t - theta_0) when only g_s = 1.
    for s in range(n):
        m, theta, col = 0.0, 0.0, []
        for t in range(n):
            m = beta * m + (1.0 if t == s else 0.0)
            theta -= lr[t] * m
            col.append(-theta)
        np.testing.assert_allclose(A[:, s], col, rtol=1e-14, atol=1e-15)
    const = momentum_sgd(n, beta)
    np.testing.assert_allclose(const.matrix()[:, 0], const.toeplitz_coef(), rtol=1e-15)
    np.testing.assert_allclose(const.matrix()[5:, 5], const.toeplitz_coef()[: n - 5], rtol=1e-15)
    assert momentum_sgd(n, beta, lr).toeplitz_coef() is None


def test_toeplitz_fast_error_matches_dense_for_momentum():
    n = 60
    w = Workload(n, 0.9)
    for s in (ToeplitzStrategy.square_root(n), optimize_banded_toeplitz(n, 5)):
        A = w.matrix()
        B = A @ s.noising_matrix()
        np.testing.assert_allclose(s.per_query_error(w), np.sum(B * B, axis=1), rtol=1e-11)


def test_blt_coefficients_and_inverse():
    n = 50
    blt = BufferedToeplitz.from_buf_decay_pair([0.95, 0.6], [0.8, 0.3], n)
    assert np.all(blt.output_scale > 0)
    c = blt.toeplitz_coef()
    expected = [1.0] + [float(np.sum(blt.output_scale * blt.buf_decay ** (t - 1))) for t in range(1, n)]
    np.testing.assert_allclose(c, expected, rtol=1e-13)
    np.testing.assert_allclose(blt.inverse_buf_decay(), [0.8, 0.3], rtol=1e-12)
    np.testing.assert_allclose(blt.noising_coef(), tp.inverse_coef(c), atol=1e-13)
    np.testing.assert_allclose(blt.inverse().toeplitz_coef(), tp.inverse_coef(c), atol=1e-13)
    np.testing.assert_allclose(blt.strategy_matrix() @ blt.noising_matrix(), np.eye(n), atol=1e-12)
