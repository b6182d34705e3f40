"""Streaming correlated noise: the rows of C^{-1} Z, one step at a time, in O(memory x d) space.

An MF optimizer adds ``sigma * clip_norm * sensitivity * (C^{-1} Z)_t`` to step t's gradient sum, where Z has i.i.d.
N(0, 1) rows z_0, z_1, ... of the model's dimension d. Materializing C^{-1} Z needs n x d memory; this module never
does. The computation is split in two so that any array library can drive it:

* a :class:`NoisingRecurrence` (a strategy's ``noising_recurrence()``) holds the coefficients and turns draws into
  noise with ``step(state, t, draw)`` (or ``peek`` then ``commit``: a training step computes the row, and advances
  the state only once the step succeeded). It only uses ``+``, ``-``, ``*``, ``/`` with Python floats and in-place
  ``*=`` / ``+=`` on the arrays it gets from ``draw``, so numpy arrays and torch tensors both work;
* ``draw(s)`` returns z_s. Banded and buffered (BLT) recurrences call it once per step, with s = t, in order; the
  recurrences of dense and full Toeplitz strategies re-draw every earlier z_s (O(t d) time per step, O(d) memory),
  so they need a counter-based ``draw`` (the same s always gives the same array), like :class:`GaussianDraws`.

Memory: identity 0; b_hat-banded C: b_hat - 1 vectors (forward substitution, Choquette-Choo et al. 2023,
arXiv 2306.08153, Alg. 9); BLT with m buffers: m vectors (McMahan et al. 2024, arXiv 2408.08868, Alg. 3).

:class:`NoiseStream` is the numpy driver: seeded, refuses to run past the n steps the strategy (and so its
sensitivity and privacy guarantee) was built for, and saves / restores its state exactly. The draws are seeded
pseudo-random numbers (numpy's PCG64 via ``SeedSequence(seed, spawn_key=(step,))``), not a cryptographic source.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from dpkit.accountants.validation import check_count, check_positive

__all__ = [
    "Draw",
    "NoisingRecurrence",
    "IdentityRecurrence",
    "BandedRecurrence",
    "BufferRecurrence",
    "RowRecurrence",
    "GaussianDraws",
    "NoiseStream",
    "step_seed",
]

Draw = Callable[[int], Any]
"""draw(s) -> z_s, a vector of the model's dimension (numpy array, torch tensor, ...)."""


def _digest(*parts: object) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(np.ascontiguousarray(p, dtype=np.float64).tobytes() if isinstance(p, np.ndarray) else repr(p).encode())
    return h.hexdigest()[:16]


class NoisingRecurrence(abc.ABC):
    """y_t = (C^{-1} Z)_t for t = 0, ..., n - 1 from a state of ``memory`` vectors (a list, mutated in place)."""

    n: int

    @property
    @abc.abstractmethod
    def memory(self) -> int:
        """How many d-vectors the state holds at most."""

    def state_size(self, t: int) -> int:
        """How many vectors the state holds before step t."""
        return min(t, self.memory)

    @abc.abstractmethod
    def fingerprint(self) -> str:
        """A short hash of the coefficients: a saved state only loads into the same recurrence."""

    def step(self, state: list[Any], t: int, draw: Draw) -> Any:
        """Row t of C^{-1} Z (:meth:`peek` then :meth:`commit`). The returned array may be kept in ``state``: do not
        modify it in place."""
        y = self.peek(state, t, draw)
        self.commit(state, t, y)
        return y

    @abc.abstractmethod
    def peek(self, state: list[Any], t: int, draw: Draw) -> Any:
        """Row t of C^{-1} Z without changing ``state`` (a training step that fails after it changes nothing)."""

    def commit(self, state: list[Any], t: int, y: Any) -> None:
        """Advance ``state`` past step t, whose row :meth:`peek` returned as ``y`` (nothing to keep by default)."""
        return None

    def _check_t(self, state: list[Any], t: int) -> None:
        if not 0 <= t < self.n:
            raise IndexError(f"t must be in [0, n={self.n}), got {t}")
        if len(state) != self.state_size(t):
            raise ValueError(f"the state holds {len(state)} vectors, step {t} needs {self.state_size(t)}")


class IdentityRecurrence(NoisingRecurrence):
    """C = I (DP-SGD): y_t = z_t."""

    def __init__(self, n: int) -> None:
        self.n = n

    @property
    def memory(self) -> int:
        return 0

    def fingerprint(self) -> str:
        return _digest("identity", self.n)

    def peek(self, state: list[Any], t: int, draw: Draw) -> Any:
        self._check_t(state, t)
        return draw(t)


