"""Which dominating pairs the PLD accountant uses for each event, under each neighbouring relation.

* Symmetric pairs (the same PLD for "remove" and "add"), under every relation: Gaussian, Laplace, k-ary randomized
  response, pure DP (binary randomized response), the exponential mechanism and permute-and-flip (as epsilon-DP:
  binary randomized response dominates every epsilon-DP mechanism, Kairouz-Oh-Viswanath 2015; the tighter
  bounded-range analysis of the exponential mechanism enters through the RDP bound the accountant also takes),
  (epsilon, delta)-DP (the four-outcome pair of Kairouz-Oh-Viswanath 2015), the discrete Laplace (exact, finite),
  the discrete Gaussian with sigma <= 1e5 (exact on a window, the rest at infinite loss), and tree aggregation (a
  Gaussian, replace-one / replace-special only).
* Mixture of Gaussians (add/remove, replace-special): "remove" (sum_i p_i N(c_i), N(0)) and "add" (the reverse).
* Poisson sampling with rate q < 1 under add/remove and replace-special: "remove" ((1-q) Q + q P, Q) and "add"
  (Q, (1-q) Q + q P) of the sub-event's pair (Zhu, Dong, Wang, "Optimal accounting of differential privacy via
  characteristic function", AISTATS 2022, Theorem 11); under replace-one, for Gaussian sub-events only, the
  symmetric worst-case pair ((1-q) N(0) + q N(1/2), (1-q) N(0) + q N(-1/2)) in units of the replace-one
  sensitivity (Lebeda, Regehr, Kamath, Steinke 2024, Proposition 13); it assumes, as DP-SGD's clipping gives, that
  a record outside the sample contributes nothing and a sampled one at most half the replace-one sensitivity.
* Sampling with replacement (replace-one) and a Poisson-sampled group (add/remove, replace-special): the labelled
  binomial mixture of the group versions of the sub-event (:mod:`dpkit.accountants.group`).

zCDP and repeat-and-select bound Renyi divergences only (no dominating pair is known): the PLD accountant refuses
them, naming the RDP accountant. Sampling without replacement is refused as before.
"""

from __future__ import annotations

import math

import numpy as np

from dpkit.accountants import events as ev
from dpkit.accountants import rdp_mechanisms as rm
from dpkit.accountants.errors import UnsupportedEventError
from dpkit.accountants.group import group_event, poisson_group_reason
from dpkit.accountants.privacy_loss import (
    DiscretePair,
    MixturePair,
    Pair,
    ScalarPair,
    discrete_gaussian_pair,
    discrete_pair,
    gaussian_pair,
    identical_pair,
    laplace_pair,
    mixture_of_gaussians_pair,
    poisson_gaussian_replace_pair,
    poisson_subsampled,
    randomized_response_pair,
)
from dpkit.accountants.rdp import _effective_gaussian_sigma, _relation_reason
from dpkit.accountants.rdp_analysis import log_mixture_epsilon

__all__ = ["analytic_view", "event_pairs", "pair_reason"]

#: Largest discrete-Gaussian sigma whose PLD is built (its window has about 17 sigma integers).
MAX_DISCRETE_GAUSSIAN_SIGMA = 1e5

_SYMMETRIC = (
    ev.GaussianEvent,
    ev.LaplaceEvent,
    ev.RandomizedResponseEvent,
    ev.PureDpEvent,
    ev.ExponentialMechanismEvent,
    ev.PermuteAndFlipEvent,
    ev.EpsilonDeltaEvent,
    ev.DiscreteLaplaceEvent,
    ev.DiscreteGaussianEvent,
    ev.SingleEpochTreeAggregationEvent,
)


def _symmetric_reason(event: ev.DpEvent, relation: ev.NeighbouringRelation) -> str | None:
    if isinstance(event, ev.DiscreteGaussianEvent) and event.sigma > MAX_DISCRETE_GAUSSIAN_SIGMA:
        return (
            f"the PLD accountant builds discrete-Gaussian PLDs for sigma <= {MAX_DISCRETE_GAUSSIAN_SIGMA:g} only; "
            "use the RDP accountant (exact for the discrete Gaussian)"
        )
    if isinstance(event, ev.EpsilonDeltaEvent):
        return None  # (the RDP accountant's reason, infinite Renyi divergence, does not concern PLDs)
    return _relation_reason(event, relation)


