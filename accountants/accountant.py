"""The accountant interface and its registry.

An accountant keeps a ledger of :mod:`dpkit.accountants.events` and turns it into (epsilon, delta) guarantees under one
neighbouring relation. It fails closed: an event it cannot analyse soundly raises ``UnsupportedEventError`` when
composed, and nothing is recorded. A new accountant is one file with a subclass plus ``@register_accountant``.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import Any, TypeVar

from dpkit.accountants.errors import UnsupportedEventError
from dpkit.accountants.events import (
    MAX_COUNT,
    ComposedEvent,
    DpEvent,
    NeighbouringRelation,
    NonPrivateEvent,
    NoOpEvent,
    SelfComposedEvent,
    event_from_dict,
    flatten,
    run_length,
)
from dpkit.accountants.progress import ProgressHook, check_progress
from dpkit.accountants.validation import check_count, check_delta, check_nonnegative

_STATE_KEYS = {"accountant", "options", "neighbouring_relation", "ledger"}

_ACCOUNTANTS: dict[str, type[PrivacyAccountant]] = {}


_A = TypeVar("_A", bound="type[PrivacyAccountant]")


def register_accountant(name: str) -> Callable[[_A], _A]:
    """Class decorator: make ``create_accountant(name)`` build this accountant."""

    def deco(cls: _A) -> _A:
        if name in _ACCOUNTANTS:
            raise ValueError(f"accountant {name!r} is already registered")
        _ACCOUNTANTS[name] = cls
        cls.name = name
        return cls

    return deco


def available_accountants() -> list[str]:
    return sorted(_ACCOUNTANTS)


def create_accountant(name: str, **kwargs: Any) -> PrivacyAccountant:
    """Build a registered accountant by name (``"rdp"``, ``"pld"``, ...)."""
    if not isinstance(name, str) or name not in _ACCOUNTANTS:
        raise ValueError(f"accountant must be one of {available_accountants()}, got {name!r}")
    return _ACCOUNTANTS[name](**kwargs)


class PrivacyAccountant(abc.ABC):
    """Ledger of events plus the analysis that turns it into (epsilon, delta)."""

    name: str = "accountant"

    def __init__(self, neighbouring_relation: NeighbouringRelation | str = NeighbouringRelation.ADD_OR_REMOVE):
        self.neighbouring_relation = NeighbouringRelation.parse(neighbouring_relation)
        self._ledger: list[tuple[DpEvent, int]] = []

    # ----------------------------------------------------------------- what subclasses provide
    @abc.abstractmethod
    def _supports_atom(self, event: DpEvent) -> str | None:
        """``None`` if a non-composition event can be analysed, else the reason it cannot."""

    @abc.abstractmethod
    def _epsilon(self, atoms: list[tuple[DpEvent, int]], delta: float, progress: ProgressHook | None = None) -> float:
        """Epsilon of the composition of ``atoms`` (distinct private events with counts) at ``delta``."""

    @abc.abstractmethod
    def _delta(self, atoms: list[tuple[DpEvent, int]], epsilon: float, progress: ProgressHook | None = None) -> float:
        """Delta of the composition of ``atoms`` at ``epsilon``."""

    def _options(self) -> dict[str, Any]:
        """Constructor keyword arguments (other than the relation) that reproduce this accountant."""
        return {}

    # ----------------------------------------------------------------- public API
    def supports(self, event: DpEvent) -> bool:
        return self.unsupported_reason(event) is None

    def unsupported_reason(self, event: DpEvent) -> str | None:
        for atom, _ in flatten(event):
            if isinstance(atom, NoOpEvent | NonPrivateEvent):
                continue
            reason = self._supports_atom(atom)
            if reason is not None:
                return reason
        return None

    def compose(self, event: DpEvent, count: int = 1) -> PrivacyAccountant:
        """Record ``event`` run ``count`` times; raises ``UnsupportedEventError`` (recording nothing) if unsound."""
        if not isinstance(event, DpEvent):
            raise TypeError(f"event must be a DpEvent, got {event!r}")
        count = check_count("count", count, maximum=MAX_COUNT)
        reason = self.unsupported_reason(event)
        if reason is not None:
            raise UnsupportedEventError(
                f"{type(self).__name__} ({self.neighbouring_relation.value}) cannot account for {event!r}: {reason}"
            )
        self.atoms(event, count)  # refuses (recording nothing) if a total count would exceed MAX_COUNT
        if count:
            if self._ledger and self._ledger[-1][0] == event:
                self._ledger[-1] = (event, self._ledger[-1][1] + count)
            else:
                self._ledger.append((event, count))
        return self

    @property
    def ledger(self) -> DpEvent:
        """Everything composed so far, as one event."""
        return ComposedEvent(tuple(SelfComposedEvent(e, c) for e, c in self._ledger))

    def atoms(self, extra: DpEvent | None = None, count: int = 1) -> list[tuple[DpEvent, int]]:
        """Distinct private events of the ledger (plus ``extra`` x ``count``) with their total counts."""
        pairs = [p for e, c in self._ledger for p in flatten(e, c)]
        if extra is not None:
            pairs.extend(flatten(extra, count))
        atoms = run_length((e, c) for e, c in pairs if not isinstance(e, NoOpEvent))
        for e, c in atoms:
            if c > MAX_COUNT:
                raise ValueError(
                    f"count: {e!r} would be composed {c} times in total, more than the limit MAX_COUNT={MAX_COUNT}"
                )
        return atoms

    def get_epsilon(self, delta: float, *, progress: ProgressHook | None = None) -> float:
        """Epsilon of the ledger at ``delta`` in (0, 1) (``inf`` if something non-private was composed).

        ``progress``: optional hook ``(fraction, message)`` for long work (see :mod:`dpkit.accountants.progress`).
        """
        delta = check_delta("delta", delta)
        hook = check_progress("progress", progress)
        eps = self.epsilon_of(self.atoms(), delta, progress=hook)
        if hook is not None:
            hook(1.0, "epsilon computed")
        return eps

    def get_delta(self, epsilon: float, *, progress: ProgressHook | None = None) -> float:
        """Delta of the ledger at ``epsilon`` in [0, inf) (1 if something non-private was composed)."""
        epsilon = check_nonnegative("epsilon", epsilon)
        progress = check_progress("progress", progress)
        atoms = self.atoms()
        if any(isinstance(e, NonPrivateEvent) for e, _ in atoms):
            return 1.0
        delta = self._delta(atoms, epsilon, progress) if atoms else 0.0
        if progress is not None:
            progress(1.0, "delta computed")
        return delta

    def epsilon_of(
        self, atoms: list[tuple[DpEvent, int]], delta: float, *, progress: ProgressHook | None = None
    ) -> float:
        if any(isinstance(e, NonPrivateEvent) for e, _ in atoms):
            return math.inf
        return self._epsilon(atoms, delta, progress) if atoms else 0.0

    def epsilon_if(
        self, event: DpEvent, delta: float, count: int = 1, *, progress: ProgressHook | None = None
    ) -> float:
        """Epsilon the ledger would have after composing ``event`` x ``count`` (the ledger is not changed)."""
        delta = check_delta("delta", delta)
        count = check_count("count", count, maximum=MAX_COUNT)
        progress = check_progress("progress", progress)
        if not isinstance(event, DpEvent):
            raise TypeError(f"event must be a DpEvent, got {event!r}")
        reason = self.unsupported_reason(event)
        if reason is not None:
            raise UnsupportedEventError(f"{type(self).__name__} cannot account for {event!r}: {reason}")
        return self.epsilon_of(self.atoms(event, count), delta, progress=progress)

    def fresh(self) -> PrivacyAccountant:
        """An accountant of the same kind and options with an empty ledger."""
        return type(self)(neighbouring_relation=self.neighbouring_relation, **self._options())

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """JSON-serializable state: kind, options, relation and ledger."""
        return {
            "accountant": self.name,
            "options": self._options(),
            "neighbouring_relation": self.neighbouring_relation.value,
            "ledger": [[e.to_dict(), c] for e, c in self._ledger],
        }

    def load_state_dict(self, state: dict[str, Any], name: str = "state") -> None:
        """Restore the ledger from :meth:`state_dict`'s output; refuses (changing nothing) any state that is not
        exactly such an output for this kind of accountant, relation and options."""
        _check_state_keys(name, state)
        if state["accountant"] != self.name:
            raise ValueError(f"{name} is for accountant {state['accountant']!r}, not {self.name!r}")
        relation = NeighbouringRelation.parse(state["neighbouring_relation"])
        if relation != self.neighbouring_relation:
            raise ValueError(
                f"{name}.neighbouring_relation is {relation.value!r}, this accountant uses "
                f"{self.neighbouring_relation.value!r}"
            )
        if state["options"] != self._options():
            raise ValueError(f"{name}.options is {state['options']!r}, this accountant has {self._options()!r}")
        raw = state["ledger"]
        if not isinstance(raw, list | tuple):
            raise TypeError(f"{name}.ledger must be a list of [event, count] pairs, got {raw!r}")
        ledger: list[tuple[DpEvent, int]] = []
        for i, entry in enumerate(raw):
            where = f"{name}.ledger[{i}]"
            if not isinstance(entry, list | tuple) or len(entry) != 2:
                raise ValueError(f"{where} must be an [event, count] pair, got {entry!r}")
            event = event_from_dict(entry[0], f"{where}[0]")
            count = check_count(f"{where}[1]", entry[1], minimum=1, maximum=MAX_COUNT)
            reason = self.unsupported_reason(event)
            if reason is not None:
                raise UnsupportedEventError(f"{where}[0]: {type(self).__name__} cannot account for {event!r}: {reason}")
            ledger.append((event, count))
        probe = self.fresh()
        probe._ledger = ledger
        probe.atoms()  # total counts within MAX_COUNT
        self._ledger = ledger  # everything is valid: assign

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], name: str = "state") -> PrivacyAccountant:
        """A new accountant (of the kind, relation and options the state names) holding the state's ledger."""
        _check_state_keys(name, state)
        options = state["options"]
        if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
            raise TypeError(f"{name}.options must be a dict of keyword arguments, got {options!r}")
        kind = state["accountant"]
        if not isinstance(kind, str) or kind not in _ACCOUNTANTS:
            raise ValueError(f"{name}.accountant must be one of {available_accountants()}, got {kind!r}")
        try:
            acc = create_accountant(kind, neighbouring_relation=state["neighbouring_relation"], **options)
        except TypeError as err:  # an option this accountant does not take
            raise TypeError(f"{name}.options: {err}") from None
        acc.load_state_dict(state, name)
        return acc

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.neighbouring_relation.value}, {len(self._ledger)} ledger entries)"


def _check_state_keys(name: str, state: object) -> None:
    if not isinstance(state, dict):
        raise TypeError(f"{name} must be a dict from state_dict(), got {type(state).__name__}")
    if set(state) != _STATE_KEYS:
        missing, extra = sorted(_STATE_KEYS - set(state)), sorted(str(k) for k in set(state) - _STATE_KEYS)
        raise ValueError(f"{name} must have exactly the keys {sorted(_STATE_KEYS)}; missing {missing}, unknown {extra}")
