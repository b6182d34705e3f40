"""Matrix-factorization (correlated-noise) mechanisms: strategies, sensitivity, streaming noise and accounting.

DP-SGD adds independent noise every step, so the noise in the model (a running sum of updates) grows like
sqrt(steps). A matrix-factorization mechanism factorizes the workload A (prefix sums for SGD) as A = B C, releases
C G + Z for the per-step clipped gradient sums G, and trains on G + C^{-1} Z: the noise is correlated across steps
and largely cancels in the running sum (1000 single-participation steps: prefix-sum RMSE 22.37 for DP-SGD, about 3
for the best factorizations). References: Denisov et al. 2022 (arXiv 2202.08312); Choquette-Choo et al. 2023
(arXiv 2211.06530, 2306.08153); Dvijotham et al. 2024 (arXiv 2404.16706); McMahan et al. 2024 (arXiv 2408.08868);
Pillutla et al. 2025, "Correlated Noise Mechanisms for Differentially Private Learning" (arXiv 2506.08201).

Vocabulary follows jax-privacy's ``matrix_factorization``: workload A, strategy C, noising matrix C^{-1}, decoder
B = A C^{-1}; per-query error e_t = ||B[t, :]||^2; error (mean or max of e) excludes the sensitivity,
loss = sensitivity^2 x error, RMSE = sqrt(sensitivity^2 x mean error). Participation: ``n`` steps,
``min_sep`` b, ``max_participations`` k, ``epochs`` k of ``steps_per_epoch`` b.

Modules, one per strategy family: :mod:`.identity` (DP-SGD), :mod:`.toeplitz` (square root, nu-DP-FTRL, banded
Toeplitz), :mod:`.banded` (column-normalized banded), :mod:`.buffered_toeplitz` (BLT), :mod:`.dense` (explicit C,
the multi-epoch optimum); and :mod:`.workload`, :mod:`.participation`, :mod:`.sensitivity`, :mod:`.streaming`,
:mod:`.accounting`, :mod:`.registry`. Everything is float64 numpy / scipy.

>>> from dpkit.mechanisms.matrix_factorization import FixedEpoch, optimize_blt
>>> blt = optimize_blt(1000, FixedEpoch(epochs=10, steps_per_epoch=100))  # doctest: +SKIP
>>> blt.evaluate(FixedEpoch(10, 100)).rmse  # doctest: +SKIP
12.19...
"""

from dpkit.mechanisms.matrix_factorization.accounting import amplified_banded_event, mf_event, noise_stddev
from dpkit.mechanisms.matrix_factorization.banded import ColumnNormalizedBanded, optimize_banded
from dpkit.mechanisms.matrix_factorization.buffered_toeplitz import BufferedToeplitz, optimize_blt
from dpkit.mechanisms.matrix_factorization.dense import DenseStrategy, optimize_dense, strategy_from_gram
from dpkit.mechanisms.matrix_factorization.identity import Identity
from dpkit.mechanisms.matrix_factorization.participation import (
    FixedEpoch,
    MinSeparation,
    Participation,
    SingleParticipation,
)
from dpkit.mechanisms.matrix_factorization.registry import available_strategies, make_strategy, register_strategy
from dpkit.mechanisms.matrix_factorization.sensitivity import Sensitivity, sensitivity_from_gram
from dpkit.mechanisms.matrix_factorization.strategy import (
    Strategy,
    StrategyReport,
    load_strategy,
    save_strategy,
    strategy_from_dict,
)
from dpkit.mechanisms.matrix_factorization.streaming import GaussianDraws, NoiseStream, NoisingRecurrence, step_seed
from dpkit.mechanisms.matrix_factorization.toeplitz import ToeplitzStrategy, optimize_banded_toeplitz
from dpkit.mechanisms.matrix_factorization.workload import Workload, momentum_sgd, prefix_sum

__all__ = [
    "BufferedToeplitz",
    "ColumnNormalizedBanded",
    "DenseStrategy",
    "FixedEpoch",
    "GaussianDraws",
    "Identity",
    "MinSeparation",
    "NoiseStream",
    "NoisingRecurrence",
    "Participation",
    "Sensitivity",
    "SingleParticipation",
    "Strategy",
    "StrategyReport",
    "ToeplitzStrategy",
    "Workload",
    "amplified_banded_event",
    "available_strategies",
    "load_strategy",
    "make_strategy",
    "mf_event",
    "momentum_sgd",
    "noise_stddev",
    "optimize_banded",
    "optimize_banded_toeplitz",
    "optimize_blt",
    "optimize_dense",
    "prefix_sum",
    "register_strategy",
    "save_strategy",
    "sensitivity_from_gram",
    "step_seed",
    "strategy_from_dict",
    "strategy_from_gram",
]
