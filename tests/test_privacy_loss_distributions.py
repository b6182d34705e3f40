"""The PLD accountant's own normal and Laplace distributions equal scipy.stats' to the last bit, and a PLD
calibration never imports scipy.stats (a second of start-up for every command-line call)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from dpkit.accountants.privacy_loss import Laplace, Normal

X = np.concatenate([np.linspace(-60.0, 60.0, 20001), [np.inf, -np.inf, np.nan, 0.5, 1.0]])


@pytest.mark.parametrize(("loc", "scale"), [(1.0, 0.6), (0.0, 3.0), (1.0, 0.01), (-2.0, 50.0)])
@pytest.mark.parametrize("method", ["cdf", "sf"])
def test_normal_and_laplace_equal_scipy_stats(loc: float, scale: float, method: str) -> None:
    for mine, theirs in [
        (Normal(loc, scale), stats.norm(loc, scale)),
        (Laplace(loc, scale), stats.laplace(loc, scale)),
    ]:
        assert np.array_equal(getattr(mine, method)(X), getattr(theirs, method)(X), equal_nan=True)
        assert mine.median() == theirs.median()


def test_pld_calibration_does_not_import_scipy_stats() -> None:
    code = (
        "import sys\n"
        "from dpkit.accountants import calibrate_noise_multiplier, create_accountant\n"
        "from dpkit.accountants import LaplaceEvent, PLDAccountant\n"
        "calibrate_noise_multiplier(3.0, 1e-5, 0.01, 100, accountant=create_accountant('pld'))\n"
        "acc = PLDAccountant(); acc.compose(LaplaceEvent(1.0)); acc.get_epsilon(1e-5)\n"
        "print('scipy.stats' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
