"""A dpkit longitudinal protocol as an audit target: tau reports of one user holding a constant value."""

from __future__ import annotations

from functools import singledispatch
from typing import Any

import numpy as np

from dpkit.audits.ldp.attacks import FamilyAttack, Statistic, longitudinal_family_attack, longitudinal_statistic
from dpkit.audits.ldp.targets.base import Target, rows_per_chunk
from dpkit.mechanisms.longitudinal import LGRR, LOLOHA, LUE, ClientPopulation, DBitFlipPM, LongitudinalProtocol

__all__ = ["LongitudinalTarget", "report_cells"]


@singledispatch
def report_cells(proto: LongitudinalProtocol) -> int:
    """Cells of one report, for the memory bound of a chunk of trials (a rough count; default 2).

    Chunk sizes decide how a seed's random stream is split into trials: changing a protocol's count changes which
    trials a seed draws (not their law), so audits stay reproducible only while it stays fixed.
    """
    return 2


@report_cells.register(LGRR)
def _lgrr_cells(proto: LGRR) -> int:
    return 8


@report_cells.register(LUE)
def _lue_cells(proto: LUE) -> int:
    return proto.k


@report_cells.register(LOLOHA)
def _loloha_cells(proto: LOLOHA) -> int:
    return 3


@report_cells.register(DBitFlipPM)
def _dbit_cells(proto: DBitFlipPM) -> int:
    return 2 * proto.d


class LongitudinalTarget(Target):
    """``tau`` reports of one user holding a constant value, memo kept by ``population`` (a ClientPopulation).

    Claimed: ``protocol.privacy_spent(tau, 1)`` = min(tau eps_1, eps_perm) (one distinct memo key), the
    guarantee dpkit states for the whole sequence. Reports: shape (n, tau, ...). The statistic and the family
    attack are the ones registered for the protocol's class
    (:func:`~dpkit.audits.ldp.attacks.longitudinal_statistic`,
    :func:`~dpkit.audits.ldp.attacks.longitudinal_family_attack`).
    """

    def __init__(
        self,
        protocol: LongitudinalProtocol,
        tau: int,
        population: type[ClientPopulation] = ClientPopulation,
        name: str | None = None,
        v1: int = 0,
        v2: int | None = None,
    ):
        if not isinstance(protocol, LongitudinalProtocol):
            raise TypeError(f"protocol must be a LongitudinalProtocol, got {type(protocol).__name__}")
        self.protocol, self.tau, self.population = protocol, int(tau), population
        self.name = name or f"dpkit:{protocol.name}"
        self.k = protocol.k
        self.epsilon = float(protocol.privacy_spent(self.tau, 1))
        self.v1, self.v2 = v1, (protocol.k - 1 if v2 is None else v2)
        self.chunk_rows = rows_per_chunk(report_cells(protocol) * self.tau)

    def params(self) -> dict[str, Any]:
        return {"protocol": repr(self.protocol), "tau": self.tau}

    def sample(self, which: int, n: int, rng: np.random.Generator) -> np.ndarray:
        pop = self.population(self.protocol, n, rng)
        values = self._values(which, n, np.int64)
        return np.stack([pop.report(values, rng) for _ in range(self.tau)], axis=1)

    def statistic(self) -> Statistic | None:
        return longitudinal_statistic(self.protocol, self.tau, self.v1, self.v2)

    def family_attack(self) -> FamilyAttack | None:
        return longitudinal_family_attack(self.protocol, self.v1)
