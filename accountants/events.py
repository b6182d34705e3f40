"""Privacy events: what a mechanism did, described as data.

An event says which mechanism ran and with what parameters; an accountant interprets it (in the style of
dp_accounting's ``DpEvent``). Events are frozen dataclasses, compare and hash by value, and serialize to JSON.

Conventions (the unit of privacy is one record, the neighbouring relation is the accountant's):

* ``GaussianEvent(noise_multiplier)``: Gaussian noise of standard deviation ``noise_multiplier * Delta`` added to a
  query whose L2 sensitivity under the accountant's neighbouring relation is ``Delta``. For a sum of per-record
  contributions clipped to norm C, Delta is C under add/remove and 2C under replace-one, so DP-SGD with noise
  std sigma*C is ``GaussianEvent(sigma)`` under add/remove and ``GaussianEvent(sigma / 2)`` under replace-one.
* ``LaplaceEvent(scale)``: Laplace noise of scale ``scale * Delta_1`` for L1 sensitivity Delta_1 (epsilon = 1/scale).
* ``RandomizedResponseEvent(epsilon, num_buckets)``: k-ary randomized response on the unit's value (reports the
  true bucket with probability e^eps / (e^eps + k - 1)); ``PureDpEvent(epsilon)`` is any epsilon-DP mechanism, whose
  tight dominating pair is binary randomized response.
* ``PoissonSampledEvent(q, event)``: each record enters the sub-event's input independently with probability q.
* ``SampledWithoutReplacementEvent(n, m, event)``: a uniformly random subset of m of the n records (replace-one).
* ``SelfComposedEvent(event, count)`` and ``ComposedEvent(events)``: (adaptive) sequential composition.

More mechanisms (:mod:`dpkit.accountants.events`, in the style of dp_accounting's events of the same names):
``ZCDPEvent``, ``DiscreteGaussianEvent``, ``DiscreteLaplaceEvent``, ``ExponentialMechanismEvent``,
``PermuteAndFlipEvent``, ``EpsilonDeltaEvent``, ``MixtureOfGaussiansEvent``, ``SampledWithReplacementEvent``,
``RepeatAndSelectEvent``, ``SingleEpochTreeAggregationEvent`` and ``GroupEvent``; each class states its guarantee.
Which accountant analyses which event, and how, is in :mod:`dpkit.accountants.rdp` and :mod:`dpkit.accountants.pld`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Iterator
from enum import Enum
from typing import Any, ClassVar

from dpkit.accountants.validation import _as_float, check_count, check_probability, check_range

#: Limits of the accepted parameters, beyond which the accountants' arithmetic would overflow (1/sigma^2, e^eps,
#: count x RDP must stay finite floats). Counts stay exact as floats (2^53).
MIN_SCALE = 1e-100
MAX_SCALE = 1e100
MAX_EPSILON = 1e100
MAX_COUNT = 2**53
#: Largest integer sensitivity of the discrete mechanisms (their privacy loss takes up to sensitivity + 1 values).
MAX_SENSITIVITY = 10**6
#: Largest sample size of sampling with replacement and largest group (binomial mixtures stay small).
MAX_SAMPLE_SIZE = 10**6
#: Largest number of entries of a number list in an event (mixture components, trees).
MAX_ENTRIES = 10**4


class NeighbouringRelation(str, Enum):
    """Which datasets are neighbours: one record added or removed (default), one record replaced by any other, or
    one record replaced by a special record."""

    ADD_OR_REMOVE = "add_or_remove"
    REPLACE_ONE = "replace_one"
    #: One record replaced by a fixed "special" record (e.g. the zero record), as in Kairouz, McMahan, Song,
    #: Thakkar, Thakurta, Xu, "Practical and private (deep) learning without sampling or shuffling", ICML 2021
    #: (arXiv:2103.00039), Definition 1.1. Sensitivities under it are those of add/remove for sums.
    REPLACE_SPECIAL = "replace_special"

    @classmethod
    def parse(cls, value: NeighbouringRelation | str) -> NeighbouringRelation:
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).lower().replace("-", "_"))
        except ValueError:
            allowed = ", ".join(repr(r.value) for r in cls)
            raise ValueError(f"neighbouring_relation must be one of {allowed}, got {value!r}") from None


_EVENT_TYPES: dict[str, type[DpEvent]] = {}
#: Field annotations of number tuples (serialized as JSON lists).
_NUMBER_TUPLES = ("tuple[float, ...]", "tuple[int, ...]")


def register_event(cls: type[DpEvent]) -> type[DpEvent]:
    """Class decorator: make an event type known to :func:`event_from_dict` under ``cls.kind``."""
    if cls.kind in _EVENT_TYPES:
        raise ValueError(f"event kind {cls.kind!r} is already registered")
    _EVENT_TYPES[cls.kind] = cls
    return cls


@dataclasses.dataclass(frozen=True)
class DpEvent:
    """Base class of privacy events."""

    kind: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, DpEvent):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = [v.to_dict() if isinstance(v, DpEvent) else v for v in value]
            out[f.name] = value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def event_from_dict(data: object, name: str = "event") -> DpEvent:
    """Inverse of :meth:`DpEvent.to_dict`: the dict must have exactly the keys ``to_dict`` writes.

    Every value is validated by the event's constructor; an error names the offending entry by its path
    (``name``, e.g. ``ledger[3].event.noise_multiplier``). Nothing is built from a dict with unknown keys.
    """
    if not isinstance(data, dict):
        raise TypeError(f"{name} must be an event dict with a 'type' key, got {data!r}")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ValueError(f"{name} must be an event dict with a 'type' key, got {data!r}")
    cls = _EVENT_TYPES.get(kind)
    if cls is None:
        raise ValueError(f"unknown event type {kind!r} at {name}.type; known: {sorted(_EVENT_TYPES)}")
    fields = dataclasses.fields(cls)
    known = {"type"} | {f.name for f in fields}
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise ValueError(f"{name} ({kind}) has unknown keys {unknown}; allowed: {sorted(known)}")
    kwargs: dict[str, Any] = {}
    for f in fields:
        if f.name not in data:
            raise ValueError(f"{name} ({kind}) is missing the key {f.name!r}")
        value = data[f.name]
        path = f"{name}.{f.name}"
        if f.type in ("DpEvent", DpEvent):
            value = event_from_dict(value, path)
        elif f.type in ("tuple[DpEvent, ...]", tuple[DpEvent, ...]):
            if not isinstance(value, list | tuple):
                raise TypeError(f"{path} must be a list of event dicts, got {value!r}")
            value = tuple(event_from_dict(v, f"{path}[{i}]") for i, v in enumerate(value))
        elif f.type in _NUMBER_TUPLES:
            if not isinstance(value, list | tuple) or any(isinstance(v, dict | list) for v in value):
                raise TypeError(f"{path} must be a list of numbers, got {value!r}")
            value = tuple(value)
        elif isinstance(value, dict | list):
            raise TypeError(f"{path} must be a number, got {value!r}")
        kwargs[f.name] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{name}: {err}") from None


def event_from_json(text: str | bytes) -> DpEvent:
    """Inverse of :meth:`DpEvent.to_json`."""
    if not isinstance(text, str | bytes | bytearray):
        raise TypeError(f"text must be a JSON string, got {type(text).__name__}")
    try:
        data = json.loads(text)
    except ValueError as err:  # json.JSONDecodeError and undecodable bytes
        raise ValueError(f"text is not valid JSON: {err}") from None
    return event_from_dict(data)


@register_event
@dataclasses.dataclass(frozen=True)
class NoOpEvent(DpEvent):
    """Nothing private was released (costs nothing)."""

    kind: ClassVar[str] = "no_op"


@register_event
@dataclasses.dataclass(frozen=True)
class NonPrivateEvent(DpEvent):
    """Data was released without protection: epsilon is infinite."""

    kind: ClassVar[str] = "non_private"


@register_event
@dataclasses.dataclass(frozen=True)
class GaussianEvent(DpEvent):
    """Gaussian mechanism, noise std = ``noise_multiplier`` x L2 sensitivity."""

    noise_multiplier: float
    kind: ClassVar[str] = "gaussian"

    def __post_init__(self) -> None:
        sigma = check_range("noise_multiplier", self.noise_multiplier, MIN_SCALE, MAX_SCALE)
        object.__setattr__(self, "noise_multiplier", sigma)


@register_event
@dataclasses.dataclass(frozen=True)
class LaplaceEvent(DpEvent):
    """Laplace mechanism, noise scale = ``scale`` x L1 sensitivity; (1/scale)-DP."""

    scale: float
    kind: ClassVar[str] = "laplace"

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", check_range("scale", self.scale, MIN_SCALE, MAX_SCALE))


@register_event
@dataclasses.dataclass(frozen=True)
class RandomizedResponseEvent(DpEvent):
    """k-ary randomized response with parameter epsilon (``num_buckets`` = k >= 2)."""

    epsilon: float
    num_buckets: int = 2
    kind: ClassVar[str] = "randomized_response"

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon", _check_epsilon("epsilon", self.epsilon))
        k = check_count("num_buckets", self.num_buckets, minimum=2, maximum=MAX_COUNT)
        object.__setattr__(self, "num_buckets", k)


@register_event
@dataclasses.dataclass(frozen=True)
class PureDpEvent(DpEvent):
    """Any epsilon-DP mechanism (dominated by binary randomized response)."""

    epsilon: float
    kind: ClassVar[str] = "pure_dp"

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon", _check_epsilon("epsilon", self.epsilon))


@register_event
@dataclasses.dataclass(frozen=True)
class PoissonSampledEvent(DpEvent):
    """Each record is in the sub-event's input independently with probability ``sampling_probability``."""

    sampling_probability: float
    event: DpEvent
    kind: ClassVar[str] = "poisson_sampled"

    def __post_init__(self) -> None:
        q = check_probability("sampling_probability", self.sampling_probability)
        object.__setattr__(self, "sampling_probability", q)
        _check_event("event", self.event)


