"""The strategy interface: a lower-triangular, invertible strategy matrix C and what it costs.

Vocabulary (as in jax-privacy's ``matrix_factorization`` and the papers): the *workload* A is what training needs
(prefix sums for SGD); a *strategy* C factorizes it, A = B C with the *decoder* B = A C^{-1}; the mechanism releases
C G + Z, i.e. training sees G + C^{-1} Z, so C^{-1} is the *noising matrix*. With unit noise and clip norm:

* per-query error e_t = ||(A C^{-1})[t, :]||^2 (the noise variance of step t's model, per coordinate);
* mean error = mean_t e_t, max error = max_t e_t (they exclude the sensitivity);
* loss = sensitivity^2 x error; RMSE = sqrt(sensitivity^2 x mean error) is what the papers tabulate
  (DP-SGD on prefix sums with k participations: sqrt(k (n + 1) / 2)).

Every strategy reports these (:meth:`Strategy.evaluate`), its sensitivity under a participation schema (exact or a
sound upper bound, see :mod:`.sensitivity`), and streams its noise (:meth:`Strategy.noise_stream`).
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import math
from typing import Any, ClassVar

import numpy as np
from scipy import linalg

from dpkit.mechanisms.matrix_factorization.participation import Participation, SingleParticipation
from dpkit.mechanisms.matrix_factorization.sensitivity import Sensitivity, sensitivity_from_gram
from dpkit.mechanisms.matrix_factorization.streaming import NoiseStream, NoisingRecurrence, RowRecurrence
from dpkit.mechanisms.matrix_factorization.workload import Workload

__all__ = ["Strategy", "StrategyReport", "register_kind", "strategy_from_dict", "save_strategy", "load_strategy"]

_KINDS: dict[str, type[Strategy]] = {}


def register_kind(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make a strategy class loadable by :func:`strategy_from_dict` under ``cls.kind``."""
    if cls.kind in _KINDS:
        raise ValueError(f"strategy kind {cls.kind!r} is already registered")
    _KINDS[cls.kind] = cls
    return cls


@dataclasses.dataclass(frozen=True, eq=False)
class StrategyReport:
    """Error and sensitivity of one strategy for one workload and participation schema (unit noise and clip)."""

    strategy: str
    n: int
    workload: str
    participation: str
    per_query_error: np.ndarray
    mean_error: float
    max_error: float
    sensitivity: Sensitivity
    noise_memory: int

    @property
    def rmse(self) -> float:
        """sqrt(sensitivity^2 x mean error)."""
        return math.sqrt(self.sensitivity.squared * self.mean_error)

    @property
    def max_rmse(self) -> float:
        """sqrt(sensitivity^2 x max error)."""
        return math.sqrt(self.sensitivity.squared * self.max_error)

    def to_dict(self, per_query: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "strategy": self.strategy,
            "n": self.n,
            "workload": self.workload,
            "participation": self.participation,
            "mean_error": self.mean_error,
            "max_error": self.max_error,
            "sensitivity": self.sensitivity.value,
            "sensitivity_exact": self.sensitivity.exact,
            "sensitivity_method": self.sensitivity.method,
            "rmse": self.rmse,
            "max_rmse": self.max_rmse,
            "noise_memory": self.noise_memory,
        }
        if per_query:
            out["per_query_error"] = self.per_query_error.tolist()
        return out


