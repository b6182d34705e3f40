"""Hadamard Response (Acharya, Sun, Zhang, AISTATS'19): the high-privacy variant and the general-epsilon block
variant, decoded with fast Walsh-Hadamard transforms."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import ArrayLike

from dpkit.accountants import DpEvent, PureDpEvent
from dpkit.mechanisms._validation import check_report_array, check_values
from dpkit.mechanisms.base import FrequencyOracle, PureFrequencyOracle, SupportCounts
from dpkit.mechanisms.postprocessing import em_channel
from dpkit.mechanisms.postprocessing import postprocess as apply_postprocess

__all__ = ["HadamardResponse", "HR", "HadamardResponseGeneral", "fwht"]

MAX_DOMAIN = 2**31 - 1  # the largest k of both variants (HR: at most K = 2^31 outputs)


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

    def __post_init__(self) -> None:
        self._set_k_epsilon(MAX_DOMAIN)

    @cached_property
    def K(self) -> int:
        """The number of outputs, 2^ceil(log2(k + 1))."""
        return 1 << int(math.ceil(math.log2(self.k + 1)))

    @cached_property
    def p_star(self) -> float:
        e = math.exp(self.epsilon)
        return e / (e + 1)

    @cached_property
    def q_star(self) -> float:
        return 0.5

    def _perturb(self, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = values.shape[0]
        r = values + 1
        j = rng.integers(0, self.K, size=n)
        want_in = rng.random(n) < self.p_star
        parity = np.bitwise_count(r & j) & 1  # 0 = in C_v
        flip = (parity == 0) != want_in
        top = np.left_shift(1, np.floor(np.log2(r)).astype(np.int64))  # highest set bit of r (r >= 1)
        return np.where(flip, j ^ top, j)

    def _check_reports(self, reports: ArrayLike) -> np.ndarray:
        r = check_report_array("reports", reports, kinds="iu", shape_tail=(), expected=f"indices in [0, {self.K})")
        return check_values("reports", r, self.K)

    def _support_counts(self, reports: np.ndarray) -> np.ndarray:
        hist = np.bincount(reports, minlength=self.K).astype(np.int64)
        t = fwht(hist)  # t[r] = sum_j hist[j] H[r, j] = (#in C) - (#not in C)
        return (len(reports) + t[1 : self.k + 1]) // 2

    def output_probabilities(self, value: int) -> np.ndarray:
        j = np.arange(self.K)
        in_c = (np.bitwise_count((value + 1) & j) & 1) == 0
        return np.where(in_c, self.p_star / (self.K / 2), (1 - self.p_star) / (self.K / 2))

    def channel_matrix(self) -> np.ndarray:
        return np.stack([self.output_probabilities(v) for v in range(self.k)])

    def privacy_event(self) -> DpEvent:
        return PureDpEvent(self.epsilon)


HR = HadamardResponse


@dataclass(frozen=True)
class HadamardResponseGeneral(FrequencyOracle):
    """Hadamard Response, general-epsilon (block) variant (Acharya-Sun-Zhang AISTATS'19; the
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

    def __post_init__(self) -> None:
        self._set_k_epsilon(MAX_DOMAIN)

    @cached_property
    def B(self) -> int:
        """The number of blocks: the largest power of 2 <= min(e^eps, 2k)."""
        return 1 << (math.frexp(min(math.exp(self.epsilon), 2.0 * self.k))[1] - 1)

    @cached_property
    def b(self) -> int:
        """Outputs per block: the smallest power of 2 >= ceil(k/B) + 1."""
        return 1 << (-(-self.k // self.B)).bit_length()

    @cached_property
    def K(self) -> int:
        """The number of outputs, B b."""
        return self.B * self.b

    @cached_property
    def D(self) -> float:
        """2B - 1 + e^eps."""
        return 2 * self.B - 1 + math.exp(self.epsilon)

    @cached_property
    def p_uniform(self) -> float:
        """P(the client reports a uniform output of [K]) = 2B/D."""
        return 2 * self.B / (2 * self.B - 1 + math.exp(self.epsilon))

    def cell(self, values: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """(block, Hadamard row in [1, b)) of each value."""
        blk, pos = np.divmod(np.asarray(values, dtype=np.int64), self.b - 1)
        return blk, pos + 1

    def _perturb(self, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = values.shape[0]
        blk, r = self.cell(values)
        j = rng.integers(0, self.b, size=n)
        uniform = rng.random(n) < self.p_uniform
        odd = (np.bitwise_count(r & j) & 1).astype(bool)  # j not in C_v: flip the highest set bit of r
        top = np.left_shift(1, np.floor(np.log2(r)).astype(np.int64))
        pos = np.where(uniform | ~odd, j, j ^ top)
        out_blk = np.where(uniform, rng.integers(0, self.B, size=n), blk)
        return out_blk * self.b + pos

    def _check_reports(self, reports: ArrayLike) -> np.ndarray:
        r = check_report_array("reports", reports, kinds="iu", shape_tail=(), expected=f"indices in [0, {self.K})")
        return check_values("reports", r, self.K)

    def _support_counts(self, reports: np.ndarray) -> np.ndarray:
        return np.bincount(reports, minlength=self.K).astype(np.int64)

    @property
    def state_shape(self) -> tuple[int, ...]:
        """The state is the histogram of the K outputs."""
        return (self.K,)

    def estimate(self, state: SupportCounts, postprocess: str | None = None) -> np.ndarray:
        self._check_state(state, postprocess)
        if postprocess == "ibu":
            return self.ibu(state)
        t = fwht(state.counts.reshape(self.B, self.b))
        f = self.D / (math.exp(self.epsilon) - 1) * t[:, 1:].ravel()[: self.k] / state.n
        return apply_postprocess(f, postprocess)

    def ibu(self, state: SupportCounts, n_iter: int = 10_000, tol: float = 1e-12) -> np.ndarray:
        """IBU (EM) on the exact channel from the output histogram: converges to the maximum-likelihood estimate on
        the probability simplex. Each iteration applies H_b to every block twice: O(K log b) (a dense b x b
        product for b <= 256, which is faster there)."""
        self._check_state(state)
        B, b, k, e1 = self.B, self.b, self.k, math.exp(self.epsilon) - 1
        scale = 2.0 / (b * self.D)
        hadamard: Callable[[np.ndarray], np.ndarray] = fwht
        if b <= 256:  # small blocks: one dense product with H_b beats the FWHT's Python-level passes
            j = np.arange(b)
            H = 1.0 - 2.0 * (np.bitwise_count(j[:, None] & j[None, :]) & 1)

            def dense(a: np.ndarray) -> np.ndarray:
                return a @ H

            hadamard = dense

        blk, row = self.cell(np.arange(k))
        cell = blk * b + row  # value v -> (its block, its Hadamard row), flattened
        g = np.zeros(B * b)

        def forward(f: np.ndarray) -> np.ndarray:
            # P(y) = scale (sum f + (e^eps - 1) sum_{v : y in C_v} f_v), per block by one transform
            g[cell] = f
            t = hadamard(g.reshape(B, b))
            return scale * (f.sum() + e1 * (t[:, :1] + t) / 2)

        def adjoint(w: np.ndarray) -> np.ndarray:
            # (A^T w)_v = scale (sum w + (e^eps - 1) sum_{y in C_v} w_y)
            t = hadamard(w)
            return scale * (w.sum() + e1 * ((t[:, :1] + t) / 2).ravel()[cell])

        return em_channel(state.counts.reshape(B, b), forward, adjoint, k, n_iter, tol)

    def block_mass(self, f: ArrayLike) -> np.ndarray:
        """F_v: the total frequency of the block of each value (length k)."""
        f = np.asarray(f, dtype=np.float64)
        flat = np.zeros(self.B * (self.b - 1))
        flat[: self.k] = f
        return flat.reshape(self.B, self.b - 1).sum(axis=1)[self.cell(np.arange(self.k))[0]]

    def variance(self, n: int, f: ArrayLike | None = None) -> float | np.ndarray:
        n = self._check_n(n)
        e1 = math.exp(self.epsilon) - 1
        c = self.D / e1**2 if e1 < 1e150 else self.D / e1 / e1  # D / e1^2 without overflow (epsilon > 345)
        if f is None:
            return c * (2 + e1 * (min(self.b - 1, self.k) - 1) / (self.k - 1)) / n
        f = self._check_f(f)
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

    def privacy_event(self) -> DpEvent:
        return PureDpEvent(self.epsilon)


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