@register_event
@dataclasses.dataclass(frozen=True)
class SampledWithoutReplacementEvent(DpEvent):
    """The sub-event runs on ``sample_size`` records drawn without replacement from ``source_dataset_size``."""

    source_dataset_size: int
    sample_size: int
    event: DpEvent
    kind: ClassVar[str] = "sampled_without_replacement"

    def __post_init__(self) -> None:
        n = check_count("source_dataset_size", self.source_dataset_size, minimum=1, maximum=MAX_COUNT)
        m = check_count("sample_size", self.sample_size, minimum=0)
        if m > n:
            raise ValueError(f"sample_size must be in [0, source_dataset_size={n}], got {m}")
        object.__setattr__(self, "source_dataset_size", n)
        object.__setattr__(self, "sample_size", m)
        _check_event("event", self.event)


@register_event
@dataclasses.dataclass(frozen=True)
class SelfComposedEvent(DpEvent):
    """``event`` run ``count`` times (adaptively)."""

    event: DpEvent
    count: int
    kind: ClassVar[str] = "self_composed"

    def __post_init__(self) -> None:
        _check_event("event", self.event)
        object.__setattr__(self, "count", check_count("count", self.count, maximum=MAX_COUNT))


@register_event
@dataclasses.dataclass(frozen=True)
class ComposedEvent(DpEvent):
    """The events run one after another (adaptively)."""

    events: tuple[DpEvent, ...]
    kind: ClassVar[str] = "composed"

    def __post_init__(self) -> None:
        if not isinstance(self.events, list | tuple):
            raise TypeError(f"events must be a list or tuple of DpEvents, got {self.events!r}")
        events = tuple(self.events)
        for i, e in enumerate(events):
            _check_event(f"events[{i}]", e)
        object.__setattr__(self, "events", events)