class Strategy(abc.ABC):
    """A strategy matrix C (n x n, lower triangular, invertible); subclasses are frozen dataclasses."""

    kind: ClassVar[str]
    n: int

    @property
    def bands(self) -> int | None:
        """The number of nonzero diagonals of C if C is banded (fewer than n), else None."""
        return None

    @property
    def noise_memory(self) -> int:
        """How many model-sized vectors the noise stream keeps (see :meth:`noising_recurrence`)."""
        return 0

    @abc.abstractmethod
    def describe(self) -> str:
        """A short name with the parameters, e.g. ``blt(buffers=3)``."""

    @abc.abstractmethod
    def strategy_matrix(self) -> np.ndarray:
        """C as an n x n array."""

    @abc.abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """Parameters as JSON-friendly data (``strategy_from_dict`` inverts it)."""

    def noising_matrix(self) -> np.ndarray:
        """C^{-1} as an n x n array."""
        return linalg.solve_triangular(self.strategy_matrix(), np.eye(self.n), lower=True)

    def per_query_error(self, workload: Workload | None = None) -> np.ndarray:
        """e_t = ||(A C^{-1})[t, :]||^2 for t < n (prefix sums by default)."""
        workload = self._workload(workload)
        B = workload.multiply(self.noising_matrix())
        return np.einsum("ij,ij->i", B, B)

    def sensitivity(self, participation: Participation | None = None) -> Sensitivity:
        """L2 sensitivity per unit clip norm under ``participation`` (default: single participation).

        Exact where a formula applies (``.exact`` True: attained by a pair of neighbouring datasets), otherwise a
        sound upper bound (never an estimate); ``.method`` names the formula. This generic version works on the
        Gram matrix C^T C (O(n^2) memory); Toeplitz and banded families override it with O(n) exact formulas.
        """
        participation = self._participation(participation)
        C = self.strategy_matrix()
        return sensitivity_from_gram(C.T @ C, participation)

    def noising_recurrence(self) -> NoisingRecurrence:
        """Rows of C^{-1} Z from draws (general lower-triangular C: re-draws every earlier z, O(d) memory)."""
        inv = self.noising_matrix()
        key = hashlib.sha256(np.ascontiguousarray(inv).tobytes()).hexdigest()
        return RowRecurrence(lambda t: inv[t, : t + 1], self.n, key=key)

    def noise_stream(self, dim: int, seed: int, *, stddev: float = 1.0) -> NoiseStream:
        """A seeded stream of ``stddev * (C^{-1} Z)_t`` for a parameter vector of dimension ``dim``."""
        return NoiseStream(self.noising_recurrence(), dim, seed, stddev=stddev)

    def evaluate(self, participation: Participation | None = None, workload: Workload | None = None) -> StrategyReport:
        """Per-query, mean and max error, sensitivity and RMSE (unit noise multiplier and clip norm)."""
        participation = self._participation(participation)
        workload = self._workload(workload)
        errors = np.asarray(self.per_query_error(workload), dtype=np.float64)
        errors.setflags(write=False)
        return StrategyReport(
            strategy=self.describe(),
            n=self.n,
            workload=workload.name,
            participation=participation.describe(),
            per_query_error=errors,
            mean_error=float(errors.mean()),
            max_error=float(errors.max()),
            sensitivity=self.sensitivity(participation),
            noise_memory=self.noise_memory,
        )

    def _workload(self, workload: Workload | None) -> Workload:
        if workload is None:
            return Workload(self.n)
        if not isinstance(workload, Workload):
            raise TypeError(f"workload must be a Workload, got {workload!r}")
        if workload.n != self.n:
            raise ValueError(f"workload.n must equal the strategy's n={self.n}, got {workload.n}")
        return workload

    def _participation(self, participation: Participation | None) -> Participation:
        if participation is None:
            participation = SingleParticipation()
        if not isinstance(participation, Participation):
            raise TypeError(f"participation must be a Participation schema, got {participation!r}")
        participation.check(self.n)
        return participation


def strategy_from_dict(data: dict[str, Any]) -> Strategy:
    """Inverse of :meth:`Strategy.to_dict`."""
    if not isinstance(data, dict) or "kind" not in data:
        raise ValueError(f"a strategy dict needs a 'kind' key, got {type(data).__name__}")
    cls = _KINDS.get(data["kind"])
    if cls is None:
        raise ValueError(f"unknown strategy kind {data['kind']!r}; known: {sorted(_KINDS)}")
    return cls.from_dict(data)  # type: ignore[attr-defined]


def save_strategy(path, strategy: Strategy) -> None:
    """Write a strategy's parameters to a ``.npz`` file (arrays stored in binary)."""
    arrays: dict[str, Any] = {k: np.asarray(v) for k, v in strategy.to_dict().items()}
    np.savez(path, **arrays)


def load_strategy(path) -> Strategy:
    """Read a strategy written by :func:`save_strategy` (parameters are re-validated)."""
    with np.load(path, allow_pickle=False) as f:
        data = {k: (f[k].item() if f[k].ndim == 0 else f[k]) for k in f.files}
    return strategy_from_dict(data)
