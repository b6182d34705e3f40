"""``audit_targets(protocol)``: the audit targets of any dpkit LDP protocol object, registered per protocol class
(``functools.singledispatch``; a new protocol adds one registration here).

A one-report protocol gives one target at its epsilon. A protocol whose users send several reports (TreeHist, SFP:
two at epsilon/2) gives one target per report family, each audited against its own share: by basic composition,
no violation in any family means none of the shares is exceeded, which is what the protocol's epsilon rests on.
Inputs: 0 and the largest value (domain - 1, or the all-ones key; HIO: the rows of all-smallest and all-largest
attribute values), which differ at every level.
"""

from __future__ import annotations

from functools import singledispatch
from typing import Any, cast

import numpy as np

from dpkit.audits.ldp.targets.base import Target
from dpkit.audits.ldp.targets.levels import LevelTarget
from dpkit.audits.ldp.targets.protocol import ProtocolTarget
from dpkit.mechanisms.base import FrequencyOracle
from dpkit.mechanisms.heavy_hitters import PEM, SFP, TAP, CandidateHashing, TreeHist
from dpkit.mechanisms.heavy_hitters.base import prefixes
from dpkit.mechanisms.range_queries import HIO, HaarLevel
from dpkit.mechanisms.range_queries.base import DomainProtocol

__all__ = ["audit_targets"]

_U64 = np.uint64
CANDIDATE_K = 16  # the input pair and candidate set size of a lone CandidateHashing client (keys 0 .. 15)


@singledispatch
def audit_targets(protocol: Any) -> list[Target]:
    """The audit targets of ``protocol`` (see the module docstring)."""
    raise TypeError(f"no audit target is registered for {type(protocol).__name__}")


@audit_targets.register(FrequencyOracle)
def _fo(protocol: FrequencyOracle) -> list[Target]:
    return [ProtocolTarget(protocol)]


@audit_targets.register(HaarLevel)
def _haar_level(protocol: HaarLevel) -> list[Target]:
    return [ProtocolTarget(cast(Any, protocol), name=f"dpkit:HaarLevel(m={protocol.m})", k=2 * protocol.m)]


@audit_targets.register(CandidateHashing)
def _candidates(protocol: CandidateHashing) -> list[Target]:
    return [ProtocolTarget(cast(Any, protocol), name=f"dpkit:{protocol.name}", k=CANDIDATE_K)]


def _level_sampled(protocol: Any, v1: Any, v2: Any, k: int) -> list[Target]:
    """The one target of a level-sampled protocol on inputs v1, v2 (values, or rows of attributes)."""
    node = lambda v, i: int(protocol._node_index(np.array([v]), i)[0])  # noqa: E731
    levels = [(fo, node(v1, i), node(v2, i)) for i, fo in enumerate(protocol.oracles)]
    width = max(int(getattr(fo, "k", 1)) for fo in protocol.oracles)
    return [
        LevelTarget(f"dpkit:{protocol.name}", protocol.perturb, levels, epsilon=protocol.epsilon,
                    k=k, v1=v1, v2=v2, width=width, params={"protocol": repr(protocol)})
    ]  # fmt: skip


@audit_targets.register(DomainProtocol)
def _range(protocol: Any) -> list[Target]:
    return _level_sampled(protocol, 0, protocol.domain - 1, protocol.domain)


@audit_targets.register(HIO)
def _hio(protocol: HIO) -> list[Target]:
    """Rows (0, ..., 0) and (c_1 - 1, ..., c_d - 1): their cells differ in every layer (each layer refines some
    attribute below the root, where the two ends of its domain fall in different nodes)."""
    v1, v2 = tuple(0 for _ in protocol.domains), tuple(c - 1 for c in protocol.domains)
    return _level_sampled(protocol, v1, v2, max(protocol.domains))


def _prefix_levels(oracle, bits: int, lengths, v1: int, v2: int) -> list[tuple[Any, int, int]]:
    key = lambda v, s: int(prefixes(np.array([v], dtype=_U64), bits, s)[0])  # noqa: E731
    return [(oracle, key(v1, s), key(v2, s)) for s in lengths]


def _key_target(protocol, name, sample, levels, epsilon) -> LevelTarget:
    return LevelTarget(name, sample, levels, epsilon=epsilon, k=1 << min(protocol.bits, 62),
                       v1=0, v2=(1 << protocol.bits) - 1, dtype=_U64, params={"protocol": repr(protocol)})  # fmt: skip


def _part(protocol, which: slice):
    """A sampler of one report family of a composed protocol: the slice ``which`` of its client's report tuple."""
    return lambda keys, rng: protocol.perturb(keys, rng)[which]


def _word_target(protocol) -> LevelTarget:
    """The whole-key OLH reports (the last of the tuple) of TreeHist or SFP, at their share of epsilon."""
    word, v2 = protocol.word_oracle, (1 << protocol.bits) - 1
    name = f"dpkit:{protocol.name} whole-key reports"
    return _key_target(protocol, name, _part(protocol, slice(-1, None)), [(word, 0, v2)], word.epsilon)


@audit_targets.register(PEM)
def _pem(protocol: PEM) -> list[Target]:
    levels = _prefix_levels(protocol.oracle, protocol.bits, protocol.lengths, 0, (1 << protocol.bits) - 1)
    return [_key_target(protocol, f"dpkit:{protocol.name}", protocol.perturb, levels, protocol.epsilon)]


@audit_targets.register(TAP)
def _tap(protocol: TAP) -> list[Target]:
    levels = _prefix_levels(protocol.oracle, protocol.bits, protocol.lengths, 0, (1 << protocol.bits) - 1)

    def sample(keys: np.ndarray, rng: np.random.Generator):  # one party holds every trial's user
        return protocol.perturb(keys, np.zeros(len(keys), dtype=np.int64), rng)[0]

    return [_key_target(protocol, f"dpkit:{protocol.name}", sample, levels, protocol.epsilon)]


@audit_targets.register(TreeHist)
def _treehist(protocol: TreeHist) -> list[Target]:
    v2 = (1 << protocol.bits) - 1
    levels = _prefix_levels(protocol.prefix_oracle, protocol.bits, protocol.lengths, 0, v2)
    name, eps = f"dpkit:{protocol.name} prefix reports", protocol.prefix_oracle.epsilon
    return [_key_target(protocol, name, _part(protocol, slice(None, -1)), levels, eps), _word_target(protocol)]


@audit_targets.register(SFP)
def _sfp(protocol: SFP) -> list[Target]:
    v2 = (1 << protocol.bits) - 1
    item = lambda v, pos: int(protocol.items(np.array([v], dtype=_U64), pos)[0])  # noqa: E731
    levels = [(protocol.fragments, item(0, pos), item(v2, pos)) for pos in range(protocol.positions)]
    name, eps = f"dpkit:{protocol.name} fragment reports", protocol.fragments.epsilon
    return [_key_target(protocol, name, _part(protocol, slice(None, -1)), levels, eps), _word_target(protocol)]
