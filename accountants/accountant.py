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
from dpkit.accountants.validation import check_count, check_delta, check_nonnegative

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
    try:
        cls = _ACCOUNTANTS[name]
    except KeyError:
        raise ValueError(f"accountant must be one of {available_accountants()}, got {name!r}") from None
    return cls(**kwargs)


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
    def _epsilon(self, atoms: list[tuple[DpEvent, int]], delta: float) -> float:
        """Epsilon of the composition of ``atoms`` (distinct private events with counts) at ``delta``."""

    @abc.abstractmethod
    def _delta(self, atoms: list[tuple[DpEvent, int]], epsilon: float) -> float:
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
        count = check_count("count", count)
        reason = self.unsupported_reason(event)
        if reason is not None:
            raise UnsupportedEventError(
                f"{type(self).__name__} ({self.neighbouring_relation.value}) cannot account for {event!r}: {reason}"
            )
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
        return run_length((e, c) for e, c in pairs if not isinstance(e, NoOpEvent))

    def get_epsilon(self, delta: float) -> float:
        delta = check_delta("delta", delta)
        return self.epsilon_of(self.atoms(), delta)

    def get_delta(self, epsilon: float) -> float:
        epsilon = check_nonnegative("epsilon", epsilon)
        atoms = self.atoms()
        if any(isinstance(e, NonPrivateEvent) for e, _ in atoms):
            return 1.0
        return self._delta(atoms, epsilon) if atoms else 0.0

    def epsilon_of(self, atoms: list[tuple[DpEvent, int]], delta: float) -> float:
        if any(isinstance(e, NonPrivateEvent) for e, _ in atoms):
            return math.inf
        return self._epsilon(atoms, delta) if atoms else 0.0

    def epsilon_if(self, event: DpEvent, delta: float, count: int = 1) -> float:
        """Epsilon the ledger would have after composing ``event`` x ``count`` (the ledger is not changed)."""
        delta = check_delta("delta", delta)
        reason = self.unsupported_reason(event)
        if reason is not None:
            raise UnsupportedEventError(f"{type(self).__name__} cannot account for {event!r}: {reason}")
        return self.epsilon_of(self.atoms(event, count), delta)

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

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("accountant") != self.name:
            raise ValueError(f"state is for accountant {state.get('accountant')!r}, not {self.name!r}")
        relation = NeighbouringRelation.parse(state["neighbouring_relation"])
        if relation != self.neighbouring_relation:
            raise ValueError(
                f"state uses neighbouring relation {relation.value!r}, this accountant "
                f"{self.neighbouring_relation.value!r}"
            )
        self._ledger = [(event_from_dict(e), int(c)) for e, c in state["ledger"]]

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> PrivacyAccountant:
        acc = create_accountant(
            state["accountant"], neighbouring_relation=state["neighbouring_relation"], **state.get("options", {})
        )
        acc.load_state_dict(state)
        return acc

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.neighbouring_relation.value}, {len(self._ledger)} ledger entries)"
