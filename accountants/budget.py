"""A privacy budget: a ledger that refuses the composition that would exceed a target epsilon."""

from __future__ import annotations

import math
from typing import Any

from dpkit.accountants.accountant import PrivacyAccountant, create_accountant
from dpkit.accountants.calibration import calibrate_count
from dpkit.accountants.errors import BudgetExceededError
from dpkit.accountants.events import DpEvent
from dpkit.accountants.validation import check_count, check_delta, check_positive

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

    def max_count(self, event: DpEvent) -> int:
        """How many times ``event`` may follow the ledger's prefix (the ledger without a trailing run of it)."""
        prefix, _ = self._split(event)
        key = (prefix, event)
        if key not in self._fits:
            base = self.accountant.fresh()
            for e, c in prefix:
                base.compose(e, c)
            self._fits[key] = calibrate_count(
                lambda n: base.epsilon_if(event, self.target_delta, n), self.target_epsilon
            )
        return self._fits[key]

    def remaining(self, event: DpEvent) -> int:
        """How many more times ``event`` can be spent now."""
        _, run = self._split(event)
        return max(self.max_count(event) - run, 0)

    def can_spend(self, event: DpEvent, count: int = 1) -> bool:
        return check_count("count", count) <= self.remaining(event)

    def spend(self, event: DpEvent, count: int = 1) -> None:
        """Record ``event`` x ``count`` or raise ``BudgetExceededError`` (recording nothing)."""
        count = check_count("count", count)
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
        return math.isinf(self.spent()) or self.spent() >= self.target_epsilon

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "target_epsilon": self.target_epsilon,
            "target_delta": self.target_delta,
            "accountant": self.accountant.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.target_epsilon = check_positive("target_epsilon", state["target_epsilon"])
        self.target_delta = check_delta("target_delta", state["target_delta"])
        self.accountant = PrivacyAccountant.from_state_dict(state["accountant"])
        self._fits.clear()

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> PrivacyBudget:
        acc = PrivacyAccountant.from_state_dict(state["accountant"])
        return cls(state["target_epsilon"], state["target_delta"], acc)

    def __repr__(self) -> str:
        return f"PrivacyBudget(target=({self.target_epsilon:g}, {self.target_delta:g}), accountant={self.accountant!r})"
