"""Accounting reports for DP-SGD runs: the tables behind ``dpkit account-report``, reusable from tests and notebooks.

Every function here accounts for DP-SGD with Poisson sampling, i.e. ``steps`` x Poisson(q)-sampled
Gaussian(noise_multiplier) (:func:`dpkit.accountants.dpsgd_event`), under both the RDP and the PLD accountant, and
returns plain numbers or a :class:`pandas.DataFrame`:

>>> from dpkit.cli.report import DpSgdSetting, epsilon_table, noise_table
>>> setting = DpSgdSetting(epochs=2)                       # CIFAR-10-sized: N=50000, batch 256, delta=1e-5
>>> epsilon_table(setting, noise_multipliers=[1.0])        # doctest: +SKIP
>>> noise_table(setting, target_epsilons=[3.0])            # doctest: +SKIP

The noise multiplier follows the convention of :mod:`dpkit.accountants.events`: noise std / L2 sensitivity under the
chosen neighbouring relation (add/remove by default, where it is DP-SGD's usual std / clipping norm).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

from dpkit.accountants.progress import Progress, ProgressHook

if TYPE_CHECKING:  # pandas is imported by the tables only: ``dpkit account`` starts without it
    import pandas as pd

T = TypeVar("T")
ACCOUNTANTS = ("rdp", "pld")
DEFAULT_NOISE_MULTIPLIERS = (0.8, 1.0, 1.2, 1.5)
DEFAULT_TARGET_EPSILONS = (1.0, 3.0, 8.0)


def epochs_to_steps(epochs: float, sampling_rate: float) -> int:
    """Number of steps of ``epochs`` passes at Poisson sampling rate q: ceil(epochs / q).

    A quotient that is a whole number up to floating-point rounding (3 / 0.1 = 30.000000000000004) counts as
    that whole number.
    """
    if not (epochs > 0 and math.isfinite(epochs)):
        raise ValueError(f"epochs must be in (0, inf), got {epochs!r}")
    if not (0 < sampling_rate <= 1):
        raise ValueError(f"sampling_rate must be in (0, 1], got {sampling_rate!r}")
    exact = epochs / sampling_rate
    nearest = round(exact)
    if nearest >= 1 and abs(exact - nearest) <= 1e-9 * nearest:
        return int(nearest)
    return max(1, math.ceil(exact))


@dataclasses.dataclass(frozen=True)
class DpSgdSetting:
    """A DP-SGD run: Poisson sampling with expected batch ``batch_size`` out of ``dataset_size`` records."""

    dataset_size: int = 50_000
    batch_size: int = 256
    epochs: float = 100
    delta: float = 1e-5
    neighbouring_relation: str = "add_or_remove"

    def __post_init__(self):
        if not (isinstance(self.dataset_size, int) and self.dataset_size >= 1):
            raise ValueError(f"dataset_size must be a whole number >= 1, got {self.dataset_size!r}")
        if not (isinstance(self.batch_size, int) and 1 <= self.batch_size <= self.dataset_size):
            raise ValueError(f"batch_size must be a whole number in [1, dataset_size], got {self.batch_size!r}")
        if not (0 < self.delta < 1):
            raise ValueError(f"delta must be in (0, 1), got {self.delta!r}")
        epochs_to_steps(self.epochs, self.sampling_rate)  # validates epochs

    @property
    def sampling_rate(self) -> float:
        return self.batch_size / self.dataset_size

    @property
    def steps(self) -> int:
        return epochs_to_steps(self.epochs, self.sampling_rate)

    def describe(self) -> str:
        return (
            f"DP-SGD with Poisson sampling: N={self.dataset_size}, expected batch {self.batch_size} "
            f"(q={self.sampling_rate:.6g}), {self.epochs:g} epochs = {self.steps} steps, "
            f"delta={self.delta:g}, {self.neighbouring_relation} neighbours"
        )


@dataclasses.dataclass(frozen=True)
class EpsilonResult:
    """Epsilon of one DP-SGD run under one accountant (PLD also gives a lower bound)."""

    accountant: str
    epsilon: float
    epsilon_lower: float | None = None
    seconds: float = 0.0

    @property
    def discretization_error(self) -> float | None:
        return None if self.epsilon_lower is None else self.epsilon - self.epsilon_lower


def account_dpsgd(
    accountant: str,
    sampling_rate: float,
    noise_multiplier: float,
    steps: int,
    delta: float,
    neighbouring_relation: str = "add_or_remove",
    *,
    progress: ProgressHook | None = None,
) -> EpsilonResult:
    """Epsilon at ``delta`` of ``steps`` DP-SGD steps, as ``accountant.get_epsilon(delta)`` reports it.

    For an accountant with ``get_epsilon_bounds`` (PLD), the lower end of the bounds is reported too; the
    upper end is the epsilon (what ``get_epsilon`` returns). ``progress``: the accountants' hook
    ``(fraction, message)``.
    """
    from dpkit.accountants import create_accountant, dpsgd_event

    start = time.perf_counter()
    acc = create_accountant(accountant, neighbouring_relation=neighbouring_relation)
    acc.compose(dpsgd_event(noise_multiplier, sampling_rate, steps))
    bounds = getattr(acc, "get_epsilon_bounds", None)
    if bounds is not None:
        lower, upper = bounds(delta, progress=progress)
        result = EpsilonResult(accountant, float(upper), float(lower))
    else:
        result = EpsilonResult(accountant, float(acc.get_epsilon(delta, progress=progress)))
    return dataclasses.replace(result, seconds=time.perf_counter() - start)


def calibrate_dpsgd(
    accountant: str,
    sampling_rate: float,
    target_epsilon: float,
    steps: int,
    delta: float,
    neighbouring_relation: str = "add_or_remove",
    *,
    progress: ProgressHook | None = None,
) -> tuple[float, float]:
    """(noise multiplier for ``target_epsilon``, seconds): :func:`dpkit.accountants.calibrate_noise_multiplier`."""
    from dpkit.accountants import calibrate_noise_multiplier

    start = time.perf_counter()
    sigma = calibrate_noise_multiplier(
        target_epsilon,
        delta,
        sampling_rate,
        steps,
        accountant,
        neighbouring_relation=neighbouring_relation,
        progress=progress,
    )
    return float(sigma), time.perf_counter() - start


def compare_noise(sigma_rdp: float, sigma_pld: float, rtol: float = 1e-3) -> str:
    """How PLD's calibrated noise compares with RDP's, in words: the same (within the calibration tolerance
    ``rtol``), or the percentage less or more."""
    ratio = sigma_pld / sigma_rdp
    if abs(ratio - 1.0) <= rtol:
        return f"PLD and RDP need the same noise (within the {100 * rtol:g}% calibration tolerance)"
    if ratio < 1.0:
        return f"PLD needs {100.0 * (1.0 - ratio):.1f}% less noise than RDP"
    return f"PLD needs {100.0 * (ratio - 1.0):.1f}% more noise than RDP"


def epsilon_table(
    setting: DpSgdSetting,
    noise_multipliers: Sequence[float] = DEFAULT_NOISE_MULTIPLIERS,
    *,
    progress: ProgressHook | None = None,
) -> pd.DataFrame:
    """Epsilon under RDP and PLD (with PLD's lower bound) per noise multiplier, with the seconds each took.

    Columns: ``noise_multiplier, eps_rdp, eps_pld, eps_pld_lower, pld_saving_pct, rdp_seconds, pld_seconds``,
    where ``pld_saving_pct`` is how much smaller PLD's epsilon is than RDP's, in percent.
    """
    import pandas as pd

    parts = _parts(progress, 2 * len(noise_multipliers))
    rows = []
    for sigma in noise_multipliers:
        r, p = _both_accountants(account_dpsgd, setting, sigma, parts)
        rows.append(
            {
                "noise_multiplier": float(sigma),
                "eps_rdp": r.epsilon,
                "eps_pld": p.epsilon,
                "eps_pld_lower": math.nan if p.epsilon_lower is None else p.epsilon_lower,
                "pld_saving_pct": 100.0 * (1.0 - p.epsilon / r.epsilon) if r.epsilon > 0 else math.nan,
                "rdp_seconds": r.seconds,
                "pld_seconds": p.seconds,
            }
        )
    return pd.DataFrame(rows)


def noise_table(
    setting: DpSgdSetting,
    target_epsilons: Sequence[float] = DEFAULT_TARGET_EPSILONS,
    *,
    progress: ProgressHook | None = None,
) -> pd.DataFrame:
    """Noise multiplier needed for each target epsilon under RDP and PLD, and the noise PLD saves.

    Columns: ``target_epsilon, sigma_rdp, sigma_pld, noise_saving_pct, rdp_seconds, pld_seconds``, where
    ``noise_saving_pct`` = 100 * (1 - sigma_pld / sigma_rdp).
    """
    import pandas as pd

    parts = _parts(progress, 2 * len(target_epsilons))
    rows = []
    for eps in target_epsilons:
        (s_rdp, t_rdp), (s_pld, t_pld) = _both_accountants(calibrate_dpsgd, setting, eps, parts)
        rows.append(
            {
                "target_epsilon": float(eps),
                "sigma_rdp": s_rdp,
                "sigma_pld": s_pld,
                "noise_saving_pct": 100.0 * (1.0 - s_pld / s_rdp),
                "rdp_seconds": t_rdp,
                "pld_seconds": t_pld,
            }
        )
    return pd.DataFrame(rows)


def _parts(progress: ProgressHook | None, count: int) -> Iterator[ProgressHook | None]:
    """``count`` hooks (or Nones) for equal consecutive shares of ``progress``, one per computation."""
    report = Progress(progress)
    for i in range(count):
        yield report.part(i / count, (i + 1) / count).hook()


def _both_accountants(compute: Callable[..., T], setting: DpSgdSetting, value: float, parts) -> tuple[T, T]:
    """``compute(accountant, q, value, steps, delta, relation, progress=...)`` under RDP, then under PLD."""
    rdp, pld = (
        compute(
            name,
            setting.sampling_rate,
            value,
            setting.steps,
            setting.delta,
            setting.neighbouring_relation,
            progress=next(parts),
        )
        for name in ACCOUNTANTS
    )
    return rdp, pld


_FORMATS = {
    "noise_multiplier": "{:.2f}".format,
    "target_epsilon": "{:g}".format,
    "eps_rdp": "{:.4f}".format,
    "eps_pld": "{:.4f}".format,
    "eps_pld_lower": "{:.4f}".format,
    "sigma_rdp": "{:.4f}".format,
    "sigma_pld": "{:.4f}".format,
    "pld_saving_pct": "{:.1f}".format,
    "noise_saving_pct": "{:.1f}".format,
    "rdp_seconds": "{:.3f}".format,
    "pld_seconds": "{:.3f}".format,
}


def format_table(df: pd.DataFrame) -> str:
    """``df.to_string`` with the report's number formats and no index."""
    return df.to_string(index=False, formatters={k: f for k, f in _FORMATS.items() if k in df.columns})


def render_report(
    setting: DpSgdSetting,
    noise_multipliers: Sequence[float] = DEFAULT_NOISE_MULTIPLIERS,
    target_epsilons: Sequence[float] = DEFAULT_TARGET_EPSILONS,
    *,
    progress: ProgressHook | None = None,
) -> str:
    """The text ``dpkit account-report`` prints: a header line, the epsilon table and the noise table."""
    share = len(noise_multipliers) / max(1, len(noise_multipliers) + len(target_epsilons))
    report = Progress(progress)
    eps = epsilon_table(setting, noise_multipliers, progress=report.part(0.0, share).hook())
    noise = noise_table(setting, target_epsilons, progress=report.part(share, 1.0).hook())
    return "\n".join(
        [
            f"Privacy accounting for {setting.describe()}.",
            "",
            f"(a) epsilon at delta={setting.delta:g} per noise multiplier (PLD: upper bound, eps_pld_lower: "
            "lower bound; pld_saving_pct: how much smaller PLD's epsilon is)",
            format_table(eps),
            "",
            "(b) noise multiplier needed for a target epsilon (noise_saving_pct: how much less noise PLD needs)",
            format_table(noise),
        ]
    )
