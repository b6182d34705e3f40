"""Bad input gets a clear error naming the parameter, before any work."""

from __future__ import annotations

import numpy as np
import pytest

from dpkit.mechanisms.matrix_factorization import (
    BufferedToeplitz,
    ColumnNormalizedBanded,
    DenseStrategy,
    FixedEpoch,
    Identity,
    MinSeparation,
    NoiseStream,
    SingleParticipation,
    ToeplitzStrategy,
    Workload,
    amplified_banded_event,
    make_strategy,
    mf_event,
    noise_stddev,
    optimize_banded,
    optimize_banded_toeplitz,
    optimize_blt,
    optimize_dense,
)
from dpkit.mechanisms.matrix_factorization import toeplitz as tp


def test_fixed_epoch_needs_k_times_b_equal_n():
    with pytest.raises(ValueError, match=r"epochs x steps_per_epoch == n.*epochs=3 x steps_per_epoch=4 = 12 != n=13"):
        Identity(13).evaluate(FixedEpoch(3, 4))
    with pytest.raises(ValueError, match="epochs"):
        FixedEpoch(0, 4)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        FixedEpoch(2, -1)
    with pytest.raises(ValueError, match="n=999"):
        optimize_blt(999, FixedEpoch(10, 100))
    with pytest.raises(ValueError, match="n=999"):
        optimize_dense(999, FixedEpoch(10, 100))


def test_min_separation_within_n():
    with pytest.raises(ValueError, match=r"min_sep must be in \[1, n=10\], got 11"):
        ToeplitzStrategy.square_root(10).sensitivity(MinSeparation(11))
    with pytest.raises(ValueError, match=r"min_sep must be in \[1, n=10\], got 11"):
        tp.minsep_sensitivity_squared(tp.square_root_coef(10), 10, 11)
    with pytest.raises(ValueError, match="min_sep"):
        MinSeparation(0)
    with pytest.raises(ValueError, match="max_participations"):
        MinSeparation(2, max_participations=0)


@pytest.mark.parametrize("nu", [-0.1, 1.0, 1.5, float("nan"), float("inf")])
def test_nu_in_unit_interval(nu):
    with pytest.raises(ValueError, match=r"nu must be in \[0, 1\)"):
        ToeplitzStrategy.nu_dp_ftrl(10, nu)
    with pytest.raises(ValueError, match=r"nu must be in \[0, 1\)"):
        make_strategy("nu-dp-ftrl", 10, nu=nu)


def test_bands_at_most_n():
    with pytest.raises(ValueError, match=r"bands must be in \[1, n=10\], got 11"):
        optimize_banded_toeplitz(10, 11)
    with pytest.raises(ValueError, match=r"bands must be in \[1, n=10\], got 11"):
        optimize_banded(10, 11)
    with pytest.raises(ValueError, match=r"bands must be in \[1, n=10\], got 11"):
        ToeplitzStrategy.banded_square_root(10, 11)
    with pytest.raises(ValueError, match="coef must have at most n=10 entries"):
        ToeplitzStrategy(np.ones(11), 10)
    with pytest.raises(ValueError, match="params must have shape"):
        ColumnNormalizedBanded(np.ones((10, 11)))
    with pytest.raises(ValueError, match="bands"):
        optimize_banded_toeplitz(10, 0)