@register_event
@dataclasses.dataclass(frozen=True)
class ZCDPEvent(DpEvent):
    """A mechanism satisfying (xi, rho)-zCDP: Renyi divergence ``D_alpha <= xi + rho * alpha`` at every order
    alpha > 1, in both directions (Bun, Steinke, "Concentrated differential privacy: simplifications, extensions,
    and lower bounds", TCC 2016, arXiv:1605.02065, Definition 1.1). ``xi = 0`` is rho-zCDP; the Gaussian
    mechanism ``GaussianEvent(sigma)`` is ``1 / (2 sigma^2)``-zCDP."""

    rho: float
    xi: float = 0.0
    kind: ClassVar[str] = "zcdp"

    def __post_init__(self) -> None:
        object.__setattr__(self, "rho", check_range("rho", self.rho, 0.0, MAX_EPSILON))
        object.__setattr__(self, "xi", check_range("xi", self.xi, 0.0, MAX_EPSILON))


@register_event
@dataclasses.dataclass(frozen=True)
class DiscreteGaussianEvent(DpEvent):
    """The discrete Gaussian mechanism on an integer-valued (scalar) query: noise with P(x) proportional to
    ``exp(-x^2 / (2 sigma^2))`` on the integers, query sensitivity ``sensitivity`` (an integer) under the
    accountant's relation (Canonne, Kamath, Steinke, "The discrete Gaussian for differential privacy", NeurIPS
    2020, arXiv:2004.00010). ``sigma`` is the scale parameter, not exactly the standard deviation. It is
    ``sensitivity^2 / (2 sigma^2)``-zCDP (their Theorem 4); its exact privacy profile is their Theorem 7."""

    sigma: float
    sensitivity: int = 1
    kind: ClassVar[str] = "discrete_gaussian"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", check_range("sigma", self.sigma, MIN_SCALE, MAX_SCALE))
        d = check_count("sensitivity", self.sensitivity, minimum=1, maximum=MAX_SENSITIVITY)
        object.__setattr__(self, "sensitivity", d)


