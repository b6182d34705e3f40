"""SPL and SMP: one frequency oracle per attribute, with the budget split (SPL) or one attribute sampled (SMP)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from dpkit.accountants import ComposedEvent, DpEvent, PureDpEvent
from dpkit.mechanisms._validation import check_epsilon, check_rng, check_values, set_fields
from dpkit.mechanisms.base import FrequencyOracle
from dpkit.mechanisms.frequency_oracles.registry import make_oracle
from dpkit.mechanisms.multidimensional.base import MultidimensionalProtocol, MultiState, check_domains

__all__ = ["SPL", "SMP"]


@dataclass(frozen=True)
class SPL(MultidimensionalProtocol):
    """Split: every attribute reported through ``protocol`` at epsilon/d. epsilon-LDP for the whole tuple
    (sequential composition; ``privacy_event()`` composes the d oracles' events). Reports: a list of d arrays, the
    oracles' reports of each attribute."""

    domain_sizes: tuple[int, ...]
    epsilon: float
    protocol: str = "GRR"
    name = "SPL"

    def __post_init__(self) -> None:
        set_fields(self, domain_sizes=check_domains(self.domain_sizes), epsilon=check_epsilon("epsilon", self.epsilon))
        self.oracles  # noqa: B018  (an unknown protocol name fails here, at construction)

    @cached_property
    def oracles(self) -> tuple[FrequencyOracle, ...]:
        """The frequency oracle of each attribute, at epsilon/d."""
        eps = self.epsilon / self.d
        return tuple(make_oracle(self.protocol, k, eps) for k in self.domain_sizes)

    def perturb(self, data: ArrayLike | pd.DataFrame, rng: np.random.Generator) -> list[np.ndarray]:
        x = self._codes(data)
        check_rng(rng)
        return [o._perturb(x[:, i], rng) for i, o in enumerate(self.oracles)]

    def aggregate(self, reports: Any) -> MultiState:
        reports = self._check_reports_list(reports)
        return MultiState(tuple(o.aggregate(r) for o, r in zip(self.oracles, reports, strict=False)))

    def estimate(self, state: MultiState, postprocess: str | None = None) -> list[np.ndarray]:
        return [o.estimate(s, postprocess) for o, s in zip(self.oracles, state.states, strict=False)]

    def variance(self, n: int, f: Any = None) -> list[Any]:
        fs = f if f is not None else [None] * self.d
        return [o.variance(n, fi) for o, fi in zip(self.oracles, fs, strict=False)]

    def privacy_event(self) -> DpEvent:
        return ComposedEvent(tuple(o.privacy_event() for o in self.oracles))


@dataclass(frozen=True)
class SMP(MultidimensionalProtocol):
    """Sample: each user reports one uniformly sampled attribute (index public) through ``protocol`` at epsilon.

    epsilon-LDP for the whole tuple. Reports: ``(attribute, [reports of attribute j for users with attribute == j])``.
    ``variance(n, f)`` is the FO's variance at the expected n/d users per attribute.
    """

    domain_sizes: tuple[int, ...]
    epsilon: float
    protocol: str = "GRR"
    name = "SMP"

    def __post_init__(self) -> None:
        set_fields(self, domain_sizes=check_domains(self.domain_sizes), epsilon=check_epsilon("epsilon", self.epsilon))
        self.oracles  # noqa: B018  (an unknown protocol name fails here, at construction)

    @cached_property
    def oracles(self) -> tuple[FrequencyOracle, ...]:
        """The frequency oracle of each attribute, at epsilon."""
        return tuple(make_oracle(self.protocol, k, self.epsilon) for k in self.domain_sizes)

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
        return MultiState(tuple(o.aggregate(r) for o, r in zip(self.oracles, per, strict=False)))

    def estimate(self, state: MultiState, postprocess: str | None = None) -> list[np.ndarray]:
        return [o.estimate(s, postprocess) for o, s in zip(self.oracles, state.states, strict=False)]

    def variance(self, n: int, f: Any = None) -> list[Any]:
        fs = f if f is not None else [None] * self.d
        return [o.variance(max(1, round(n / self.d)), fi) for o, fi in zip(self.oracles, fs, strict=False)]

    def privacy_event(self) -> DpEvent:
        return PureDpEvent(self.epsilon)
