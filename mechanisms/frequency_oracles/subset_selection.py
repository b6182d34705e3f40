"""Subset selection (omega-subset mechanism)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from itertools import combinations

import numpy as np
from numpy.typing import ArrayLike

from dpkit.accountants import DpEvent, PureDpEvent
from dpkit.mechanisms import _memory
from dpkit.mechanisms._memory import allocate, perturb_aggregate_hint
from dpkit.mechanisms._validation import (
    check_distinct_rows,
    check_report_array,
    check_values,
)
from dpkit.mechanisms.base import PureFrequencyOracle

__all__ = ["SubsetSelection", "SS"]


@dataclass(frozen=True)
class SubsetSelection(PureFrequencyOracle):
    """Subset selection (Wang et al. 2016; Ye-Barg 2018), subset size omega = max(1, rint(k/(e^eps + 1))).

    Client: w.p. p_v = omega e^eps / (omega e^eps + k - omega) report {v} plus omega - 1 uniform other items,
    otherwise omega uniform items of [k] minus {v}. epsilon-LDP for one user's value under replacement.
    Reports: int64 (n, omega), the reported subset (distinct items).
    """

    k: int
    epsilon: float
    name = "SS"
    default_chunk = 1 << 14

    def __post_init__(self) -> None:
        self._set_k_epsilon()

    @cached_property
    def omega(self) -> int:
        """The subset size, in [1, k - 1]."""
        w = max(1, int(np.rint(self.k / (math.exp(self.epsilon) + 1))))
        return min(w, self.k - 1)

    @cached_property
    def p_v(self) -> float:
        """P(the user's value is in the reported subset)."""
        e, k, w = math.exp(self.epsilon), self.k, self.omega
        return w * e / (w * e + k - w)

    @property
    def p_star(self) -> float:
        return self.p_v

    @cached_property
    def q_star(self) -> float:
        e, k, w = math.exp(self.epsilon), self.k, self.omega
        return (w * e * (w - 1) + (k - w) * w) / ((k - 1) * (w * e + k - w))

    def _perturb(self, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """omega uniform items of [k] minus {v} per user (the omega smallest of k - 1 uniform keys), then the last
        one replaced by v w.p. p_v. The keys are drawn chunk by chunk (``_memory.row_chunks``): the same numbers as
        one (n, k - 1) draw, without holding it."""
        n, k, w = values.shape[0], self.k, self.omega
        out = allocate(f"SS(k={k}).perturb", (n, w), np.int64, perturb_aggregate_hint("SS"))
        for s, e in _memory.row_chunks(n, 16 * (k - 1)):  # float64 keys and int64 indices per row
            keys = rng.random((e - s, k - 1))
            part = np.argpartition(keys, w - 1, axis=1) if w < k - 1 else np.argsort(keys, axis=1)
            out[s:e] = part[:, :w]
            out[s:e] += out[s:e] >= values[s:e, None]  # indices of [k-1] -> [k] minus {v}
        include = rng.random(n) < self.p_v
        out[include, w - 1] = values[include]
        return out

    def _check_reports(self, reports: ArrayLike) -> np.ndarray:
        r = check_report_array(
            "reports", reports, kinds="iu", shape_tail=(self.omega,), expected=f"subsets of {self.omega} items"
        )
        r = check_values("reports", r, self.k, ndim=2)
        check_distinct_rows("reports", r, self.k)
        return r

    def _support_counts(self, reports: np.ndarray) -> np.ndarray:
        return np.bincount(reports.ravel(), minlength=self.k).astype(np.int64)

    def enumerate_outputs(self) -> list[tuple[int, ...]]:
        return list(combinations(range(self.k), self.omega))

    def output_probabilities(self, value: int) -> np.ndarray:
        """P(subset | value) for every omega-subset, in the order of ``enumerate_outputs()``."""
        k, w = self.k, self.omega
        n_in, n_out = math.comb(k - 1, w - 1), math.comb(k - 1, w)
        return np.array([self.p_v / n_in if value in s else (1 - self.p_v) / n_out for s in self.enumerate_outputs()])

    def channel_matrix(self) -> np.ndarray:
        return np.stack([self.output_probabilities(v) for v in range(self.k)])

    def privacy_event(self) -> DpEvent:
        return PureDpEvent(self.epsilon)


SS = SubsetSelection
