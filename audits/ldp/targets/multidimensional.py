"""A dpkit multidimensional protocol as an audit target: one report of a tuple of d attributes."""

from __future__ import annotations

from typing import Any

import numpy as np

from dpkit.audits.ldp.attacks import (
    FamilyAttack,
    Statistic,
    multidimensional_family_attack,
    multidimensional_statistic,
)
from dpkit.audits.ldp.targets.base import Target, rows_per_chunk
from dpkit.mechanisms.multidimensional import MultidimensionalProtocol

__all__ = ["MultidimensionalTarget"]


class MultidimensionalTarget(Target):
    """SPL, SMP or RS+FD on d attributes; v1 = (0, ..., 0), v2 = (k_j - 1)_j ('tuple') or (k_0 - 1, 0, ...)
    ('attribute').

    Claims: a protocol whose guarantee is for whole tuples (``neighbouring == 'tuple'``: SPL, SMP) is audited
    against ``epsilon`` at both scopes. One whose guarantee is for one attribute (RS+FD) is audited against
    ``epsilon`` at attribute scope; for whole tuples dpkit states ``tuple_epsilon`` = eps', so at tuple scope the
    audit checks eps' (a violation would be a bug) and reports a *finding* when the bound exceeds the
    attribute-level epsilon (the RS+FD caveat). The statistic and the family attack are the ones registered for
    the protocol's class (:func:`~dpkit.audits.ldp.attacks.multidimensional_statistic`,
    :func:`~dpkit.audits.ldp.attacks.multidimensional_family_attack`).
    """

    v1: tuple[int, ...]
    v2: tuple[int, ...]

    def __init__(self, protocol: MultidimensionalProtocol, scope: str = "tuple", name: str | None = None):
        if scope not in ("tuple", "attribute"):
            raise ValueError(f"scope must be 'tuple' or 'attribute', got {scope!r}")
        self.protocol, self.scope = protocol, scope
        sizes = protocol.domain_sizes
        self.d, self.k = len(sizes), max(sizes)
        self.v1 = tuple(0 for _ in sizes)
        self.v2 = tuple(k - 1 for k in sizes) if scope == "tuple" else (sizes[0] - 1,) + self.v1[1:]
        self.name = name or f"dpkit:{protocol.name}[{protocol.protocol}]"
        if protocol.neighbouring == "attribute" and scope == "tuple":
            self.epsilon = float(protocol.tuple_epsilon)
            self.reference_epsilon = float(protocol.epsilon)
            self.note = (
                f"RS+FD claims epsilon = {protocol.epsilon:g} per attribute; for whole tuples dpkit states "
                f"eps' = {protocol.tuple_epsilon:.4g} (Arcolezi et al., CIKM 2021)"
            )
        else:
            self.epsilon = float(protocol.epsilon)
        self.chunk_rows = rows_per_chunk(sum(sizes) * 2)

    def params(self) -> dict[str, Any]:
        return {"protocol": repr(self.protocol), "scope": self.scope, "d": self.d}

    def sample(self, which: int, n: int, rng: np.random.Generator) -> Any:
        v = np.asarray(self._value(which), dtype=np.int64)
        return self.protocol.perturb(np.tile(v, (n, 1)), rng)

    def statistic(self) -> Statistic | None:
        return multidimensional_statistic(self.protocol, self.v1, self.v2, self.scope)

    def family_attack(self) -> FamilyAttack | None:
        return multidimensional_family_attack(self.protocol, self.v1)
