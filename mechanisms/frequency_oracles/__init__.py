"""Frequency oracles: GRR, SUE, OUE, BLH, OLH, SS, SHE, THE, Hadamard Response (high-privacy and general-epsilon
variants), the approximate-LDP AGRR, ASUE, ABLH, AOLH, GM and AGM, the ASR-MSE refined ASS, AUE, ALH and ATHE, the
registries by name and the adaptive chooser. One module per family:

==========================  ======================================================================================
:mod:`.grr`                 GRR: int64 array (n,), values in [0, k)
:mod:`.unary_encoding`      SUE, OUE: bool array (n, k), the perturbed one-hot bit vector
:mod:`.local_hashing`       BLH, OLH: uint64 array (n, 3), columns (a, b, y): hash parameters and GRR_g(H(v))
:mod:`.subset_selection`    SS: int64 array (n, omega), the reported subset (distinct items)
:mod:`.histogram_encoding`  SHE, THE: float64 array (n, k), one-hot + Laplace(2/epsilon) noise (THE thresholds)
:mod:`.hadamard`            HR: int64 array (n,), an index in [0, K), K = 2^ceil(log2(k + 1)) (HR-general: K = B b)
:mod:`.approximate`         AGRR, ASUE, ABLH, AOLH: (epsilon, delta)-LDP variants, with GRR's, UE's and LH's reports
:mod:`.gaussian_encoding`   GM, AGM: float64 array (n, k), one-hot + N(0, sigma^2) ((epsilon, delta)-LDP)
:mod:`.refined`             ASS, AUE, ALH, ATHE: SS, UE, LH, THE with the parameter that trades attack success (ASR)
                            against MSE; reports as their base protocol's
:mod:`.asr`                 closed-form attack success rate of one report (``expected_asr``)
:mod:`.registry`            ``FREQUENCY_ORACLES``, ``APPROXIMATE_ORACLES``, ``make_oracle``, ``choose_protocol``
==========================  ======================================================================================

Every class is a frozen dataclass of its parameters and implements :class:`dpkit.mechanisms.base.FrequencyOracle`.
What is protected: one user's value in [0, k); neighbouring relation: replace it by any other value. Each report
of the oracles of ``FREQUENCY_ORACLES`` is epsilon-LDP (delta = 0): for all v, v' and every output y,
P(y | v) <= e^epsilon P(y | v'); those of ``APPROXIMATE_ORACLES`` are (epsilon, delta)-LDP: for every set S of
outputs, P(S | v) <= e^epsilon P(S | v') + delta. Formulas: Wang et al. USENIX Security'17; Ye-Barg 2018;
Acharya-Sun-Zhang AISTATS'19; Arcolezi-Gambs arXiv 2503.01482 (refined).
"""

from dpkit.mechanisms.base import FrequencyOracle, PureFrequencyOracle, SupportCounts
from dpkit.mechanisms.bernoulli import bernoulli_matrix
from dpkit.mechanisms.frequency_oracles.approximate import ABLH, AGRR, AOLH, ASUE, ApproximateLocalHashing, aolh_g
from dpkit.mechanisms.frequency_oracles.asr import expected_asr
from dpkit.mechanisms.frequency_oracles.gaussian_encoding import AGM, GM, GaussianEncoding
from dpkit.mechanisms.frequency_oracles.grr import GRR, grr_perturb
from dpkit.mechanisms.frequency_oracles.hadamard import HR, HadamardResponse, HadamardResponseGeneral, fwht
from dpkit.mechanisms.frequency_oracles.histogram_encoding import SHE, THE, optimal_theta, the_variance_per_user
from dpkit.mechanisms.frequency_oracles.local_hashing import BLH, OLH, LocalHashing
from dpkit.mechanisms.frequency_oracles.refined import ALH, ASS, ATHE, AUE, REFINED_PROTOCOLS, pareto_frontier
from dpkit.mechanisms.frequency_oracles.registry import (
    APPROXIMATE_ORACLES,
    FREQUENCY_ORACLES,
    choose_protocol,
    make_oracle,
)
from dpkit.mechanisms.frequency_oracles.subset_selection import SS, SubsetSelection
from dpkit.mechanisms.frequency_oracles.unary_encoding import OUE, SUE, BitVectorReports, UnaryEncoding

__all__ = [
    "GRR",
    "UnaryEncoding",
    "SUE",
    "OUE",
    "LocalHashing",
    "BLH",
    "OLH",
    "SubsetSelection",
    "SS",
    "SHE",
    "THE",
    "HadamardResponse",
    "HR",
    "HadamardResponseGeneral",
    "AGRR",
    "ASUE",
    "ApproximateLocalHashing",
    "ABLH",
    "AOLH",
    "GaussianEncoding",
    "GM",
    "AGM",
    "aolh_g",
    "ASS",
    "AUE",
    "ALH",
    "ATHE",
    "REFINED_PROTOCOLS",
    "pareto_frontier",
    "expected_asr",
    "FREQUENCY_ORACLES",
    "APPROXIMATE_ORACLES",
    "make_oracle",
    "choose_protocol",
    "grr_perturb",
    "bernoulli_matrix",
    "BitVectorReports",
    "FrequencyOracle",
    "PureFrequencyOracle",
    "SupportCounts",
    "fwht",
    "optimal_theta",
    "the_variance_per_user",
]
