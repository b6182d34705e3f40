"""Renyi-DP accountant: sums per-event RDP curves over a grid of orders and converts to (epsilon, delta).

Supported atoms (anything else fails closed with a reason):

* add/remove: ``GaussianEvent``, ``LaplaceEvent``, ``RandomizedResponseEvent``, ``PureDpEvent`` (exact RDP);
  ``PoissonSampledEvent(q, GaussianEvent)`` (exact sampled-Gaussian RDP, Mironov-Talwar-Zhang 2019; a
  composition of Gaussians on the same sample counts as one Gaussian with sigma = (sum_i sigma_i^-2)^-1/2);
  ``PoissonSampledEvent(q, RandomizedResponseEvent | PureDpEvent)`` (exact, as the discrete mixture pair
  ((1-q) Q + q P, Q) for removal and (Q, (1-q) Q + q P) for addition).
* replace-one: Gaussian, Laplace, randomized response, pure DP, and
  ``SampledWithoutReplacementEvent(n, m, GaussianEvent)`` (Wang-Balle-Kasiviswanathan 2019, Theorem 9).

Besides the grid of finite orders the accountant tracks the order alpha = infinity, i.e. pure DP: the pure-DP
epsilons of the atoms (Laplace: 1/scale; randomized response / pure DP: epsilon; their Poisson-subsampled
versions: log(1 + q (e^epsilon - 1)); Gaussian: inf) are added up, and the reported epsilon is the smaller of
the RDP conversion and this basic-composition total (which holds with delta = 0). So T x PureDpEvent(eps)
never costs more than T eps.

Sensitivities follow :mod:`dpkit.accountants.events`: an event's noise is relative to the sensitivity under this
accountant's neighbouring relation, so the formulas are the same under both relations.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from dpkit.accountants import rdp_analysis as ra
from dpkit.accountants._typing import FloatArray
from dpkit.accountants.accountant import PrivacyAccountant, register_accountant
from dpkit.accountants.events import (
    ComposedEvent,
    DpEvent,
    GaussianEvent,
    LaplaceEvent,
    NeighbouringRelation,
    NonPrivateEvent,
    NoOpEvent,
    PoissonSampledEvent,
    PureDpEvent,
    RandomizedResponseEvent,
    SampledWithoutReplacementEvent,
    SelfComposedEvent,
    flatten,
)
from dpkit.accountants.progress import ProgressHook
from dpkit.accountants.validation import check_delta, check_nonnegative

__all__ = ["RDPAccountant"]


def _effective_gaussian_sigma(event: DpEvent) -> float | None:
    """sigma of the single Gaussian equivalent to ``event`` if it is a composition of Gaussians, else None.

    Gaussians with noise multipliers sigma_i on the same input compose to a Gaussian with
    sigma = (sum_i sigma_i^-2)^(-1/2) (exactly: the sufficient statistic of the outputs is one Gaussian).
    """
    parts: list[tuple[float, int]] = []
    for atom, count in flatten(event):
        if isinstance(atom, NoOpEvent):
            continue
        if not isinstance(atom, GaussianEvent):
            return None
        parts.append((atom.noise_multiplier, count))
    if not parts:
        return None
    if len(parts) == 1 and parts[0][1] == 1:
        return parts[0][0]
    # Scaled by the smallest sigma so that no sigma^-2 overflows: sigma = m / sqrt(sum_i c_i (m / sigma_i)^2).
    m = min(sigma for sigma, _ in parts)
    return m / math.sqrt(math.fsum(c * (m / sigma) ** 2 for sigma, c in parts))


def _is_noop(event: DpEvent) -> bool:
    return all(isinstance(atom, NoOpEvent) for atom, _ in flatten(event))


def _rr_epsilon(event: DpEvent) -> tuple[float, int] | None:
    if isinstance(event, RandomizedResponseEvent):
        return event.epsilon, event.num_buckets
    if isinstance(event, PureDpEvent):
        return event.epsilon, 2
    return None


@register_accountant("rdp")
class RDPAccountant(PrivacyAccountant):
    """Renyi-DP accountant over a grid of orders (default :data:`dpkit.accountants.rdp_analysis.DEFAULT_ORDERS`).

    ``RDPAccountant(neighbouring_relation="add_or_remove", orders=None)``. The reported epsilon is the
    minimum over the orders (and over pure-DP composition) of the improved RDP -> DP conversion, so it is a
    valid upper bound for every grid; a finer or wider grid can only make it tighter. Per-event RDP curves
    are cached (module-level LRU keyed by event, relation and orders), so repeated queries are cheap.
    """

    def __init__(
        self,
        neighbouring_relation: NeighbouringRelation | str = NeighbouringRelation.ADD_OR_REMOVE,
        orders: npt.ArrayLike | None = None,
    ) -> None:
        super().__init__(neighbouring_relation)
        self._custom_orders = orders is not None
        arr = ra.DEFAULT_ORDERS if orders is None else ra.check_orders(orders)
        self._orders = np.array(arr, dtype=float)
        self._orders.flags.writeable = False
        self._orders_key = tuple(self._orders.tolist())

    @property
    def orders(self) -> FloatArray:
        return self._orders

    def _options(self) -> dict[str, Any]:
        return {"orders": list(self._orders_key)} if self._custom_orders else {}

    # ------------------------------------------------------------------ support
    def _supports_atom(self, event: DpEvent) -> str | None:
        add_remove = self.neighbouring_relation is NeighbouringRelation.ADD_OR_REMOVE
        if isinstance(
            event,
            NoOpEvent | NonPrivateEvent | GaussianEvent | LaplaceEvent | RandomizedResponseEvent | PureDpEvent,
        ):
            return None
        if isinstance(event, PoissonSampledEvent):
            if not add_remove:
                return (
                    "Poisson subsampling is analysed under add/remove neighbours only; use "
                    "neighbouring_relation='add_or_remove' (or SampledWithoutReplacementEvent for fixed-size "
                    "batches under replace-one)"
                )
            inner = event.event
            if _is_noop(inner) or _effective_gaussian_sigma(inner) is not None or _rr_epsilon(inner) is not None:
                return None
            if _contains_sampling(inner):
                return "nested subsampling is not supported by the RDP accountant"
            return (
                f"the RDP accountant handles Poisson sampling of Gaussian, randomized-response and pure-DP "
                f"events only, not {type(inner).__name__}; use the PLD accountant (create_accountant('pld'))"
            )
        if isinstance(event, SampledWithoutReplacementEvent):
            if add_remove:
                return (
                    "the sampling-without-replacement RDP bound (Wang-Balle-Kasiviswanathan 2019) is for "
                    "replace-one neighbours; use neighbouring_relation='replace_one' or Poisson sampling"
                )
            inner = event.event
            if event.sample_size == 0 or _is_noop(inner) or _effective_gaussian_sigma(inner) is not None:
                return None
            if _contains_sampling(inner):
                return "nested subsampling is not supported by the RDP accountant"
            return (
                f"the RDP accountant handles sampling without replacement of Gaussian events only, not "
                f"{type(inner).__name__}"
            )
        return f"the RDP accountant does not support {type(event).__name__}"

    # ------------------------------------------------------------------ RDP of atoms
    def _atom_rdp(self, event: DpEvent) -> FloatArray:
        return _cached_atom_rdp(event, self._orders_key)

    def _pure_epsilon(self, event: DpEvent) -> float:
        """D_infinity of an atom: its pure-DP epsilon (inf if it has none)."""
        if isinstance(event, NoOpEvent):
            return 0.0
        if isinstance(event, LaplaceEvent):
            return 1.0 / event.scale
        rr = _rr_epsilon(event)
        if rr is not None:
            return rr[0]
        if isinstance(event, PoissonSampledEvent):
            if _is_noop(event.event):
                return 0.0
            rr = _rr_epsilon(event.event)
            if rr is not None:
                return ra.log_mixture_epsilon(event.sampling_probability, rr[0])
        if isinstance(event, SampledWithoutReplacementEvent) and (event.sample_size == 0 or _is_noop(event.event)):
            return 0.0
        return math.inf

    def _total_pure(self, atoms: list[tuple[DpEvent, int]]) -> float:
        parts = [count * self._pure_epsilon(event) for event, count in atoms]
        return math.fsum(parts) if all(math.isfinite(p) for p in parts) else math.inf

    def _total_rdp(self, atoms: list[tuple[DpEvent, int]]) -> FloatArray:
        total = np.zeros_like(self._orders)
        for event, count in atoms:
            total = total + count * self._atom_rdp(event)
        return total

    # ------------------------------------------------------------------ conversion
    def _epsilon_and_order(self, atoms: list[tuple[DpEvent, int]], delta: float) -> tuple[float, float]:
        eps, order = ra.rdp_to_epsilon(self._orders, self._total_rdp(atoms), delta)
        pure = self._total_pure(atoms)
        return (pure, math.inf) if pure < eps else (eps, order)

    def _delta_and_order(self, atoms: list[tuple[DpEvent, int]], epsilon: float) -> tuple[float, float]:
        if epsilon >= self._total_pure(atoms):
            return 0.0, math.inf
        return ra.rdp_to_delta(self._orders, self._total_rdp(atoms), epsilon)

    def _epsilon(self, atoms: list[tuple[DpEvent, int]], delta: float, progress: ProgressHook | None = None) -> float:
        return self._epsilon_and_order(atoms, delta)[0]  # fast: no progress to report

    def _delta(self, atoms: list[tuple[DpEvent, int]], epsilon: float, progress: ProgressHook | None = None) -> float:
        return self._delta_and_order(atoms, epsilon)[0]

    # ------------------------------------------------------------------ conveniences
    def get_rdp(self) -> FloatArray:
        """The ledger's RDP curve, one value per order in :attr:`orders`."""
        return self._total_rdp(self.atoms())

    def get_epsilon_and_order(self, delta: float) -> tuple[float, float]:
        """``(epsilon, optimal order)`` of the ledger at ``delta``.

        The order is ``inf`` when pure-DP composition gives the bound, ``nan`` for an empty or non-private
        ledger.
        """
        delta = check_delta("delta", delta)
        atoms = self.atoms()
        if any(isinstance(e, NonPrivateEvent) for e, _ in atoms):
            return math.inf, math.nan
        if not atoms:
            return 0.0, math.nan
        return self._epsilon_and_order(atoms, delta)

    def get_delta_and_order(self, epsilon: float) -> tuple[float, float]:
        """``(delta, optimal order)`` of the ledger at ``epsilon``."""
        epsilon = check_nonnegative("epsilon", epsilon)
        atoms = self.atoms()
        if any(isinstance(e, NonPrivateEvent) for e, _ in atoms):
            return 1.0, math.nan
        if not atoms:
            return 0.0, math.nan
        return self._delta_and_order(atoms, epsilon)