def _symmetric_pair(event: ev.DpEvent, tail: float) -> ScalarPair | DiscretePair:
    if isinstance(event, ev.GaussianEvent):
        return gaussian_pair(event.noise_multiplier)
    if isinstance(event, ev.SingleEpochTreeAggregationEvent):
        return gaussian_pair(event.noise_multiplier / math.sqrt(event.depth))
    if isinstance(event, ev.LaplaceEvent):
        return laplace_pair(event.scale)
    if isinstance(event, ev.RandomizedResponseEvent):
        return randomized_response_pair(event.epsilon, event.num_buckets)
    if isinstance(event, ev.PureDpEvent | ev.ExponentialMechanismEvent | ev.PermuteAndFlipEvent):
        return randomized_response_pair(event.epsilon, 2)
    if isinstance(event, ev.EpsilonDeltaEvent):
        return discrete_pair(*rm.epsilon_delta_pair(event.epsilon, event.delta))
    if isinstance(event, ev.DiscreteLaplaceEvent):
        log_p, log_q = rm.discrete_laplace_log_pair(event.noise_parameter, event.sensitivity)
        return discrete_pair(np.exp(log_p), np.exp(log_q))
    if isinstance(event, ev.DiscreteGaussianEvent):
        return discrete_gaussian_pair(event.sigma, event.sensitivity, tail)
    raise TypeError(event)


def _as_single(event: ev.DpEvent) -> ev.DpEvent:
    """A composition of Gaussians on the same input as one Gaussian (as the RDP accountant does)."""
    sigma = _effective_gaussian_sigma(event)
    return ev.GaussianEvent(sigma) if sigma is not None and not isinstance(event, ev.GaussianEvent) else event


def _group_reason(inner: ev.DpEvent, trials: int, relation: ev.NeighbouringRelation, what: str) -> str | None:
    inner = _as_single(inner)
    if not isinstance(inner, _SYMMETRIC) or isinstance(inner, ev.SingleEpochTreeAggregationEvent):
        return f"the PLD accountant analyses {what} of single basic mechanisms only, not {type(inner).__name__}"
    try:
        largest = group_event(inner, trials)
    except UnsupportedEventError as err:
        return f"{what} needs group privacy of its sub-event: {err}"
    return None if isinstance(largest, ev.NonPrivateEvent) else _symmetric_reason(largest, relation)


def pair_reason(event: ev.DpEvent, relation: ev.NeighbouringRelation) -> str | None:
    """None if the PLD accountant has dominating pairs for the (non-composition) ``event``, else why not."""
    add_remove = relation is not ev.NeighbouringRelation.REPLACE_ONE
    if isinstance(event, _SYMMETRIC):
        return _symmetric_reason(event, relation)
    if isinstance(event, ev.MixtureOfGaussiansEvent):
        return _relation_reason(event, relation)
    if isinstance(event, ev.PoissonSampledEvent):
        inner = _as_single(event.event)
        if not add_remove:
            if event.sampling_probability == 1.0 and isinstance(inner, _SYMMETRIC):
                return _symmetric_reason(inner, relation)
            if isinstance(inner, ev.GaussianEvent):
                return None
            return (
                "under replace-one, Poisson sampling is analysed for Gaussian sub-events only (Lebeda-Regehr-"
                "Kamath-Steinke 2024); use neighbouring_relation='add_or_remove'"
            )
        if not isinstance(inner, _SYMMETRIC) or isinstance(inner, ev.SingleEpochTreeAggregationEvent):
            return f"Poisson sampling of {type(inner).__name__} is not supported by the PLD accountant"
        return _symmetric_reason(inner, relation)
    if isinstance(event, ev.SampledWithReplacementEvent):
        if add_remove:
            return "sampling with replacement is analysed under replace-one neighbours; use 'replace_one'"
        if event.sample_size == 0:
            return None
        return _group_reason(event.event, event.sample_size, relation, "sampling with replacement")
    if isinstance(event, ev.GroupEvent):
        return poisson_group_reason(event, relation, _group_reason)
    if isinstance(event, ev.ZCDPEvent | ev.RepeatAndSelectEvent):
        return (
            f"{type(event).__name__} bounds Renyi divergences only and has no known dominating pair; use the RDP "
            "accountant (create_accountant('rdp'))"
        )
    return f"{type(event).__name__} is not supported by the PLD accountant (try the RDP accountant)"


