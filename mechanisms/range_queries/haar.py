"""HaarHRR: range queries from the discrete Haar wavelet coefficients, each level collected with Hadamard randomized
response (Cormode, Kulkarni, Srivastava, "Answering Range Queries Under Local Differential Privacy", PVLDB 12(10)
2019, arXiv 1812.10942).

Coefficients (domain padded to D = 2^h; the total c_0 = 1 is known): for level l = 1..h and node j < 2^(l-1), of
length L_l = D / 2^(l-1), c_lj = f(left half of j) - f(right half of j). A user with value v touches one coefficient
per level: j_l(v) = v // L_l with sign s_l(v) = +1 in the left half, -1 in the right half.

Client: sample a level l uniformly, then r uniform in [0, 2^(l-1)), and report (l, r, y) with y = s H[j][r] kept
with probability p = e^eps / (1 + e^eps), else negated (H the Sylvester Hadamard matrix, H[j][r] =
(-1)^popcount(j & r)). O(log D) bits. Server: per level a_r = sum of the y with index r; c_hat = H a / (n_l (2p - 1)),
unbiased (one fast Walsh-Hadamard transform per level). Reconstruction: f_hat(x) = 1/D + sum_l s_l(x) c_hat_{l,j}/L_l;
a range [a, b] needs only the <= 2 nodes per level that it cuts:
R_hat = (b - a + 1)/D + sum_{l,j} c_hat_lj (|[a,b] & left| - |[a,b] & right|)/L_l, every weight in [-1/2, 1/2]. The
reconstruction is exact (no noise: the answers are the true ones) and automatically consistent.

Variance: within a level the coefficient estimates are uncorrelated, Var c_hat_lj = (1/(2p - 1)^2 - F_lj)/n_l with
F_lj the share of the level's users in node j. ``variance(n, queries)`` (f=None) is the **upper bound**
h/n sum_{l,j} w_lj^2 / (2p - 1)^2 (dropping the F and level-sampling terms, all of which lower it); in turn at most
(h^2/2)((e^eps + 1)/(e^eps - 1))^2 / n (``variance_bound``). With f the exact value (up to O(1/n^2)):
h/n sum w^2/(2p-1)^2 - h/n sum_l (sum_j w_lj c_lj)^2 - f_R (1 - f_R)/n.

Privacy: the level and r are drawn independently of the value and y is binary randomized response of a +-1 that
depends on it: epsilon-LDP for the user's value under replacement (unit of privacy: one user's value);
``privacy_event()`` is ``RandomizedResponseEvent(epsilon, 2)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dpkit.accountants import DpEvent, RandomizedResponseEvent
from dpkit.mechanisms import SupportCounts
from dpkit.mechanisms._validation import (
    check_chunk_size,
    check_count,
    check_epsilon,
    check_rng,
    check_values,
    set_fields,
)
from dpkit.mechanisms.base import Keyed, check_frequencies, check_state_of, merge_stream
from dpkit.mechanisms.range_queries.base import RangeState, TreeProtocol, check_distribution

__all__ = ["HaarHRR", "HaarLevel", "walsh_hadamard"]


def walsh_hadamard(x: np.ndarray) -> np.ndarray:
    """Unnormalized fast Walsh-Hadamard transform (Sylvester order) over the first axis (length a power of 2)."""
    a = np.array(x, dtype=np.float64, copy=True)
    n = a.shape[0]
    h = 1
    while h < n:
        a = a.reshape(n // (2 * h), 2, h, *a.shape[1:])
        a = np.concatenate([a[:, :1] + a[:, 1:], a[:, :1] - a[:, 1:]], axis=1).reshape(n, *a.shape[3:])
        h *= 2
    return a


@dataclass(frozen=True)
class HaarLevel(Keyed):
    """Hadamard randomized response for the m = 2^(l-1) coefficients of one Haar level (the client of HaarHRR).

    Input: u in [0, 2m), the half-node of the value (node j = u // 2, sign + for even u). Report: 2 r + [y = +1] in
    [0, 2m). State: the counts of the 2m reports (a :class:`SupportCounts`, mergeable).
    """

    m: int
    epsilon: float
    p: float = field(init=False, repr=False, compare=False, default=0.0)

    def __post_init__(self):
        object.__setattr__(self, "m", check_count("m", self.m, minimum=1))
        object.__setattr__(self, "epsilon", check_epsilon("epsilon", self.epsilon))
        e = math.exp(self.epsilon)
        object.__setattr__(self, "p", e / (1 + e))

    def perturb(self, values, rng: np.random.Generator) -> np.ndarray:
        u = check_values("values", values, 2 * self.m)
        check_rng(rng)
        n = len(u)
        r = rng.integers(0, self.m, size=n) if self.m > 1 else np.zeros(n, dtype=np.int64)
        parity = (np.bitwise_count((u >> 1) & r) + (u & 1)) & 1  # 0 iff s H[j][r] = +1
        keep = rng.random(n) < self.p
        plus = (parity == 0) == keep
        return 2 * r + plus

    def aggregate(self, reports) -> SupportCounts:
        r = check_values("reports", reports, 2 * self.m)
        return SupportCounts(np.bincount(r, minlength=2 * self.m).astype(np.int64), len(r), self.key)

    def empty_state(self) -> SupportCounts:
        return SupportCounts(np.zeros(2 * self.m, dtype=np.int64), 0, self.key)

    def aggregate_stream(self, chunks) -> SupportCounts:
        return merge_stream(self.empty_state(), self.aggregate, chunks)

    def perturb_aggregate(self, values, rng: np.random.Generator, chunk_size: int | None = None) -> SupportCounts:
        """``aggregate(perturb(values, rng))``: the reports are one small integer per user (``chunk_size``, checked,
        does not change anything)."""
        check_chunk_size("chunk_size", chunk_size)
        return self.aggregate(self.perturb(values, rng))

    def sample_aggregate(self, values, rng: np.random.Generator) -> SupportCounts:
        """``perturb_aggregate`` (the level sampling's per-level entry point; already one draw per user)."""
        return self.perturb_aggregate(values, rng)

    def _check_state(self, state: SupportCounts, postprocess: str | None = None) -> None:
        """A state of this level (its key, 2m counts in [0, n], n >= 1); no post-processing of coefficients."""
        if postprocess is not None:
            raise ValueError(f"postprocess must be None for Haar coefficients, got {postprocess!r}")
        check_state_of(state, self.key, (2 * self.m,), lambda n: (0.0, float(n)))

    def estimate(self, state: SupportCounts, postprocess: str | None = None) -> np.ndarray:
        """Unbiased coefficients c_hat (length m)."""
        self._check_state(state, postprocess)
        c = state.counts.reshape(self.m, 2)
        return walsh_hadamard((c[:, 1] - c[:, 0]).astype(np.float64)) / (state.n * (2 * self.p - 1))

    def variance(self, n, f=None):
        """Var of one coefficient estimate with n users: 1/(n (2p - 1)^2) (f=None), or (1/(2p-1)^2 - F_j)/n for the
        node frequencies F (length m)."""
        n = check_count("n", n, minimum=1)
        v = 1.0 / (2 * self.p - 1) ** 2
        if f is None:
            return v / n
        return (v - check_frequencies("f", f, self.m)) / n

    def privacy_event(self) -> DpEvent:
        return RandomizedResponseEvent(self.epsilon, 2)

    def output_probabilities(self, value: int) -> np.ndarray:
        """P(report | input half-node ``value``) over the 2m reports."""
        r = np.arange(self.m)
        sign_plus = ((np.bitwise_count((value >> 1) & r) + (value & 1)) & 1) == 0
        out = np.empty((self.m, 2))
        out[:, 1] = np.where(sign_plus, self.p, 1 - self.p)
        out[:, 0] = 1 - out[:, 1]
        return out.ravel() / self.m


@dataclass(frozen=True)
class HaarHRR(TreeProtocol):
    """HaarHRR range queries over [0, domain) (see the module docstring: algorithm, variance bound, guarantee).

    Reports (``perturb``): a tuple of h arrays (levels 1..h), each 2 r + [y = +1] for the users of that level.
    """

    domain: int
    epsilon: float
    name = "HaarHRR"

    def __post_init__(self):
        self._init_domain()
        self._init_tree(2)
        set_fields(self, oracles=tuple(HaarLevel(1 << lvl, self.epsilon) for lvl in range(self.height)))

    def _node_index(self, values, level):
        return values >> (self.height - level - 1)  # the half-node at level l + 1: node j = u // 2, sign by u % 2

    def coefficients(self, state: RangeState) -> list[np.ndarray]:
        """Estimated Haar coefficients of levels 1..h."""
        return self.level_estimates(state)

    def estimate(self, state: RangeState) -> np.ndarray:
        """Frequencies of the domain's values by the inverse Haar transform (consistent: they sum to 1)."""
        return self.reconstruct(self.coefficients(state))

    def reconstruct(self, coefficients) -> np.ndarray:
        """The inverse Haar transform: f(x) = 1/D + sum_l s_l(x) c_{l, j_l(x)} / L_l over [0, domain) (exact)."""
        f = np.full(self.leaves, 1.0 / self.leaves)
        for lvl, c in enumerate(coefficients):
            L = self.leaves >> lvl
            f += np.repeat(np.stack([c, -c], axis=1).ravel(), L // 2) / L
        return f[: self.domain]

    def _cut_weights(self, a, e):
        """For every level: the (<= 2) cut nodes j1, j2 of each range and their weights (0 where unused)."""
        out = []
        for lvl in range(self.height):
            L = self.leaves >> lvl
            j1, j2 = a // L, (e - 1) // L

            w1 = _cut_weight(a, e, j1, L)
            w2 = np.where(j2 != j1, _cut_weight(a, e, j2, L), 0.0)
            out.append((j1, w1, j2, w2))
        return out

    def answer(self, state: RangeState, queries) -> np.ndarray:
        """Estimated frequency of every range [a, b] (inclusive) in ``queries`` ((m, 2) array), vectorized."""
        return self.answer_from_coefficients(self.coefficients(state), queries)

    def answer_from_coefficients(self, coefficients, queries) -> np.ndarray:
        """Range answers from Haar coefficients (levels 1..h): (b - a + 1)/D + the <= 2 cut nodes of every level."""
        a, e = self._ends(queries)
        total = (e - a) / self.leaves
        for c, (j1, w1, j2, w2) in zip(coefficients, self._cut_weights(a, e), strict=True):
            c = np.asarray(c, dtype=np.float64)
            total = total + w1 * c[j1] + w2 * c[j2]
        return total

    def variance(self, n: int, queries, f=None) -> np.ndarray:
        """f=None: the upper bound h/n sum w^2/(2p-1)^2 of every answer's variance; with f (frequencies over
        [0, domain)) the exact variance up to O(1/n^2) (see the module docstring)."""
        n = check_count("n", n, minimum=1)
        a, e = self._ends(queries)
        p = self.oracles[0].p
        cuts = self._cut_weights(a, e)
        w2sum = sum(w1 * w1 + w2 * w2 for _, w1, _, w2 in cuts)
        bound = self.height * w2sum / ((2 * p - 1) ** 2 * n)
        if f is None:
            return bound
        f = check_distribution("f", f, (self.domain,))
        true = self.true_coefficients(f)
        drift = sum((w1 * c[j1] + w2 * c[j2]) ** 2 for c, (j1, w1, j2, w2) in zip(true, cuts, strict=True))
        padded = np.zeros(self.leaves)
        padded[: self.domain] = f
        cs = np.concatenate([[0.0], np.cumsum(padded)])
        fr = cs[e] - cs[a]
        return np.maximum(bound - self.height * drift / n - fr * (1 - fr) / n, 0.0)

    def variance_bound(self, n: int) -> float:
        """(h^2/2) ((e^eps + 1)/(e^eps - 1))^2 / n: a bound on every range answer's variance (at most 2 weights of
        size <= 1/2 per level)."""
        n = check_count("n", n, minimum=1)
        e = math.exp(self.epsilon)
        return self.height**2 / 2 * ((e + 1) / (e - 1)) ** 2 / n

    def true_coefficients(self, f) -> list[np.ndarray]:
        """The exact Haar coefficients of a frequency vector over [0, domain) (levels 1..h)."""
        padded = np.zeros(self.leaves)
        padded[: self.domain] = np.asarray(f, dtype=np.float64)
        out = []
        for lvl in range(self.height):
            halves = padded.reshape(2 << lvl, -1).sum(axis=1).reshape(-1, 2)
            out.append(halves[:, 0] - halves[:, 1])
        return out

    def channel_matrix(self) -> np.ndarray:
        """P(report | value) for small domains: columns are (level, report) pairs, each level's block 1/h times
        :meth:`HaarLevel.output_probabilities` at the value's half-node."""
        blocks = []
        for lvl, lv in enumerate(self.oracles):
            u = self._node_index(np.arange(self.domain), lvl)
            blocks.append(np.stack([lv.output_probabilities(int(x)) for x in u]) / self.height)
        return np.concatenate(blocks, axis=1)


def _cut_weight(a, e, j, L):
    """(|[a, e) & left half of node j| - |[a, e) & right half|) / L for nodes of length L."""
    x0, x1, x2 = j * L, j * L + L // 2, (j + 1) * L
    left = np.clip(np.minimum(e, x1) - np.maximum(a, x0), 0, None)
    right = np.clip(np.minimum(e, x2) - np.maximum(a, x1), 0, None)
    return (left - right) / L
