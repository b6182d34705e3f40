"""Frequency oracles: GRR, SUE, OUE, BLH, OLH, SS, SHE, THE, Hadamard Response, and the adaptive chooser.

Every class is a frozen dataclass of its parameters and implements :class:`mechanisms.base.FrequencyOracle`.
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
HR         int64 array (n,): an index in [0, K), K = 2^ceil(log2(k + 1))
=========  ======================================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from scipy.optimize import minimize_scalar

from accountants import DpEvent, RandomizedResponseEvent
from mechanisms import hashing
from mechanisms._validation import check_domain, check_epsilon, check_report_array, check_values
from mechanisms.base import (
    FrequencyOracle,
    PureFrequencyOracle,
    SupportCounts,
    _post,
    enumerate_bit_vectors,
)

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


_BLOCK = 1 << 16  # uniforms per block: keeps temporaries in cache


def bernoulli_matrix(shape: tuple[int, int], prob, rng: np.random.Generator, where: np.ndarray | None = None,
                     prob_where=None) -> np.ndarray:
    """Independent Bernoulli bits (bool array of ``shape``), generated in cache-sized blocks of rows.

    Each bit is Bernoulli(prob), or Bernoulli(prob_where) where the bool mask ``where`` is set. Bits compare float64
    uniforms with the probability, so P(bit) equals it up to 2^-53.
    """
    n, k = shape
    out = np.empty((n, k), dtype=bool)
    rows = max(1, _BLOCK // max(k, 1))
    buf = np.empty(rows * k)
    for s in range(0, n, rows):
        e = min(n, s + rows)
        u = buf[: (e - s) * k].reshape(e - s, k)
        rng.random(out=u)
        if where is None:
            np.less(u, prob, out=out[s:e])
        else:
            np.less(u, np.where(where[s:e], prob_where, prob), out=out[s:e])
    return out


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
        object.__setattr__(self, "k", check_domain(self.k))
        object.__setattr__(self, "epsilon", check_epsilon(self.epsilon))
        e = math.exp(self.epsilon)
        object.__setattr__(self, "p", e / (e + self.k - 1))
        object.__setattr__(self, "q", 1.0 / (e + self.k - 1))
        object.__setattr__(self, "p_star", self.p)
        object.__setattr__(self, "q_star", self.q)

    def _perturb(self, values, rng):
        return grr_perturb(values, self.k, self.p, rng)

    def _check_reports(self, reports):
        r = check_report_array(reports, "reports", kinds="iu", shape_tail=(), expected=f"GRR reports in [0, {self.k})")
        return check_values(r, self.k, name="reports")

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
            reports, "reports", kinds="bui", shape_tail=(self.k,), expected=f"bit vectors of length {self.k}"
        )

    def _support_counts(self, reports):
        if reports.dtype == bool:
            return np.add.reduce(reports.view(np.uint8), axis=0, dtype=np.int64)
        return reports.sum(axis=0, dtype=np.int64)


@dataclass(frozen=True)
class UnaryEncoding(BitVectorReports, PureFrequencyOracle):
    """Generic unary encoding with bit probabilities (p, q); use :class:`SUE` or :class:`OUE`.

    Client: one-hot e_v, then bit v ~ Bern(p) and every other bit ~ Bern(q), independently. The true bit is drawn
    from p only (never from q first: the pure-LDP <= 1.1.2 bug, ldp_libraries.md 3.4).
    epsilon-LDP with epsilon = ln(p (1 - q) / ((1 - p) q)) for one user's value under replacement.
    """

    k: int
    epsilon: float
    name = "UE"
    default_chunk = 1 << 14

    def _set_pq(self, p, q):
        object.__setattr__(self, "k", check_domain(self.k))
        object.__setattr__(self, "p", p)
        object.__setattr__(self, "q", q)
        object.__setattr__(self, "p_star", p)
        object.__setattr__(self, "q_star", q)

    def _perturb(self, values, rng):
        n = values.shape[0]
        bits = bernoulli_matrix((n, self.k), self.q, rng)
        bits[np.arange(n), values] = rng.random(n) < self.p
        return bits

    def output_probabilities(self, value: int) -> np.ndarray:
        """P(report | value) for every bit vector, in the order of ``enumerate_outputs()`` (k <= 16)."""
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
        object.__setattr__(self, "epsilon", check_epsilon(self.epsilon))
        h = math.exp(self.epsilon / 2)
        self._set_pq(h / (h + 1), 1 / (h + 1))


@dataclass(frozen=True)
class OUE(UnaryEncoding):
    """Optimized unary encoding: p = 1/2, q = 1/(e^eps + 1)."""

    name = "OUE"

    def __post_init__(self):
        object.__setattr__(self, "epsilon", check_epsilon(self.epsilon))
        self._set_pq(0.5, 1 / (math.exp(self.epsilon) + 1))


# ----------------------------------------------------------------------------------------- local hashing
@dataclass(frozen=True)
class LocalHashing(PureFrequencyOracle):
    """Local hashing with ``g`` buckets (BLH: g = 2; OLH: g = round(e^eps) + 1).

    Client: draw a hash function H from the universal family of :mod:`mechanisms.hashing` (two uniform 64-bit
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
        object.__setattr__(self, "k", check_domain(self.k, maximum=hashing.MAX_DOMAIN))
        object.__setattr__(self, "epsilon", check_epsilon(self.epsilon))
        g = self.g if self.g else int(round(math.exp(self.epsilon))) + 1
        g = check_domain(g, name="g", maximum=2**32 - 1)
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
            reports, "reports", kinds="iu", shape_tail=(3,), expected="uint64 rows (a, b, y) of a local hashing report"
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
        object.__setattr__(self, "k", check_domain(self.k))
        object.__setattr__(self, "epsilon", check_epsilon(self.epsilon))
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
            reports, "reports", kinds="iu", shape_tail=(self.omega,), expected=f"subsets of {self.omega} items"
        )
        return check_values(r, self.k, name="reports", ndim=2)

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
        object.__setattr__(self, "k", check_domain(self.k))
        object.__setattr__(self, "epsilon", check_epsilon(self.epsilon))
        object.__setattr__(self, "scale", 2.0 / self.epsilon)

    def _perturb(self, values, rng):
        n = values.shape[0]
        y = rng.laplace(0.0, self.scale, size=(n, self.k))
        y[np.arange(n), values] += 1.0
        return y

    def _check_reports(self, reports):
        r = check_report_array(
            reports, "reports", kinds="f", shape_tail=(self.k,), expected=f"float noisy histograms of length {self.k}"
        )
        if not np.isfinite(r).all():
            raise ValueError("reports must be finite (found NaN or inf)")
        return r

    def _support_counts(self, reports):
        return reports.sum(axis=0, dtype=np.float64)

    def estimate(self, state: SupportCounts, postprocess: str | None = None) -> np.ndarray:
        self._check_state(state)
        if postprocess == "ibu":
            raise ValueError("postprocess='ibu' needs support probabilities; SHE has none (use 'clip' or 'norm-sub')")
        return _post(state.counts / state.n, postprocess, None, None, None)

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
    res = minimize_scalar(the_variance_per_user, bounds=(0.5, 1.0), args=(epsilon,), method="bounded",
                          options={"xatol": 1e-10})
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
        object.__setattr__(self, "k", check_domain(self.k))
        object.__setattr__(self, "epsilon", check_epsilon(self.epsilon))
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
    epsilon-LDP for one user's value under replacement. (The general-epsilon block variant is not implemented; at
    large epsilon this variant's variance stops improving, see ``choose_protocol``.)
    """

    k: int
    epsilon: float
    name = "HR"

    def __post_init__(self):
        object.__setattr__(self, "k", check_domain(self.k, maximum=2**31 - 1))
        object.__setattr__(self, "epsilon", check_epsilon(self.epsilon))
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
        r = check_report_array(reports, "reports", kinds="iu", shape_tail=(), expected=f"indices in [0, {self.K})")
        return check_values(r, self.K, name="reports")

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


def fwht(x: np.ndarray) -> np.ndarray:
    """Unnormalized fast Walsh-Hadamard transform (Sylvester order) of a length-2^m vector."""
    a = np.array(x, copy=True)
    n = a.shape[0]
    h = 1
    while h < n:
        a = a.reshape(-1, 2, h)
        a = np.stack([a[:, 0] + a[:, 1], a[:, 0] - a[:, 1]], axis=1).reshape(n)
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
}


def make_oracle(name: str, k: int, epsilon: float, **kwargs) -> FrequencyOracle:
    """Instantiate a frequency oracle by name (case-insensitive; 'ADP' = the adaptive chooser)."""
    key = str(name).upper().replace("-", "").replace("_", "")
    if key in ("ADP", "ADAPTIVE", "AUTO"):
        return choose_protocol(k, epsilon)
    if key not in FREQUENCY_ORACLES:
        raise ValueError(f"protocol must be one of {', '.join(FREQUENCY_ORACLES)} or ADP, got {name!r}")
    return FREQUENCY_ORACLES[key](k, epsilon, **kwargs)


def choose_protocol(k: int, epsilon: float, candidates: tuple[str, ...] | None = None) -> FrequencyOracle:
    """The frequency oracle of least approximate variance V* for (k, epsilon) among ``candidates``.

    Default candidates: GRR, OUE, OLH, SS, HR, THE, SUE, BLH, SHE (ties go to the earlier, cheaper protocol).
    With candidates=("GRR", "OUE") this is ADP (GRR iff k < 3 e^eps + 2).
    """
    names = candidates or ("GRR", "OUE", "OLH", "SS", "HR", "THE", "SUE", "BLH", "SHE")
    best, best_v = None, math.inf
    for name in names:
        oracle = make_oracle(name, k, epsilon)
        v = oracle.variance(1)
        if v < best_v * (1 - 1e-12):
            best, best_v = oracle, v
    return best
