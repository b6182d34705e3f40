"""Group privacy: the guarantee of a run for a group of k records (e.g. a user who contributed k examples).

:func:`group_event` rewrites an event into one whose guarantee for a single record is the original's guarantee for
any k records; every accountant then analyses it as usual, so the bound each accountant reports follows from the
rewritten events:

* additive noise: the group's sensitivity is at most k times one record's (triangle inequality), so
  ``GaussianEvent(sigma)`` becomes ``GaussianEvent(sigma / k)`` (RDP ``k^2 alpha / (2 sigma^2)``, exact PLD),
  Laplace ``scale / k``, discrete Gaussian / discrete Laplace ``k x sensitivity``, tree aggregation
  ``noise_multiplier / k`` (the k records' paths give squared sensitivity at most k^2 x depth).
* pure DP: k epsilon (``PureDpEvent``; randomized response becomes ``PureDpEvent(k epsilon)``); the exponential
  mechanism and permute-and-flip: their parameter times k (k times the utility sensitivity).
* approximate DP: ``EpsilonDeltaEvent(epsilon, delta)`` becomes (k epsilon, delta sum_{i<k} e^{i epsilon})
  (the chain of k neighbours; Vadhan, "The complexity of differential privacy", 2017, Lemma 2.2 form).
* zCDP: rho-zCDP becomes k^2 rho-zCDP (Bun, Steinke 2016, Proposition 27); (xi, rho)-zCDP with xi > 0 is refused.
* sampled events: ``GroupEvent(PoissonSampledEvent(q, e), k)``, analysed as the mixture over the number J ~
  Binomial(k, q) of the group's records that were sampled, of ``group_event(e, J)``, with J revealed (sound, not
  tight: revealing J only helps an attacker). The same mixture, over the K ~ Binomial(m, 1/n) copies of a record,
  is how :class:`~dpkit.accountants.SampledWithReplacementEvent` is analysed.
* compositions: each part; repeat-and-select: its inner event (the number of runs does not depend on the data).

Refused (``UnsupportedEventError`` naming the event and why): mixtures of Gaussians (how a group participates
together is not in the event), sampling without replacement and with replacement, zCDP with xi > 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from dpkit.accountants import events as ev
from dpkit.accountants.accountant import PrivacyAccountant
from dpkit.accountants.errors import UnsupportedEventError
from dpkit.accountants.validation import check_count, check_delta

__all__ = ["group_epsilon", "group_event", "group_privacy"]


def _scaled_epsilon(epsilon: float, k: int) -> float | None:
    eps = epsilon * k
    return eps if eps <= ev.MAX_EPSILON else None


def _gaussian(e: ev.DpEvent, k: int) -> ev.DpEvent:
    assert isinstance(e, ev.GaussianEvent)
    sigma = e.noise_multiplier / k
    return ev.GaussianEvent(sigma) if sigma >= ev.MIN_SCALE else ev.NonPrivateEvent()


def _laplace(e: ev.DpEvent, k: int) -> ev.DpEvent:
    assert isinstance(e, ev.LaplaceEvent)
    scale = e.scale / k
    return ev.LaplaceEvent(scale) if scale >= ev.MIN_SCALE else ev.NonPrivateEvent()


def _tree(e: ev.DpEvent, k: int) -> ev.DpEvent:
    assert isinstance(e, ev.SingleEpochTreeAggregationEvent)
    sigma = e.noise_multiplier / k
    return ev.SingleEpochTreeAggregationEvent(sigma, e.step_counts) if sigma >= ev.MIN_SCALE else ev.NonPrivateEvent()


def _check_sensitivity(e: ev.DpEvent, d: int, k: int) -> None:
    if d > ev.MAX_SENSITIVITY:
        raise UnsupportedEventError(
            f"group_event: a group of {k} gives {e!r} a sensitivity above the limit {ev.MAX_SENSITIVITY}"
        )


def _discrete_gaussian(e: ev.DpEvent, k: int) -> ev.DpEvent:
    assert isinstance(e, ev.DiscreteGaussianEvent)
    _check_sensitivity(e, e.sensitivity * k, k)
    return ev.DiscreteGaussianEvent(e.sigma, e.sensitivity * k)


def _discrete_laplace(e: ev.DpEvent, k: int) -> ev.DpEvent:
    assert isinstance(e, ev.DiscreteLaplaceEvent)
    d = e.sensitivity * k
    _check_sensitivity(e, d, k)
    return (
        ev.DiscreteLaplaceEvent(e.noise_parameter, d)
        if e.noise_parameter * d <= ev.MAX_EPSILON
        else ev.NonPrivateEvent()
    )


def _pure(e: ev.DpEvent, k: int) -> ev.DpEvent:
    """Pure-DP mechanisms: epsilon x k; randomized response is any epsilon-DP mechanism for a group."""
    assert isinstance(
        e, ev.PureDpEvent | ev.RandomizedResponseEvent | ev.ExponentialMechanismEvent | ev.PermuteAndFlipEvent
    )
    eps = _scaled_epsilon(e.epsilon, k)
    if eps is None:
        return ev.NonPrivateEvent()
    if isinstance(e, ev.ExponentialMechanismEvent | ev.PermuteAndFlipEvent):
        return type(e)(eps)
    return ev.PureDpEvent(eps)


def _epsilon_delta(e: ev.DpEvent, k: int) -> ev.DpEvent:
    assert isinstance(e, ev.EpsilonDeltaEvent)
    eps = _scaled_epsilon(e.epsilon, k)
    if eps is None:
        return ev.NonPrivateEvent()
    if e.delta == 0:
        return ev.EpsilonDeltaEvent(eps, 0.0)
    # delta sum_{i<k} e^{i eps} = delta (e^{k eps} - 1) / (e^eps - 1), in logs; k delta when eps = 0
    log_sum = (
        math.log(k)
        if e.epsilon == 0
        else k * e.epsilon + math.log(-math.expm1(-k * e.epsilon)) - math.log(math.expm1(e.epsilon))
    )
    log_delta = math.log(e.delta) + log_sum
    return ev.EpsilonDeltaEvent(eps, math.exp(log_delta)) if log_delta < 0 else ev.NonPrivateEvent()


def _zcdp(e: ev.DpEvent, k: int) -> ev.DpEvent:
    assert isinstance(e, ev.ZCDPEvent)
    if e.xi > 0:
        raise UnsupportedEventError(
            f"group_event cannot extend {e!r} to groups: group privacy of (xi, rho)-zCDP with xi > 0 has no "
            "bound implemented (Bun-Steinke 2016, Proposition 27 covers xi = 0)"
        )
    rho = e.rho * k * k
    return ev.ZCDPEvent(rho) if rho <= ev.MAX_EPSILON else ev.NonPrivateEvent()


def group_event(event: ev.DpEvent, group_size: int) -> ev.DpEvent:
    """An event whose single-record guarantee is ``event``'s guarantee for groups of ``group_size`` records.

    See the module docstring for the bound used for each mechanism; ``group_size = 1`` returns ``event``. Raises
    ``UnsupportedEventError`` (naming the event and the reason) where no sound group bound is implemented.
    """
    if not isinstance(event, ev.DpEvent):
        raise TypeError(f"event must be a DpEvent, got {event!r}")
    k = check_count("group_size", group_size, minimum=1, maximum=ev.MAX_SAMPLE_SIZE)
    return _group(event, k)


def _group(event: ev.DpEvent, k: int) -> ev.DpEvent:
    if k == 1 or isinstance(event, ev.NoOpEvent | ev.NonPrivateEvent):
        return event
    if isinstance(event, ev.SelfComposedEvent):
        return ev.SelfComposedEvent(_group(event.event, k), event.count)
    if isinstance(event, ev.ComposedEvent):
        return ev.ComposedEvent(tuple(_group(e, k) for e in event.events))
    if isinstance(event, ev.RepeatAndSelectEvent):
        return ev.RepeatAndSelectEvent(_group(event.event, k), event.mean, event.shape)
    if isinstance(event, ev.GroupEvent):
        size = event.group_size * k
        if size > ev.MAX_SAMPLE_SIZE:
            raise UnsupportedEventError(
                f"group_event: a group of {size} records is above the limit {ev.MAX_SAMPLE_SIZE}"
            )
        return ev.GroupEvent(event.event, size)
    if isinstance(event, ev.PoissonSampledEvent):
        return ev.GroupEvent(event, k)
    rule = _RULES.get(type(event))
    if rule is None:
        raise UnsupportedEventError(
            f"group_event cannot extend {event!r} to groups of {k} records: "
            f"{_REFUSALS.get(type(event).__name__, _DEFAULT)}"
        )
    return rule(event, k)


_DEFAULT = "no group-privacy bound is implemented for this event"
_REFUSALS = {
    "MixtureOfGaussiansEvent": "how the group's records participate together is not part of the event",
    "SampledWithoutReplacementEvent": "no group bound for sampling without replacement is implemented",
    "SampledWithReplacementEvent": "no group bound for sampling with replacement is implemented",
}

_RULES: dict[type[ev.DpEvent], Callable[[ev.DpEvent, int], ev.DpEvent]] = {
    ev.GaussianEvent: _gaussian,
    ev.LaplaceEvent: _laplace,
    ev.SingleEpochTreeAggregationEvent: _tree,
    ev.DiscreteGaussianEvent: _discrete_gaussian,
    ev.DiscreteLaplaceEvent: _discrete_laplace,
    ev.PureDpEvent: _pure,
    ev.RandomizedResponseEvent: _pure,
    ev.ExponentialMechanismEvent: _pure,
    ev.PermuteAndFlipEvent: _pure,
    ev.EpsilonDeltaEvent: _epsilon_delta,
    ev.ZCDPEvent: _zcdp,
}


#: An accountant's answer to "can you analyse the mixture of ``group_event(inner, j)`` over j <= trials?" (None if
#: it can, else why not), called with (inner, trials, relation, a description of what the mixture is for).
MixtureReason = Callable[[ev.DpEvent, int, ev.NeighbouringRelation, str], str | None]


def poisson_group_reason(
    event: ev.GroupEvent, relation: ev.NeighbouringRelation, mixture_reason: MixtureReason
) -> str | None:
    """None if an accountant whose mixtures ``mixture_reason`` vets can analyse ``event``, else why not.

    ``event`` is analysed as the binomial mixture described above, which needs a Poisson-sampled sub-event (what
    :func:`group_event` builds) and add/remove or replace-special neighbours.
    """
    sampled = event.event
    if not isinstance(sampled, ev.PoissonSampledEvent):
        return "GroupEvent wraps Poisson-sampled events only; build group events with group_event(event, k)"
    if relation is ev.NeighbouringRelation.REPLACE_ONE:
        return "group privacy of Poisson sampling is analysed under add/remove (or replace-special) neighbours"
    return mixture_reason(sampled.event, event.group_size, relation, "a Poisson-sampled group")


def group_privacy(accountant: PrivacyAccountant, group_size: int) -> PrivacyAccountant:
    """A new accountant (same kind, relation and options) whose ledger is ``accountant``'s rewritten by
    :func:`group_event`: its epsilons and deltas are the run's guarantee for any group of ``group_size`` records.

    Raises ``UnsupportedEventError`` if an event has no group bound, or if the rewritten event is one the
    accountant cannot analyse (e.g. a Poisson-sampled group under replace-one); the given accountant is unchanged.
    """
    if not isinstance(accountant, PrivacyAccountant):
        raise TypeError(f"accountant must be a PrivacyAccountant, got {accountant!r}")
    k = check_count("group_size", group_size, minimum=1, maximum=ev.MAX_SAMPLE_SIZE)
    out = accountant.fresh()
    for event, count in accountant._ledger:
        out.compose(_group(event, k), count)
    return out


def _chain_factor(epsilon: float, k: int) -> float:
    """sum_{i<k} e^{i epsilon} (inf when it overflows)."""
    if epsilon == 0:
        return float(k)
    log_sum = k * epsilon + math.log(-math.expm1(-k * epsilon)) - math.log(math.expm1(epsilon))
    return math.exp(log_sum) if log_sum < 700 else math.inf


def group_epsilon(accountant: PrivacyAccountant, group_size: int, delta: float, *, points: int = 200) -> float:
    """Epsilon at ``delta`` of the run for any group of ``group_size`` records: the smaller of two bounds.

    * the rewritten ledger (:func:`group_privacy`), where the accountant supports it;
    * the chain bound on the single-record privacy profile: if the run is (e, d(e))-DP for one record, it is
      (k e, d(e) sum_{i<k} e^{i e})-DP for k records (a chain of k neighbours, each step (e, d(e))-DP). The
      accountant's ``get_delta`` is evaluated on ``points`` epsilons from its epsilon at ``delta`` upwards, and
      the smallest k e whose chained delta is at most ``delta`` is kept; every candidate is checked, so the
      result is a valid bound whatever the grid.

    Returns ``inf`` if neither bound reaches ``delta``.
    """
    if not isinstance(accountant, PrivacyAccountant):
        raise TypeError(f"accountant must be a PrivacyAccountant, got {accountant!r}")
    k = check_count("group_size", group_size, minimum=1, maximum=ev.MAX_SAMPLE_SIZE)
    delta = check_delta("delta", delta)
    points = check_count("points", points, minimum=2, maximum=100_000)
    base = accountant.get_epsilon(delta)
    if k == 1 or not math.isfinite(base):
        return base if k == 1 else math.inf
    best = math.inf
    try:
        best = group_privacy(accountant, k).get_epsilon(delta)
    except UnsupportedEventError:
        pass
    top = max(2.0 * base + 1.0, base + math.log(k) + 1.0)
    for eps in [base + (top - base) * i / (points - 1) for i in range(points)]:
        if k * eps >= best:
            break
        factor = _chain_factor(eps, k)
        if math.isfinite(factor) and accountant.get_delta(eps) * factor <= delta:
            best = k * eps
            break
    return best
