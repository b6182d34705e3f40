"""SPL and SMP: one frequency oracle per attribute, with the budget split (SPL) or one attribute sampled (SMP)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from dpkit.accountants import ComposedEvent, DpEvent, PureDpEvent
from dpkit.mechanisms._validation import check_count, check_epsilon, check_rng, check_values, set_fields
from dpkit.mechanisms.base import FrequencyOracle, SupportCounts
from dpkit.mechanisms.frequency_oracles.registry import make_oracle
from dpkit.mechanisms.multidimensional.base import MultidimensionalProtocol, MultiState, check_domains

__all__ = ["SPL", "SMP", "PerAttribute"]


@dataclass(frozen=True)
class PerAttribute(MultidimensionalProtocol):
    """What SPL and SMP share: one frequency oracle ``protocol`` (a :func:`dpkit.mechanisms.make_oracle` name) per
    attribute, at ``oracle_epsilon``; each attribute's state is its oracle's (its key is the oracle's key, under the
    protocol's own)."""

    domain_sizes: tuple[int, ...]
    epsilon: float
    protocol: str = "GRR"

    def __post_init__(self) -> None:
        set_fields(self, domain_sizes=check_domains(self.domain_sizes), epsilon=check_epsilon("epsilon", self.epsilon))
        self.oracles  # noqa: B018  (an unknown protocol name fails here, at construction)

    @property
    def oracle_epsilon(self) -> float:
        """The epsilon of every attribute's oracle."""
        return self.epsilon

    @cached_property
    def oracles(self) -> tuple[FrequencyOracle, ...]:
        """The frequency oracle of each attribute, at ``oracle_epsilon``."""
        return tuple(make_oracle(self.protocol, k, self.oracle_epsilon) for k in self.domain_sizes)

    def attribute_key(self, i: int) -> str:
        return self.oracles[i].key

    def empty_state(self) -> MultiState:
        return MultiState(tuple(o.empty_state() for o in self.oracles), self.key)

    def _aggregate(self, per: list[Any]) -> MultiState:
        return MultiState(tuple(o.aggregate(r) for o, r in zip(self.oracles, per, strict=True)), self.key)

    def _check_attribute_state(self, i: int, state: SupportCounts) -> None:
        self.oracles[i]._check_state(state)

    def estimate(self, state: MultiState, postprocess: str | None = None) -> list[np.ndarray]:
        state = self._check_state(state, postprocess)
        return [o.estimate(s, postprocess) for o, s in zip(self.oracles, state.states, strict=True)]

    def _oracle_n(self, n: int) -> int:
        """Users per oracle for ``variance``."""
        return n

    def variance(self, n: int, f: Any = None) -> list[Any]:
        n = check_count("n", n, minimum=1)
        fs = f if f is not None else [None] * self.d
        if len(fs) != self.d:
            raise ValueError(f"f must give one frequency vector per attribute ({self.d}), got {len(fs)}")
        return [o.variance(self._oracle_n(n), fi) for o, fi in zip(self.oracles, fs, strict=True)]


@dataclass(frozen=True)
class SPL(PerAttribute):
    """Split: every attribute reported through ``protocol`` at epsilon/d. epsilon-LDP for the whole tuple
    (sequential composition; ``privacy_event()`` composes the d oracles' events). Reports: a list of d arrays, the
    oracles' reports of each attribute."""

    name = "SPL"

    @property
    def oracle_epsilon(self) -> float:
        return self.epsilon / self.d

    def perturb(self, data: ArrayLike | pd.DataFrame, rng: np.random.Generator) -> list[np.ndarray]:
        x = self._codes(data)
        check_rng(rng)
        return [o._perturb(x[:, i], rng) for i, o in enumerate(self.oracles)]

    def aggregate(self, reports: Any) -> MultiState:
        reports = self._check_reports_list(reports)
        lengths = {len(r) for r in reports}
        if len(lengths) > 1:
            raise ValueError(f"reports must hold one row per user for every attribute, got lengths {sorted(lengths)}")
        return self._aggregate(reports)

    def privacy_event(self) -> DpEvent:
        return ComposedEvent(tuple(o.privacy_event() for o in self.oracles))


@dataclass(frozen=True)
class SMP(PerAttribute):
    """Sample: each user reports one uniformly sampled attribute (index public) through ``protocol`` at epsilon.

    epsilon-LDP for the whole tuple. Reports: ``(attribute, [reports of attribute j for users with attribute == j])``.
    ``variance(n, f)`` is the FO's variance at the expected n/d users per attribute.
    """

    name = "SMP"

    def perturb(self, data: ArrayLike | pd.DataFrame, rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
        x = self._codes(data)
        check_rng(rng)
        attr = rng.integers(0, self.d, size=len(x))
        return attr, [o._perturb(x[attr == i, i], rng) for i, o in enumerate(self.oracles)]

    def aggregate(self, reports: Any) -> MultiState:
        if not isinstance(reports, tuple) or len(reports) != 2:
            raise ValueError("reports must be the pair (attribute, per-attribute reports) returned by perturb")
        attr, per = reports
        per = self._check_reports_list(per)
        attr = check_values("attribute", attr, self.d)
        for i, r in enumerate(per):
            if len(r) != int((attr == i).sum()):
                raise ValueError(f"reports[{i}] must have one row per user with attribute == {i}, got {len(r)}")
        return self._aggregate(per)

    def _oracle_n(self, n: int) -> int:
        return max(1, round(n / self.d))

    def privacy_event(self) -> DpEvent:
        return PureDpEvent(self.epsilon)
