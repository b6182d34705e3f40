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
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from enum import Enum
from typing import Any, ClassVar

from dpkit.accountants.validation import check_count, check_probability, check_range

#: Limits of the accepted parameters, beyond which the accountants' arithmetic would overflow (1/sigma^2, e^eps,
#: count x RDP must stay finite floats). Counts stay exact as floats (2^53).
MIN_SCALE = 1e-100
MAX_SCALE = 1e100
MAX_EPSILON = 1e100
MAX_COUNT = 2**53


class NeighbouringRelation(str, Enum):
    """Which datasets are neighbours: one record added or removed (default), or one record replaced."""

    ADD_OR_REMOVE = "add_or_remove"
    REPLACE_ONE = "replace_one"

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
                value = [v.to_dict() for v in value]
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