@register_event
@dataclasses.dataclass(frozen=True)
class DiscreteLaplaceEvent(DpEvent):
    """The discrete Laplace (two-sided geometric) mechanism on an integer-valued query: noise with
    ``P(x) = tanh(a / 2) exp(-a |x|)`` on the integers (a = ``noise_parameter``), query L1 sensitivity
    ``sensitivity`` (an integer). It is ``a * sensitivity``-DP (Ghosh, Roughgarden, Sundararajan, "Universally
    utility-maximizing privacy mechanisms", STOC 2009); its privacy loss takes ``sensitivity + 1`` values, so
    both accountants analyse it exactly."""

    noise_parameter: float
    sensitivity: int = 1
    kind: ClassVar[str] = "discrete_laplace"

    def __post_init__(self) -> None:
        a = check_range("noise_parameter", self.noise_parameter, MIN_SCALE, MAX_EPSILON)
        d = check_count("sensitivity", self.sensitivity, minimum=1, maximum=MAX_SENSITIVITY)
        if a * d > MAX_EPSILON:
            raise ValueError(
                f"noise_parameter x sensitivity (the epsilon) must be at most {MAX_EPSILON:g}, got {a * d!r}"
            )
        object.__setattr__(self, "noise_parameter", a)
        object.__setattr__(self, "sensitivity", d)


@register_event
@dataclasses.dataclass(frozen=True)
class ExponentialMechanismEvent(DpEvent):
    """The exponential mechanism (McSherry, Talwar, FOCS 2007): output r with probability proportional to
    ``exp(epsilon * u(x, r) / (2 Delta_u))`` (or ``exp(epsilon * u / Delta_u)`` for a utility that is monotone
    in the data), Delta_u the utility's sensitivity. Report-noisy-max with Gumbel noise is the same mechanism.
    It is epsilon-DP and, more strongly, epsilon-bounded-range (Durfee, Rogers, "Practical differentially private
    top-k selection with pay-what-you-get composition", NeurIPS 2019), hence ``epsilon^2 / 8``-zCDP (Cesar,
    Rogers, "Bounding, concentrating, and truncating: unifying privacy loss composition for data analytics",
    ALT 2021, Lemma 3.2)."""

    epsilon: float
    kind: ClassVar[str] = "exponential_mechanism"

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon", _check_epsilon("epsilon", self.epsilon))


@register_event
@dataclasses.dataclass(frozen=True)
class PermuteAndFlipEvent(DpEvent):
    """Permute-and-flip (McKenna, Sheldon, NeurIPS 2020): visit the candidates in random order and stop at r with
    probability ``exp(epsilon * (u(x, r) - max_r' u(x, r')) / (2 Delta_u))``. It is epsilon-DP (the factor 2
    may be dropped for monotone utilities, as for the exponential mechanism). Report-noisy-max with exponential
    noise is the same mechanism (Ding, Kifer, Saghaian, Steinke, Wang, Xiao, Zhang, "The permute-and-flip
    mechanism is identical to report-noisy-max with exponential noise", arXiv:2105.07260)."""

    epsilon: float
    kind: ClassVar[str] = "permute_and_flip"

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon", _check_epsilon("epsilon", self.epsilon))


@register_event
@dataclasses.dataclass(frozen=True)
class EpsilonDeltaEvent(DpEvent):
    """Any (epsilon, delta)-DP mechanism. Its tight dominating pair is the four-outcome pair of Kairouz, Oh,
    Viswanath ("The composition theorem for differential privacy", ICML 2015, Theorem 1/2): with probability
    delta the output reveals the input, otherwise it is binary randomized response with epsilon. ``delta = 0`` is
    pure DP."""

    epsilon: float
    delta: float
    kind: ClassVar[str] = "epsilon_delta"

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon", check_range("epsilon", self.epsilon, 0.0, MAX_EPSILON))
        object.__setattr__(self, "delta", check_probability("delta", self.delta, open_low=False, open_high=True))


