"""Gaussian encoding: GM and AGM, the one-hot vector plus Gaussian noise ((epsilon, delta)-LDP frequency oracles).

Client: y = e_v + N(0, sigma^2 I_k). Two inputs v != v' change e_v by a vector of L2 norm sqrt(2), so with
sigma calibrated for L2 sensitivity sqrt(2) the report is (epsilon, delta)-LDP (:mod:`dpkit.mechanisms.gaussian`):

* GM: Dwork-Roth's sigma = sqrt(2) sqrt(2 ln(1.25 / delta)) / epsilon, for epsilon <= 1;
* AGM: Balle-Wang's analytic sigma, the smallest sigma whose exact privacy profile is at most delta at epsilon (any
  epsilon; smaller than GM's sigma, e.g. 5.276 against 6.852 at epsilon = 1, delta = 1e-5).

Server: the mean of the reports is unbiased for the frequencies, with variance sigma^2 / n for every item and every
population. These are the Gaussian mechanisms LDP-Auditor audits (Arcolezi and Gambs, PoPETs 2024).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from numpy.typing import ArrayLike

from dpkit.accountants import DpEvent, GaussianEvent
from dpkit.mechanisms._validation import check_domain, check_epsilon, set_fields
from dpkit.mechanisms.base import FrequencyOracle, SupportCounts
from dpkit.mechanisms.frequency_oracles.histogram_encoding import SHE
from dpkit.mechanisms.gaussian import analytic_gaussian_sigma, check_gaussian_delta, classical_gaussian_sigma

__all__ = ["GaussianEncoding", "GM", "AGM", "ONE_HOT_SENSITIVITY"]

ONE_HOT_SENSITIVITY = math.sqrt(2.0)  # ||e_v - e_v'||_2


@dataclass(frozen=True)
class GaussianEncoding(FrequencyOracle):
    """One-hot plus N(0, sigma^2 I_k) noise, with sigma defined by the subclasses :class:`GM` and :class:`AGM`.

    (epsilon, delta)-LDP for one user's value in [0, k) under replacement (L2 sensitivity sqrt(2)); unit of privacy:
    one user's value. ``privacy_event()`` is ``GaussianEvent(sigma / sqrt(2))``, the exact privacy curve. The state
    holds float sums; ``estimate`` is their mean (unbiased), Var = sigma^2 / n. Reports: float64 (n, k).
    """

    k: int
    epsilon: float
    delta: float = field(kw_only=True)
    name = "GaussianEncoding"
    default_chunk = 1 << 14
    count_dtype = np.float64

    def __post_init__(self) -> None:
        set_fields(
            self,
            k=check_domain("k", self.k),
            epsilon=check_epsilon("epsilon", self.epsilon),
            delta=check_gaussian_delta("delta", self.delta),
        )
        self.sigma  # noqa: B018  # calibrate now: a calibration error surfaces at construction

    @property
    @abstractmethod
    def sigma(self) -> float:
        """The noise standard deviation per coordinate."""

    def _perturb(self, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = values.shape[0]
        y = rng.normal(0.0, self.sigma, size=(n, self.k))
        y[np.arange(n), values] += 1.0
        return y

    @cached_property
    def _summation(self) -> SHE:
        """The server of SHE, whose reports have the same form (float (n, k)): it sums them, and their mean is the
        unbiased estimate (``postprocess='ibu'``: its projection onto the simplex, the maximum-likelihood point given
        a Gaussian mean with the same variance for every item)."""
        return SHE(self.k, self.epsilon)

    def _check_reports(self, reports: ArrayLike) -> np.ndarray:
        return self._summation._check_reports(reports)

    def _support_counts(self, reports: np.ndarray) -> np.ndarray:
        return self._summation._support_counts(reports)

    def _count_bounds(self, n: int) -> tuple[float, float] | None:
        return None  # sums of Gaussian-noised reports: any finite value

    def estimate(self, state: SupportCounts, postprocess: str | None = None) -> np.ndarray:
        """The mean report (unbiased); post-processing as SHE's. The state must be this protocol's own."""
        self._check_state(state, postprocess)
        return self._summation.estimate(SupportCounts(state.counts, state.n, self._summation.key), postprocess)

    def variance(self, n: int, f: ArrayLike | None = None) -> float | np.ndarray:
        v = self.sigma**2 / self._check_n(n)
        return v if f is None else np.full(np.shape(f), v)

    def output_density(self, y: ArrayLike, value: int) -> np.ndarray:
        """Density of report(s) ``y`` (shape (..., k)) given ``value``."""
        z = np.asarray(y, dtype=np.float64) / self.sigma
        z[..., value] -= 1.0 / self.sigma
        return np.exp(-0.5 * np.sum(z * z, axis=-1)) / (self.sigma * math.sqrt(2 * math.pi)) ** self.k

    def privacy_event(self) -> DpEvent:
        return GaussianEvent(self.sigma / ONE_HOT_SENSITIVITY)


@dataclass(frozen=True)
class GM(GaussianEncoding):
    """Gaussian mechanism with Dwork-Roth's calibration, sigma = sqrt(2) sqrt(2 ln(1.25/delta)) / epsilon.

    (epsilon, delta)-LDP for epsilon in (0, 1] and delta in (0, 1); larger epsilons are refused (use :class:`AGM`).
    """

    name = "GM"

    @cached_property
    def sigma(self) -> float:
        return classical_gaussian_sigma(self.epsilon, self.delta, ONE_HOT_SENSITIVITY)


@dataclass(frozen=True)
class AGM(GaussianEncoding):
    """Analytic Gaussian mechanism (Balle-Wang 2018): the smallest sigma that is (epsilon, delta)-LDP."""

    name = "AGM"

    @cached_property
    def sigma(self) -> float:
        return analytic_gaussian_sigma(self.epsilon, self.delta, ONE_HOT_SENSITIVITY)
