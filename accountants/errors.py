"""Errors raised by the accountants package."""

from __future__ import annotations


class PrivacyError(Exception):
    """Base class of dpkit's privacy errors."""


class UnsupportedEventError(PrivacyError, ValueError):
    """An accountant was handed an event it cannot analyse soundly (it fails closed)."""


class BudgetExceededError(PrivacyError, RuntimeError):
    """The composition would exceed the target privacy budget; nothing was recorded."""

    def __init__(self, message: str, *, epsilon: float, target_epsilon: float, delta: float):
        super().__init__(message)
        self.epsilon = epsilon
        self.target_epsilon = target_epsilon
        self.delta = delta
