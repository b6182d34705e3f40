"""Any user function ``f(value) -> report`` as an audit target (no model known: the split LR test)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np

from dpkit.audits.ldp.attacks.statistic import HE_EDGES, FamilyAttack, Statistic, guess_uniform_from_support
from dpkit.audits.ldp.targets.base import Target

__all__ = ["CallableTarget"]


class CallableTarget(Target):
    """``f(value) -> report`` with a declared (epsilon, delta, k); reports are ints or length-k vectors.

    No model is known, so the likelihood-ratio event is chosen on a training split (see the game). The statistic
    is (y = v1, y = v2, other) for int reports, (bit v1, bit v2) for 0/1 vectors, binned (y_v1, y_v2) for floats.
    """

    default_trials = 100_000

    def __init__(self, func: Callable[[int], Any], k: int, epsilon: float, delta: float = 0.0, name: str | None = None):
        if not callable(func):
            raise TypeError(f"target must be callable, got {type(func).__name__}")
        self.func, self.k, self.epsilon, self.delta = func, int(k), float(epsilon), float(delta)
        self.v1, self.v2 = 0, self.k - 1
        self.name = name or f"{getattr(func, '__module__', '?')}:{getattr(func, '__qualname__', repr(func))}"
        self.chunk_rows = 8192
        self._kind: str | None = None

    def sample(self, which: int, n: int, rng: np.random.Generator) -> np.ndarray:
        v = self._value(which)
        seed = int(rng.integers(0, 2**31 - 1))
        np.random.seed(seed)
        random.seed(seed)
        out = np.asarray([self.func(v) for _ in range(n)])
        if out.ndim == 1:
            if out.dtype.kind not in "iub":
                raise TypeError(f"{self.name} must return an int or a length-{self.k} vector, got {out.dtype}")
            self._kind = "int"
            return out.astype(np.int64)
        if out.ndim != 2 or out.shape[1] != self.k:
            raise ValueError(f"{self.name} must return an int or a length-{self.k} vector, got shape {out.shape[1:]}")
        self._kind = "bits" if np.isin(out, (0, 1)).all() else "float"
        return out

    def statistic(self) -> Statistic:
        v1, v2 = self.v1, self.v2

        def codes(r: np.ndarray) -> np.ndarray:
            if r.ndim == 1:
                return np.where(r == v1, 0, np.where(r == v2, 1, 2))
            if np.isin(r, (0, 1)).all():
                return 3 + 2 * r[:, v1].astype(np.int64) + r[:, v2].astype(np.int64)
            return 7 + 6 * np.digitize(r[:, v1], HE_EDGES) + np.digitize(r[:, v2], HE_EDGES)

        return Statistic("generic (y_v1, y_v2)", 7 + 36, codes, None)

    def family_attack(self) -> FamilyAttack:
        k, v1 = self.k, self.v1

        def attack(r: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            if r.ndim == 1:
                return r == v1
            if np.isin(r, (0, 1)).all():
                return guess_uniform_from_support(r[:, v1].astype(bool), r.sum(axis=1), k, rng)
            top = r.max(axis=1, keepdims=True)
            tied = r == top
            return guess_uniform_from_support(tied[:, v1], tied.sum(axis=1), k, rng)

        return attack
