"""The threat model of data poisoning on LDP (Cao, Jia, Gong, USENIX Security 2021) and its argument checks.

An attacker injects m fake users next to n genuine ones, beta = m/(n + m) of the population, who send arbitrary
well-formed reports (the server cannot tell a crafted report from a randomized one). Goal: raise the estimated
frequencies of r target items T. The measure is the total gain

    G = sum_{t in T} (f_hat_t(after) - f_hat_t(before)),

after = the server's estimate from all n + m reports, before = from the n genuine ones. Every check takes
``(name, value, ...)`` and its error names the parameter, its value and the allowed range.
"""

from __future__ import annotations

import numpy as np

from dpkit.accountants.validation import check_count, check_probability

__all__ = ["check_fake_fraction", "check_targets", "fake_count", "random_targets"]


def check_fake_fraction(name: str, value: object) -> float:
    """beta = m/(n + m), the fake users' share of the population, in [0, 1)."""
    return check_probability(name, value, open_low=False, open_high=True)


def check_targets(name: str, targets: object, k: int) -> np.ndarray:
    """Target items: a non-empty array of distinct integers in [0, k), returned sorted as int64."""
    arr = np.atleast_1d(np.asarray(targets))
    if arr.size == 0:
        raise ValueError(f"{name} must be a non-empty list of items in [0, {k}), got none")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integer items in [0, {k}), got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a non-empty list of items in [0, {k}), got shape {arr.shape}")
    if arr.size > k:
        raise ValueError(f"{name} must hold at most k={k} items, got {arr.size}")
    bad = (arr < 0) | (arr >= k)
    if bad.any():
        raise ValueError(f"{name} must be items in [0, {k}), got {int(arr[bad][0])}")
    out = np.unique(arr.astype(np.int64))
    if out.size != arr.size:
        raise ValueError(f"{name} must be distinct items, got {arr.tolist()}")
    return out


def fake_count(n: int, beta: float) -> int:
    """m = round(beta n / (1 - beta)) fake users next to n genuine ones (so m/(n + m) is about beta)."""
    n = check_count("n", n, minimum=1)
    beta = check_fake_fraction("beta", beta)
    return int(round(beta * n / (1 - beta)))


def random_targets(k: int, r: int, rng: np.random.Generator) -> np.ndarray:
    """r distinct items drawn uniformly from [0, k) (the attacker's choice in Cao et al.'s experiments), sorted."""
    r = check_count("r", r, minimum=1, maximum=k)
    return np.sort(rng.choice(k, size=r, replace=False)).astype(np.int64)
