"""Privacy mechanisms: local-DP protocols and the correlated-noise (matrix-factorization) mechanisms of training.

Local DP: frequency oracles, longitudinal and multidimensional collection (exported here), heavy hitters
(:mod:`.heavy_hitters`: PEM, SFP, TreeHist, federated TAP/TAPS) and range queries (:mod:`.range_queries`: flat,
hierarchical histograms, HaarHRR, HIO). Correlated Gaussian noise for private training:
:mod:`.matrix_factorization` (workloads, strategies, sensitivity, streaming noise).

Every protocol is a frozen dataclass of its parameters with a client/server split:

* client ``perturb(values, rng) -> reports`` (vectorized over users; ``rng`` a ``numpy.random.Generator``);
* server ``aggregate(reports) -> SupportCounts`` (mergeable: ``a + b``), ``aggregate_stream(chunks)``,
  ``estimate(state, postprocess=None|'clip'|'norm-sub'|'ibu')``; a state carries its protocol's key (class and
  parameters) and is read and merged only by that protocol; reports and loaded states are checked first;
* analysis ``variance(n, f=None)``, ``epsilon``, ``delta``, ``privacy_event()`` (an ``accountants`` event) and,
  for small domains, the exact output distribution (``channel_matrix()`` / ``output_probabilities(value)``).

Unit of privacy: one user's value (or, for the longitudinal protocols, one user's sequence of values; for the
multidimensional ones see each class: RS+FD protects a change of one attribute, not of a whole tuple).
Neighbouring relation: replace the value.

Where things live: :mod:`.base` (the frequency-oracle interface, an abstract base class, and ``SupportCounts``),
:mod:`.frequency_oracles` (one module per family and the registry ``FREQUENCY_ORACLES``), :mod:`.longitudinal` and
:mod:`.multidimensional` (each with its own abstract base), :mod:`.gaussian` (the Gaussian mechanism's exact
privacy profile and calibrations, and :class:`BoundedGaussian`, the local Gaussian mechanism on a bounded
number), :mod:`.postprocessing` (clip, Norm-Sub, simplex
projection, IBU/EM), :mod:`.channels` (exact output distributions), :mod:`.bernoulli` and :mod:`.hashing` (the
clients' vectorized primitives), :mod:`._validation` and :mod:`._memory` (input checks, the shared epsilon limit,
memory-bounded chunks), :mod:`.dask_backend`; the subpackages named above. A new protocol is one module
subclassing its family's base, one registry entry, and one registration of its attacks in
:mod:`dpkit.audits.ldp.attacks`.
"""

from dpkit.mechanisms import hashing
from dpkit.mechanisms._memory import ReportsTooLarge
from dpkit.mechanisms._validation import MAX_EPSILON
from dpkit.mechanisms.base import FrequencyOracle, PureFrequencyOracle, SupportCounts
from dpkit.mechanisms.channels import max_log_ratio
from dpkit.mechanisms.frequency_oracles import (
    ABLH,
    AGM,
    AGRR,
    AOLH,
    APPROXIMATE_ORACLES,
    ASUE,
    BLH,
    FREQUENCY_ORACLES,
    GM,
    GRR,
    HR,
    OLH,
    OUE,
    SHE,
    SS,
    SUE,
    THE,
    HadamardResponse,
    HadamardResponseGeneral,
    LocalHashing,
    SubsetSelection,
    UnaryEncoding,
    choose_protocol,
    make_oracle,
)
from dpkit.mechanisms.gaussian import BoundedGaussian, analytic_gaussian_sigma, classical_gaussian_sigma, gaussian_delta
from dpkit.mechanisms.longitudinal import (
    LGRR,
    LOLOHA,
    LONGITUDINAL_PROTOCOLS,
    LOSUE,
    LOUE,
    LSOUE,
    LSUE,
    LUE,
    ClientPopulation,
    DBitFlipPM,
    LongitudinalProtocol,
    loloha_optimal_g,
)
from dpkit.mechanisms.multidimensional import RSFD, RSRFD, SMP, SPL, MultiState, encode_dataframe
from dpkit.mechanisms.postprocessing import (
    POSTPROCESS,
    clip_normalize,
    ibu,
    ibu_structured,
    norm_sub,
    project_simplex,
)

__all__ = [
    "MAX_EPSILON",
    "ReportsTooLarge",
    "LGRR",
    "LONGITUDINAL_PROTOCOLS",
    "LOLOHA",
    "LOSUE",
    "LOUE",
    "LSOUE",
    "LSUE",
    "LUE",
    "ClientPopulation",
    "DBitFlipPM",
    "LongitudinalProtocol",
    "loloha_optimal_g",
    "RSFD",
    "RSRFD",
    "SMP",
    "SPL",
    "MultiState",
    "encode_dataframe",
    "ABLH",
    "AGM",
    "AGRR",
    "AOLH",
    "APPROXIMATE_ORACLES",
    "ASUE",
    "BLH",
    "BoundedGaussian",
    "FREQUENCY_ORACLES",
    "GM",
    "analytic_gaussian_sigma",
    "classical_gaussian_sigma",
    "gaussian_delta",
    "GRR",
    "HR",
    "OLH",
    "OUE",
    "POSTPROCESS",
    "SHE",
    "SS",
    "SUE",
    "THE",
    "FrequencyOracle",
    "HadamardResponse",
    "HadamardResponseGeneral",
    "LocalHashing",
    "PureFrequencyOracle",
    "SubsetSelection",
    "SupportCounts",
    "UnaryEncoding",
    "choose_protocol",
    "clip_normalize",
    "hashing",
    "ibu",
    "ibu_structured",
    "make_oracle",
    "max_log_ratio",
    "norm_sub",
    "project_simplex",
]
