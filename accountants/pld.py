"""PLD accountant: tight (epsilon, delta) from discretized privacy loss distributions.

Supports Gaussian, Laplace, randomized response and pure-DP events, their Poisson-subsampled versions (add/remove
neighbouring: both the "remove" and the "add" direction are composed and the worse is reported), and any
composition of these. Under replace-one it supports the unsampled mechanisms. Sampling without replacement is not
supported (use the RDP accountant).

The reported epsilon is an upper bound (pessimistic connect-the-dots discretization, pessimistic tails; see
:mod:`dpkit.accountants.pld_pmf`); ``get_epsilon_bounds`` also gives a lower bound on the exact epsilon, so their
difference bounds the discretization error. Very large epsilons do not fail: if the grid would exceed
``pld_pmf.MAX_POINTS`` points the grid step is coarsened (the result stays an upper bound).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

from dpkit.accountants.accountant import PrivacyAccountant, register_accountant
from dpkit.accountants.events import (
    DpEvent,
    GaussianEvent,
    LaplaceEvent,
    NeighbouringRelation,
    PoissonSampledEvent,
    PureDpEvent,
    RandomizedResponseEvent,
)
from dpkit.accountants.pld_pmf import DiscretePLD, GridTooLarge
from dpkit.accountants.privacy_loss import (
    Pair,
    gaussian_pair,
    laplace_pair,
    poisson_subsampled,
    randomized_response_pair,
)
from dpkit.accountants.validation import check_delta, check_positive

_BASE = (GaussianEvent, LaplaceEvent, RandomizedResponseEvent, PureDpEvent)


def _base_pair(event: DpEvent) -> Pair:
    if isinstance(event, GaussianEvent):
        return gaussian_pair(event.noise_multiplier)
    if isinstance(event, LaplaceEvent):
        return laplace_pair(event.scale)
    if isinstance(event, RandomizedResponseEvent):
        return randomized_response_pair(event.epsilon, event.num_buckets)
    if isinstance(event, PureDpEvent):
        return randomized_response_pair(event.epsilon, 2)
    raise TypeError(event)


def _pairs(event: DpEvent, relation: NeighbouringRelation) -> list[Pair]:
    """The dominating pairs of ``event`` whose composed PLDs are maximized over (one per direction)."""
    if isinstance(event, PoissonSampledEvent):
        base = _base_pair(event.event)
        if event.sampling_probability == 1.0:
            return [base]
        return [poisson_subsampled(base, event.sampling_probability, d) for d in ("remove", "add")]
    # Unsampled base pairs are symmetric (the "add" pair has the same PLD as the "remove" pair).
    return [_base_pair(event)]


@lru_cache(maxsize=64)
def _composed(
    atoms: tuple[tuple[DpEvent, int], ...], relation: NeighbouringRelation, step: float, tail: float
) -> list[DiscretePLD | None]:
    """Composed PLDs of ``atoms``, one per direction (a direction-less event joins every direction)."""
    per_direction: list[DiscretePLD | None] = [None, None]
    for event, count in atoms:
        plds = [DiscretePLD.from_pair(p, step, tail).self_compose(count, tail) for p in _pairs(event, relation)]
        for d in range(2):
            pld = plds[d] if len(plds) == 2 else plds[0]
            acc = per_direction[d]
            per_direction[d] = pld if acc is None else acc.compose(pld, tail)
    return per_direction


@register_accountant("pld")
class PLDAccountant(PrivacyAccountant):
    """Privacy loss distribution accountant (FFT composition, pessimistic discretization with a reported error).

    Args:
        neighbouring_relation: ``"add_or_remove"`` (default) or ``"replace_one"``.
        value_discretization_interval: grid step h of the privacy loss (default 1e-4); the error bound grows like
            h * sqrt(number of composed steps).
        tail_mass: probability mass allowed to be moved pessimistically at each truncation (default 1e-15).
    """

    def __init__(
        self,
        neighbouring_relation: NeighbouringRelation | str = NeighbouringRelation.ADD_OR_REMOVE,
        value_discretization_interval: float = 1e-4,
        tail_mass: float = 1e-15,
    ):
        super().__init__(neighbouring_relation)
        self.value_discretization_interval = check_positive(
            "value_discretization_interval", value_discretization_interval
        )
        self.tail_mass = check_positive("tail_mass", tail_mass)
        if self.tail_mass >= 1e-6:
            raise ValueError(f"tail_mass must be in (0, 1e-6), got {tail_mass!r}")

    def _options(self) -> dict[str, Any]:
        return {"value_discretization_interval": self.value_discretization_interval, "tail_mass": self.tail_mass}

    def _supports_atom(self, event: DpEvent) -> str | None:
        if isinstance(event, _BASE):
            return None
        if isinstance(event, PoissonSampledEvent):
            if not isinstance(event.event, _BASE):
                return f"Poisson sampling of {type(event.event).__name__} is not supported"
            if self.neighbouring_relation is NeighbouringRelation.REPLACE_ONE and event.sampling_probability < 1:
                return "Poisson-subsampled mechanisms are analysed under add/remove neighbouring only"
            return None
        return f"{type(event).__name__} is not supported by the PLD accountant (try the RDP accountant)"

    def _plds(self, atoms: list[tuple[DpEvent, int]]) -> list[DiscretePLD]:
        step = self.value_discretization_interval
        key = tuple(sorted(atoms, key=lambda a: repr(a[0])))
        while True:
            try:
                plds = _composed(key, self.neighbouring_relation, step, self.tail_mass)
                return [p for p in plds if p is not None]
            except GridTooLarge:
                step *= 4.0

    def _epsilon(self, atoms: list[tuple[DpEvent, int]], delta: float) -> float:
        return float(max(p.get_epsilon(delta) for p in self._plds(atoms)))

    def _delta(self, atoms: list[tuple[DpEvent, int]], epsilon: float) -> float:
        return max(p.get_delta(epsilon) for p in self._plds(atoms))

    def get_epsilon_bounds(self, delta: float) -> tuple[float, float]:
        """(lower, upper): upper = get_epsilon(delta); the exact epsilon lies in [lower, upper]."""
        delta = check_delta("delta", delta)
        atoms = self.atoms()
        if not atoms:
            return 0.0, 0.0
        if math.isinf(self.epsilon_of(atoms, delta)):
            return math.inf, math.inf
        bounds = [p.epsilon_bounds(delta) for p in self._plds(atoms)]
        return float(max(b[0] for b in bounds)), float(max(b[1] for b in bounds))

    def discretization_error(self, delta: float) -> float:
        """Upper bound on how far get_epsilon(delta) may exceed the exact epsilon."""
        lower, upper = self.get_epsilon_bounds(delta)
        return upper - lower if math.isfinite(upper) else 0.0