@register_event
@dataclasses.dataclass(frozen=True)
class MixtureOfGaussiansEvent(DpEvent):
    """A Gaussian mechanism whose sensitivity is random: on one dataset the output is ``N(0, s^2)``, on its
    neighbour ``sum_i p_i N(c_i, s^2)`` (s = ``standard_deviation``, c_i = ``sensitivities[i]`` >= 0,
    p_i = ``probabilities[i]``, summing to 1). Choquette-Choo, Ganesh, Steinke, Thakurta, "Privacy amplification
    for matrix mechanisms", ICLR 2024 (arXiv:2310.15526): e.g. a record that joins a random subset of the
    released sums. Sensitivities and standard deviation are in the same (absolute) units; add/remove neighbours
    (the mixture is the side with the record)."""

    standard_deviation: float
    sensitivities: tuple[float, ...]
    probabilities: tuple[float, ...]
    kind: ClassVar[str] = "mixture_of_gaussians"

    def __post_init__(self) -> None:
        s = check_range("standard_deviation", self.standard_deviation, MIN_SCALE, MAX_SCALE)
        cs = _number_tuple("sensitivities", self.sensitivities)
        ps = _number_tuple("probabilities", self.probabilities)
        for i, c in enumerate(cs):
            check_range(f"sensitivities[{i}]", c, 0.0, MAX_SCALE)
        for i, p in enumerate(ps):
            check_probability(f"probabilities[{i}]", p, open_low=False)
        if len(cs) != len(ps):
            raise ValueError(f"sensitivities and probabilities must have the same length, got {len(cs)} and {len(ps)}")
        total = math.fsum(ps)
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"probabilities must sum to 1 (within 1e-9), got sum {total!r}")
        object.__setattr__(self, "standard_deviation", s)
        object.__setattr__(self, "sensitivities", tuple(float(c) for c in cs))
        object.__setattr__(self, "probabilities", tuple(float(p) for p in ps))


@register_event
@dataclasses.dataclass(frozen=True)
class SampledWithReplacementEvent(DpEvent):
    """The sub-event runs on ``sample_size`` records drawn uniformly with replacement from ``source_dataset_size``
    (replace-one neighbours: a record occurs K ~ Binomial(sample_size, 1 / source_dataset_size) times in the
    sample, and the sub-event's guarantee for groups of K records applies)."""

    source_dataset_size: int
    sample_size: int
    event: DpEvent
    kind: ClassVar[str] = "sampled_with_replacement"

    def __post_init__(self) -> None:
        n = check_count("source_dataset_size", self.source_dataset_size, minimum=1, maximum=MAX_COUNT)
        m = check_count("sample_size", self.sample_size, minimum=0, maximum=MAX_SAMPLE_SIZE)
        object.__setattr__(self, "source_dataset_size", n)
        object.__setattr__(self, "sample_size", m)
        _check_event("event", self.event)


@register_event
@dataclasses.dataclass(frozen=True)
class RepeatAndSelectEvent(DpEvent):
    """Run ``event`` a random number K of times and release only the best run (e.g. hyperparameter tuning).

    K has mean ``mean`` >= 1 and a truncated negative binomial distribution of shape ``shape``: 0 is the
    logarithmic distribution, 1 the geometric, ``inf`` the Poisson (Papernot, Steinke, "Hyperparameter tuning
    with Renyi differential privacy", ICLR 2022, arXiv:2110.03620)."""

    event: DpEvent
    mean: float
    shape: float
    kind: ClassVar[str] = "repeat_and_select"

    def __post_init__(self) -> None:
        _check_event("event", self.event)
        object.__setattr__(self, "mean", check_range("mean", self.mean, 1.0, MAX_EPSILON))
        shape = _as_float("shape", self.shape)
        if not (shape >= 0) or (math.isfinite(shape) and shape > MAX_EPSILON):
            raise ValueError(f"shape must be in [0, {MAX_EPSILON:g}] or inf, got {self.shape!r}")
        object.__setattr__(self, "shape", shape)


