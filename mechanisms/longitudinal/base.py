"""The interface of the longitudinal protocols: memoized permanent response, fresh instantaneous response.

A longitudinal protocol is a frequency oracle (one report of one collection is an ordinary LDP report) whose
client randomizes in two rounds: a permanent randomized response (PRR) at ``eps_perm`` of a memo key derived from
the value, memoized per user (:class:`~dpkit.mechanisms.longitudinal.population.ClientPopulation`), then a fresh
instantaneous randomized response (IRR) for every report, so that one report is ``eps_1``-LDP.

A subclass (a frozen dataclass of its parameters) implements:

* ``n_keys``: the number of distinct memo keys a user can have;
* ``first_round(keys, users, rng) -> payload``: the PRR of each user's memo key (one payload row per user);
* ``second_round(payload, users, rng) -> reports``: the IRR of the payloads;
* optionally ``init_users(n, rng)`` (per-user persistent parameters, e.g. a hash function) and
  ``memo_key(values, users)`` (default: the value itself);
* the server side of :class:`~dpkit.mechanisms.base.FrequencyOracle` (``_check_reports``, ``_support_counts``,
  ``estimate``, ``variance``; pure protocols inherit the last two from
  :class:`~dpkit.mechanisms.base.PureFrequencyOracle`).

What is protected: one user's whole sequence of values; neighbouring relation: replace the sequence.
After tau reports with m distinct memo keys a user has spent at most min(tau eps_1, m eps_perm) (sequential
composition of the reports, or of the memoized PRRs of which every report is post-processing).
"""

from __future__ import annotations

from abc import abstractmethod
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from dpkit.accountants import DpEvent, PureDpEvent, SelfComposedEvent
from dpkit.mechanisms._validation import check_count, check_domain, check_epsilon, set_fields
from dpkit.mechanisms.base import FrequencyOracle, PureFrequencyOracle

if TYPE_CHECKING:
    from dpkit.mechanisms.longitudinal.population import ClientPopulation

__all__ = ["LongitudinalProtocol", "TwoRoundProtocol", "UserParams", "check_eps_pair"]

UserParams = dict[str, np.ndarray]  # per-user persistent parameters, one array of n_users rows per name


def check_eps_pair(eps_perm: object, eps_1: object) -> tuple[float, float]:
    """(eps_perm, eps_1) with 0 < eps_1 < eps_perm."""
    perm = check_epsilon("eps_perm", eps_perm)
    one = check_epsilon("eps_1", eps_1)
    if not one < perm:
        raise ValueError(f"eps_1 must be in (0, eps_perm={perm}), got {one!r}")
    return perm, one


