"""A dpkit frequency oracle as an audit target: one report per trial."""

from __future__ import annotations

from typing import Any

import numpy as np

from dpkit.audits.ldp.attacks import FamilyAttack, Statistic, fo_family_attack, fo_statistic
from dpkit.audits.ldp.targets.base import Target, rows_per_chunk
from dpkit.mechanisms.base import FrequencyOracle

__all__ = ["ProtocolTarget"]


class ProtocolTarget(Target):
    """A dpkit frequency oracle (or anything with its interface: ``perturb(values, rng)``, ``k``, ``epsilon``; ``k``
    given for a client without one, e.g. a HaarHRR level or OLH on candidate keys).

    The likelihood-ratio statistic and the family attack are the ones registered for the protocol's class
    (:func:`~dpkit.audits.ldp.attacks.fo_statistic`, :func:`~dpkit.audits.ldp.attacks.fo_family_attack`).
    """

    def __init__(
        self,
        protocol: FrequencyOracle,
        name: str | None = None,
        v1: int = 0,
        v2: int | None = None,
        k: int | None = None,
    ):
        self.protocol = protocol
        self.name = name or f"dpkit:{protocol.name}"
        self.k = protocol.k if k is None else int(k)
        self.epsilon = float(protocol.epsilon)
        self.delta = float(getattr(protocol, "delta", 0.0))
        self.v1, self.v2 = v1, (self.k - 1 if v2 is None else v2)
        self.chunk_rows = rows_per_chunk(self.k)

    def sample(self, which: int, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.protocol.perturb(self._values(which, n, np.int64), rng)

    def statistic(self) -> Statistic:
        return fo_statistic(self.protocol, self.v1, self.v2)

    def family_attack(self) -> FamilyAttack | None:
        return fo_family_attack(self.protocol, self.v1, self.v2)

    def params(self) -> dict[str, Any]:
        return {"protocol": repr(self.protocol)}
