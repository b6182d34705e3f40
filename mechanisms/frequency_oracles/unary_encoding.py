"""Unary encoding: SUE (basic one-time RAPPOR) and OUE, with exact Bernoulli bits and a fused client-server path."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike

from dpkit.accountants import DpEvent, PureDpEvent
from dpkit.mechanisms._memory import allocate, perturb_aggregate_hint
from dpkit.mechanisms._validation import (
    check_bits,
    check_chunk_size,
    check_report_array,
    check_rng,
    check_values,
)
from dpkit.mechanisms.base import PQOracle, SupportCounts
from dpkit.mechanisms.bernoulli import bernoulli_sums, column_counts, unary_perturb, unary_support_counts
from dpkit.mechanisms.channels import enumerate_bit_vectors, unary_output_probabilities

__all__ = ["BitVectorReports", "UnaryEncoding", "SUE", "OUE"]


class BitVectorReports:
    """Reports that are bit vectors of length k (unary encodings): their check and their support counts."""

    k: int

    def _check_reports(self, reports: ArrayLike) -> np.ndarray:
        r = check_report_array(
            "reports", reports, kinds="bui", shape_tail=(self.k,), expected=f"bit vectors of length {self.k}"
        )
        return check_bits("reports", r)

    def _support_counts(self, reports: np.ndarray) -> np.ndarray:
        if reports.dtype == bool:  # uint8 sums of lines of rows: no int64 cast per bit; every byte checked 0 or 1
            return column_counts(reports, check="reports")
        return reports.sum(axis=0, dtype=np.int64)


@dataclass(frozen=True)
class UnaryEncoding(BitVectorReports, PQOracle):
    """Unary encoding with bit probabilities (p, q), defined by the subclasses :class:`SUE` and :class:`OUE` (p: the
    user's own bit is 1, q: any other bit is 1).

    Client: one-hot e_v, then bit v ~ Bern(p) and every other bit ~ Bern(q), independently. The true bit is drawn
    from p only (never from q first: the pure-LDP <= 1.1.2 bug). epsilon-LDP with
    epsilon = ln(p (1 - q) / ((1 - p) q)) for one user's value under replacement. Reports: bool (n, k).

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
    fused_chunk_bits: ClassVar[int] = 1 << 26  # perturb_aggregate's chunks: max(default_chunk, this // k) users

    def __post_init__(self) -> None:
        self._set_k_epsilon()

    def _perturb(self, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = allocate(
            f"{self.name}(k={self.k}).perturb", (len(values), self.k), bool, perturb_aggregate_hint(self.name)
        )
        return unary_perturb(values, self.k, self.p, self.q, rng, out=out)

    def perturb_aggregate(
        self, values: ArrayLike, rng: np.random.Generator, chunk_size: int | None = None
    ) -> SupportCounts:
        """Clients then server, fused chunk by chunk (:func:`dpkit.mechanisms.bernoulli.unary_support_counts`): the same
        random bits as ``perturb`` summed block by block, never the (n, k) report matrix. The state equals
        ``aggregate_stream(perturb(chunk, rng) for chunk in chunks)`` with the same chunks and generator state, bit for
        bit. Chunks: ``chunk_size`` users, by default max(default_chunk, fused_chunk_bits // k)."""
        if type(self)._perturb is not UnaryEncoding._perturb:  # a subclass with its own client (auditor fixtures)
            return super().perturb_aggregate(values, rng, chunk_size)
        checked = check_values("values", values, self.k)
        check_rng(rng)
        size = check_chunk_size("chunk_size", chunk_size) or max(self.default_chunk, self.fused_chunk_bits // self.k)
        counts = unary_support_counts(checked, self.k, self.p, self.q, rng, chunk_size=size)
        return SupportCounts(counts, len(checked), self.key)

    def sample_aggregate(self, values: ArrayLike, rng: np.random.Generator) -> SupportCounts:
        """The support counts' exact law, drawn directly: column j sums n_j bits that are 1 with probability p (its
        holders) and n - n_j with probability q, all independent, i.e. Binomial(n_j, p) + Binomial(n - n_j, q),
        each drawn exactly from about 2 random bits per bit (:func:`dpkit.mechanisms.bernoulli.bernoulli_sums`),
        in O(k) memory. Same law as ``perturb_aggregate`` (not the same random stream); ``perturb_aggregate``
        when a subclass has its own client."""
        if type(self)._perturb is not UnaryEncoding._perturb:  # a subclass with its own client (auditor fixtures)
            return self.perturb_aggregate(values, rng)
        checked = check_values("values", values, self.k)
        check_rng(rng)
        holders = np.bincount(checked, minlength=self.k).astype(np.int64)
        counts = bernoulli_sums(holders, self.p, rng) + bernoulli_sums(len(checked) - holders, self.q, rng)
        return SupportCounts(counts, len(checked), self.key)

    def output_probabilities(self, value: int) -> np.ndarray:
        """P(report | value) for every bit vector, in the order of ``enumerate_outputs()`` (k <= 16): the sampler's
        exact law, since the realized bit probabilities are p and q exactly."""
        return unary_output_probabilities(self.enumerate_outputs(), value, self.p, self.q)

    def enumerate_outputs(self) -> np.ndarray:
        return enumerate_bit_vectors(self.k)

    def channel_matrix(self) -> np.ndarray:
        return np.stack([self.output_probabilities(v) for v in range(self.k)])

    def privacy_event(self) -> DpEvent:
        return PureDpEvent(self.epsilon)


@dataclass(frozen=True)
class SUE(UnaryEncoding):
    """Symmetric unary encoding (basic one-time RAPPOR): p = e^(eps/2)/(e^(eps/2) + 1), q = 1 - p."""

    name = "SUE"

    @cached_property
    def p(self) -> float:
        h = math.exp(self.epsilon / 2)
        return h / (h + 1)

    @cached_property
    def q(self) -> float:
        return 1 / (math.exp(self.epsilon / 2) + 1)


@dataclass(frozen=True)
class OUE(UnaryEncoding):
    """Optimized unary encoding (Wang et al. USENIX Sec'17): p = 1/2, q = 1/(e^eps + 1)."""

    name = "OUE"

    @cached_property
    def p(self) -> float:
        return 0.5

    @cached_property
    def q(self) -> float:
        return 1 / (math.exp(self.epsilon) + 1)