class LongitudinalProtocol(FrequencyOracle):
    """A frequency oracle with memoization (see the module docstring for what a subclass implements).

    Guarantees (pure, delta = 0): one report is ``single_report_epsilon()``-LDP (at most ``eps_1``); after tau
    reports with m distinct memo keys a user has spent at most ``privacy_spent(tau, m)`` =
    min(tau single_report_epsilon, m eps_perm), as an accountants event ``longitudinal_event(tau, m)``.
    """

    # fields of most protocols, derived (cached properties) in dBitFlipPM: read-only for the type checker, no class
    # attributes at run time (see FrequencyOracle.epsilon)
    if TYPE_CHECKING:

        @property
        def eps_perm(self) -> float: ...

        @property
        def eps_1(self) -> float: ...

    @property
    @abstractmethod
    def n_keys(self) -> int:
        """The number of distinct memo keys of one user (keys are in [0, n_keys))."""

    # ------------------------------------------------ per-user persistent parameters (hash seed, sampled buckets)
    def init_users(self, n: int, rng: np.random.Generator) -> UserParams:
        return {}

    def memo_key(self, values: np.ndarray, users: UserParams) -> np.ndarray:
        return values

    def user_param_shapes(self, n: int) -> dict[str, tuple[int, ...]]:
        """The per-user parameters ``init_users(n, rng)`` makes: name -> shape (default: none)."""
        return {}

    def check_user_params(self, prefix: str, params: dict[str, np.ndarray], n: int) -> UserParams:
        """Per-user parameters read back from a file: exactly the names and shapes of ``user_param_shapes(n)``,
        integer arrays (a subclass checks their values)."""
        shapes = self.user_param_shapes(n)
        if set(params) != set(shapes):
            raise ValueError(
                f"{prefix}*: {self.name} keeps the per-user parameters {sorted(shapes)}, got {sorted(params)}"
            )
        for name, shape in shapes.items():
            arr = params[name]
            if arr.dtype.kind not in "iu" or arr.shape != shape:
                raise ValueError(
                    f"{prefix}{name} must be an integer array of shape {shape}, got {arr.dtype} {arr.shape}"
                )
        return dict(params)

    def check_payload(self, name: str, payload: np.ndarray) -> np.ndarray:
        """Memoized PRR payloads read back from a file (one row per memo key), as ``first_round`` makes them."""
        raise NotImplementedError(f"{type(self).__name__} does not say what its memoized payloads are")

    @abstractmethod
    def first_round(self, keys: np.ndarray, users: UserParams, rng: np.random.Generator) -> np.ndarray:
        """The permanent randomized response of each user's memo key: one payload row per user."""

    @abstractmethod
    def second_round(self, payload: np.ndarray, users: UserParams, rng: np.random.Generator) -> np.ndarray:
        """The instantaneous randomized response of the payloads: the reports."""

    # ------------------------------------------------ one fresh report (no memo; what one collection looks like)
    def _perturb(self, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        users = self.init_users(len(values), rng)
        payload = self.first_round(self.memo_key(values, users), users, rng)
        return self.second_round(payload, users, rng)

    # ------------------------------------------------ privacy
    def single_report_epsilon(self) -> float:
        """The exact worst-case privacy loss of one report."""
        return self.eps_1

    def privacy_event(self) -> DpEvent:
        return PureDpEvent(self.single_report_epsilon())

    def memo_event(self) -> DpEvent:
        """The PRR of one memo key (epsilon_inf-LDP)."""
        return PureDpEvent(self.eps_perm)

    def privacy_spent(self, tau: object, distinct: object) -> np.ndarray:
        """Longitudinal epsilon after ``tau`` reports with ``distinct`` memo keys: min(tau eps_1, distinct eps_inf)."""
        t = np.asarray(tau)
        m = np.asarray(distinct)
        return np.minimum(t * self.single_report_epsilon(), m * self.eps_perm)

    def longitudinal_event(self, tau: int, distinct: int) -> DpEvent:
        tau = check_count("tau", tau)
        distinct = check_count("distinct", distinct)
        if distinct * self.eps_perm <= tau * self.single_report_epsilon():
            return SelfComposedEvent(self.memo_event(), distinct)
        return SelfComposedEvent(self.privacy_event(), tau)

    def population(self, n_users: int, rng: np.random.Generator) -> ClientPopulation:
        from dpkit.mechanisms.longitudinal.population import ClientPopulation

        return ClientPopulation(self, n_users, rng)


class TwoRoundProtocol(LongitudinalProtocol, PureFrequencyOracle):
    """A longitudinal pure protocol whose rounds randomize the memo key with support probabilities (p1, q1) (PRR,
    memoized) then (p2, q2) (IRR, every report): a report supports the user's own key w.p.
    P = p1 p2 + (1 - p1) q2 and any other key w.p. Q = q1 p2 + (1 - q1) q2 (Arcolezi et al., DCN 2022, Eq. 9).

    A subclass defines ``_round1`` and ``_round2``, each (p, q) (cached properties of its parameters). One report
    is ln(P (1 - Q) / (Q (1 - P)))-LDP for bit vectors, ln(P / Q)-LDP for GRR over the keys (each family computes
    its own in ``single_report_epsilon``). ``epsilon`` is ``eps_1``.
    """

    @cached_property
    def epsilon(self) -> float:
        return self.eps_1

    def _set_k_budgets(self, max_k: int = 2**32, **more: object) -> None:
        """The ``__post_init__`` of a (k, eps_perm, eps_1) protocol: k a domain size in [2, max_k], then
        0 < eps_1 < eps_perm (both in the shared range), and ``more`` normalized fields, stored."""
        k = check_domain("k", self.k, maximum=max_k)
        eps_perm, eps_1 = check_eps_pair(self.eps_perm, self.eps_1)
        set_fields(self, k=k, eps_perm=eps_perm, eps_1=eps_1, **more)

    @property
    @abstractmethod
    def _round1(self) -> tuple[float, float]:
        """(p1, q1) of the permanent randomized response."""

    @property
    @abstractmethod
    def _round2(self) -> tuple[float, float]:
        """(p2, q2) of the instantaneous randomized response."""

    # the support probabilities of each round: p1, q1 = _round1 and p2, q2 = _round2
    p1 = property(lambda self: self._round1[0])
    q1 = property(lambda self: self._round1[1])
    p2 = property(lambda self: self._round2[0])
    q2 = property(lambda self: self._round2[1])

    @cached_property
    def p_star(self) -> float:
        return self.p1 * self.p2 + (1 - self.p1) * self.q2

    @cached_property
    def q_star(self) -> float:
        return self.q1 * self.p2 + (1 - self.q1) * self.q2
