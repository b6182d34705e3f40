"""Ways to state a run's guarantee besides one (epsilon, delta): the privacy profile delta(epsilon) and the trade-off
curve of false-positive against false-negative rates, as pandas tables and matplotlib plots.

pandas and matplotlib are imported inside the functions (``import dpkit.accountants`` stays light).

* The privacy profile is ``accountant.get_delta(epsilon)`` on a grid of epsilons: the run is (epsilon, delta)-DP at
  every row.
* The trade-off curve (Dong, Roth, Su, "Gaussian differential privacy", JRSS-B 2022, Proposition 2.12): a run that
  is (epsilon, delta(epsilon))-DP for every epsilon of a set E is f-DP with
  ``f(alpha) = sup_{epsilon in E} max(0, 1 - delta - e^epsilon alpha, e^-epsilon (1 - delta - alpha))``: any test
  telling the neighbouring datasets apart with false-positive rate (FPR) alpha has false-negative rate (FNR) at
  least f(alpha). A finite E gives a smaller supremum, so the table is a valid lower bound on the FNR (it is
  tighter the finer E is); under add/remove neighbours the profile bounds both directions, so the curve does too.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from dpkit.accountants._typing import FloatArray
from dpkit.accountants.accountant import PrivacyAccountant

if TYPE_CHECKING:  # pragma: no cover - imported for annotations only
    import pandas as pd
    from matplotlib.axes import Axes

__all__ = ["plot_privacy_profile", "plot_tradeoff_curve", "privacy_profile", "tradeoff_curve"]

#: Default grid sizes.
_PROFILE_POINTS = 41
_SUP_POINTS = 200
_FPR_POINTS = 201


def _check_accountant(accountant: object) -> PrivacyAccountant:
    if not isinstance(accountant, PrivacyAccountant):
        raise TypeError(f"accountant must be a PrivacyAccountant, got {accountant!r}")
    return accountant


def _grid(name: str, values: npt.ArrayLike, low: float, high: float) -> FloatArray:
    try:
        arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of numbers in [{low:g}, {high:g}], got {values!r}") from None
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of numbers, got {values!r}")
    bad = ~((arr >= low) & (arr <= high))
    if bad.any():
        raise ValueError(f"{name} must be in [{low:g}, {high:g}], got {float(arr[bad][0])!r}")
    return np.sort(arr)


def _default_epsilons(accountant: PrivacyAccountant, points: int) -> FloatArray:
    top = accountant.get_epsilon(1e-12)
    if not math.isfinite(top) or top <= 0:
        top = max(1.0, accountant.get_epsilon(1e-5)) if math.isfinite(accountant.get_epsilon(1e-5)) else 1.0
    return np.linspace(0.0, 1.1 * top, points)


def _profile(accountant: PrivacyAccountant, epsilons: FloatArray) -> FloatArray:
    return np.array([accountant.get_delta(float(e)) for e in epsilons], dtype=np.float64)


def privacy_profile(accountant: PrivacyAccountant, epsilons: npt.ArrayLike | None = None) -> pd.DataFrame:
    """The ledger's delta(epsilon) as a table with columns ``epsilon`` and ``delta`` (sorted by epsilon).

    ``epsilons``: the grid (default: 41 points from 0 to 1.1 x the epsilon at delta = 1e-12).
    """
    import pandas as pd

    acc = _check_accountant(accountant)
    eps = _default_epsilons(acc, _PROFILE_POINTS) if epsilons is None else _grid("epsilons", epsilons, 0.0, 1e300)
    return pd.DataFrame({"epsilon": eps, "delta": _profile(acc, eps)})


def tradeoff_curve(
    accountant: PrivacyAccountant, fprs: npt.ArrayLike | None = None, epsilons: npt.ArrayLike | None = None
) -> pd.DataFrame:
    """Lower bound on the false-negative rate of any test at each false-positive rate (columns ``fpr``, ``fnr``).

    ``fprs``: false-positive rates in [0, 1] (default 201 evenly spaced); ``epsilons``: the set E of the supremum
    (default 200 points from 0 to 1.1 x the epsilon at delta = 1e-12). See the module docstring for the formula.
    """
    import pandas as pd

    acc = _check_accountant(accountant)
    alpha = np.linspace(0.0, 1.0, _FPR_POINTS) if fprs is None else _grid("fprs", fprs, 0.0, 1.0)
    eps = _default_epsilons(acc, _SUP_POINTS) if epsilons is None else _grid("epsilons", epsilons, 0.0, 1e300)
    delta = _profile(acc, eps)
    return pd.DataFrame({"fpr": alpha, "fnr": fnr_lower_bound(alpha, eps, delta)})


def fnr_lower_bound(fprs: FloatArray, epsilons: FloatArray, deltas: FloatArray) -> FloatArray:
    """sup over the (epsilon, delta) pairs of max(0, 1 - delta - e^eps alpha, e^-eps (1 - delta - alpha))."""
    a = fprs[:, None]
    e, d = epsilons[None, :], deltas[None, :]
    with np.errstate(over="ignore", invalid="ignore"):
        first = 1.0 - d - np.exp(e) * a
        first = np.where(a == 0, 1.0 - d, first)  # e^eps * 0 with eps large
        second = np.exp(-e) * (1.0 - d - a)
    out: FloatArray = np.max(np.maximum(0.0, np.maximum(first, second)), axis=1)
    return np.clip(out, 0.0, 1.0)


def plot_privacy_profile(
    accountant: PrivacyAccountant, epsilons: npt.ArrayLike | None = None, ax: Axes | None = None, **kwargs: Any
) -> Axes:
    """Plot delta(epsilon) (log scale) on ``ax`` (a new figure if None); returns the axes."""
    table = privacy_profile(accountant, epsilons)
    ax = _axes(ax)
    positive = table["delta"] > 0
    ax.plot(table["epsilon"][positive], table["delta"][positive], **kwargs)
    ax.set_yscale("log")
    ax.set_xlabel("epsilon")
    ax.set_ylabel("delta(epsilon)")
    ax.set_title("Privacy profile")
    return ax


def plot_tradeoff_curve(
    accountant: PrivacyAccountant,
    fprs: npt.ArrayLike | None = None,
    epsilons: npt.ArrayLike | None = None,
    ax: Axes | None = None,
    **kwargs: Any,
) -> Axes:
    """Plot the trade-off curve (FPR against the FNR lower bound) with the no-privacy diagonal 1 - FPR."""
    table = tradeoff_curve(accountant, fprs, epsilons)
    ax = _axes(ax)
    ax.plot(table["fpr"], table["fnr"], **kwargs)
    ax.plot([0, 1], [1, 0], linestyle=":", color="grey", label="perfect privacy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("false-negative rate (lower bound)")
    ax.set_title("Trade-off curve")
    return ax


def _axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, new = plt.subplots()
    return new
