"""Local-DP range queries: flat, hierarchical histograms (HH), HaarHRR and multidimensional HIO.

Every protocol is a frozen dataclass of its parameters with the frequency oracles' client/server split:

* client ``perturb(values, rng)`` (vectorized over users; each user reports once, at one level or layer drawn
  independently of their value, through an epsilon-LDP oracle);
* server ``aggregate(reports) -> RangeState`` (one ``SupportCounts`` per level, mergeable with ``+``),
  ``aggregate_stream(chunks)`` (memory bounded by one chunk), ``perturb_aggregate(values, rng, chunk_size)``;
* ``answer(state, queries)``: a batch of ranges [a, b] (inclusive) answered at once, vectorized;
* ``variance(n, queries, f=None)`` per query (exact where known; HaarHRR: an upper bound, stated),
  ``privacy_event()`` (a ``dpkit.accountants`` event), ``epsilon``.

Unit of privacy: one user's value (HIO: one user's row). Neighbouring relation: replace it by any other value.
"""

from dpkit.mechanisms.range_queries.base import RangeState, check_ranges, make_level_oracle
from dpkit.mechanisms.range_queries.consistency import query_weights, tree_consistency
from dpkit.mechanisms.range_queries.flat import FlatRange
from dpkit.mechanisms.range_queries.haar import HaarHRR, HaarLevel, walsh_hadamard
from dpkit.mechanisms.range_queries.hierarchical import HierarchicalHistogram, badic_decomposition, choose_branching
from dpkit.mechanisms.range_queries.hio import HIO

HH = HierarchicalHistogram

RANGE_PROTOCOLS = {"flat": FlatRange, "hh": HierarchicalHistogram, "haar": HaarHRR}

__all__ = [
    "HH",
    "HIO",
    "RANGE_PROTOCOLS",
    "FlatRange",
    "HaarHRR",
    "HaarLevel",
    "HierarchicalHistogram",
    "RangeState",
    "badic_decomposition",
    "check_ranges",
    "choose_branching",
    "make_level_oracle",
    "query_weights",
    "tree_consistency",
    "walsh_hadamard",
]
