"""Workloads: the linear map A (n x n, lower triangular) from the per-step gradient sums G to what training uses.

The learner only needs A G; a factorization A = B C releases C G + Z and decodes B (C G + Z) = A (G + C^{-1} Z)
(Denisov et al. 2022, arXiv 2202.08312; Choquette-Choo et al. 2023, arXiv 2211.06530).

* Prefix sums (SGD with a constant learning rate): A[t, s] = 1 for s <= t.
* SGD with momentum beta and learning rates eta_t (heavy ball, m_t = beta m_{t-1} + g_t, theta_t = theta_{t-1} -
  eta_t m_t, so theta_t = theta_0 - sum_s A[t, s] g_s): A[t, s] = sum_{j=s}^{t} eta_j beta^(j-s). With a constant
  learning rate eta this is Toeplitz with coefficients eta (1 - beta^(u+1)) / (1 - beta).

A :class:`Workload` never stores its matrix; ``matrix()`` builds it (n^2 floats) and ``multiply`` applies it in
O(n) per column.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import signal

from dpkit.accountants.validation import check_probability
from dpkit.mechanisms.matrix_factorization._checks import check_steps, check_vector

__all__ = ["Workload", "prefix_sum", "momentum_sgd"]


@dataclasses.dataclass(frozen=True, eq=False)
class Workload:
    """SGD with momentum ``momentum`` and learning rates ``learning_rates`` (None: all 1) over ``n`` steps.

    ``Workload(n)`` is the prefix-sum workload.
    """

    n: int
    momentum: float = 0.0
    learning_rates: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", check_steps("n", self.n))
        beta = check_probability("momentum", self.momentum, open_low=False, open_high=True)
        object.__setattr__(self, "momentum", beta)
        if self.learning_rates is not None:
            lr = check_vector("learning_rates", self.learning_rates, length=self.n)
            if np.any(lr <= 0):
                raise ValueError(f"learning_rates must be in (0, inf), got {lr[lr <= 0][0]!r}")
            object.__setattr__(self, "learning_rates", lr)

    @property
    def name(self) -> str:
        if self.momentum == 0 and self.learning_rates is None:
            return "prefix-sum"
        lr = "" if self.learning_rates is None else ", lr schedule"
        return f"momentum-sgd(beta={self.momentum:g}{lr})"

    @property
    def is_prefix_sum(self) -> bool:
        return self.momentum == 0 and (self.learning_rates is None or bool(np.all(self.learning_rates == 1)))

    def toeplitz_coef(self) -> np.ndarray | None:
        """A's first column if A is Toeplitz (constant learning rate), else None."""
        lr = self.learning_rates
        if lr is not None and not np.all(lr == lr[0]):
            return None
        eta = 1.0 if lr is None else float(lr[0])
        return eta * np.cumsum(self.momentum ** np.arange(self.n))

    def matrix(self) -> np.ndarray:
        """A as an n x n array."""
        return self.multiply(np.eye(self.n))

    def multiply(self, m: np.ndarray) -> np.ndarray:
        """A @ m for an array with n rows (columns processed independently)."""
        m = np.asarray(m, dtype=np.float64)
        if m.shape[0] != self.n:
            raise ValueError(f"the array must have n={self.n} rows, got shape {m.shape}")
        out = m if self.momentum == 0 else signal.lfilter([1.0], [1.0, -self.momentum], m, axis=0)
        if self.learning_rates is not None:
            out = out * self.learning_rates.reshape((-1,) + (1,) * (m.ndim - 1))
        return np.cumsum(out, axis=0)

    def multiply_transpose(self, m: np.ndarray) -> np.ndarray:
        """A^T @ m for an array with n rows."""
        m = np.asarray(m, dtype=np.float64)
        if m.shape[0] != self.n:
            raise ValueError(f"the array must have n={self.n} rows, got shape {m.shape}")
        out = np.cumsum(m[::-1], axis=0)[::-1]
        if self.learning_rates is not None:
            out = out * self.learning_rates.reshape((-1,) + (1,) * (m.ndim - 1))
        if self.momentum != 0:
            out = signal.lfilter([1.0], [1.0, -self.momentum], out[::-1], axis=0)[::-1]
        return out


def prefix_sum(n: int) -> Workload:
    """The prefix-sum workload (SGD with a constant learning rate): A[t, s] = 1 for s <= t."""
    return Workload(n)


def momentum_sgd(n: int, momentum: float, learning_rates=None) -> Workload:
    """SGD with heavy-ball momentum and an optional learning-rate schedule (length n)."""
    return Workload(n, momentum, None if learning_rates is None else np.asarray(learning_rates, dtype=np.float64))
