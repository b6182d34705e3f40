"""Run one target over a grid of (epsilon, k) and tabulate (pandas)."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from dpkit.accountants.validation import check_count, check_probability
from dpkit.audits.ldp.game import ATTACKS, AuditResult, audit
from dpkit.audits.ldp.targets import resolve

__all__ = ["LDP_AUDITOR_EPSILONS", "LDP_AUDITOR_KS", "grid_confidence", "run_grid", "results_frame"]

LDP_AUDITOR_EPSILONS = (0.25, 0.5, 0.75, 1.0, 2.0, 4.0, 6.0, 10.0)
LDP_AUDITOR_KS = (2, 25, 100, 200)


def grid_confidence(confidence: float, settings: int) -> float:
    """The confidence of each of ``settings`` audits whose verdicts hold jointly at ``confidence`` (Bonferroni)."""
    confidence = check_probability("confidence", confidence, open_low=True, open_high=True)
    settings = check_count("settings", settings, minimum=1)
    return 1.0 - (1.0 - confidence) / settings


def run_grid(
    spec: str,
    epsilons: Iterable[float] = LDP_AUDITOR_EPSILONS,
    ks: Iterable[int] = LDP_AUDITOR_KS,
    *,
    trials: int | None = None,
    confidence: float = 0.99,
    delta: float = 0.0,
    seed: int = 0,
    attacks=ATTACKS,
    progress: bool = False,
    **options,
) -> list[AuditResult]:
    """Audit ``spec`` at every (epsilon, k); one seed per setting (``seed + index``).

    ``confidence`` holds jointly over the whole grid: each of the m settings is audited at confidence
    ``1 - (1 - confidence) / m`` (Bonferroni), so a correct implementation shows a violation anywhere in the grid
    with probability at most ``1 - confidence``. (At 0.99 per setting, a grid of 256 settings of a correct protocol
    would flag about 2.5 settings by chance.) Use :func:`grid_confidence` for the per-setting level.
    """
    settings = [(float(e), int(k)) for k in ks for e in epsilons]
    per_setting = grid_confidence(confidence, len(settings))
    it = settings
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(settings, desc=spec, unit="setting")
    out = []
    for i, (e, k) in enumerate(it):
        target = resolve(spec, k=k, epsilon=e, delta=delta, **options)
        out.append(audit(target, trials, confidence=per_setting, seed=seed + i, attacks=attacks))
    return out


def results_frame(results: Iterable[AuditResult]) -> pd.DataFrame:
    """One row per result: target, k, epsilon_claimed, epsilon_lower_bound, cap, trials, confidence, violation,
    best_test, finding, seconds."""
    rows = []
    for r in results:
        rows.append(
            {
                "target": r.target,
                "k": r.k,
                "epsilon_claimed": r.epsilon_claimed,
                "epsilon_lower_bound": r.epsilon_lower_bound,
                "cap": r.cap,
                "trials": r.trials,
                "confidence": r.confidence,
                "violation": r.violation,
                "best_test": r.best_test,
                "finding": r.finding,
                "seconds": r.seconds,
            }
        )
    return pd.DataFrame(rows)