def _contains_sampling(event: DpEvent) -> bool:
    if isinstance(event, PoissonSampledEvent | SampledWithoutReplacementEvent):
        return True
    if isinstance(event, SelfComposedEvent):
        return _contains_sampling(event.event)
    if isinstance(event, ComposedEvent):
        return any(_contains_sampling(e) for e in event.events)
    return False


@lru_cache(maxsize=1024)
def _cached_atom_rdp(event: DpEvent, orders_key: tuple[float, ...]) -> FloatArray:
    """RDP curve of one event on the given orders (read-only; cached, since calibration re-asks often)."""
    rdp = _compute_atom_rdp(event, np.array(orders_key))
    rdp.flags.writeable = False
    return rdp


def _compute_atom_rdp(event: DpEvent, orders: FloatArray) -> FloatArray:
    if isinstance(event, NoOpEvent):
        return np.zeros_like(orders)
    if isinstance(event, NonPrivateEvent):
        return np.full_like(orders, np.inf)
    if isinstance(event, GaussianEvent):
        return ra.rdp_gaussian(event.noise_multiplier, orders)
    if isinstance(event, LaplaceEvent):
        return ra.rdp_laplace(event.scale, orders)
    rr = _rr_epsilon(event)
    if rr is not None:
        eps, k = rr
        log_p, log_q = ra.randomized_response_outcome_classes(eps, k)
        # an eps-DP mechanism has D_alpha <= eps at every order; the cap only removes rounding noise
        return np.minimum(ra._rdp_discrete_log(log_p, log_q, orders), eps)
    if isinstance(event, PoissonSampledEvent):
        q, inner = event.sampling_probability, event.event
        if _is_noop(inner):
            return np.zeros_like(orders)
        sigma = _effective_gaussian_sigma(inner)
        if sigma is not None:
            return ra.rdp_poisson_gaussian(q, sigma, orders)
        rr = _rr_epsilon(inner)
        if rr is None:  # guarded by _supports_atom
            raise ValueError(f"RDPAccountant cannot compute the RDP of {event!r}")
        eps, k = rr
        log_p, log_q = ra.randomized_response_outcome_classes(eps, k)
        if q == 1.0:
            log_mix = log_p
        else:
            log_mix = np.logaddexp(math.log1p(-q) + log_q, math.log(q) + log_p)
        # removal: (mix, Q); addition: (Q, mix). _rdp_discrete_log takes the max of both directions.
        rdp = ra._rdp_discrete_log(log_mix, log_q, orders)
        # Poisson-subsampled eps-DP is log(1 + q (e^eps - 1))-DP (cap only removes rounding noise)
        return np.minimum(rdp, ra.log_mixture_epsilon(q, eps))
    if isinstance(event, SampledWithoutReplacementEvent):
        inner = event.event
        if event.sample_size == 0 or _is_noop(inner):
            return np.zeros_like(orders)
        sigma = _effective_gaussian_sigma(inner)
        if sigma is None:  # guarded by _supports_atom
            raise ValueError(f"RDPAccountant cannot compute the RDP of {event!r}")
        return ra.rdp_sampled_without_replacement_gaussian(event.source_dataset_size, event.sample_size, sigma, orders)
    raise ValueError(f"RDPAccountant cannot compute the RDP of {event!r}")  # guarded by _supports_atom
