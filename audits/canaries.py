"""Several canaries per trained model: the heuristic that makes auditing affordable.

Estimating epsilon needs many (bit, guess) samples. Training one model per sample is the sound protocol (the
samples are then i.i.d.), but costs one training run per sample. The heuristic (adapted from label-only DP,
Malek et al. 2021; validated empirically by Zanella-Beguelin et al. 2023) trains each model with
``num_canaries`` canaries, each included independently with probability 1/2, and records one sample per canary,
so k models give k x m samples; this cuts the number of trained models by up to two orders of magnitude.

Caveat (read before trusting the numbers): the m samples from one model are *not* independent. The canaries
share one training run, so the attack's errors on them are correlated, and including several canaries changes
how each one is treated (group privacy: with m canaries the model may leak about them jointly). The intervals
computed from the pooled samples treat them as i.i.d., which they are not; the result is a heuristic estimate,
not a statistically guaranteed bound. Use one canary per model (``num_canaries=1``) for a sound audit; use
the ``model_index`` of the result to check for between-model variation (e.g. by a per-model bootstrap).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from dpkit.accountants.validation import check_count
from dpkit.audits.counts import AttackCounts
from dpkit.audits.scores import counts_at_threshold, estimate_from_scores

__all__ = ["CanaryGameResult", "canary_game"]


@dataclasses.dataclass(frozen=True, eq=False)
class CanaryGameResult:
    """Pooled samples of a canary game: one row per (model, canary)."""

    is_member: np.ndarray
    scores: np.ndarray
    model_index: np.ndarray
    canary_index: np.ndarray
    num_models: int
    num_canaries: int

    def counts(self, threshold: float) -> AttackCounts:
        return counts_at_threshold(self.is_member, self.scores, threshold)

    def estimate(self, **kwargs):
        """:func:`dpkit.audits.scores.estimate_from_scores` on the pooled samples (heuristic: see the module doc)."""
        return estimate_from_scores(self.is_member, self.scores, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "is_member": self.is_member.astype(int).tolist(),
            "scores": self.scores.tolist(),
            "model_index": self.model_index.tolist(),
            "canary_index": self.canary_index.tolist(),
            "num_models": self.num_models,
            "num_canaries": self.num_canaries,
        }


def canary_game(
    train_fn: Callable[[np.ndarray, np.random.Generator], Any],
    attack_fn: Callable[[Any], Any],
    num_canaries: int,
    num_models: int,
    *,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> CanaryGameResult:
    """Play the game: for each of ``num_models`` models draw a membership bit per canary (probability 1/2),
    call ``train_fn(member_mask, rng)`` to train a model on the chosen canaries (plus whatever fixed data it
    uses), then ``attack_fn(model)`` for one score per canary (higher = "member"). The attack never sees the
    bits. ``progress(i)`` is called after model i. Heuristic when ``num_canaries > 1``: see the module doc.
    """
    m = check_count("num_canaries", num_canaries, minimum=1)
    k = check_count("num_models", num_models, minimum=1)
    rng = np.random.default_rng(seed)
    bits, scores = [], []
    for i in range(k):
        mask = rng.random(m) < 0.5
        model = train_fn(mask.copy(), np.random.default_rng(rng.integers(2**63)))
        s = np.asarray(attack_fn(model), dtype=float).reshape(-1)
        if s.size != m:
            raise ValueError(f"attack_fn must return one score per canary ({m}), got {s.size}")
        bits.append(mask)
        scores.append(s)
        if progress is not None:
            progress(i)
    return CanaryGameResult(
        is_member=np.concatenate(bits),
        scores=np.concatenate(scores),
        model_index=np.repeat(np.arange(k), m),
        canary_index=np.tile(np.arange(m), k),
        num_models=k,
        num_canaries=m,
    )
