"""Shared test configuration: markers, the hypothesis profile, and references shared by several test modules.

Markers (select with ``-m``, e.g. ``pytest -m "not slow"`` for a quick run):

* ``slow``: a test that takes more than a few seconds on a 2-core CPU.
* ``anchors``: a test that runs a reference implementation dpkit is cross-checked against (Opacus, dp_accounting,
  multi-freq-ldpy, pure-LDP, ...); it is skipped where that package is not installed.
* ``multiprocess``: a test that starts several processes (torch.distributed on gloo).

Hypothesis runs derandomized (the same examples on every run, as every other test uses fixed seeds); set
``HYPOTHESIS_PROFILE=explore`` to search with fresh random examples and more of them.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("explore", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

MARKERS = {
    "slow": "takes more than a few seconds on a 2-core CPU",
    "anchors": "cross-checks against a reference implementation (skipped where it is not installed)",
    "multiprocess": "starts several processes (torch.distributed on gloo)",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
