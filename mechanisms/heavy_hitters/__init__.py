"""Local-DP heavy hitters over m-bit keys (m <= 64; byte strings through ``encode_bytes`` / ``hash_bytes``):
PEM, SFP, TreeHist, and the federated TAP / TAPS.

Every protocol is a frozen dataclass of its parameters: client ``perturb(values, rng)`` (vectorized over users,
one report per user, or two at epsilon/2 for SFP and TreeHist), server ``identify(reports)`` (reports as a tuple of
arrays, or a callable returning chunks of them: memory bounded by one chunk), ``run(values, rng)`` (both, chunk by
chunk), ``privacy_event()``. The result is a :class:`HeavyHitters` (keys, estimated counts and their variances);
``f1_score`` and ``ncr`` measure it against the truth in simulation.

Unit of privacy: one user's key. Neighbouring relation: replace it. Every protocol is epsilon-LDP; candidate
selection between levels (and, for TAPS, between parties) is post-processing of other users' reports.
"""

from dpkit.mechanisms.heavy_hitters.base import CandidateHashing, HeavyHitters, Selection, check_bits, check_keys
from dpkit.mechanisms.heavy_hitters.encoding import decode_bytes, encode_bytes, hash_bytes
from dpkit.mechanisms.heavy_hitters.federated import TAP, TAPS
from dpkit.mechanisms.heavy_hitters.metrics import f1_score, ncr, true_top_k
from dpkit.mechanisms.heavy_hitters.pem import PEM
from dpkit.mechanisms.heavy_hitters.sfp import SFP, public_hash
from dpkit.mechanisms.heavy_hitters.treehist import TreeHist

HEAVY_HITTERS = {"PEM": PEM, "SFP": SFP, "TreeHist": TreeHist, "TAP": TAP}

__all__ = [
    "HEAVY_HITTERS",
    "PEM",
    "SFP",
    "TAP",
    "TAPS",
    "CandidateHashing",
    "HeavyHitters",
    "Selection",
    "TreeHist",
    "check_bits",
    "check_keys",
    "decode_bytes",
    "encode_bytes",
    "f1_score",
    "hash_bytes",
    "ncr",
    "public_hash",
    "true_top_k",
]
