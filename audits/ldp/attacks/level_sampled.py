"""Attacks on level-sampled clients: each user draws one of h levels uniformly at random (independently of the
value) and reports their node at that level through the level's own client (the range-query protocols HH, HaarHRR
and flat; PEM's groups; TreeHist's prefix levels; SFP's fragment positions).

A trial is the tuple of the level clients' reports (the users who drew each level). With nodes n_l(v1), n_l(v2):

* statistic: the level's own statistic (:func:`~dpkit.audits.ldp.attacks.fo_statistic` of its client for the two
  nodes), its codes shifted by the level's offset; a level where both inputs fall in the same node says nothing
  and has one code. Exact law: P(level l, code c | v) = P_l(c | n_l(v)) / h;
* family attack: the level client's LDP-Auditor guess of n_l(v1) (a fair coin where the nodes coincide).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dpkit.audits.ldp.attacks.frequency_oracles import fo_family_attack, fo_statistic
from dpkit.audits.ldp.attacks.statistic import FamilyAttack, Statistic

__all__ = ["level_statistic", "level_family_attack"]


def level_statistic(levels: Sequence[tuple[Any, int, int]]) -> Statistic:
    """The statistic of level-sampled reports; ``levels``: (client, node of v1, node of v2) per level."""
    h = len(levels)
    parts = [None if a == b else fo_statistic(fo, a, b) for fo, a, b in levels]
    sizes = [1 if s is None else s.n_codes for s in parts]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    pmf1, pmf2 = [], []
    for s in parts:
        if s is None:
            pmf1.append(np.ones(1))
            pmf2.append(np.ones(1))
        elif s.pmf is None:
            raise TypeError(f"level statistic {s.name!r} has no exact law")
        else:
            pmf1.append(np.asarray(s.pmf[0], dtype=np.float64))
            pmf2.append(np.asarray(s.pmf[1], dtype=np.float64))

    def codes(reports: Any) -> np.ndarray:  # the tuple of per-level report arrays
        out = []
        for lvl, (s, r) in enumerate(zip(parts, reports, strict=True)):
            n = len(r)
            out.append(np.full(n, offsets[lvl], dtype=np.int64) if s is None else offsets[lvl] + s.codes(r))
        return np.concatenate(out)

    names = sorted({s.name for s in parts if s is not None})
    return Statistic(
        f"(level, {' | '.join(names)})",
        int(offsets[-1]),
        codes,
        (np.concatenate(pmf1) / h, np.concatenate(pmf2) / h),
    )


def level_family_attack(levels: Sequence[tuple[Any, int, int]]) -> FamilyAttack | None:
    """The guess n_l(v1) of each level's client (None if a level with distinct nodes has no registered attack)."""
    attacks = [None if a == b else fo_family_attack(fo, a, b) for fo, a, b in levels]
    if any(att is None for att, (_, a, b) in zip(attacks, levels, strict=True) if a != b):
        return None

    def attack(reports: Any, rng: np.random.Generator) -> np.ndarray:
        out = []
        for att, r in zip(attacks, reports, strict=True):
            out.append(rng.random(len(r)) < 0.5 if att is None else np.asarray(att(r, rng), dtype=bool))
        return np.concatenate(out)

    return attack
