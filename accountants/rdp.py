"""Renyi-DP accountant: sums per-event RDP curves over a grid of orders and converts to (epsilon, delta).

Supported atoms (anything else fails closed with a reason):

* add/remove: ``GaussianEvent``, ``LaplaceEvent``, ``RandomizedResponseEvent``, ``PureDpEvent`` (exact RDP);
  ``PoissonSampledEvent(q, GaussianEvent)`` (exact sampled-Gaussian RDP, Mironov-Talwar-Zhang 2019; a
  composition of Gaussians on the same sample counts as one Gaussian with sigma = (sum_i sigma_i^-2)^-1/2);
  ``PoissonSampledEvent(q, RandomizedResponseEvent | PureDpEvent)`` (exact, as the discrete mixture pair
  ((1-q) Q + q P, Q) for removal and (Q, (1-q) Q + q P) for addition).
* replace-one: Gaussian, Laplace, randomized response, pure DP, and
  ``SampledWithoutReplacementEvent(n, m, GaussianEvent)`` (Wang-Balle-Kasiviswanathan 2019, Theorem 9);
  ``PoissonSampledEvent(q, GaussianEvent)`` by the weak triangle inequality over remove-then-add (an upper bound,
  see :func:`dpkit.accountants.rdp_mechanisms.rdp_poisson_gaussian_replace_one`);
  ``SampledWithReplacementEvent`` as the mixture over the number of copies of the record (see
  :mod:`dpkit.accountants.group`).
* replace-special: as add/remove, plus tree aggregation; sampling without replacement is refused.
* every relation: ``ZCDPEvent`` (xi + rho alpha), ``DiscreteGaussianEvent`` (exact), ``DiscreteLaplaceEvent``
  (exact, a finite pair), ``ExponentialMechanismEvent`` (min of epsilon-DP and the epsilon^2/8-zCDP of bounded
  range), ``PermuteAndFlipEvent`` (epsilon-DP), ``EpsilonDeltaEvent`` with delta = 0 (pure DP; delta > 0 has
  infinite Renyi divergence and is refused: use the PLD accountant), ``RepeatAndSelectEvent`` of any supported
  event (Papernot-Steinke 2022). ``MixtureOfGaussiansEvent`` (Jensen upper bound) under add/remove and
  replace-special; ``SingleEpochTreeAggregationEvent`` (a Gaussian) under replace-one and replace-special;
  ``GroupEvent`` of a Poisson-sampled event under add/remove and replace-special (binomial mixture).

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

from dpkit.accountants import events as ev
from dpkit.accountants import rdp_analysis as ra
from dpkit.accountants import rdp_mechanisms as rm
from dpkit.accountants._typing import FloatArray
from dpkit.accountants.accountant import PrivacyAccountant, register_accountant
from dpkit.accountants.errors import UnsupportedEventError
from dpkit.accountants.group import group_event, poisson_group_reason
from dpkit.accountants.progress import ProgressHook
from dpkit.accountants.validation import check_delta, check_nonnegative

__all__ = ["RDPAccountant"]


def _effective_gaussian_sigma(event: ev.DpEvent) -> float | None:
    """sigma of the single Gaussian equivalent to ``event`` if it is a composition of Gaussians, else None.

    Gaussians with noise multipliers sigma_i on the same input compose to a Gaussian with
    sigma = (sum_i sigma_i^-2)^(-1/2) (exactly: the sufficient statistic of the outputs is one Gaussian).
    """
    parts: list[tuple[float, int]] = []
    for atom, count in ev.flatten(event):
        if isinstance(atom, ev.NoOpEvent):
            continue
        if not isinstance(atom, ev.GaussianEvent):
            return None
        parts.append((atom.noise_multiplier, count))
    if not parts:
        return None
    if len(parts) == 1 and parts[0][1] == 1:
        return parts[0][0]
    # Scaled by the smallest sigma so that no sigma^-2 overflows: sigma = m / sqrt(sum_i c_i (m / sigma_i)^2).
    m = min(sigma for sigma, _ in parts)
    return m / math.sqrt(math.fsum(c * (m / sigma) ** 2 for sigma, c in parts))


def _is_noop(event: ev.DpEvent) -> bool:
    return all(isinstance(atom, ev.NoOpEvent) for atom, _ in ev.flatten(event))


def _rr_epsilon(event: ev.DpEvent) -> tuple[float, int] | None:
    """(epsilon, k) of events whose tight pair is k-ary randomized response (pure DP: binary)."""
    if isinstance(event, ev.RandomizedResponseEvent):
        return event.epsilon, event.num_buckets
    if isinstance(event, ev.PureDpEvent | ev.PermuteAndFlipEvent):
        return event.epsilon, 2
    if isinstance(event, ev.EpsilonDeltaEvent) and event.delta == 0:
        return event.epsilon, 2
    return None


def _discrete_log_pair(event: ev.DpEvent) -> tuple[FloatArray, FloatArray] | None:
    """Log-probabilities of a finite tight pair of the event (randomized response, pure DP, discrete Laplace)."""
    rr = _rr_epsilon(event)
    if rr is not None:
        return ra.randomized_response_outcome_classes(*rr)
    if isinstance(event, ev.DiscreteLaplaceEvent):
        return rm.discrete_laplace_log_pair(event.noise_parameter, event.sensitivity)
    return None


def _pure_of_atom(event: ev.DpEvent) -> float:
    """Pure-DP epsilon of an unsampled atom (inf if it has none)."""
    if isinstance(event, ev.NoOpEvent):
        return 0.0
    if isinstance(event, ev.LaplaceEvent):
        return 1.0 / event.scale
    rr = _rr_epsilon(event)
    if rr is not None:
        return rr[0]
    if isinstance(event, ev.ExponentialMechanismEvent):
        return event.epsilon
    if isinstance(event, ev.DiscreteLaplaceEvent):
        return event.noise_parameter * event.sensitivity
    if isinstance(event, ev.ZCDPEvent) and event.rho == 0 and event.xi == 0:
        return 0.0
    if isinstance(event, ev.MixtureOfGaussiansEvent) and max(event.sensitivities) == 0:
        return 0.0
    return math.inf


def _relation_reason(event: ev.DpEvent, relation: ev.NeighbouringRelation) -> str | None:
    """Why ``event`` cannot be analysed under ``relation`` (whatever its parameters), or None."""
    if isinstance(event, ev.MixtureOfGaussiansEvent) and relation is ev.NeighbouringRelation.REPLACE_ONE:
        return (
            "a mixture of Gaussians describes add/remove neighbours (the mixture is the side with the record); use "
            "neighbouring_relation='add_or_remove' or 'replace_special'"
        )
    if isinstance(event, ev.SingleEpochTreeAggregationEvent) and relation is ev.NeighbouringRelation.ADD_OR_REMOVE:
        return (
            "tree aggregation is analysed under replace-special or replace-one neighbours (adding a record shifts "
            "the others to other leaves); use neighbouring_relation='replace_special'"
        )
    if isinstance(event, ev.EpsilonDeltaEvent) and event.delta > 0:
        return (
            "an (epsilon, delta) guarantee with delta > 0 has infinite Renyi divergence; use the PLD accountant "
            "(create_accountant('pld')), which composes it exactly"
        )
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
        neighbouring_relation: ev.NeighbouringRelation | str = ev.NeighbouringRelation.ADD_OR_REMOVE,
        orders: npt.ArrayLike | None = None,
    ) -> None:
        super().__init__(neighbouring_relation)
        self._custom_orders = orders is not None
        arr = ra.DEFAULT_ORDERS if orders is None else ra.check_orders("orders", orders)
        self._orders = np.array(arr, dtype=float)
        self._orders.flags.writeable = False
        self._orders_key = tuple(self._orders.tolist())

    @property
    def orders(self) -> FloatArray:
        return self._orders

    def _options(self) -> dict[str, Any]:
        return {"orders": list(self._orders_key)} if self._custom_orders else {}

    # ------------------------------------------------------------------ support
    def _supports_atom(self, event: ev.DpEvent) -> str | None:
        return _atom_reason(event, self.neighbouring_relation)

    # ------------------------------------------------------------------ RDP of atoms
    def _atom_rdp(self, event: ev.DpEvent) -> FloatArray:
        return _cached_atom_rdp(event, self._orders_key, self.neighbouring_relation)

    def _pure_epsilon(self, event: ev.DpEvent) -> float:
        """D_infinity of an atom: its pure-DP epsilon (inf if it has none)."""
        return _pure_epsilon(event)

    def _total_pure(self, atoms: list[tuple[ev.DpEvent, int]]) -> float:
        parts = [count * self._pure_epsilon(event) for event, count in atoms]
        return math.fsum(parts) if all(math.isfinite(p) for p in parts) else math.inf

    def _total_rdp(self, atoms: list[tuple[ev.DpEvent, int]]) -> FloatArray:
        total = np.zeros_like(self._orders)
        for event, count in atoms:
            total = total + count * self._atom_rdp(event)
        return total

    # ------------------------------------------------------------------ conversion
    def _epsilon_and_order(self, atoms: list[tuple[ev.DpEvent, int]], delta: float) -> tuple[float, float]:
        eps, order = ra.rdp_to_epsilon(self._orders, self._total_rdp(atoms), delta)
        pure = self._total_pure(atoms)
        return (pure, math.inf) if pure < eps else (eps, order)

    def _delta_and_order(self, atoms: list[tuple[ev.DpEvent, int]], epsilon: float) -> tuple[float, float]:
        if epsilon >= self._total_pure(atoms):
            return 0.0, math.inf
        return ra.rdp_to_delta(self._orders, self._total_rdp(atoms), epsilon)

    def _epsilon(
        self, atoms: list[tuple[ev.DpEvent, int]], delta: float, progress: ProgressHook | None = None
    ) -> float:
        return self._epsilon_and_order(atoms, delta)[0]  # fast: no progress to report

    def _delta(
        self, atoms: list[tuple[ev.DpEvent, int]], epsilon: float, progress: ProgressHook | None = None
    ) -> float:
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
        if any(isinstance(e, ev.NonPrivateEvent) for e, _ in atoms):
            return math.inf, math.nan
        if not atoms:
            return 0.0, math.nan
        return self._epsilon_and_order(atoms, delta)

    def get_delta_and_order(self, epsilon: float) -> tuple[float, float]:
        """``(delta, optimal order)`` of the ledger at ``epsilon``."""
        epsilon = check_nonnegative("epsilon", epsilon)
        atoms = self.atoms()
        if any(isinstance(e, ev.NonPrivateEvent) for e, _ in atoms):
            return 1.0, math.nan
        if not atoms:
            return 0.0, math.nan
        return self._delta_and_order(atoms, epsilon)


def _contains_sampling(event: ev.DpEvent) -> bool:
    if isinstance(event, ev.PoissonSampledEvent | ev.SampledWithoutReplacementEvent | ev.SampledWithReplacementEvent):
        return True
    if isinstance(event, ev.GroupEvent | ev.RepeatAndSelectEvent):
        return _contains_sampling(event.event)
    if isinstance(event, ev.SelfComposedEvent):
        return _contains_sampling(event.event)
    if isinstance(event, ev.ComposedEvent):
        return any(_contains_sampling(e) for e in event.events)
    return False


_UNSAMPLED = (
    ev.GaussianEvent,
    ev.LaplaceEvent,
    ev.RandomizedResponseEvent,
    ev.PureDpEvent,
    ev.ZCDPEvent,
    ev.DiscreteGaussianEvent,
    ev.DiscreteLaplaceEvent,
    ev.ExponentialMechanismEvent,
    ev.PermuteAndFlipEvent,
    ev.EpsilonDeltaEvent,
    ev.MixtureOfGaussiansEvent,
    ev.SingleEpochTreeAggregationEvent,
)


def _composite_reason(event: ev.DpEvent, relation: ev.NeighbouringRelation) -> str | None:
    """Reason the RDP accountant cannot analyse any atom of ``event`` (a composition), or None."""
    for atom, _ in ev.flatten(event):
        if isinstance(atom, ev.NoOpEvent | ev.NonPrivateEvent):
            continue
        reason = _atom_reason(atom, relation)
        if reason is not None:
            return reason
    return None


def _group_mixture_reason(inner: ev.DpEvent, trials: int, relation: ev.NeighbouringRelation, what: str) -> str | None:
    """Can the binomial mixture of ``group_event(inner, j)``, j <= trials, be analysed?"""
    if _contains_sampling(inner):
        return f"nested subsampling inside {what} is not supported by the RDP accountant"
    try:
        largest = group_event(inner, trials)
    except UnsupportedEventError as err:
        return f"{what} needs group privacy of its sub-event: {err}"
    return _composite_reason(largest, relation)


def _sampled_reason(inner: ev.DpEvent, handled: str, hint: str = "") -> str:
    """Why the sampled ``inner`` (not one the RDP accountant handles) is refused: nested sampling, or its type."""
    if _contains_sampling(inner):
        return "nested subsampling is not supported by the RDP accountant"
    return f"the RDP accountant handles {handled} only, not {type(inner).__name__}{hint}"


def _atom_reason(event: ev.DpEvent, relation: ev.NeighbouringRelation) -> str | None:
    """None if the RDP accountant analyses the (non-composition) ``event`` under ``relation``, else why not."""
    add_remove = relation is not ev.NeighbouringRelation.REPLACE_ONE  # add/remove or replace-special
    if isinstance(event, ev.NoOpEvent | ev.NonPrivateEvent):
        return None
    if isinstance(event, _UNSAMPLED):
        return _relation_reason(event, relation)
    if isinstance(event, ev.PoissonSampledEvent):
        inner = event.event
        if _is_noop(inner):
            return None
        sigma = _effective_gaussian_sigma(inner)
        if not add_remove:
            if sigma is not None:
                return None
            return (
                "under replace-one, the RDP accountant handles Poisson sampling of Gaussian events only (use the "
                "PLD accountant, or neighbouring_relation='add_or_remove')"
            )
        if sigma is not None or _discrete_log_pair(inner) is not None:
            return None
        return _sampled_reason(
            inner,
            "Poisson sampling of Gaussian, randomized-response, pure-DP and discrete Laplace events",
            "; use the PLD accountant (create_accountant('pld'))",
        )
    if isinstance(event, ev.SampledWithoutReplacementEvent):
        if relation is not ev.NeighbouringRelation.REPLACE_ONE:
            return (
                "the sampling-without-replacement RDP bound (Wang-Balle-Kasiviswanathan 2019) is for "
                "replace-one neighbours; use neighbouring_relation='replace_one' or Poisson sampling"
            )
        inner = event.event
        if event.sample_size == 0 or _is_noop(inner) or _effective_gaussian_sigma(inner) is not None:
            return None
        return _sampled_reason(inner, "sampling without replacement of Gaussian events")
    if isinstance(event, ev.SampledWithReplacementEvent):
        if relation is not ev.NeighbouringRelation.REPLACE_ONE:
            return (
                "sampling with replacement is analysed under replace-one neighbours (under add/remove the dataset "
                "size, hence every record's chance of being drawn, changes); use neighbouring_relation='replace_one'"
            )
        if event.sample_size == 0:
            return None
        return _group_mixture_reason(event.event, event.sample_size, relation, "sampling with replacement")
    if isinstance(event, ev.GroupEvent):
        return poisson_group_reason(event, relation, _group_mixture_reason)
    if isinstance(event, ev.RepeatAndSelectEvent):
        if _is_noop(event.event):
            return None
        return _composite_reason(event.event, relation)
    return f"the RDP accountant does not support {type(event).__name__}"


def _pure_epsilon(event: ev.DpEvent) -> float:
    """D_infinity of an atom the RDP accountant supports: its pure-DP epsilon (inf if it has none)."""
    if isinstance(event, ev.PoissonSampledEvent):
        if _is_noop(event.event):
            return 0.0
        inner = _pure_of_atom(event.event) if _discrete_log_pair(event.event) is not None else math.inf
        return ra.log_mixture_epsilon(event.sampling_probability, inner) if math.isfinite(inner) else math.inf
    if isinstance(event, ev.SampledWithoutReplacementEvent) and (event.sample_size == 0 or _is_noop(event.event)):
        return 0.0
    if isinstance(event, ev.SampledWithReplacementEvent):
        if event.sample_size == 0:
            return 0.0
        return _composite_pure(group_event(event.event, event.sample_size))
    if isinstance(event, ev.GroupEvent) and isinstance(event.event, ev.PoissonSampledEvent):
        return _composite_pure(group_event(event.event.event, event.group_size))
    if isinstance(event, ev.RepeatAndSelectEvent):
        return 0.0 if _is_noop(event.event) else math.inf
    return _pure_of_atom(event)


def _composite_pure(event: ev.DpEvent) -> float:
    parts = [c * _pure_epsilon(a) for a, c in ev.flatten(event) if not isinstance(a, ev.NoOpEvent)]
    return math.fsum(parts) if all(math.isfinite(p) for p in parts) else math.inf


def _composite_rdp(event: ev.DpEvent, orders: FloatArray, relation: ev.NeighbouringRelation) -> FloatArray:
    total = np.zeros_like(orders)
    for atom, count in ev.flatten(event):
        total = total + count * _compute_atom_rdp(atom, orders, relation)
    return total


def _group_mixture_rdp(
    inner: ev.DpEvent, trials: int, p: float, orders: FloatArray, relation: ev.NeighbouringRelation
) -> FloatArray:
    """RDP of the mixture over J ~ Binomial(trials, p), J revealed, of ``group_event(inner, J)`` (J = 0: nothing).

    With the label revealed, exp((alpha-1) D_alpha) = sum_j P(J = j) exp((alpha-1) D_alpha(pair j)) exactly, in
    both directions when each curve bounds both. Labels are accumulated one at a time (bounded memory); labels of
    weight below e^-700 are bounded together by the largest group's RDP (RDP grows with the group).
    """
    log_w, log_tail = rm.binomial_log_weights(trials, p)
    acc = np.full_like(orders, log_w[0]) if len(log_w) else np.full_like(orders, -np.inf)
    for j in range(1, len(log_w)):
        curve = _composite_rdp(group_event(inner, j), orders, relation)
        acc = np.logaddexp(acc, log_w[j] + (orders - 1.0) * curve)
    tail = _composite_rdp(group_event(inner, trials), orders, relation) if log_tail > -math.inf else orders * 0.0
    with np.errstate(invalid="ignore"):
        if log_tail > -math.inf:
            acc = np.logaddexp(acc, log_tail + (orders - 1.0) * tail)
        out = np.where(np.isnan(acc), np.inf, acc / (orders - 1.0))
    return np.maximum(out, 0.0)


@lru_cache(maxsize=1024)
def _cached_atom_rdp(event: ev.DpEvent, orders_key: tuple[float, ...], relation: ev.NeighbouringRelation) -> FloatArray:
    """RDP curve of one event on the given orders (read-only; cached, since calibration re-asks often)."""
    rdp = _compute_atom_rdp(event, np.array(orders_key), relation)
    rdp.flags.writeable = False
    return rdp


def _compute_atom_rdp(event: ev.DpEvent, orders: FloatArray, relation: ev.NeighbouringRelation) -> FloatArray:
    if isinstance(event, ev.NoOpEvent):
        return np.zeros_like(orders)
    if isinstance(event, ev.NonPrivateEvent):
        return np.full_like(orders, np.inf)
    if isinstance(event, ev.GaussianEvent):
        return ra.rdp_gaussian(event.noise_multiplier, orders)
    if isinstance(event, ev.LaplaceEvent):
        return ra.rdp_laplace(event.scale, orders)
    if isinstance(event, ev.ZCDPEvent):
        return rm.rdp_zcdp(event.rho, event.xi, orders)
    if isinstance(event, ev.DiscreteGaussianEvent):
        return rm.rdp_discrete_gaussian(event.sigma, event.sensitivity, orders)
    if isinstance(event, ev.ExponentialMechanismEvent):
        return rm.rdp_exponential_mechanism(event.epsilon, orders)
    if isinstance(event, ev.SingleEpochTreeAggregationEvent):
        return event.depth * ra.rdp_gaussian(event.noise_multiplier, orders)
    if isinstance(event, ev.MixtureOfGaussiansEvent):
        return rm.rdp_mixture_of_gaussians(event.standard_deviation, event.sensitivities, event.probabilities, orders)
    pair = _discrete_log_pair(event)
    if pair is not None:
        # an eps-DP mechanism has D_alpha <= eps at every order; the cap only removes rounding noise
        return np.minimum(ra._rdp_discrete_log(pair[0], pair[1], orders), _pure_of_atom(event))
    if isinstance(event, ev.PoissonSampledEvent):
        return _poisson_rdp(event, orders, relation)
    if isinstance(event, ev.SampledWithoutReplacementEvent):
        inner = event.event
        if event.sample_size == 0 or _is_noop(inner):
            return np.zeros_like(orders)
        sigma = _effective_gaussian_sigma(inner)
        if sigma is None:  # guarded by _supports_atom
            raise ValueError(f"RDPAccountant cannot compute the RDP of {event!r}")
        return ra.rdp_sampled_without_replacement_gaussian(event.source_dataset_size, event.sample_size, sigma, orders)
    if isinstance(event, ev.SampledWithReplacementEvent):
        if event.sample_size == 0:
            return np.zeros_like(orders)
        p = 1.0 / event.source_dataset_size
        return _group_mixture_rdp(event.event, event.sample_size, p, orders, relation)
    if isinstance(event, ev.GroupEvent) and isinstance(event.event, ev.PoissonSampledEvent):
        sampled = event.event
        return _group_mixture_rdp(sampled.event, event.group_size, sampled.sampling_probability, orders, relation)
    if isinstance(event, ev.RepeatAndSelectEvent):
        inner_rdp = _composite_rdp(event.event, orders, relation)
        return rm.rdp_repeat_and_select(orders, inner_rdp, event.mean, event.shape, _composite_pure(event.event))
    raise ValueError(f"RDPAccountant cannot compute the RDP of {event!r}")  # guarded by _supports_atom


def _poisson_rdp(event: ev.PoissonSampledEvent, orders: FloatArray, relation: ev.NeighbouringRelation) -> FloatArray:
    q, inner = event.sampling_probability, event.event
    if _is_noop(inner):
        return np.zeros_like(orders)
    sigma = _effective_gaussian_sigma(inner)
    if sigma is not None:
        if relation is ev.NeighbouringRelation.REPLACE_ONE:
            if q == 1.0:
                return ra.rdp_gaussian(sigma, orders)
            return rm.rdp_poisson_gaussian_replace_one(q, sigma, orders)
        return ra.rdp_poisson_gaussian(q, sigma, orders)
    pair = _discrete_log_pair(inner)
    if pair is None:  # guarded by _supports_atom
        raise ValueError(f"RDPAccountant cannot compute the RDP of {event!r}")
    log_p, log_q = pair
    log_mix = log_p if q == 1.0 else np.logaddexp(math.log1p(-q) + log_q, math.log(q) + log_p)
    # removal: (mix, Q); addition: (Q, mix). _rdp_discrete_log takes the max of both directions.
    rdp = ra._rdp_discrete_log(log_mix, log_q, orders)
    # Poisson-subsampled eps-DP is log(1 + q (e^eps - 1))-DP (cap only removes rounding noise)
    return np.minimum(rdp, ra.log_mixture_epsilon(q, _pure_of_atom(inner)))