def _group_mixture(inner: ev.DpEvent, trials: int, p: float, tail: float) -> MixturePair:
    """Labelled mixture over J ~ Binomial(trials, p) of the group-J pairs; weights beyond the first labels whose
    total is below ``tail / 10`` go to infinite loss (pessimistic)."""
    inner = _as_single(inner)
    log_w, log_tail = rm.binomial_log_weights(trials, p)
    weights = np.exp(log_w)
    rest = np.cumsum(weights[::-1])[::-1] + math.exp(log_tail)  # P(J >= j)
    keep = int(np.searchsorted(-rest, -tail / 10.0, side="left"))  # labels j < keep hold all but <= tail / 10
    keep = max(1, min(keep, len(weights)))
    pairs: list[ScalarPair | DiscretePair] = [identical_pair()]
    ws = [float(weights[0])]
    lost = float(rest[keep]) if keep < len(rest) else math.exp(log_tail)
    for j in range(1, keep):
        g = group_event(inner, j)
        if isinstance(g, ev.NonPrivateEvent):
            lost += float(rest[j])
            break
        pairs.append(_symmetric_pair(g, tail))
        ws.append(float(weights[j]))
    return MixturePair(tuple(ws), tuple(pairs), tail=min(1.0, lost))


def event_pairs(event: ev.DpEvent, relation: ev.NeighbouringRelation, tail: float) -> list[Pair]:
    """Dominating pairs of ``event`` (one, or "remove" and "add"); ``tail``: mass a truncation may move."""
    if isinstance(event, _SYMMETRIC):
        return [_symmetric_pair(event, tail)]
    if isinstance(event, ev.MixtureOfGaussiansEvent):
        args = (event.standard_deviation, event.sensitivities, event.probabilities)
        return [mixture_of_gaussians_pair(*args, d) for d in ("remove", "add")]
    if isinstance(event, ev.PoissonSampledEvent):
        q, inner = event.sampling_probability, _as_single(event.event)
        if q == 1.0:
            return [_symmetric_pair(inner, tail)]
        if relation is ev.NeighbouringRelation.REPLACE_ONE:
            assert isinstance(inner, ev.GaussianEvent)
            return [poisson_gaussian_replace_pair(q, inner.noise_multiplier)]
        base = _symmetric_pair(inner, tail)
        return [poisson_subsampled(base, q, d) for d in ("remove", "add")]
    if isinstance(event, ev.SampledWithReplacementEvent):
        if event.sample_size == 0:
            return [identical_pair()]
        return [_group_mixture(event.event, event.sample_size, 1.0 / event.source_dataset_size, tail)]
    if isinstance(event, ev.GroupEvent) and isinstance(event.event, ev.PoissonSampledEvent):
        sampled = event.event
        return [_group_mixture(sampled.event, event.group_size, sampled.sampling_probability, tail)]
    raise TypeError(event)


def analytic_view(event: ev.DpEvent, relation: ev.NeighbouringRelation) -> ev.DpEvent | tuple[float, float]:
    """What the analytic bound of the PLD accountant uses for ``event``: an event the RDP accountant analyses whose
    guarantee implies ``event``'s (the same one, or a dominating one), or an (epsilon, delta) pair for basic
    composition where Renyi divergences are infinite."""
    if isinstance(event, ev.EpsilonDeltaEvent) and event.delta > 0:
        return event.epsilon, event.delta
    if isinstance(event, ev.PoissonSampledEvent):
        q, inner = event.sampling_probability, _as_single(event.event)
        if isinstance(inner, ev.EpsilonDeltaEvent) and inner.delta > 0:
            # Balle, Barthe, Gaboardi, "Privacy amplification by subsampling", NeurIPS 2018, Theorem 8
            return log_mixture_epsilon(q, inner.epsilon), q * inner.delta
        if isinstance(inner, ev.LaplaceEvent):  # dominated by randomized response with epsilon = 1/scale
            inner = ev.PureDpEvent(1.0 / inner.scale)
        elif isinstance(inner, ev.ExponentialMechanismEvent):
            inner = ev.PureDpEvent(inner.epsilon)
        elif isinstance(inner, ev.DiscreteGaussianEvent) and q < 1:
            return inner  # subsampling is a post-processing of the unsampled mechanism
        if q == 1.0:
            return inner
        return ev.PoissonSampledEvent(q, inner)
    base, size = None, 0
    if isinstance(event, ev.SampledWithReplacementEvent):
        base, size = event.event, event.sample_size
    elif isinstance(event, ev.GroupEvent) and isinstance(event.event, ev.PoissonSampledEvent):
        base, size = event.event.event, event.group_size
    if isinstance(base, ev.EpsilonDeltaEvent) and base.delta > 0 and size > 0:
        largest = group_event(base, size)  # no amplification: the largest group dominates the mixture
        return (largest.epsilon, largest.delta) if isinstance(largest, ev.EpsilonDeltaEvent) else (math.inf, 1.0)
    return event
