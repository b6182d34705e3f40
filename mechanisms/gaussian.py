"""The Gaussian mechanism: its exact privacy profile, its classical and analytic calibrations, and the local
Gaussian mechanism on one bounded number per user (:class:`BoundedGaussian`).

Adding N(0, sigma^2 I) to a query of L2 sensitivity Delta is (epsilon, delta)-DP exactly when

    delta >= gaussian_delta(epsilon, sigma, Delta)
           = Phi(Delta / (2 sigma) - epsilon sigma / Delta) - e^epsilon Phi(-Delta / (2 sigma) - epsilon sigma / Delta)

(Balle and Wang, "Improving the Gaussian mechanism for differential privacy: analytical calibration and optimal
denoising", ICML 2018, Theorem 8). Two calibrations of sigma for a target (epsilon, delta):

* classical (Dwork and Roth 2014, Theorem A.1): sigma = (Delta / epsilon) sqrt(2 ln(1.25 / delta)), proved for
  epsilon < 1; dpkit accepts epsilon <= 1 (at epsilon = 1 it still holds, checked against the exact profile in the
  tests) and refuses larger epsilons, where nothing proves it and it does fail (e.g. epsilon = 8, delta = 0.01 or
  epsilon = 20, delta = 1e-5: the exact delta is 1.8 and 150 times the claimed one);
* analytic (Balle and Wang 2018): the smallest sigma with ``gaussian_delta(epsilon, sigma, Delta) <= delta``, found
  here by Brent's method on log sigma and moved up by ulps until the profile is at most delta, so the calibrated
  mechanism is (epsilon, delta)-DP up to the profile's floating-point error (relative 1e-12).

Both need delta > 0: with delta = 0 no finite sigma suffices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import brentq
from scipy.special import log_ndtr

from dpkit.accountants import DpEvent, GaussianEvent
from dpkit.accountants.validation import check_positive, check_probability, check_range
from dpkit.mechanisms._validation import check_count, check_rng
from dpkit.mechanisms.base import Keyed, SupportCounts

__all__ = [
    "GAUSSIAN_CALIBRATIONS",
    "gaussian_delta",
    "classical_gaussian_sigma",
    "analytic_gaussian_sigma",
    "gaussian_sigma",
    "check_gaussian_delta",
    "BoundedGaussian",
]

GAUSSIAN_CALIBRATIONS = ("analytic", "classical")
MAX_BOUND = 1e100  # |lower|, |upper| (the range and sigma stay finite floats)


def gaussian_delta(epsilon: float, sigma: float, sensitivity: float = 1.0) -> float:
    """The exact delta(epsilon) of the Gaussian mechanism with noise std ``sigma`` and L2 ``sensitivity``.

    Computed in log space (``log_ndtr``), so it neither overflows at large epsilon nor loses the difference of two
    small terms: delta = Phi(a) (1 - exp(epsilon + ln Phi(b) - ln Phi(a))).
    """
    epsilon = check_positive("epsilon", epsilon)
    sigma = check_positive("sigma", sigma)
    sensitivity = check_positive("sensitivity", sensitivity)
    return math.exp(_log_gaussian_delta(epsilon, sigma, sensitivity))


def _log_gaussian_delta(epsilon: float, sigma: float, sensitivity: float) -> float:
    half, shift = sensitivity / (2.0 * sigma), epsilon * sigma / sensitivity
    la, lb = float(log_ndtr(half - shift)), float(log_ndtr(-half - shift))
    x = epsilon + lb - la  # ln(e^eps Phi(b) / Phi(a)) < 0 mathematically
    return la + math.log(-math.expm1(x)) if x < 0 else -math.inf


def check_gaussian_delta(name: str, value: object) -> float:
    """A delta for a Gaussian calibration: in (0, 1); delta = 0 would need infinite noise."""
    if value == 0 and not isinstance(value, bool):
        raise ValueError(
            f"{name} must be in (0, 1) for the Gaussian mechanism (delta = 0 needs infinite noise), got {value!r}"
        )
    return check_probability(name, value, open_low=True, open_high=True)


def classical_gaussian_sigma(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """Dwork-Roth's sigma = (sensitivity / epsilon) sqrt(2 ln(1.25 / delta)), for epsilon in (0, 1]."""
    epsilon = check_positive("epsilon", epsilon)
    if epsilon > 1:
        raise ValueError(
            f"epsilon must be in (0, 1] for the classical Gaussian calibration (Dwork-Roth's bound does not hold "
            f"beyond; use the analytic calibration), got {epsilon!r}"
        )
    delta = check_gaussian_delta("delta", delta)
    sensitivity = check_positive("sensitivity", sensitivity)
    return sensitivity / epsilon * math.sqrt(2.0 * math.log(1.25 / delta))


