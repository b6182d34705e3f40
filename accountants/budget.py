"""A privacy budget: a ledger that refuses the composition that would exceed a target epsilon."""

from __future__ import annotations

import math
from typing import Any

from dpkit.accountants.accountant import PrivacyAccountant, create_accountant
from dpkit.accountants.calibration import calibrate_count
from dpkit.accountants.errors import BudgetExceededError, UnsupportedEventError
from dpkit.accountants.events import MAX_COUNT, DpEvent, NoOpEvent, flatten, run_length
from dpkit.accountants.progress import ProgressHook, check_progress
from dpkit.accountants.validation import check_count, check_delta, check_positive

_STATE_KEYS = {"target_epsilon", "target_delta", "accountant"}

_Prefix = tuple[tuple[DpEvent, int], ...]


class PrivacyBudget:
    """Records events and refuses any composition whose epsilon at ``target_delta`` would exceed ``target_epsilon``.

    ``spend(event)`` either records the event and returns the new epsilon, or raises ``BudgetExceededError`` and
    records nothing. Repeated spends of the same event are O(1): the number of times the event still fits on top
    of the rest of the ledger is computed once (verified by the accountant) and cached.
    """

    def __init__(
        self,
        target_epsilon: float,
        target_delta: float,
        accountant: str | PrivacyAccountant = "pld",
        **options: Any,
    ) -> None:
        self.target_epsilon = check_positive("target_epsilon", target_epsilon)
        self.target_delta = check_delta("target_delta", target_delta)
        if isinstance(accountant, PrivacyAccountant):
            if options:
                raise TypeError(f"options {sorted(options)} are for a new accountant, not for the given {accountant!r}")
            self.accountant = accountant
        else:
            self.accountant = create_accountant(accountant, **options)
        self._fits: dict[tuple[_Prefix, DpEvent], int] = {}

    # ----------------------------------------------------------------- spending
    def _split(self, event: DpEvent) -> tuple[_Prefix, int]:
        """(ledger without a trailing run of ``event``, length of that run)."""
        ledger = self.accountant._ledger
        if ledger and ledger[-1][0] == event:
            return tuple(ledger[:-1]), ledger[-1][1]
        return tuple(ledger), 0

    def max_count(self, event: DpEvent, *, progress: ProgressHook | None = None) -> int:
        """How many times ``event`` may follow the ledger's prefix (the ledger without a trailing run of it).

        At most ``MAX_COUNT``; ``progress``: optional hook ``(fraction, message)`` (the first call for an event
        searches the count, which can take a while for a large budget).
        """
        _check_event(event)
        progress = check_progress("progress", progress)
        prefix, _ = self._split(event)
        key = (prefix, event)
        if key not in self._fits:
            reason = self.accountant.unsupported_reason(event)
            if reason is not None:
                raise UnsupportedEventError(f"{type(self.accountant).__name__} cannot account for {event!r}: {reason}")
            base = self.accountant.fresh()
            for e, c in prefix:
                base.compose(e, c)
            # Each spend adds k runs of an atom the event contains k times; totals stay within MAX_COUNT.
            existing = dict(base.atoms())
            per_event = [(a, k) for a, k in run_length(flatten(event)) if not isinstance(a, NoOpEvent)]
            limit = min(((MAX_COUNT - existing.get(a, 0)) // k for a, k in per_event), default=MAX_COUNT)
            self._fits[key] = (
                calibrate_count(
                    lambda n: base.epsilon_if(event, self.target_delta, n),
                    self.target_epsilon,
                    max_count=limit,
                    progress=progress,
                )
                if limit >= 1
                else 0
            )
        return self._fits[key]

    def remaining(self, event: DpEvent, *, progress: ProgressHook | None = None) -> int:
        """How many more times ``event`` can be spent now."""
        _, run = self._split(event)
        return max(self.max_count(event, progress=progress) - run, 0)

    def can_spend(self, event: DpEvent, count: int = 1) -> bool:
        return check_count("count", count, maximum=MAX_COUNT) <= self.remaining(event)

    def spend(self, event: DpEvent, count: int = 1) -> None:
        """Record ``event`` x ``count`` or raise ``BudgetExceededError`` (recording nothing)."""
        count = check_count("count", count, maximum=MAX_COUNT)
        if count > self.remaining(event):
            eps = self.accountant.epsilon_if(event, self.target_delta, count)
            raise BudgetExceededError(
                f"refused: composing {event!r} x{count} would spend epsilon={eps:.6g} at delta={self.target_delta:g}, "
                f"over the target epsilon={self.target_epsilon:g} (spent so far: {self.spent():.6g})",
                epsilon=eps,
                target_epsilon=self.target_epsilon,
                delta=self.target_delta,
            )
        self.accountant.compose(event, count)

    def spent(self) -> float:
        """Epsilon of the ledger at ``target_delta``."""
        return self.accountant.get_epsilon(self.target_delta)

    @property
    def exhausted(self) -> bool:
        spent = self.spent()
        return math.isinf(spent) or spent >= self.target_epsilon

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "target_epsilon": self.target_epsilon,
            "target_delta": self.target_delta,
            "accountant": self.accountant.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore targets and ledger from :meth:`state_dict`'s output, into this budget's own accountant.

        Everything is validated first (targets, and the ledger against this accountant's kind, relation and
        options); a refused state changes nothing.
        """
        target_epsilon, target_delta = _check_state(state)
        probe = self.accountant.fresh()
        probe.load_state_dict(state["accountant"], "state.accountant")
        # everything is valid: assign
        self.target_epsilon, self.target_delta = target_epsilon, target_delta
        self.accountant.load_state_dict(state["accountant"], "state.accountant")
        self._fits.clear()

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> PrivacyBudget:
        """A new budget (with a new accountant of the kind the state names) from :meth:`state_dict`'s output."""
        target_epsilon, target_delta = _check_state(state)
        acc = PrivacyAccountant.from_state_dict(state["accountant"], "state.accountant")
        return cls(target_epsilon, target_delta, acc)

    def __repr__(self) -> str:
        return f"PrivacyBudget(target=({self.target_epsilon:g}, {self.target_delta:g}), accountant={self.accountant!r})"


def _check_event(event: object) -> None:
    if not isinstance(event, DpEvent):
        raise TypeError(f"event must be a DpEvent, got {event!r}")


def _check_state(state: object) -> tuple[float, float]:
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict from state_dict(), got {type(state).__name__}")
    if set(state) != _STATE_KEYS:
        missing, extra = sorted(_STATE_KEYS - set(state)), sorted(str(k) for k in set(state) - _STATE_KEYS)
        raise ValueError(f"state must have exactly the keys {sorted(_STATE_KEYS)}; missing {missing}, unknown {extra}")
    return (
        check_positive("state.target_epsilon", state["target_epsilon"]),
        check_delta("state.target_delta", state["target_delta"]),
    )