class BandedRecurrence(NoisingRecurrence):
    """C lower triangular with ``bands`` nonzero diagonals, by forward substitution:
    x_t = (z_t - sum_{r=1}^{bands-1} C[t, t-r] x_{t-r}) / C[t, t].

    ``rows[t, r] = C[t, t - r]``; a single row (shape (1, bands)) means Toeplitz (the same row every step).
    The state is x_{t-1}, ..., x_{t-bands+1} (most recent first).
    """

    def __init__(self, rows: np.ndarray, n: int) -> None:
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[0] not in (1, n):
            raise ValueError(f"rows must have shape (1 or n={n}, bands), got {rows.shape}")
        if np.any(rows[:, 0] == 0):
            raise ValueError("rows[:, 0] (the diagonal of C) must be nonzero")
        self.rows = rows
        self.n = n
        self.bands = rows.shape[1]
        self._lists = [[float(v) for v in row] for row in rows]

    @property
    def memory(self) -> int:
        return self.bands - 1

    def fingerprint(self) -> str:
        return _digest("banded", self.n, self.rows)

    def peek(self, state: list[Any], t: int, draw: Draw) -> Any:
        self._check_t(state, t)
        row = self._lists[t if len(self._lists) > 1 else 0]
        acc = draw(t)
        for r, past in enumerate(state, start=1):
            if row[r] != 0.0:
                acc = acc - row[r] * past
        return acc / row[0] if row[0] != 1.0 else acc * 1.0

    def commit(self, state: list[Any], t: int, y: Any) -> None:
        if self.memory:
            state.insert(0, y)
            if len(state) > self.memory:
                state.pop()


class BufferRecurrence(NoisingRecurrence):
    """BLT C (c_0 = 1, c_j = sum_i output_scale_i buf_decay_i^(j-1)): x_t = z_t - sum_i output_scale_i s_i,
    then s_i <- buf_decay_i s_i + x_t (s_i = sum_{u<t} buf_decay_i^(t-1-u) x_u; arXiv 2408.08868, Alg. 3)."""

    def __init__(self, buf_decay: np.ndarray, output_scale: np.ndarray, n: int) -> None:
        self.buf_decay = [float(v) for v in buf_decay]
        self.output_scale = [float(v) for v in output_scale]
        self.n = n

    @property
    def memory(self) -> int:
        return len(self.buf_decay)

    def state_size(self, t: int) -> int:
        return self.memory if t > 0 else 0

    def fingerprint(self) -> str:
        return _digest("blt", self.n, np.array(self.buf_decay), np.array(self.output_scale))

    def peek(self, state: list[Any], t: int, draw: Draw) -> Any:
        self._check_t(state, t)
        x = draw(t)
        if t == 0:
            return x * 1.0
        for i, (w, s) in enumerate(zip(self.output_scale, state, strict=True)):
            x = _axpy(x, -w, s, fresh=i == 0)
        return x

    def commit(self, state: list[Any], t: int, y: Any) -> None:
        if t == 0:
            state.extend(y * 0.0 for _ in self.buf_decay)
        for theta, s in zip(self.buf_decay, state, strict=True):
            s *= theta
            s += y


class RowRecurrence(NoisingRecurrence):
    """Any lower-triangular noising matrix: y_t = sum_{s<=t} C^{-1}[t, s] z_s, re-drawing z_0..z_t each step.

    O(d) memory and O(t d) time per step; ``draw`` must be counter-based. ``row(t)`` returns C^{-1}[t, :t+1].
    """

    def __init__(self, row: Callable[[int], np.ndarray], n: int, key: str) -> None:
        self.row = row
        self.n = n
        self.key = key

    @property
    def memory(self) -> int:
        return 0

    def fingerprint(self) -> str:
        return _digest("rows", self.n, self.key)

    def peek(self, state: list[Any], t: int, draw: Draw) -> Any:
        self._check_t(state, t)
        coef = self.row(t)
        y = draw(t) * float(coef[t])
        for s in range(t):
            if coef[s] != 0.0:
                y = y + float(coef[s]) * draw(s)
        return y


def _axpy(x: Any, a: float, s: Any, *, fresh: bool) -> Any:
    """x + a s: a new array if ``fresh`` (x is the caller's), else in place; one pass for torch tensors."""
    if hasattr(x, "add_"):
        return x.add(s, alpha=a) if fresh else x.add_(s, alpha=a)
    if fresh:
        return x + a * s
    x += a * s
    return x


