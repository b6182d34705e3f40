"""The audit grid's confidence holds jointly over its settings (Bonferroni), not per setting."""

from __future__ import annotations

import pytest

from dpkit.audits.ldp import grid_confidence, results_frame, run_grid


def test_grid_confidence_is_bonferroni() -> None:
    assert grid_confidence(0.99, 1) == pytest.approx(0.99)
    assert grid_confidence(0.99, 256) == pytest.approx(1 - 0.01 / 256)
    assert grid_confidence(0.9, 4) == pytest.approx(0.975)


@pytest.mark.parametrize(("confidence", "settings"), [(1.0, 4), (0.0, 4), (0.99, 0), (float("nan"), 2)])
def test_grid_confidence_refuses_bad_input(confidence: float, settings: int) -> None:
    with pytest.raises(ValueError, match="confidence|settings"):
        grid_confidence(confidence, settings)


def test_every_setting_of_a_grid_is_audited_at_the_joint_level() -> None:
    results = run_grid("dpkit:GRR", epsilons=(0.5, 1.0), ks=(2, 5), trials=2_000, confidence=0.99, seed=3)
    frame = results_frame(results)
    assert len(frame) == 4
    assert all(r.confidence == pytest.approx(1 - 0.01 / 4) for r in results)
    assert not frame["violation"].any()  # a correct GRR