@register_event
@dataclasses.dataclass(frozen=True)
class SingleEpochTreeAggregationEvent(DpEvent):
    """Tree aggregation of prefix sums (the binary-tree mechanism of DP-FTRL) over one or more trees, each record
    in at most one leaf across all trees; each tree node gets Gaussian noise of ``noise_multiplier`` x the
    per-record sensitivity. A record touches at most ``ceil(log2(max(step_counts) + 1))`` nodes, so this is a
    Gaussian mechanism with that many times the squared sensitivity (Kairouz, McMahan, Song, Thakkar, Thakurta,
    Xu, ICML 2021, arXiv:2103.00039, Appendix D). Replace-special or replace-one neighbours (records keep their
    positions in the stream)."""

    noise_multiplier: float
    step_counts: tuple[int, ...]
    kind: ClassVar[str] = "single_epoch_tree_aggregation"

    def __post_init__(self) -> None:
        sigma = check_range("noise_multiplier", self.noise_multiplier, MIN_SCALE, MAX_SCALE)
        raw: object = self.step_counts
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            raw = (raw,)
        counts = _number_tuple("step_counts", raw)
        steps = tuple(check_count(f"step_counts[{i}]", c, maximum=MAX_COUNT) for i, c in enumerate(counts))
        object.__setattr__(self, "noise_multiplier", sigma)
        object.__setattr__(self, "step_counts", steps)

    @property
    def depth(self) -> int:
        """Number of tree nodes a record touches: ``ceil(log2(max(step_counts) + 1))``."""
        return (max(self.step_counts)).bit_length()


@register_event
@dataclasses.dataclass(frozen=True)
class GroupEvent(DpEvent):
    """``event`` with the unit of privacy enlarged to groups of ``group_size`` records.

    Built by :func:`dpkit.accountants.group_event`, which replaces every mechanism that has a closed-form group
    version by it; this event remains only around sampled events (each of the group's records is sampled on its
    own, so J ~ Binomial(group_size, q) of them reach the sub-event).
    """

    event: DpEvent
    group_size: int
    kind: ClassVar[str] = "group"

    def __post_init__(self) -> None:
        _check_event("event", self.event)
        k = check_count("group_size", self.group_size, minimum=1, maximum=MAX_SAMPLE_SIZE)
        object.__setattr__(self, "group_size", k)


def _number_tuple(name: str, value: object) -> tuple[float | int, ...]:
    """A non-empty list or tuple of real numbers (at most MAX_ENTRIES of them)."""
    if not isinstance(value, list | tuple) or not value:
        raise TypeError(f"{name} must be a non-empty list or tuple of numbers, got {value!r}")
    if len(value) > MAX_ENTRIES:
        raise ValueError(f"{name} may have at most {MAX_ENTRIES} entries, got {len(value)}")
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise TypeError(f"{name}[{i}] must be a real number, got {v!r}")
    return tuple(value)


def _check_epsilon(name: str, value: object) -> float:
    eps = check_range(name, value, 0.0, MAX_EPSILON)
    if not eps > 0:
        raise ValueError(f"{name} must be in (0, {MAX_EPSILON:g}], got {value!r}")
    return eps


def _check_event(name: str, event: object) -> None:
    if not isinstance(event, DpEvent):
        raise TypeError(f"{name} must be a DpEvent, got {event!r}")


def dpsgd_event(noise_multiplier: float, sampling_probability: float, steps: int) -> DpEvent:
    """DP-SGD with Poisson sampling: ``steps`` x Poisson(q)-sampled Gaussian(sigma); sigma = 0 is non-private."""
    steps = check_count("steps", steps, maximum=MAX_COUNT)
    if noise_multiplier == 0:
        step: DpEvent = NonPrivateEvent()
    else:
        step = PoissonSampledEvent(sampling_probability, GaussianEvent(noise_multiplier))
    return SelfComposedEvent(step, steps)


def flatten(event: DpEvent, count: int = 1) -> Iterator[tuple[DpEvent, int]]:
    """Yield ``(event, count)`` for the non-composition events inside ``event``, in order."""
    if isinstance(event, SelfComposedEvent):
        yield from flatten(event.event, count * event.count)
    elif isinstance(event, ComposedEvent):
        for e in event.events:
            yield from flatten(e, count)
    elif count > 0:
        yield event, count


def run_length(pairs: Iterable[tuple[DpEvent, int]]) -> list[tuple[DpEvent, int]]:
    """Merge equal events (order does not matter for composition): ``[(event, total_count), ...]``."""
    totals: dict[DpEvent, int] = {}
    for e, c in pairs:
        if c:
            totals[e] = totals.get(e, 0) + c
    return list(totals.items())