def step_seed(seed: int, step: int) -> int:
    """A 64-bit seed for step ``step``'s draw, derived from ``seed`` (to seed e.g. a torch.Generator per step)."""
    seq = np.random.SeedSequence(seed, spawn_key=(step,))
    return int(seq.generate_state(1, dtype=np.uint64)[0])


class GaussianDraws:
    """Counter-based N(0, I_dim) draws: ``draws(s)`` is the same float64 array for the same (seed, s)."""

    def __init__(self, seed: int, dim: int) -> None:
        self.seed = check_count("seed", seed)
        self.dim = check_count("dim", dim, minimum=1)

    def __call__(self, step: int) -> np.ndarray:
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(step,)))
        return rng.standard_normal(self.dim)


_FORMAT = "dpkit.mf.noise_stream/1"


class NoiseStream(Iterator[np.ndarray]):
    """``stddev * (C^{-1} Z)_t`` for t = 0, ..., n - 1, Z i.i.d. N(0, 1) of shape (n, dim) drawn from ``seed``.

    ``next(stream)`` gives the next row (StopIteration after n rows); :meth:`next_noise` raises a clear error
    instead. ``state_dict()`` / ``load_state_dict()`` save and restore the position exactly (a resumed stream
    equals the uninterrupted one).
    """

    def __init__(self, recurrence: NoisingRecurrence, dim: int, seed: int, *, stddev: float = 1.0) -> None:
        if not isinstance(recurrence, NoisingRecurrence):
            raise TypeError(
                f"recurrence must be a NoisingRecurrence (strategy.noising_recurrence()), got {recurrence!r}"
            )
        self.recurrence = recurrence
        self.draws = GaussianDraws(seed, dim)
        self.stddev = check_positive("stddev", stddev)
        self._state: list[np.ndarray] = []
        self._t = 0

    @property
    def n(self) -> int:
        return self.recurrence.n

    @property
    def dim(self) -> int:
        return self.draws.dim

    @property
    def seed(self) -> int:
        return self.draws.seed

    @property
    def step(self) -> int:
        """How many rows have been produced."""
        return self._t

    @property
    def memory_bytes(self) -> int:
        return self.recurrence.memory * self.dim * 8

    def __iter__(self) -> NoiseStream:
        return self

    def __next__(self) -> np.ndarray:
        if self._t >= self.n:
            raise StopIteration
        y = self.recurrence.step(self._state, self._t, self.draws)
        self._t += 1
        return y * self.stddev

    def next_noise(self) -> np.ndarray:
        """The next row; a RuntimeError past step n (the sensitivity does not cover more steps)."""
        if self._t >= self.n:
            raise RuntimeError(
                f"the noise stream is exhausted: the strategy was built for n={self.n} steps, and its sensitivity "
                "(hence the privacy guarantee) does not cover more; build a strategy for more steps"
            )
        return next(self)

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "fingerprint": self.recurrence.fingerprint(),
            "n": self.n,
            "dim": self.dim,
            "seed": self.seed,
            "stddev": self.stddev,
            "step": self._t,
            "buffers": [np.array(b, dtype=np.float64, copy=True) for b in self._state],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; everything is checked before anything changes."""
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise ValueError(
                f"state must be a NoiseStream.state_dict() (format {_FORMAT!r}), got {type(state).__name__}"
            )
        for key, mine in (("fingerprint", self.recurrence.fingerprint()), ("n", self.n), ("dim", self.dim)):
            if state.get(key) != mine:
                raise ValueError(f"state[{key!r}] = {state.get(key)!r} does not match this stream ({mine!r})")
        seed = check_count("state['seed']", state.get("seed"))
        stddev = check_positive("state['stddev']", state.get("stddev"))
        step = check_count("state['step']", state.get("step"))
        if step > self.n:
            raise ValueError(f"state['step'] must be in [0, n={self.n}], got {step}")
        buffers = state.get("buffers")
        want = self.recurrence.state_size(step)
        if not isinstance(buffers, list) or len(buffers) != want:
            raise ValueError(f"state['buffers'] must be a list of {want} arrays at step {step}")
        arrays = []
        for i, b in enumerate(buffers):
            arr = np.array(b, dtype=np.float64, copy=True)
            if arr.shape != (self.dim,) or not np.all(np.isfinite(arr)):
                raise ValueError(
                    f"state['buffers'][{i}] must be a finite array of shape ({self.dim},), got {arr.shape}"
                )
            arrays.append(arr)
        self.draws = GaussianDraws(seed, self.dim)
        self.stddev = stddev
        self._t = step
        self._state = arrays

    def __repr__(self) -> str:
        return f"NoiseStream(n={self.n}, dim={self.dim}, step={self._t}, memory={self.recurrence.memory} vectors)"
