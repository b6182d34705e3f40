"""L-GRR (Arcolezi et al., DCN 2022): GRR memoized per value, then GRR per report; and the GRR chain it shares
with LOLOHA (GRR over the memo keys twice)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import ArrayLike

from dpkit.accountants import DpEvent, RandomizedResponseEvent
from dpkit.mechanisms._validation import check_report_array, check_values
from dpkit.mechanisms.channels import grr_channel
from dpkit.mechanisms.frequency_oracles.grr import grr_perturb, grr_pq
from dpkit.mechanisms.longitudinal.base import TwoRoundProtocol, UserParams

__all__ = ["LGRR", "GRRChain", "lgrr_round2", "check_calibration"]

CALIBRATIONS = ("paper", "exact")


def check_calibration(calibration: object) -> str:
    if calibration not in CALIBRATIONS:
        raise ValueError(f"calibration must be 'paper' or 'exact', got {calibration!r}")
    return str(calibration)


def lgrr_round2(k: int, p1: float, q1: float, eps_perm: float, eps_1: float, calibration: str) -> tuple[float, float]:
    """Round-2 (p2, q2) of GRR-over-GRR on a domain of size k.

    'paper' (Arcolezi et al., DCN 2022): eps_IRR = ln((e^(eps_inf + eps_1) - 1)/(e^eps_inf - e^eps_1)), GRR at
    eps_IRR (conservative for k > 2); 'exact': q2 = (p1 - e^eps_1 q1)/((k p1 - 1) - e^eps_1 (k q1 - 1)),
    p2 = 1 - (k - 1) q2, so that one report's loss is exactly eps_1.
    """
    if calibration == "paper":
        if eps_perm + eps_1 > 709.0:  # e^(eps_inf + eps_1) overflows: divide through by e^eps_inf
            e_irr = (math.exp(eps_1) - math.exp(-eps_perm)) / (1 - math.exp(eps_1 - eps_perm))
        else:
            e_irr = (math.exp(eps_perm + eps_1) - 1) / (math.exp(eps_perm) - math.exp(eps_1))
        p2 = e_irr / (e_irr + k - 1)
        return p2, (1 - p2) / (k - 1)
    if calibration == "exact":
        e1 = math.exp(eps_1)
        q2 = (p1 - e1 * q1) / ((k * p1 - 1) - e1 * (k * q1 - 1))
        return 1 - (k - 1) * q2, q2
    raise ValueError(f"calibration must be 'paper' or 'exact', got {calibration!r}")


class GRRChain(TwoRoundProtocol):
    """GRR at eps_perm over the ``n_keys`` memo keys (memoized), then GRR over the same keys calibrated by
    :func:`lgrr_round2` (``calibration``: 'paper' or 'exact'): L-GRR (keys = values) and LOLOHA (keys = hashed
    values). One report is ln(P / Q)-LDP given the key (the product of two GRR channels is a GRR channel with P on
    the diagonal and Q elsewhere); the memoized PRR is eps_perm-LDP (``RandomizedResponseEvent`` over the keys)."""

    eps_perm: float
    eps_1: float
    calibration: str

    @cached_property
    def _round1(self) -> tuple[float, float]:
        return grr_pq(self.eps_perm, self.n_keys)

    @cached_property
    def _round2(self) -> tuple[float, float]:
        return lgrr_round2(self.n_keys, self.p1, self.q1, self.eps_perm, self.eps_1, self.calibration)

    def first_round(self, keys: np.ndarray, users: UserParams, rng: np.random.Generator) -> np.ndarray:
        return grr_perturb(keys, self.n_keys, self.p1, rng)[:, None]

    def check_payload(self, name: str, payload: np.ndarray) -> np.ndarray:
        """One memoized GRR output per memo key: integers (m, 1) in [0, n_keys)."""
        p = check_report_array(name, payload, kinds="iu", shape_tail=(1,), expected=f"keys in [0, {self.n_keys})")
        return check_values(name, p, self.n_keys, ndim=2)

    def first_round_matrix(self) -> np.ndarray:
        return grr_channel(self.n_keys, self.p1, self.q1)

    def chain_matrix(self) -> np.ndarray:
        """P(report | key) of one report (PRR then IRR) over the keys, n_keys x n_keys (small key sets only)."""
        return self.first_round_matrix() @ grr_channel(self.n_keys, self.p2, self.q2)

    def single_report_epsilon(self) -> float:
        """ln(P / Q), P = p1 p2 + (1 - p1) q2 and Q = q1 p2 + (1 - q1) q2: exact, in O(1) for any number of keys."""
        return float(
            math.log((self.p1 * self.p2 + (1 - self.p1) * self.q2) / (self.q1 * self.p2 + (1 - self.q1) * self.q2))
        )

    def privacy_event(self) -> DpEvent:
        return RandomizedResponseEvent(self.single_report_epsilon(), self.n_keys)

    def memo_event(self) -> DpEvent:
        return RandomizedResponseEvent(self.eps_perm, self.n_keys)


@dataclass(frozen=True)
class LGRR(GRRChain):
    """L-GRR (Arcolezi et al., DCN 2022): GRR at eps_perm memoized per value, then GRR at eps_IRR per report.

    ``calibration='paper'`` (default, reproduces the paper) or ``'exact'`` (the single-report loss is exactly eps_1;
    the paper's is smaller than eps_1 for k > 2, wasting utility; :func:`lgrr_round2`). Reports: int64 (n,) in
    [0, k). One report is ``single_report_epsilon()``-LDP (at most eps_1); a user's sequence of reports with m
    distinct values is m eps_perm-LDP (one value under replacement of the sequence).
    P = p1 p2 + (1 - p1) q2, Q = q1 p2 + (1 - q1) q2, estimator (C/n - Q)/(P - Q).
    """

    k: int
    eps_perm: float
    eps_1: float
    calibration: str = "paper"
    name = "L-GRR"

    def __post_init__(self) -> None:
        self._set_k_budgets(calibration=check_calibration(self.calibration))

    @cached_property
    def n_keys(self) -> int:
        return self.k

    def second_round(self, payload: np.ndarray, users: UserParams, rng: np.random.Generator) -> np.ndarray:
        return grr_perturb(payload[:, 0], self.k, self.p2, rng)

    def _check_reports(self, reports: ArrayLike) -> np.ndarray:
        r = check_report_array("reports", reports, kinds="iu", shape_tail=(), expected=f"reports in [0, {self.k})")
        return check_values("reports", r, self.k)

    def _support_counts(self, reports: np.ndarray) -> np.ndarray:
        return np.bincount(reports, minlength=self.k).astype(np.int64)

    def channel_matrix(self) -> np.ndarray:
        """P(report | value) of one report (PRR then IRR), k x k."""
        return self.chain_matrix()
