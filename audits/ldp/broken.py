"""Randomizers broken the way real libraries break: the auditor's regression fixtures (and the notebook's demo).

Each class keeps the *claimed* parameters of the dpkit protocol it imitates (so the audit's model and claim are
the correct protocol's) and implements a known bug in ``_perturb``; ``true_epsilon()`` is the real worst-case
privacy loss, computed in closed form from the buggy output distribution. Written from the bugs' public
descriptions, not from the libraries' code.

* :class:`LeakyTrueBitUE` (SUE/OUE): pure-LDP <= 1.1.2 ``UEClient._perturb``: every bit, the true one included,
  is first drawn Bern(q); the true bit is then set to 1 w.p. p and otherwise *keeps its q-draw*, so
  P[true bit = 1] = p' = p + (1 - p) q. True epsilon ln(p'(1 - q)/(q(1 - p'))): OUE at eps = 1 gives 1.551.
* :class:`WrongQOUE`: OUE with q = (e^eps + 1)/(2 e^eps + 1) instead of 1/(e^eps + 1) (the forestneo/sunPytools
  ``ldplib`` bug, issue #6). p = 1/2 < q, so the loss is ln(q/(1 - q)) = ln(1 + e^-eps) in the reverse
  direction: 0.576 at eps = 0.25.
* :class:`ForgetfulPopulation`: a longitudinal client that forgets its memoized PRR and redraws it at every
  report. tau reports of a constant value are then tau independent one-report mechanisms: the loss is
  tau * single_report_epsilon instead of at most eps_perm.
* :class:`TooHonestGRR`: GRR that keeps input ``favourite`` w.p. ``p_leak`` > p (other inputs are correct).
  Loss ln(p_leak / q) (output = favourite), e.g. k = 10, eps = 1, p_leak = 0.6: 1.95.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dpkit.mechanisms.frequency_oracles import GRR, OUE, SUE, UnaryEncoding, bernoulli_matrix, grr_perturb
from dpkit.mechanisms.longitudinal import ClientPopulation

__all__ = [
    "LeakyTrueBitUE",
    "LeakyTrueBitOUE",
    "LeakyTrueBitSUE",
    "WrongQOUE",
    "ForgetfulPopulation",
    "TooHonestGRR",
    "ue_epsilon",
]


def ue_epsilon(p_true: float, q_other: float) -> float:
    """Worst-case loss of unary encoding whose own bit is Bern(p_true) and other bits Bern(q_other)."""
    r = p_true * (1 - q_other) / (q_other * (1 - p_true))
    return abs(math.log(r))


class LeakyTrueBitUE(UnaryEncoding):
    """The pure-LDP 1.1.2 UE client (the true bit keeps its Bern(q) draw when the p-coin fails), mixed into
    :class:`SUE` and :class:`OUE` (which define p and q)."""

    def _perturb(self, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = values.shape[0]
        bits = bernoulli_matrix((n, self.k), self.q, rng)  # every bit Bern(q), the true one included
        coin = rng.random(n) < self.p
        rows = np.flatnonzero(coin)
        bits[rows, values[rows]] = True  # set to 1 w.p. p; otherwise the q-draw stays (the bug)
        return bits

    def true_epsilon(self) -> float:
        return ue_epsilon(self.p + (1 - self.p) * self.q, self.q)


@dataclass(frozen=True)
class LeakyTrueBitOUE(LeakyTrueBitUE, OUE):
    name = "OUE (pure-LDP 1.1.2 bug)"


@dataclass(frozen=True)
class LeakyTrueBitSUE(LeakyTrueBitUE, SUE):
    name = "SUE (pure-LDP 1.1.2 bug)"


@dataclass(frozen=True)
class WrongQOUE(OUE):
    """OUE whose client uses q = (e^eps + 1)/(2 e^eps + 1) (the model, p and q attributes, stay OUE's)."""

    name = "OUE (wrong q)"

    @property
    def wrong_q(self) -> float:
        e = math.exp(self.epsilon)
        return (e + 1) / (2 * e + 1)

    def _perturb(self, values, rng):
        n = values.shape[0]
        bits = bernoulli_matrix((n, self.k), self.wrong_q, rng)
        bits[np.arange(n), values] = rng.random(n) < self.p
        return bits

    def true_epsilon(self) -> float:
        return ue_epsilon(self.p, self.wrong_q)


class ForgetfulPopulation(ClientPopulation):
    """A ClientPopulation that never reuses its memo: every report redraws the permanent response."""

    def report(self, values, rng, users=None):
        proto = self.protocol
        values = np.asarray(values, dtype=np.int64)
        params = self.user_params if users is None else {k: v[users] for k, v in self.user_params.items()}
        keys = proto.memo_key(values, params)
        payload = proto.first_round(keys, params, rng)  # fresh PRR every time: the bug
        self.n_reports[slice(None) if users is None else users] += 1
        return proto.second_round(payload, params, rng)

    @staticmethod
    def true_epsilon(protocol, tau: int) -> float:
        return tau * protocol.single_report_epsilon()


@dataclass(frozen=True)
class TooHonestGRR(GRR):
    """GRR that reports input ``favourite`` truthfully too often (w.p. ``p_leak`` instead of p)."""

    favourite: int = 0
    p_leak: float = 0.6
    name = "GRR (too honest for one input)"

    def _perturb(self, values, rng):
        out = grr_perturb(values, self.k, self.p, rng)
        fav = values == self.favourite
        if fav.any():
            out[fav] = grr_perturb(values[fav], self.k, self.p_leak, rng)
        return out

    def true_epsilon(self) -> float:
        q_leak = (1 - self.p_leak) / (self.k - 1)
        return max(
            math.log(self.p_leak / self.q),
            math.log(self.p / q_leak),
            math.log(self.q / q_leak),
            math.log(self.p / self.q),
        )
