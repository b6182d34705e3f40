"""The protocol interface shared by every frequency oracle, the mergeable server state and post-processing.

Client/server split (the auditor and the poisoning attacks use exactly this):

* client: ``perturb(values, rng) -> reports`` vectorized over users (one row per user);
* server: ``aggregate(reports) -> SupportCounts`` (mergeable with ``+``), ``aggregate_stream(chunks)`` for
  memory-bounded streaming, ``estimate(state, postprocess=None)`` -> unbiased frequencies;
* analysis: ``variance(n, f=None)``, ``epsilon``, ``delta``, ``privacy_event()`` and, where the output space is
  small, ``channel_matrix()`` / ``output_probabilities(value)`` giving P(report | value) exactly.

Unit of privacy: one user's value. Neighbouring relation: replace that value by any other value of the domain
(the usual local-DP definition: for all v, v' and every output y, P(y | v) <= e^epsilon P(y | v')).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from dpkit.accountants import DpEvent, PureDpEvent
from dpkit.mechanisms._validation import check_count, check_rng, check_values

__all__ = [
    "SupportCounts",
    "FrequencyOracle",
    "PureFrequencyOracle",
    "clip_normalize",
    "norm_sub",
    "ibu",
    "ibu_structured",
    "em_channel",
    "project_simplex",
    "postprocess",
    "POSTPROCESS",
    "max_log_ratio",
]


# ----------------------------------------------------------------------------------------------------- state
@dataclass(frozen=True, eq=False)
class SupportCounts:
    """Server state: per-item support counts (or sums, for SHE) of ``n`` reports of one protocol.

    States are mergeable: ``a + b`` (or ``a.merge(b)``) is the state of the union of the two report sets, so
    chunks, partitions and machines can be aggregated independently and combined in any order.
    """

    counts: np.ndarray
    n: int
    protocol: str = ""

    def __add__(self, other: SupportCounts) -> SupportCounts:
        if not isinstance(other, SupportCounts):
            return NotImplemented
        if self.protocol and other.protocol and self.protocol != other.protocol:
            raise ValueError(f"cannot merge states of different protocols: {self.protocol} and {other.protocol}")
        if self.counts.shape != other.counts.shape:
            raise ValueError(f"cannot merge states with counts of shape {self.counts.shape} and {other.counts.shape}")
        return SupportCounts(self.counts + other.counts, self.n + other.n, self.protocol or other.protocol)

    def __radd__(self, other):
        if other == 0:  # so that sum(states) works
            return self
        return NotImplemented

    merge = __add__

    def __eq__(self, other) -> bool:
        if not isinstance(other, SupportCounts):
            return NotImplemented
        return (
            self.n == other.n
            and self.protocol == other.protocol
            and self.counts.shape == other.counts.shape
            and bool(np.array_equal(self.counts, other.counts))
        )

    __hash__ = None  # mutable payload

    def to_dict(self) -> dict:
        return {"counts": self.counts.tolist(), "n": int(self.n), "protocol": self.protocol}

    @classmethod
    def from_dict(cls, d: dict) -> SupportCounts:
        counts = np.asarray(d["counts"])
        return cls(counts, int(d["n"]), d.get("protocol", ""))


# ------------------------------------------------------------------------------------------- post-processing
def clip_normalize(f: np.ndarray) -> np.ndarray:
    """Clip negatives to 0 and rescale to sum 1 (multi-freq-ldpy's ``MI``); unchanged if nothing is positive."""
    g = np.clip(np.asarray(f, dtype=np.float64), 0.0, None)
    s = g.sum()
    return g / s if s > 0 else g


def norm_sub(f: np.ndarray, target: float = 1.0, tol: float = 1e-12, max_iter: int = 10_000) -> np.ndarray:
    """Norm-Sub (Wang et al., NDSS'20): zero the negatives, shift the positives equally until the sum is ``target``.

    If nothing is positive the uniform distribution (scaled to ``target``) is returned (privmdr's guard).
    """
    g = np.asarray(f, dtype=np.float64).copy()
    for _ in range(max_iter):
        g[g < 0] = 0.0
        pos = g > 0
        npos = int(pos.sum())
        if npos == 0:
            return np.full_like(g, target / g.size)
        gap = target - g.sum()
        if abs(gap) <= tol and (g >= 0).all():
            break
        g[pos] += gap / npos
        if (g >= 0).all() and abs(target - g.sum()) <= tol:
            break
    return g


def ibu(obs: np.ndarray, p: float, q: float, n_iter: int = 10_000, tol: float = 1e-12) -> np.ndarray:
    """Iterative Bayesian update (EM) on the channel with ``p`` on the diagonal and ``q`` elsewhere.

    ``obs`` are support counts; columns of the channel and ``obs`` are normalized to sum 1. Exact (the MLE) for
    GRR; a heuristic for UE, SS, LH and HR, as in multi-freq-ldpy.
    """
    obs = np.asarray(obs, dtype=np.float64)
    k = obs.size
    tot = obs.sum()
    if tot <= 0:
        return np.full(k, 1.0 / k)
    obs = np.clip(obs, 0, None) / max(np.clip(obs, 0, None).sum(), 1e-300)
    col = p + (k - 1) * q  # column sum of the channel
    pn, qn = p / col, q / col
    f = np.full(k, 1.0 / k)
    for _ in range(n_iter):
        af = qn * f.sum() + (pn - qn) * f  # A f with A = qn * 11^T + (pn - qn) I
        ratio = np.divide(obs, af, out=np.zeros_like(obs), where=af > 0)
        new = f * (qn * ratio.sum() + (pn - qn) * ratio)  # f * A^T ratio
        s = new.sum()
        if s > 0:
            new /= s
        if np.max(np.abs(new - f)) < tol:
            f = new
            break
        f = new
    return f


def em_channel(obs: np.ndarray, forward, adjoint, k: int, n_iter: int = 10_000, tol: float = 1e-12) -> np.ndarray:
    """IBU / EM (Agrawal-Aggarwal 2001) for a channel given as two operators, vectorized over the aggregated state.

    ``obs``: the observed output distribution (any shape; clipped at 0 and normalized to sum 1);
    ``forward(f)`` = A f, the output distribution predicted by the value distribution ``f`` (length k);
    ``adjoint(w)`` = A^T w, back to length k. The columns of A (one per value) must sum to 1 over the outputs.
    Iterates f <- f * A^T(obs / A f) from the uniform f until max |change| < ``tol`` or ``n_iter`` iterations.
    For a channel that is the exact law of the state this converges to the maximum-likelihood estimate on the
    probability simplex.
    """
    obs = np.clip(np.asarray(obs, dtype=np.float64), 0, None)
    tot = obs.sum()
    if not tot > 0:
        return np.full(k, 1.0 / k)
    obs = obs / tot
    f = np.full(k, 1.0 / k)
    for _ in range(n_iter):
        af = forward(f)
        ratio = np.divide(obs, af, out=np.zeros_like(obs), where=af > 0)
        new = f * adjoint(ratio)
        s = new.sum()
        if s > 0:
            new /= s
        if np.max(np.abs(new - f)) < tol:
            return new
        f = new
    return f


def ibu_structured(obs, base, diag, n_iter: int = 10_000, tol: float = 1e-12) -> np.ndarray:
    """IBU on a channel with m blocks of k outputs each: A[(b, y), u] = base[b, y] + diag[b, y] [y == u].

    ``obs``, ``base`` and ``diag`` broadcast to shape (m, k) (or are length-k vectors, m = 1). Each column of A (one
    per value u) is divided by its sum, so A is a channel (exactly when its columns already sum to 1; otherwise a
    per-value normalization, as :func:`ibu` does for unary encoding). O(m k) per iteration.

    ``ibu(obs, p, q)`` is the case m = 1, base = q, diag = p - q. Other instances: RS+FD's per-attribute channel
    including the fake-data mixture (base = a0, diag = a1 - a0), dBitFlipPM's bucketized channel (two blocks: the
    bits 1 and 0 of each sampled bucket).
    """
    obs = np.atleast_2d(np.asarray(obs, dtype=np.float64))
    base = np.broadcast_to(np.atleast_2d(np.asarray(base, dtype=np.float64)), obs.shape)
    diag = np.broadcast_to(np.atleast_2d(np.asarray(diag, dtype=np.float64)), obs.shape)
    k = obs.shape[1]
    if (base < 0).any() or (base + diag < 0).any():
        raise ValueError("the channel must have non-negative entries (base >= 0 and base + diag >= 0)")
    cs = base.sum() + diag.sum(axis=0)  # column sums
    if not (cs > 0).all():
        raise ValueError("every column of the channel must have a positive sum")

    def forward(f):
        g = f / cs
        return base * g.sum() + diag * g

    def adjoint(w):
        return (np.sum(base * w) + np.sum(diag * w, axis=0)) / cs

    return em_channel(obs, forward, adjoint, k, n_iter, tol)


def project_simplex(f: np.ndarray) -> np.ndarray:
    """Euclidean projection onto the probability simplex: max(f - theta, 0) with theta so that the sum is 1.

    Exact, O(k log k) (sort-based; Held, Wolfe and Crowder 1974, Duchi et al. 2008). It is the maximum-likelihood
    point of the simplex when the estimate is Gaussian around f with the same variance for every item.
    """
    v = np.asarray(f, dtype=np.float64)
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    idx = np.arange(1, v.size + 1)
    rho = int(np.flatnonzero(u - css / idx > 0)[-1])
    return np.maximum(v - css[rho] / (rho + 1), 0.0)


POSTPROCESS = ("clip", "norm-sub", "ibu")


def postprocess(f: np.ndarray, method: str | None, *, counts=None, p=None, q=None) -> np.ndarray:
    if method is None or method == "none":
        return f
    if method == "clip":
        return clip_normalize(f)
    if method in ("norm-sub", "norm_sub"):
        return norm_sub(f)
    if method == "ibu":
        if counts is None or p is None:
            raise ValueError("postprocess='ibu' needs a protocol with support probabilities (p*, q*)")
        return ibu(counts, p, q)
    raise ValueError(f"postprocess must be one of None, {', '.join(repr(m) for m in POSTPROCESS)}, got {method!r}")


def max_log_ratio(matrix: np.ndarray) -> float:
    """max over outputs y and input pairs (v, v') of ln P(y|v)/P(y|v') for a k x |Y| channel matrix.

    Outputs with probability 0 under every input are ignored; a zero under one input but not another gives inf.
    """
    m = np.asarray(matrix, dtype=np.float64)
    hi, lo = m.max(axis=0), m.min(axis=0)
    live = hi > 0
    if (lo[live] == 0).any():
        return float("inf")
    return float(np.max(np.log(hi[live]) - np.log(lo[live])))


# ---------------------------------------------------------------------------------------------- base classes
class FrequencyOracle:
    """Base class of the frequency oracles; subclasses are frozen dataclasses of their parameters.

    Privacy: ``epsilon``-LDP (``delta = 0``) for one user's value under replacement (any v -> any v').
    """

    delta: float = 0.0
    name: str = "FO"
    default_chunk: int = 1 << 18  # users per chunk for chunked helpers

    # subclasses provide: k, epsilon, _perturb, _support_counts, _check_reports
    @property
    def key(self) -> str:
        return repr(self)

    # ---------------------------------------------------------------- client
    def perturb(self, values, rng: np.random.Generator) -> np.ndarray:
        """Randomize each user's value (vectorized over users). ``values``: int array in [0, k)."""
        values = check_values("values", values, self.k)
        check_rng(rng)
        return self._perturb(values, rng)

    # ---------------------------------------------------------------- server
    def support_counts(self, reports) -> np.ndarray:
        reports = self._check_reports(reports)
        return self._support_counts(reports)

    def aggregate(self, reports) -> SupportCounts:
        """Server state of one batch of reports (mergeable with ``+``)."""
        reports = self._check_reports(reports)
        return SupportCounts(self._support_counts(reports), int(len(reports)), self.key)

    def empty_state(self) -> SupportCounts:
        return SupportCounts(np.zeros(self.k, dtype=self._count_dtype), 0, self.key)

    _count_dtype = np.int64

    def aggregate_stream(self, chunks: Iterable) -> SupportCounts:
        """Aggregate an iterable of report chunks in memory bounded by one chunk (e.g. 1e8 users in 1e6 chunks)."""
        state = self.empty_state()
        for chunk in chunks:
            state = state + self.aggregate(chunk)
        return state

    def perturb_aggregate(self, values, rng: np.random.Generator, chunk_size: int | None = None) -> SupportCounts:
        """Clients then server, chunk by chunk, so that the reports never all live in memory at once."""
        values = check_values("values", values, self.k)
        check_rng(rng)
        size = chunk_size or self.default_chunk
        state = self.empty_state()
        for start in range(0, len(values), size):
            reports = self._perturb(values[start : start + size], rng)
            state = state + SupportCounts(self._support_counts(reports), len(reports), self.key)
        return state

    def estimate(self, state: SupportCounts, postprocess: str | None = None) -> np.ndarray:
        """Frequencies from a state. ``postprocess=None`` is the unbiased estimator; 'clip', 'norm-sub' or 'ibu'
        give consistent (non-negative, summing to 1) but biased estimates."""
        raise NotImplementedError

    def _check_state(self, state: SupportCounts) -> None:
        if not isinstance(state, SupportCounts):
            raise TypeError(f"state must be a SupportCounts (from aggregate), got {type(state).__name__}")
        if state.counts.shape != (self.k,):
            raise ValueError(f"state.counts must have shape ({self.k},), got {state.counts.shape}")
        if state.n <= 0:
            raise ValueError(f"state.n must be >= 1 to estimate, got {state.n}")

    # ---------------------------------------------------------------- analysis
    def variance(self, n: int, f=None):
        """Analytic variance of the unbiased estimator for ``n`` users.

        ``f=None``: the approximate variance V* (f_v -> 0), a scalar. ``f`` given (scalar or length-k array of the
        population's frequencies): the exact per-item variance over the mechanism's randomness for that fixed
        population.
        """
        raise NotImplementedError

    def mean_variance(self, n: int, f) -> float:
        """Mean over items of the exact variance: the expected MSE of the raw estimator."""
        return float(np.mean(self.variance(n, f)))

    def privacy_event(self) -> DpEvent:
        """The guarantee as an accountants event (one report of one user)."""
        return PureDpEvent(self.epsilon)

    def _check_n(self, n) -> int:
        return check_count("n", n, minimum=1)


class PureFrequencyOracle(FrequencyOracle):
    """A "pure" protocol (Wang et al. 2017): support probabilities ``p_star`` (own value) > ``q_star`` (others)."""

    p_star: float
    q_star: float

    def estimate(self, state: SupportCounts, postprocess: str | None = None) -> np.ndarray:
        self._check_state(state)
        f = (state.counts / state.n - self.q_star) / (self.p_star - self.q_star)
        return _post(f, postprocess, state.counts, self.p_star, self.q_star)

    def variance(self, n: int, f=None):
        n = self._check_n(n)
        p, q = self.p_star, self.q_star
        v0 = q * (1 - q) / (n * (p - q) ** 2)
        if f is None:
            return v0
        f = np.asarray(f, dtype=np.float64)
        return v0 + f * (1 - p - q) / (n * (p - q))


def _post(f, method, counts, p, q):
    return postprocess(f, method, counts=counts, p=p, q=q)


def enumerate_bit_vectors(k: int) -> np.ndarray:
    """All 2^k bit vectors of length k as a (2^k, k) bool array (small k only)."""
    if k > 16:
        raise ValueError(f"k must be <= 16 to enumerate every output, got {k}")
    return np.array(list(itertools.product([0, 1], repeat=k)), dtype=bool).reshape(-1, k)
