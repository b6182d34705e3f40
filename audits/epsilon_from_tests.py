"""From a test's error rates to epsilon: the hypothesis-testing characterisation of (epsilon, delta)-DP.

A mechanism is (epsilon, delta)-DP iff every test between neighbouring inputs satisfies
``FPR + e^eps FNR >= 1 - delta`` and ``FNR + e^eps FPR >= 1 - delta`` (Kairouz, Oh and Viswanath 2015). So the
smallest epsilon consistent with a test of rates (FPR, FNR) is

    eps_hat(FPR, FNR; delta) = max{0, log((1 - delta - FPR) / FNR), log((1 - delta - FNR) / FPR)},

where a worse-than-random test (FPR + FNR > 1) is replaced by its complement (1 - FNR, 1 - FPR), which is as
informative. The set of rates consistent with (epsilon, delta)-DP is the region between :func:`region_lower` and
:func:`region_upper`; it is symmetric in (FNR, FPR), and the regions are nested in epsilon, so
``P[eps_hat <= e] = P[(FNR, FPR) in region(e)]``.
"""

from __future__ import annotations

import numpy as np

from dpkit.audits._checks import check_audit_delta

__all__ = ["epsilon_from_rates", "region_lower", "region_upper"]


def _rates(name: str, value) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    bad = ~((arr >= 0) & (arr <= 1))  # also catches NaN
    if bad.any():
        raise ValueError(f"{name} must be in [0, 1], got {arr[bad].flat[0]!r}")
    return arr


def epsilon_from_rates(fpr, fnr, delta: float = 0.0):
    """The smallest epsilon consistent with a test of false-positive rate ``fpr`` and false-negative rate ``fnr``.

    Vectorized over ``fpr`` and ``fnr`` (broadcast); returns a float for scalar inputs. ``inf`` when one rate is 0
    and the other below 1 - delta; 0 inside the trivially private band ``|FPR + FNR - 1| <= delta``.
    """
    delta = check_audit_delta("delta", delta)
    x = _rates("fpr", fpr)
    y = _rates("fnr", fnr)
    x, y = np.broadcast_arrays(x, y)
    flip = x > 1.0 - y  # worse than random: use the complementary test
    a = np.where(flip, 1.0 - y, x)
    b = np.where(flip, 1.0 - x, y)
    lo = np.minimum(a, b)
    hi = np.maximum(a, b)
    trivial = hi >= 1.0 - delta - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        eps = np.log((1.0 - delta - hi) / lo)
    eps = np.where(trivial, 0.0, np.where(lo == 0.0, np.inf, eps))
    eps = np.maximum(eps, 0.0)
    return float(eps) if eps.ndim == 0 else eps


def region_lower(t, epsilon, delta: float = 0.0):
    """Lower boundary of the (epsilon, delta) privacy region: the smallest allowed FPR given FNR = t.

    ``max(0, 1 - delta - e^eps t, e^-eps (1 - delta - t))``; by symmetry also the smallest FNR given FPR = t.
    Nonincreasing in t, nonincreasing in epsilon. Broadcasts over ``t`` and ``epsilon``.
    """
    t = np.asarray(t, dtype=float)
    e = np.asarray(epsilon, dtype=float)
    return np.maximum(np.maximum(0.0, 1.0 - delta - np.exp(e) * t), np.exp(-e) * (1.0 - delta - t))


def region_upper(t, epsilon, delta: float = 0.0):
    """Upper boundary of the privacy region: ``1 - region_lower(1 - t)``, i.e.
    ``min(1, 1 + e^-eps (delta - t), delta + e^eps (1 - t))``. Nonincreasing in t, nondecreasing in epsilon."""
    t = np.asarray(t, dtype=float)
    return 1.0 - region_lower(1.0 - t, epsilon, delta)
