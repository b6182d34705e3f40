"""Histogram encoding: SHE (summation) and THE (thresholding), one-hot vectors plus Laplace noise."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import cast

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize_scalar

from dpkit.accountants import DpEvent, PureDpEvent
from dpkit.mechanisms import _memory
from dpkit.mechanisms._memory import check_fits, perturb_aggregate_hint
from dpkit.mechanisms._validation import check_range, check_report_array, set_fields
from dpkit.mechanisms.base import FrequencyOracle, PureFrequencyOracle, SupportCounts
from dpkit.mechanisms.postprocessing import postprocess as apply_postprocess
from dpkit.mechanisms.postprocessing import project_simplex

__all__ = ["SHE", "THE", "the_variance_per_user", "optimal_theta"]


@dataclass(frozen=True)
class SHE(FrequencyOracle):
    """Summation with histogram encoding (Wang et al. USENIX Sec'17): report e_v + Laplace(2/eps)^k; the server
    averages the reports.

    epsilon-LDP for one user's value under replacement (L1 sensitivity of the one-hot vector is 2). The server's
    state holds float sums, not counts. Var = 8/(n eps^2) exactly, for every f. Reports: float64 (n, k).
    """

    k: int
    epsilon: float
    name = "SHE"
    default_chunk = 1 << 14
    count_dtype = np.float64

    def __post_init__(self) -> None:
        self._set_k_epsilon()

    @cached_property
    def scale(self) -> float:
        """The Laplace scale 2/epsilon."""
        return 2.0 / self.epsilon

    def _perturb(self, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = values.shape[0]
        check_fits(f"{self.name}(k={self.k}).perturb", (n, self.k), np.float64, perturb_aggregate_hint(self.name))
        y = rng.laplace(0.0, self.scale, size=(n, self.k))
        y[np.arange(n), values] += 1.0
        return y

    def _check_reports(self, reports: ArrayLike) -> np.ndarray:
        r = check_report_array(
            "reports", reports, kinds="f", shape_tail=(self.k,), expected=f"float noisy histograms of length {self.k}"
        )
        for s, e in _memory.row_chunks(len(r), r.shape[1]):  # one bool per entry
            bad = np.flatnonzero(~np.isfinite(r[s:e]).all(axis=1))
            if bad.size:
                raise ValueError(f"reports[{s + int(bad[0])}] must be finite, found NaN or inf")
        return r

    def _support_counts(self, reports: np.ndarray) -> np.ndarray:
        return reports.sum(axis=0, dtype=np.float64)

    def _count_bounds(self, n: int) -> tuple[float, float] | None:
        return None  # sums of Laplace-noised reports: any finite value

    def estimate(self, state: SupportCounts, postprocess: str | None = None) -> np.ndarray:
        """``postprocess='ibu'``: the maximum-likelihood point of the probability simplex given the state, which is
        what IBU converges to, under the CLT approximation of the state (the sum of the reports): the unbiased
        estimate is about N(f, (8/eps^2 I + diag(f) - f f^T) / n); dropping the multinomial part, small next to the
        Laplace variance 8/eps^2 (e.g. at most 1/4 against 8 at eps = 1), leaves the same variance for every item,
        and the maximizer is the Euclidean projection of the unbiased estimate onto the simplex (no iteration;
        unlike Norm-Sub it can also lift small negative entries when the clipped sum is below 1)."""
        self._check_state(state, postprocess)
        f = state.counts / state.n
        if postprocess == "ibu":
            return project_simplex(f)
        return apply_postprocess(f, postprocess)

    def variance(self, n: int, f: ArrayLike | None = None) -> float | np.ndarray:
        n = self._check_n(n)
        v = 8.0 / (n * self.epsilon**2)
        return v if f is None else np.full(np.shape(self._check_f(f)), v)

    def output_density(self, y: ArrayLike, value: int) -> np.ndarray:
        """Density of report(s) ``y`` (shape (..., k)) given ``value``: product of Laplace densities."""
        y = np.asarray(y, dtype=np.float64)
        mean = np.zeros(self.k)
        mean[value] = 1.0
        return np.prod(np.exp(-np.abs(y - mean) / self.scale) / (2 * self.scale), axis=-1)

    def privacy_event(self) -> DpEvent:
        return PureDpEvent(self.epsilon)


def the_variance_per_user(theta: float, epsilon: float) -> float:
    """V*(theta) of THE for n = 1 (Wang et al. USENIX Sec'17)."""
    e = epsilon
    return (2 * math.exp(e * theta / 2) - 1) / (1 + math.exp(e * (theta - 0.5)) - 2 * math.exp(e * theta / 2)) ** 2


def optimal_theta(epsilon: float) -> float:
    """argmin over [0.5, 1] of THE's variance (bounded Brent, as both reference codes)."""
    res = minimize_scalar(
        the_variance_per_user, bounds=(0.5, 1.0), args=(epsilon,), method="bounded", options={"xatol": 1e-10}
    )
    return float(res.x)


@dataclass(frozen=True)
class THE(PureFrequencyOracle):
    """Thresholding with histogram encoding: the SHE client; the server counts entries above theta in [0.5, 1].

    p* = 1 - exp(eps (theta - 1)/2)/2, q* = exp(-eps theta/2)/2. The client is SHE's, so the guarantee is SHE's:
    epsilon-LDP for one user's value under replacement. ``theta=None`` uses the variance-optimal theta.
    Reports: float64 (n, k), as SHE's.
    """

    k: int
    epsilon: float
    theta: float | None = None
    name = "THE"
    default_chunk = 1 << 14

    def __post_init__(self) -> None:
        self._set_k_epsilon()
        theta = optimal_theta(self.epsilon) if self.theta is None else check_range("theta", self.theta, 0.5, 1.0)
        set_fields(self, theta=theta)

    @cached_property
    def _client(self) -> SHE:
        """The randomizer: SHE at the same (k, epsilon)."""
        return SHE(self.k, self.epsilon)

    @cached_property
    def _theta(self) -> float:
        return cast(float, self.theta)  # resolved by __post_init__, never None

    @cached_property
    def p_star(self) -> float:
        return 1 - 0.5 * math.exp(self.epsilon * (self._theta - 1) / 2)

    @cached_property
    def q_star(self) -> float:
        return 0.5 * math.exp(-self.epsilon * self._theta / 2)

    def _perturb(self, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self._client._perturb(values, rng)

    def _check_reports(self, reports: ArrayLike) -> np.ndarray:
        return self._client._check_reports(reports)

    def _support_counts(self, reports: np.ndarray) -> np.ndarray:
        counts = np.zeros(self.k, dtype=np.int64)
        for s, e in _memory.row_chunks(len(reports), self.k):  # one bool per entry
            counts += np.add.reduce((reports[s:e] > self._theta).view(np.uint8), axis=0, dtype=np.int64)
        return counts

    def output_density(self, y: ArrayLike, value: int) -> np.ndarray:
        return self._client.output_density(y, value)

    def privacy_event(self) -> DpEvent:
        return PureDpEvent(self.epsilon)
