"""Frequency oracles: GRR, SUE, OUE, BLH, OLH, SS, SHE, THE, Hadamard Response (high-privacy and general-epsilon
variants), and the adaptive chooser.

Every class is a frozen dataclass of its parameters and implements :class:`dpkit.mechanisms.base.FrequencyOracle`.
What is protected: one user's value in [0, k); neighbouring relation: replace it by any other value. Each report
is epsilon-LDP (delta = 0): for all v, v' and every output y, P(y | v) <= e^epsilon P(y | v'). Formulas follow
ldp.md section 2 (Wang et al. USENIX Sec'17; Ye-Barg; Acharya-Sun-Zhang AISTATS'19).

Report formats (one row per user):

=========  ======================================================================================
GRR        int64 array (n,), values in [0, k)
SUE, OUE   bool array (n, k): the perturbed one-hot bit vector
BLH, OLH   uint64 array (n, 3): columns (a, b, y) = hash parameters and the GRR-perturbed hash in [0, g)
SS         int64 array (n, omega): the reported subset (distinct items)
SHE, THE   float64 array (n, k): one-hot + Laplace(2/epsilon) noise (THE thresholds on the server)
HR         int64 array (n,): an index in [0, K), K = 2^ceil(log2(k + 1)) (HR-general: K = B b, B blocks of b)
=========  ======================================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from scipy.optimize import minimize_scalar

from dpkit.accountants import DpEvent, RandomizedResponseEvent
from dpkit.mechanisms import hashing
from dpkit.mechanisms._validation import check_domain, check_epsilon, check_report_array, check_rng, check_values
from dpkit.mechanisms.base import (
    FrequencyOracle,
    PureFrequencyOracle,
    SupportCounts,
    _post,
    em_channel,
    enumerate_bit_vectors,
    project_simplex,
)
from dpkit.mechanisms.bernoulli import bernoulli_matrix, column_counts, unary_perturb, unary_support_counts

__all__ = [
    "GRR",
    "UnaryEncoding",
    "SUE",
    "OUE",
    "LocalHashing",
    "BLH",
    "OLH",
    "SubsetSelection",
    "SS",
    "SHE",
    "THE",
    "HadamardResponse",
    "HR",
    "HadamardResponseGeneral",
    "FREQUENCY_ORACLES",
    "make_oracle",
    "choose_protocol",
    "grr_perturb",
    "bernoulli_matrix",
]


# ------------------------------------------------------------------------------------------------ primitives
def grr_perturb(values: np.ndarray, k: int, p: float, rng: np.random.Generator) -> np.ndarray:
    """k-ary randomized response: keep v w.p. p, else a uniform value of [k] minus {v} (exact, vectorized)."""
    n = values.shape[0]
    keep = rng.random(n) < p
    other = rng.integers(0, k - 1, size=n)
    other += other >= values
    return np.where(keep, values, other)


# bernoulli_matrix (exact Bernoulli bits, about 4.5 random bits each) lives in mechanisms.bernoulli.


def _grr_event_or_pure(eps: float, k: int) -> DpEvent:
    return RandomizedResponseEvent(eps, k)


# ------------------------------------------------------------------------------------------------------- GRR
@dataclass(frozen=True)
class GRR(PureFrequencyOracle):
    """Generalized randomized response (k-RR, direct encoding).

    Client: report v w.p. p = e^eps/(e^eps + k - 1), else a uniform other value (each w.p. q = 1/(e^eps + k - 1)).
    epsilon-LDP for one user's value under replacement; ``privacy_event()`` is ``RandomizedResponseEvent(eps, k)``.
    """

    k: int
    epsilon: float
    name = "GRR"

    def __post_init__(self):
        object.__setattr__(self, "k", check_domain("k", self.k))
        object.__setattr__(self, "epsilon", check_epsilon("epsilon", self.epsilon))
        e = math.exp(self.epsilon)
        object.__setattr__(self, "p", e / (e + self.k - 1))
        object.__setattr__(self, "q", 1.0 / (e + self.k - 1))
        object.__setattr__(self, "p_star", self.p)
        object.__setattr__(self, "q_star", self.q)

    def _perturb(self, values, rng):
        return grr_perturb(values, self.k, self.p, rng)

    def _check_reports(self, reports):
        r = check_report_array("reports", reports, kinds="iu", shape_tail=(), expected=f"GRR reports in [0, {self.k})")
        return check_values("reports", r, self.k)

    def _support_counts(self, reports):
        return np.bincount(reports, minlength=self.k).astype(np.int64)

    def output_probabilities(self, value: int) -> np.ndarray:
        """P(report = y | value) for y in [0, k)."""
        out = np.full(self.k, self.q)
        out[value] = self.p
        return out

    def channel_matrix(self) -> np.ndarray:
        return np.stack([self.output_probabilities(v) for v in range(self.k)])

    def privacy_event(self) -> DpEvent:
        return RandomizedResponseEvent(self.epsilon, self.k)


# ---------------------------------------------------------------------------------------------- unary (UE)
class BitVectorReports:
    """Reports that are bit vectors of length k (unary encodings): their check and their support counts."""

    def _check_reports(self, reports):
        return check_report_array(
            "reports", reports, kinds="bui", shape_tail=(self.k,), expected=f"bit vectors of length {self.k}"
        )

    def _support_counts(self, reports):
        if reports.dtype == bool:
            return column_counts(reports)  # uint8 sums of lines of rows: no int64 cast per bit
        return reports.sum(axis=0, dtype=np.int64)


@dataclass(frozen=True)
class UnaryEncoding(BitVectorReports, PureFrequencyOracle):
    """Generic unary encoding with bit probabilities (p, q); use :class:`SUE` or :class:`OUE`.

    Client: one-hot e_v, then bit v ~ Bern(p) and every other bit ~ Bern(q), independently. The true bit is drawn
    from p only (never from q first: the pure-LDP <= 1.1.2 bug, ldp_libraries.md 3.4).
    epsilon-LDP with epsilon = ln(p (1 - q) / ((1 - p) q)) for one user's value under replacement.

    The bits are :func:`dpkit.mechanisms.bernoulli.unary_perturb`'s: each compares lazily read uniform digits with the
    binary expansion of the float64 p or q (a nibble, and only on a tie a byte, then 64-bit digits), so
    P(bit = 1) is p or q *exactly*, not up to rounding: the realized epsilon, channel matrix (``output_probabilities``)
    and variance are the ones computed from (p, q), and the estimator is exactly unbiased. About 4.5 random bits per
    bit instead of a float64 uniform's 64.
    """

    k: int
    epsilon: float
    name = "UE"
    default_chunk = 1 << 14
    fused_chunk_bits = 1 << 26  # perturb_aggregate's chunks: max(default_chunk, fused_chunk_bits // k) users

    def _set_pq(self, p, q):
        object.__setattr__(self, "k", check_domain("k", self.k))
        object.__setattr__(self, "p", p)
        object.__setattr__(self, "q", q)
        object.__setattr__(self, "p_star", p)
        object.__setattr__(self, "q_star", q)

    def _perturb(self, values, rng):
        return unary_perturb(values, self.k, self.p, self.q, rng)

    def perturb_aggregate(self, values, rng: np.random.Generator, chunk_size: int | None = None) -> SupportCounts:
        """Clients then server, fused chunk by chunk (:func:`dpkit.mechanisms.bernoulli.unary_support_counts`): the same
        random bits as ``perturb`` summed block by block, never the (n, k) report matrix. The state equals
        ``aggregate_stream(perturb(chunk, rng) for chunk in chunks)`` with the same chunks and generator state, bit for
        bit. Chunks: ``chunk_size`` users, by default max(default_chunk, fused_chunk_bits // k)."""
        if type(self)._perturb is not UnaryEncoding._perturb:  # a subclass with its own client (auditor fixtures)
            return super().perturb_aggregate(values, rng, chunk_size)
        values = check_values("values", values, self.k)
        check_rng(rng)
        size = chunk_size or max(self.default_chunk, self.fused_chunk_bits // self.k)
        counts = unary_support_counts(values, self.k, self.p, self.q, rng, chunk_size=size)
        return SupportCounts(counts, len(values), self.key)

    def output_probabilities(self, value: int) -> np.ndarray:
        """P(report | value) for every bit vector, in the order of ``enumerate_outputs()`` (k <= 16): the sampler's
        exact law, since the realized bit probabilities are p and q exactly."""
        outs = self.enumerate_outputs()
        probs = np.where(outs, self.q, 1 - self.q)
        probs[:, value] = np.where(outs[:, value], self.p, 1 - self.p)
        return probs.prod(axis=1)

    def enumerate_outputs(self) -> np.ndarray:
        return enumerate_bit_vectors(self.k)

    def channel_matrix(self) -> np.ndarray:
        return np.stack([self.output_probabilities(v) for v in range(self.k)])


@dataclass(frozen=True)
class SUE(UnaryEncoding):
    """Symmetric unary encoding (basic one-time RAPPOR): p = e^(eps/2)/(e^(eps/2) + 1), q = 1 - p."""

    name = "SUE"

    def __post_init__(self):
        object.__setattr__(self, "epsilon", check_epsilon("epsilon", self.epsilon))
        h = math.exp(self.epsilon / 2)
        self._set_pq(h / (h + 1), 1 / (h + 1))


@dataclass(frozen=True)
class OUE(UnaryEncoding):
    """Optimized unary encoding: p = 1/2, q = 1/(e^eps + 1)."""

    name = "OUE"

    def __post_init__(self):
        object.__setattr__(self, "epsilon", check_epsilon("epsilon", self.epsilon))
        self._set_pq(0.5, 1 / (math.exp(self.epsilon) + 1))


# ----------------------------------------------------------------------------------------- local hashing
@dataclass(frozen=True)
class LocalHashing(PureFrequencyOracle):
    """Local hashing with ``g`` buckets (BLH: g = 2; OLH: g = round(e^eps) + 1).

    Client: draw a hash function H from the universal family of :mod:`dpkit.mechanisms.hashing` (two uniform 64-bit
    parameters), h = H(v) in [0, g), report (a, b, GRR_g(h)) with GRR at epsilon over [g]. The server's support is
    {v : H(v) = y}, with p* = e^eps/(e^eps + g - 1) and q* = 1/g (hash collisions).
    epsilon-LDP for one user's value under replacement: the hash function is drawn independently of the value and,
    given it, the output is g-ary randomized response of H(v).
    """

    k: int
    epsilon: float
    g: int = 0  # 0 = OLH's optimal g
    name = "LH"
    default_chunk = 1 << 16

    def __post_init__(self):
        object.__setattr__(self, "k", check_domain("k", self.k, maximum=hashing.MAX_DOMAIN))
        object.__setattr__(self, "epsilon", check_epsilon("epsilon", self.epsilon))
        g = self.g if self.g else int(round(math.exp(self.epsilon))) + 1
        g = check_domain("g", g, maximum=2**32 - 1)
        object.__setattr__(self, "g", g)
        e = math.exp(self.epsilon)
        object.__setattr__(self, "p", e / (e + g - 1))
        object.__setattr__(self, "q", 1 / (e + g - 1))
        object.__setattr__(self, "p_star", self.p)
        object.__setattr__(self, "q_star", 1.0 / g)

    def _perturb(self, values, rng):
        n = values.shape[0]
        a, b = hashing.draw_hash_params(n, rng)
        h = hashing.hash_values(a, b, values, self.g)
        y = grr_perturb(h, self.g, self.p, rng)
        return np.stack([a, b, y.astype(np.uint64)], axis=1)

    def _check_reports(self, reports):
        r = check_report_array(
            "reports", reports, kinds="iu", shape_tail=(3,), expected="uint64 rows (a, b, y) of a local hashing report"
        )
        if r.dtype != np.uint64:
            if r.dtype.kind == "i" and len(r) and r.min() < 0:
                raise ValueError(f"reports must be non-negative (uint64 hash parameters), got {int(r.min())}")
            r = r.astype(np.uint64)
        if len(r) and r[:, 2].max() >= self.g:
            raise ValueError(f"reports[:, 2] (the hashed report) must be in [0, {self.g}), got {int(r[:, 2].max())}")
        return r

    def _support_counts(self, reports):
        return hashing.support_counts(reports[:, 0], reports[:, 1], reports[:, 2], self.g, self.k)

    def hash(self, a, b, values) -> np.ndarray:
        """H_{a,b}(values) in [0, g) (vectorized)."""
        return hashing.hash_values(a, b, values, self.g)

    def output_probabilities(self, value: int, a: int, b: int) -> np.ndarray:
        """P(y | value, hash (a, b)) for y in [0, g): the hash is independent of the value, so epsilon-LDP holds
        iff it holds for every hash function."""
        h = int(self.hash(np.uint64(a), np.uint64(b), np.array([value]))[0])
        out = np.full(self.g, self.q)
        out[h] = self.p
        return out

    def channel_matrix(self, a: int, b: int) -> np.ndarray:
        return np.stack([self.output_probabilities(v, a, b) for v in range(self.k)])

    def privacy_event(self) -> DpEvent:
        return RandomizedResponseEvent(self.epsilon, self.g)


@dataclass(frozen=True)
class BLH(LocalHashing):
    """Binary local hashing (g = 2)."""

    g: int = 2
    name = "BLH"

    def __post_init__(self):
        if self.g != 2:
            raise ValueError(f"g must be 2 for BLH, got {self.g!r}")
        super().__post_init__()


@dataclass(frozen=True)
class OLH(LocalHashing):
    """Optimized local hashing, g = round(e^eps) + 1 (multi-freq-ldpy's integer g)."""

    g: int = 0
    name = "OLH"


# ------------------------------------------------------------------------------------------- subset select
@dataclass(frozen=True)
class SubsetSelection(PureFrequencyOracle):
    """Subset selection (Wang et al. 2016; Ye-Barg 2018), subset size omega = max(1, rint(k/(e^eps + 1))).

    Client: w.p. p_v = omega e^eps / (omega e^eps + k - omega) report {v} plus omega - 1 uniform other items,
    otherwise omega uniform items of [k] minus {v}. epsilon-LDP for one user's value under replacement.
    """

    k: int
    epsilon: float
    name = "SS"
    default_chunk = 1 << 14

    def __post_init__(self):
        object.__setattr__(self, "k", check_domain("k", self.k))
        object.__setattr__(self, "epsilon", check_epsilon("epsilon", self.epsilon))
        e, k = math.exp(self.epsilon), self.k
        w = max(1, int(np.rint(k / (e + 1))))
        w = min(w, k - 1)
        object.__setattr__(self, "omega", w)
        object.__setattr__(self, "p_v", w * e / (w * e + k - w))
        object.__setattr__(self, "p_star", self.p_v)
        object.__setattr__(self, "q_star", (w * e * (w - 1) + (k - w) * w) / ((k - 1) * (w * e + k - w)))

    def _perturb(self, values, rng):
        n, k, w = values.shape[0], self.k, self.omega
        keys = rng.random((n, k - 1))
        others = np.argpartition(keys, w - 1, axis=1)[:, :w] if w < k - 1 else np.argsort(keys, axis=1)[:, :w]
        others += others >= values[:, None]  # indices of [k-1] -> [k] minus {v}
        include = rng.random(n) < self.p_v
        others[include, w - 1] = values[include]
        return others.astype(np.int64)

    def _check_reports(self, reports):
        r = check_report_array(
            "reports", reports, kinds="iu", shape_tail=(self.omega,), expected=f"subsets of {self.omega} items"
        )
        return check_values("reports", r, self.k, ndim=2)

    def _support_counts(self, reports):
        return np.bincount(reports.ravel(), minlength=self.k).astype(np.int64)

    def enumerate_outputs(self) -> list[tuple[int, ...]]:
        return list(combinations(range(self.k), self.omega))

    def output_probabilities(self, value: int) -> np.ndarray:
        """P(subset | value) for every omega-subset, in the order of ``enumerate_outputs()``."""
        k, w = self.k, self.omega
        n_in, n_out = math.comb(k - 1, w - 1), math.comb(k - 1, w)
        return np.array([self.p_v / n_in if value in s else (1 - self.p_v) / n_out for s in self.enumerate_outputs()])

    def channel_matrix(self) -> np.ndarray:
        return np.stack([self.output_probabilities(v) for v in range(self.k)])


SS = SubsetSelection


# ------------------------------------------------------------------------------------ histogram encoding
@dataclass(frozen=True)
class SHE(FrequencyOracle):
    """Summation with histogram encoding: report e_v + Laplace(2/eps)^k; the server averages the reports.

    epsilon-LDP for one user's value under replacement (L1 sensitivity of the one-hot vector is 2). The server's
    state holds float sums, not counts. Var = 8/(n eps^2) exactly, for every f.
    """

    k: int
    epsilon: float
    name = "SHE"
    default_chunk = 1 << 14
    _count_dtype = np.float64

    def __post_init__(self):
        object.__setattr__(self, "k", check_domain("k", self.k))
        object.__setattr__(self, "epsilon", check_epsilon("epsilon", self.epsilon))
        object.__setattr__(self, "scale", 2.0 / self.epsilon)

    def _perturb(self, values, rng):
        n = values.shape[0]
        y = rng.laplace(0.0, self.scale, size=(n, self.k))
        y[np.arange(n), values] += 1.0
        return y

    def _check_reports(self, reports):
        r = check_report_array(
            "reports", reports, kinds="f", shape_tail=(self.k,), expected=f"float noisy histograms of length {self.k}"
        )
        if not np.isfinite(r).all():
            raise ValueError("reports must be finite (found NaN or inf)")
        return r

    def _support_counts(self, reports):
        return reports.sum(axis=0, dtype=np.float64)

    def estimate(self, state: SupportCounts, postprocess: str | None = None) -> np.ndarray:
        """``postprocess='ibu'``: the maximum-likelihood point of the probability simplex given the state, which is
        what IBU converges to, under the CLT approximation of the state (the sum of the reports): the unbiased
        estimate is about N(f, (8/eps^2 I + diag(f) - f f^T) / n); dropping the multinomial part, small next to the
        Laplace variance 8/eps^2 (e.g. at most 1/4 against 8 at eps = 1), leaves the same variance for every item,
        and the maximizer is the Euclidean projection of the unbiased estimate onto the simplex (no iteration;
        unlike Norm-Sub it can also lift small negative entries when the clipped sum is below 1)."""
        self._check_state(state)
        f = state.counts / state.n
        if postprocess == "ibu":
            return project_simplex(f)
        return _post(f, postprocess, None, None, None)

    def variance(self, n: int, f=None):
        n = self._check_n(n)
        v = 8.0 / (n * self.epsilon**2)
        return v if f is None else np.full(np.shape(f), v)

    def output_density(self, y: np.ndarray, value: int) -> np.ndarray:
        """Density of report(s) ``y`` (shape (..., k)) given ``value``: product of Laplace densities."""
        y = np.asarray(y, dtype=np.float64)
        mean = np.zeros(self.k)
        mean[value] = 1.0
        return np.prod(np.exp(-np.abs(y - mean) / self.scale) / (2 * self.scale), axis=-1)


def the_variance_per_user(theta: float, epsilon: float) -> float:
    """V*(theta) of THE for n = 1 (ldp.md 2.5)."""
    e = epsilon
    return (2 * math.exp(e * theta / 2) - 1) / (1 + math.exp(e * (theta - 0.5)) - 2 * math.exp(e * theta / 2)) ** 2


def optimal_theta(epsilon: float) -> float:
    """argmin over [0.5, 1] of THE's variance (bounded Brent, as both reference codes)."""
    res = minimize_scalar(
        the_variance_per_user, bounds=(0.5, 1.0), args=(epsilon,), method="bounded", options={"xatol": 1e-10}
    )
    return float(res.x)


@dataclass(frozen=True)
class THE(PureFrequencyOracle):
    """Thresholding with histogram encoding: the SHE client; the server counts entries above theta in [0.5, 1].

    p* = 1 - exp(eps (theta - 1)/2)/2, q* = exp(-eps theta/2)/2. The client is SHE's, so the guarantee is SHE's:
    epsilon-LDP for one user's value under replacement. ``theta=None`` uses the variance-optimal theta.
    """

    k: int
    epsilon: float
    theta: float | None = None
    name = "THE"
    default_chunk = 1 << 14
    _client: SHE = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self):
        object.__setattr__(self, "k", check_domain("k", self.k))
        object.__setattr__(self, "epsilon", check_epsilon("epsilon", self.epsilon))
        theta = optimal_theta(self.epsilon) if self.theta is None else float(self.theta)
        if not (0.5 <= theta <= 1.0):
            raise ValueError(f"theta must be in [0.5, 1], got {self.theta!r}")
        object.__setattr__(self, "theta", theta)
        object.__setattr__(self, "_client", SHE(self.k, self.epsilon))
        e = self.epsilon
        object.__setattr__(self, "p_star", 1 - 0.5 * math.exp(e * (theta - 1) / 2))
        object.__setattr__(self, "q_star", 0.5 * math.exp(-e * theta / 2))

    def _perturb(self, values, rng):
        return self._client._perturb(values, rng)

    def _check_reports(self, reports):
        return self._client._check_reports(reports)

    def _support_counts(self, reports):
        return np.add.reduce((reports > self.theta).view(np.uint8), axis=0, dtype=np.int64)

    def output_density(self, y, value):
        return self._client.output_density(y, value)


# --------------------------------------------------------------------------------------- Hadamard Response
@dataclass(frozen=True)
class HadamardResponse(PureFrequencyOracle):
    """Hadamard Response (Acharya-Sun-Zhang AISTATS'19), the high-privacy variant, for every epsilon.

    K = 2^ceil(log2(k + 1)); value v uses row r = v + 1 of the Sylvester Hadamard matrix and its set
    C_v = {j : popcount(r & j) even}, |C_v| = K/2. Client: w.p. e^eps/(1 + e^eps) a uniform element of C_v, else a
    uniform element of its complement. Pure protocol with p* = e^eps/(e^eps + 1), q* = 1/2 (rows overlap in K/4);
    the server decodes all k support counts with one fast Walsh-Hadamard transform, O(n + K log K).
    epsilon-LDP for one user's value under replacement. Its variance tends to 1/n as epsilon grows; the
    general-epsilon block variant, whose variance keeps falling (like 2/(n e^eps)), is :class:`HadamardResponseGeneral`.
    """

    k: int
    epsilon: float
    name = "HR"

    def __post_init__(self):
        object.__setattr__(self, "k", check_domain("k", self.k, maximum=2**31 - 1))
        object.__setattr__(self, "epsilon", check_epsilon("epsilon", self.epsilon))
        K = 1 << int(math.ceil(math.log2(self.k + 1)))
        object.__setattr__(self, "K", K)
        e = math.exp(self.epsilon)
        object.__setattr__(self, "p_star", e / (e + 1))
        object.__setattr__(self, "q_star", 0.5)

    def _perturb(self, values, rng):
        n = values.shape[0]
        r = values + 1
        j = rng.integers(0, self.K, size=n)
        want_in = rng.random(n) < self.p_star
        parity = np.bitwise_count(r & j) & 1  # 0 = in C_v
        flip = (parity == 0) != want_in
        top = np.left_shift(1, np.floor(np.log2(r)).astype(np.int64))  # highest set bit of r (r >= 1)
        return np.where(flip, j ^ top, j)

    def _check_reports(self, reports):
        r = check_report_array("reports", reports, kinds="iu", shape_tail=(), expected=f"indices in [0, {self.K})")
        return check_values("reports", r, self.K)

    def _support_counts(self, reports):
        hist = np.bincount(reports, minlength=self.K).astype(np.int64)
        t = fwht(hist)  # t[r] = sum_j hist[j] H[r, j] = (#in C) - (#not in C)
        return (len(reports) + t[1 : self.k + 1]) // 2

    def output_probabilities(self, value: int) -> np.ndarray:
        j = np.arange(self.K)
        in_c = (np.bitwise_count((value + 1) & j) & 1) == 0
        return np.where(in_c, self.p_star / (self.K / 2), (1 - self.p_star) / (self.K / 2))

    def channel_matrix(self) -> np.ndarray:
        return np.stack([self.output_probabilities(v) for v in range(self.k)])


HR = HadamardResponse


@dataclass(frozen=True)
class HadamardResponseGeneral(FrequencyOracle):
    """Hadamard Response, general-epsilon (block) variant (Acharya-Sun-Zhang AISTATS'19; ldp.md 2.6; the
    construction of "Hadamard_Rand_general_original" in zitengsun/hadamard_response).

    Blocks: B = 2^floor(log2 min(e^eps, 2k)) blocks of b = 2^ceil(log2(k/B + 1)) outputs each, K = B b outputs.
    Value v sits in block i = v // (b - 1) at row r = v mod (b - 1) + 1 of the Sylvester Hadamard matrix H_b; its set
    is C_v = {(i, j) : popcount(r & j) even}, b/2 outputs of its own block. Client: with probability 2B/D, where
    D = 2B - 1 + e^eps, a uniform output of [K], otherwise a uniform element of C_v. Hence P(y | v) = 2 e^eps/(b D)
    for y in C_v and 2/(b D) elsewhere: epsilon-LDP (exactly; delta = 0) for one user's value under replacement
    (any v -> any v'). With B = 1 (eps < ln 2) the channel is :class:`HadamardResponse`'s.

    Server: the state is the histogram of the K outputs (mergeable, and a sufficient statistic). One fast
    Walsh-Hadamard transform per block, O(n + K log b) in all, gives t_v = #C_v - #(block(v) minus C_v) and the
    unbiased f_hat_v = D t_v / (n (e^eps - 1)). Exact variance for a fixed population (f_v, and F_v the frequency
    mass of v's block):

        Var f_hat_v = (D (2 + (e^eps - 1) F_v) / (e^eps - 1)^2 - f_v) / n

    (the per-user score, +1 on C_v, -1 on the rest of v's block and 0 elsewhere, has mean (e^eps - 1)/D if the
    user holds v and 0 otherwise, and second moment P(y in block(v)) = (2 + (e^eps - 1) [u in block(v)])/D).
    ``variance(n)`` (V*) is this for f_v -> 0, v in a full block of m = min(b - 1, k) values and the mass spread
    evenly over the other k - 1 values (F_v = (m - 1)/(k - 1)): V* = (2D + D (e^eps - 1)(m - 1)/(k - 1))/
    (n (e^eps - 1)^2). For B = 1 this is HR's (e^eps + 1)^2/(n (e^eps - 1)^2); for large epsilon it falls like
    2/(n e^eps) where HR's tends to 1/n. (It is never below the variance of ``choose_protocol``'s pick, checked over
    k <= 1e5 and eps <= 14, so the chooser does not consider it by default: its strengths are a log2(K)-bit report
    and O(n + K log b) decoding.) ``postprocess='ibu'`` runs EM on this exact channel (its fixed point is the
    simplex MLE), with block Hadamard transforms.

    The reference code first applies a public random permutation of the domain; it changes neither the guarantee
    nor the unbiasedness, only which values share a block (and so F_v), and is left to the caller.
    Reports: int64 (n,) in [0, K).
    """

    k: int
    epsilon: float
    name = "HR-general"

    def __post_init__(self):
        object.__setattr__(self, "k", check_domain("k", self.k, maximum=2**31 - 1))
        object.__setattr__(self, "epsilon", check_epsilon("epsilon", self.epsilon))
        e = math.exp(self.epsilon)
        B = 1 << (math.frexp(min(e, 2.0 * self.k))[1] - 1)  # the largest power of 2 <= min(e^eps, 2k)
        b = 1 << (-(-self.k // B)).bit_length()  # the smallest power of 2 >= ceil(k/B) + 1
        object.__setattr__(self, "B", B)
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "K", B * b)
        object.__setattr__(self, "D", 2 * B - 1 + e)
        object.__setattr__(self, "p_uniform", 2 * B / (2 * B - 1 + e))

    def cell(self, values) -> tuple[np.ndarray, np.ndarray]:
        """(block, Hadamard row in [1, b)) of each value."""
        blk, pos = np.divmod(np.asarray(values, dtype=np.int64), self.b - 1)
        return blk, pos + 1

    def _perturb(self, values, rng):
        n = values.shape[0]
        blk, r = self.cell(values)
        j = rng.integers(0, self.b, size=n)
        uniform = rng.random(n) < self.p_uniform
        odd = (np.bitwise_count(r & j) & 1).astype(bool)  # j not in C_v: flip the highest set bit of r
        top = np.left_shift(1, np.floor(np.log2(r)).astype(np.int64))
        pos = np.where(uniform | ~odd, j, j ^ top)
        out_blk = np.where(uniform, rng.integers(0, self.B, size=n), blk)
        return out_blk * self.b + pos

    def _check_reports(self, reports):
        r = check_report_array("reports", reports, kinds="iu", shape_tail=(), expected=f"indices in [0, {self.K})")
        return check_values("reports", r, self.K)

    def _support_counts(self, reports):
        return np.bincount(reports, minlength=self.K).astype(np.int64)

    def empty_state(self) -> SupportCounts:
        return SupportCounts(np.zeros(self.K, dtype=np.int64), 0, self.key)

    def _check_state(self, state: SupportCounts) -> None:
        if not isinstance(state, SupportCounts):
            raise TypeError(f"state must be a SupportCounts (from aggregate), got {type(state).__name__}")
        if state.counts.shape != (self.K,):
            raise ValueError(
                f"state.counts must have shape ({self.K},) (the output histogram), got {state.counts.shape}"
            )
        if state.n <= 0:
            raise ValueError(f"state.n must be >= 1 to estimate, got {state.n}")

    def estimate(self, state: SupportCounts, postprocess: str | None = None) -> np.ndarray:
        self._check_state(state)
        if postprocess == "ibu":
            return self.ibu(state)
        t = fwht(state.counts.reshape(self.B, self.b))
        f = self.D / (math.exp(self.epsilon) - 1) * t[:, 1:].ravel()[: self.k] / state.n
        return _post(f, postprocess, None, None, None)

    def ibu(self, state: SupportCounts, n_iter: int = 10_000, tol: float = 1e-12) -> np.ndarray:
        """IBU (EM) on the exact channel from the output histogram: converges to the maximum-likelihood estimate on
        the probability simplex. Each iteration applies H_b to every block twice: O(K log b) (a dense b x b
        product for b <= 256, which is faster there)."""
        self._check_state(state)
        B, b, k, e1 = self.B, self.b, self.k, math.exp(self.epsilon) - 1
        scale = 2.0 / (b * self.D)
        if b <= 256:  # small blocks: one dense product with H_b beats the FWHT's Python-level passes
            j = np.arange(b)
            H = 1.0 - 2.0 * (np.bitwise_count(j[:, None] & j[None, :]) & 1)

            def hadamard(a):
                return a @ H
        else:
            hadamard = fwht

        blk, row = self.cell(np.arange(k))
        cell = blk * b + row  # value v -> (its block, its Hadamard row), flattened
        g = np.zeros(B * b)

        def forward(f):  # P(y) = scale (sum f + (e^eps - 1) sum_{v : y in C_v} f_v), per block by one transform
            g[cell] = f
            t = hadamard(g.reshape(B, b))
            return scale * (f.sum() + e1 * (t[:, :1] + t) / 2)

        def adjoint(w):  # (A^T w)_v = scale (sum w + (e^eps - 1) sum_{y in C_v} w_y)
            t = hadamard(w)
            return scale * (w.sum() + e1 * ((t[:, :1] + t) / 2).ravel()[cell])

        return em_channel(state.counts.reshape(B, b), forward, adjoint, k, n_iter, tol)

    def block_mass(self, f) -> np.ndarray:
        """F_v: the total frequency of the block of each value (length k)."""
        f = np.asarray(f, dtype=np.float64)
        flat = np.zeros(self.B * (self.b - 1))
        flat[: self.k] = f
        return flat.reshape(self.B, self.b - 1).sum(axis=1)[self.cell(np.arange(self.k))[0]]

    def variance(self, n: int, f=None):
        n = self._check_n(n)
        e1 = math.exp(self.epsilon) - 1
        c = self.D / e1**2
        if f is None:
            return c * (2 + e1 * (min(self.b - 1, self.k) - 1) / (self.k - 1)) / n
        f = np.asarray(f, dtype=np.float64)
        if f.shape != (self.k,):
            raise ValueError(
                f"f must be the length-{self.k} vector of frequencies (the variance of an item depends "
                f"on the mass of its block), got shape {f.shape}"
            )
        return (c * (2 + e1 * self.block_mass(f)) - f) / n

    def output_probabilities(self, value: int) -> np.ndarray:
        """P(report = y | value) for y in [0, K)."""
        blk, r = self.cell(value)
        out = np.full(self.K, 2.0 / (self.b * self.D))
        j = np.arange(self.b)
        in_c = j[(np.bitwise_count(int(r) & j) & 1) == 0]
        out[int(blk) * self.b + in_c] = 2 * math.exp(self.epsilon) / (self.b * self.D)
        return out

    def channel_matrix(self) -> np.ndarray:
        return np.stack([self.output_probabilities(v) for v in range(self.k)])


def fwht(x: np.ndarray) -> np.ndarray:
    """Unnormalized fast Walsh-Hadamard transform (Sylvester order) of a length-2^m vector, or of every row (last
    axis) of an array."""
    a = np.array(x, copy=True)
    lead, n = a.shape[:-1], a.shape[-1]
    h = 1
    while h < n:
        a = a.reshape(*lead, -1, 2, h)
        a = np.stack([a[..., 0, :] + a[..., 1, :], a[..., 0, :] - a[..., 1, :]], axis=-2).reshape(*lead, n)
        h *= 2
    return a


# ------------------------------------------------------------------------------------------ registry/chooser
FREQUENCY_ORACLES: dict[str, type[FrequencyOracle]] = {
    "GRR": GRR,
    "SUE": SUE,
    "OUE": OUE,
    "BLH": BLH,
    "OLH": OLH,
    "SS": SubsetSelection,
    "SHE": SHE,
    "THE": THE,
    "HR": HadamardResponse,
    "HR-general": HadamardResponseGeneral,
}


def _protocol_key(name) -> str:
    return str(name).upper().replace("-", "").replace("_", "")


def make_oracle(name: str, k: int, epsilon: float, **kwargs) -> FrequencyOracle:
    """Instantiate a frequency oracle by name (case-insensitive, '-' and '_' ignored; 'ADP' = the adaptive
    chooser)."""
    key = _protocol_key(name)
    if key in ("ADP", "ADAPTIVE", "AUTO"):
        return choose_protocol(k, epsilon)
    classes = {_protocol_key(n): cls for n, cls in FREQUENCY_ORACLES.items()}
    if key not in classes:
        raise ValueError(f"protocol must be one of {', '.join(FREQUENCY_ORACLES)} or ADP, got {name!r}")
    return classes[key](k, epsilon, **kwargs)


def choose_protocol(k: int, epsilon: float, candidates: tuple[str, ...] | None = None) -> FrequencyOracle:
    """The frequency oracle of least approximate variance V* for (k, epsilon) among ``candidates``.

    Default candidates: GRR, OUE, OLH, SS, HR, THE, SUE, BLH, SHE (ties go to the earlier, cheaper protocol).
    With candidates=("GRR", "OUE") this is ADP (GRR iff k < 3 e^eps + 2). HR-general is not a default candidate:
    its V* is never the least (see :class:`HadamardResponseGeneral`); name it in ``candidates`` to include it.
    """
    names = candidates or ("GRR", "OUE", "OLH", "SS", "HR", "THE", "SUE", "BLH", "SHE")
    best, best_v = None, math.inf
    for name in names:
        oracle = make_oracle(name, k, epsilon)
        v = oracle.variance(1)
        if v < best_v * (1 - 1e-12):
            best, best_v = oracle, v
    return best
