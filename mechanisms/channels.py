"""Exact output distributions of small channels: what the tests and the auditor compare implementations with.

A channel is a matrix with one row per input value and one column per output, P(report = y | value = v); a
randomizer is epsilon-LDP iff :func:`max_log_ratio` of its channel is at most epsilon.
"""

from __future__ import annotations

import itertools

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["max_log_ratio", "grr_channel", "enumerate_bit_vectors", "unary_output_probabilities"]


def max_log_ratio(matrix: ArrayLike) -> float:
    """max over outputs y and input pairs (v, v') of ln P(y|v)/P(y|v') for a k x |Y| channel matrix.

    Outputs with probability 0 under every input are ignored; a zero under one input but not another gives inf.
    """
    m = np.asarray(matrix, dtype=np.float64)
    hi, lo = m.max(axis=0), m.min(axis=0)
    live = hi > 0
    if (lo[live] == 0).any():
        return float("inf")
    return float(np.max(np.log(hi[live]) - np.log(lo[live])))


def grr_channel(k: int, p: float, q: float) -> np.ndarray:
    """The k x k channel of k-ary randomized response: ``p`` on the diagonal, ``q`` elsewhere."""
    m = np.full((k, k), q)
    np.fill_diagonal(m, p)
    return m


def enumerate_bit_vectors(k: int) -> np.ndarray:
    """All 2^k bit vectors of length k as a (2^k, k) bool array (small k only)."""
    if k > 16:
        raise ValueError(f"k must be <= 16 to enumerate every output, got {k}")
    return np.array(list(itertools.product([0, 1], repeat=k)), dtype=bool).reshape(-1, k)


def unary_output_probabilities(outputs: np.ndarray, value: int, p: float, q: float) -> np.ndarray:
    """P(bit vector | value) of unary encoding for every row of ``outputs`` (bool, (m, k)): bit ``value`` is 1 with
    probability ``p``, every other bit with probability ``q``, independently."""
    probs = np.where(outputs, q, 1 - q)
    probs[:, value] = np.where(outputs[:, value], p, 1 - p)
    return probs.prod(axis=1)