def analytic_gaussian_sigma(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """Balle-Wang's analytic calibration: the smallest sigma with ``gaussian_delta(epsilon, sigma) <= delta``."""
    epsilon = check_positive("epsilon", epsilon)
    delta = check_gaussian_delta("delta", delta)
    sensitivity = check_positive("sensitivity", sensitivity)
    log_delta = math.log(delta)

    def excess(log_sigma: float) -> float:  # decreasing in sigma
        return max(_log_gaussian_delta(epsilon, math.exp(log_sigma), sensitivity), -1e300) - log_delta

    lo = hi = math.log(sensitivity / epsilon)
    for _ in range(4000):  # bracket the crossing, one factor of 2 at a time
        if excess(lo) > 0:
            break
        lo -= math.log(2.0)
    for _ in range(4000):
        if excess(hi) <= 0:
            break
        hi += math.log(2.0)
    if not (excess(lo) > 0 >= excess(hi)):
        raise ValueError(f"no Gaussian noise calibrates epsilon={epsilon!r}, delta={delta!r} in floating point")
    sigma = math.exp(brentq(excess, lo, hi, xtol=1e-15, rtol=1e-15, maxiter=500))
    while math.exp(_log_gaussian_delta(epsilon, sigma, sensitivity)) > delta:  # the valid side, as gaussian_delta
        sigma = math.nextafter(sigma, math.inf) * (1 + 1e-15)
    return sigma


def gaussian_sigma(calibration: str, epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """sigma of the named calibration ('analytic' or 'classical')."""
    if calibration == "analytic":
        return analytic_gaussian_sigma(epsilon, delta, sensitivity)
    if calibration == "classical":
        return classical_gaussian_sigma(epsilon, delta, sensitivity)
    raise ValueError(f"calibration must be one of {', '.join(GAUSSIAN_CALIBRATIONS)}, got {calibration!r}")


@dataclass(frozen=True)
class BoundedGaussian(Keyed):
    """The local Gaussian mechanism on one number per user in [lower, upper]: report y = x + N(0, sigma^2).

    Guarantee: (epsilon, delta)-LDP for one user's value under replacement by any other value of [lower, upper]
    (L2 sensitivity ``upper - lower``); unit of privacy: one user's value. sigma is the analytic calibration
    (Balle-Wang 2018, default) or the classical one (Dwork-Roth, epsilon <= 1). ``privacy_event()`` is
    ``GaussianEvent(sigma / (upper - lower))``, the mechanism's exact privacy curve.

    Server: the state is the sum of the reports (a :class:`~dpkit.mechanisms.base.SupportCounts` with one float
    entry, mergeable); ``estimate`` is the mean, unbiased for the users' mean, with variance sigma^2 / n for every
    population. Values outside [lower, upper] are refused (clip them first: the guarantee is for that range).
    """

    epsilon: float
    delta: float
    lower: float = 0.0
    upper: float = 1.0
    calibration: str = "analytic"
    name: ClassVar[str] = "BoundedGaussian"
    default_chunk: ClassVar[int] = 1 << 20

    def __post_init__(self) -> None:
        epsilon = check_positive("epsilon", self.epsilon)
        delta = check_gaussian_delta("delta", self.delta)
        lower = check_range("lower", self.lower, -MAX_BOUND, MAX_BOUND)
        upper = check_range("upper", self.upper, -MAX_BOUND, MAX_BOUND)
        if not upper > lower:
            raise ValueError(f"upper must be > lower={lower!r}, got {self.upper!r}")
        if self.calibration not in GAUSSIAN_CALIBRATIONS:
            raise ValueError(f"calibration must be one of {', '.join(GAUSSIAN_CALIBRATIONS)}, got {self.calibration!r}")
        if self.calibration == "classical" and epsilon > 1:
            classical_gaussian_sigma(epsilon, delta)  # raises the error naming epsilon
        for name, value in (("epsilon", epsilon), ("delta", delta), ("lower", lower), ("upper", upper)):
            object.__setattr__(self, name, value)

    @cached_property
    def sensitivity(self) -> float:
        return self.upper - self.lower

    @cached_property
    def sigma(self) -> float:
        return gaussian_sigma(self.calibration, self.epsilon, self.delta, self.sensitivity)

    # ---------------------------------------------------------------- client
    def perturb(self, values: ArrayLike, rng: np.random.Generator) -> np.ndarray:
        """y = x + N(0, sigma^2) per user (vectorized). ``values``: finite floats in [lower, upper]."""
        x = self._check_values("values", values)
        check_rng(rng)
        return x + rng.normal(0.0, self.sigma, size=x.shape)

    def _check_values(self, name: str, values: ArrayLike) -> np.ndarray:
        x = np.asarray(values)
        if x.dtype.kind not in "iuf":
            raise TypeError(f"{name} must be a numeric array in [{self.lower:g}, {self.upper:g}], got dtype {x.dtype}")
        if x.ndim != 1:
            raise ValueError(f"{name} must be a 1-dimensional array, got shape {x.shape}")
        x = x.astype(np.float64)
        if x.size and not (np.isfinite(x).all() and x.min() >= self.lower and x.max() <= self.upper):
            bad = float(x[~(np.isfinite(x) & (x >= self.lower) & (x <= self.upper))][0])
            raise ValueError(f"{name} must be in [{self.lower:g}, {self.upper:g}], got {bad!r}")
        return x

    # ---------------------------------------------------------------- server
    def aggregate(self, reports: ArrayLike) -> SupportCounts:
        """The state of one batch: the sum of the reports and their number (mergeable with ``+``)."""
        r = np.asarray(reports)
        if r.dtype.kind != "f" or r.ndim != 1:
            raise TypeError(f"reports must be a 1-dimensional float array, got dtype {r.dtype}, shape {r.shape}")
        if not np.isfinite(r).all():
            raise ValueError("reports must be finite (found NaN or inf)")
        return SupportCounts(np.array([r.sum(dtype=np.float64)]), len(r), self.key)

    def empty_state(self) -> SupportCounts:
        return SupportCounts(np.zeros(1), 0, self.key)

    def perturb_aggregate(
        self, values: ArrayLike, rng: np.random.Generator, chunk_size: int | None = None
    ) -> SupportCounts:
        """Clients then server, ``chunk_size`` users at a time (memory bounded by one chunk)."""
        x = self._check_values("values", values)
        check_rng(rng)
        size = chunk_size or self.default_chunk
        state = self.empty_state()
        for start in range(0, len(x), size):
            chunk = x[start : start + size]
            state = state + self.aggregate(chunk + rng.normal(0.0, self.sigma, size=chunk.shape))
        return state

    def estimate(self, state: SupportCounts) -> float:
        """The users' mean (unbiased)."""
        if not isinstance(state, SupportCounts) or state.counts.shape != (1,):
            raise TypeError(f"state must be a SupportCounts of this mechanism (from aggregate), got {state!r}")
        if state.n <= 0:
            raise ValueError(f"state.n must be >= 1 to estimate, got {state.n}")
        return float(state.counts[0] / state.n)

    # ---------------------------------------------------------------- analysis
    def variance(self, n: int) -> float:
        """Var of the estimated mean for ``n`` users: sigma^2 / n (exact, whatever the values)."""
        return self.sigma**2 / check_count("n", n, minimum=1)

    def output_density(self, y: ArrayLike, value: float) -> np.ndarray:
        """Density of report(s) ``y`` given ``value``."""
        z = (np.asarray(y, dtype=np.float64) - value) / self.sigma
        return np.exp(-0.5 * z * z) / (self.sigma * math.sqrt(2 * math.pi))

    def privacy_event(self) -> DpEvent:
        return GaussianEvent(self.sigma / self.sensitivity)