def test_formulas_that_do_not_apply():
    with pytest.raises(ValueError, match="strategy_coef must be non-negative and non-increasing"):
        tp.minsep_sensitivity_squared([1.0, 0.5, 0.7], 10, 1, 2)
    with pytest.raises(ValueError, match="strategy must be banded"):
        amplified_banded_event(ToeplitzStrategy.square_root(10), 1.0, 0.1)
    with pytest.raises(ValueError, match="participation must be SingleParticipation or FixedEpoch"):
        optimize_dense(10, MinSeparation(2))
    from dpkit.mechanisms.matrix_factorization.sensitivity import banded_sensitivity

    with pytest.raises(ValueError, match="bands=3 exceeds the separation 2"):
        banded_sensitivity(np.ones(10), 3, FixedEpoch(5, 2))
    with pytest.raises(ValueError, match="workload must be Toeplitz"):
        optimize_blt(10, workload=Workload(10, 0.5, np.linspace(1, 0.5, 10)))
    with pytest.raises(ValueError, match="workload must be Toeplitz"):
        optimize_banded_toeplitz(10, 2, workload=Workload(10, 0.5, np.linspace(1, 0.5, 10)))


def test_error_kind():
    for call in (
        lambda: optimize_banded_toeplitz(10, 2, error="median"),
        lambda: optimize_blt(10, error="rmse"),
    ):
        with pytest.raises(ValueError, match=r"error must be one of \('mean', 'max'\)"):
            call()


def test_workload_parameters():
    with pytest.raises(ValueError, match="momentum"):
        Workload(10, 1.0)
    with pytest.raises(ValueError, match="momentum"):
        Workload(10, -0.1)
    with pytest.raises(ValueError, match="learning_rates must have length 10"):
        Workload(10, 0.5, np.ones(9))
    with pytest.raises(ValueError, match="learning_rates must be in"):
        Workload(10, 0.5, -np.ones(10))
    with pytest.raises(ValueError, match="n must be a whole number >= 1"):
        Workload(0)
    with pytest.raises(ValueError, match="workload.n must equal the strategy's n=10"):
        Identity(10).evaluate(workload=Workload(11))


def test_strategy_parameters():
    with pytest.raises(ValueError, match="C must be lower triangular"):
        DenseStrategy(np.ones((3, 3)))
    with pytest.raises(ValueError, match="C must have a nonzero diagonal"):
        DenseStrategy(np.tril(np.ones((3, 3))) - np.eye(3))
    with pytest.raises(ValueError, match="C must be a square"):
        DenseStrategy(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"coef\[0\] must be nonzero"):
        ToeplitzStrategy(np.array([0.0, 1.0]), 4)
    with pytest.raises(ValueError, match="coef must be finite"):
        ToeplitzStrategy(np.array([1.0, np.nan]), 4)
    with pytest.raises(ValueError, match="buf_decay must be in"):
        BufferedToeplitz(np.array([1.5]), np.array([0.1]), 10)
    with pytest.raises(ValueError, match="output_scale must have length 1"):
        BufferedToeplitz(np.array([0.5]), np.array([0.1, 0.2]), 10)
    with pytest.raises(TypeError, match="participation must be a Participation"):
        Identity(10).sensitivity("single")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="strategy must be one of"):
        make_strategy("tree", 10)


def test_stream_and_event_parameters():
    rec = Identity(5).noising_recurrence()
    with pytest.raises(ValueError, match="dim must be a whole number >= 1"):
        NoiseStream(rec, 0, 1)
    with pytest.raises(ValueError, match="seed must be a whole number >= 0"):
        NoiseStream(rec, 3, -1)
    with pytest.raises(ValueError, match=r"stddev must be in \(0, inf\)"):
        NoiseStream(rec, 3, 1, stddev=0.0)
    with pytest.raises(TypeError, match="recurrence must be a NoisingRecurrence"):
        NoiseStream(Identity(5), 3, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="noise_multiplier"):
        mf_event(0.0)
    with pytest.raises(ValueError, match="neighbouring_relation"):
        mf_event(1.0, neighbouring_relation="swap")
    with pytest.raises(ValueError, match="sampling_probability"):
        amplified_banded_event(Identity(5), 1.0, 1.5)
    with pytest.raises(ValueError, match="clip_norm"):
        noise_stddev(1.0, -1.0, 1.0)
    with pytest.raises(ValueError, match="buffers"):
        optimize_blt(10, SingleParticipation(), buffers=-1)
