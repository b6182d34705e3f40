"""Vectorized universal hashing for local hashing protocols (BLH, OLH, LOLOHA).

Family (multiply-add-shift, Dietzfelbinger 1996, then Lemire's multiply-shift range reduction):

    z        = (a * x + b) mod 2^64          a, b uniform in [0, 2^64), x in [0, 2^32)
    h32(x)   = z >> 32                        (strongly universal: for x != x', (h32(x), h32(x')) is uniform
                                               on [2^32]^2; Dietzfelbinger 1996, Thorup 2015 "High speed hashing")
    H(x)     = (h32(x) * g) >> 32             in [0, g)

Everything is plain uint64 arithmetic with wrap-around (numpy array ops wrap silently), no Python call per item.
For x != x' the collision probability is sum_j pi_j^2 with |pi_j - 1/g| <= 2^-32, so it is 1/g up to g * 2^-64;
the estimators use q* = 1/g and their bias is below 1e-15 for every g <= 2^32.

Reports carry the hash function as its two 64-bit parameters (a, b); the server never re-seeds a hash library.

Server side: H(x) = y  <=>  (z - L_y) mod 2^64 < W_y with L_y = ceil(y 2^32 / g) 2^32 and
W_y = (ceil((y+1) 2^32 / g) - ceil(y 2^32 / g)) 2^32, so the support test of a report against every item is one
multiply, one add and one compare on uint64: ``a * x + (b - L_y) < W_y``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from dpkit.mechanisms._validation import check_nonnegative_ints, check_report_array

U64 = np.uint64
_SHIFT = U64(32)
MAX_DOMAIN = 2**32
MAX_BUCKETS = 2**32 - 1  # g: bucket y + 1 of the range reduction must fit in 32 bits (see bucket_bounds)
MAX_OLH_EPSILON = math.log(MAX_BUCKETS - 1.5)  # ~22.18: the largest epsilon whose OLH g = round(e^eps) + 1 fits


def optimal_g(epsilon: float, protocol: str = "OLH") -> int:
    """OLH's number of buckets, g = round(e^epsilon) + 1 (multi-freq-ldpy's integer g; Wang et al. USENIX Sec'17:
    e^epsilon + 1), for a checked epsilon; beyond MAX_OLH_EPSILON it exceeds the family's 2^32 - 1 buckets, which
    is refused by name."""
    g = int(round(math.exp(epsilon))) + 1
    if g > MAX_BUCKETS:
        raise ValueError(
            f"epsilon must be at most {MAX_OLH_EPSILON:.4g} for {protocol} (its g = round(e^epsilon) + 1 must be below "
            f"2^32), got {epsilon!r}; give g explicitly or use another protocol"
        )
    return g


def check_hash_reports(name: str, reports: ArrayLike, g: int, columns: int = 3) -> np.ndarray:
    """Local hashing reports: integer rows of ``columns`` - 1 hash parameters (any uint64: a signed array must
    hold no negative entry) and a last column y in [0, g). Returns uint64."""
    r = check_report_array(
        name, reports, kinds="iu", shape_tail=(columns,), expected=f"uint64 rows of {columns - 1} hash parameters and y"
    )
    r = check_nonnegative_ints(name, r, "uint64 hash parameters and hashed reports")
    if len(r) and r[:, -1].max() >= g:
        raise ValueError(f"{name}[:, {columns - 1}] (the hashed report) must be in [0, {g}), got {int(r[:, -1].max())}")
    return r


def draw_hash_params(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` independent hash functions: (a, b) uniform uint64."""
    a = rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True)
    b = rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True)
    return a, b


def hash_values(a: ArrayLike, b: ArrayLike, x: ArrayLike, g: int) -> np.ndarray:
    """H_{a,b}(x) in [0, g), elementwise (broadcasting) over uint64 arrays."""
    z = np.multiply(np.asarray(a, dtype=U64), np.asarray(x).astype(U64, copy=False))
    z += np.asarray(b, dtype=U64)
    z >>= _SHIFT
    z *= U64(g)
    z >>= _SHIFT
    return z.astype(np.int64)


def bucket_bounds(y: np.ndarray, g: int) -> tuple[np.ndarray, np.ndarray]:
    """(L_y, W_y) as uint64 such that H(x) = y  <=>  (z - L_y) mod 2^64 < W_y (see the module docstring)."""
    y = np.asarray(y, dtype=np.uint64)
    two32 = U64(1 << 32)
    g64 = U64(g)
    # ceil(y * 2^32 / g) computed without overflow: y < g <= 2^32 so y * 2^32 < 2^64.
    lo = (y * two32 + g64 - U64(1)) // g64
    hi_num = (y + U64(1)) * two32  # may equal 2^64 when y = g - 1 = 2^32 - 1; domain capped below that
    hi = (hi_num + g64 - U64(1)) // g64
    return lo << _SHIFT, (hi - lo) << _SHIFT


def support_counts(a: np.ndarray, b: np.ndarray, y: np.ndarray, g: int, k: int, block: int = 1 << 18) -> np.ndarray:
    """C(v) = #{reports i : H_{a_i,b_i}(v) = y_i} for v in [0, k), in blocks of ~``block`` (user, item) pairs."""
    n = len(y)
    counts = np.zeros(k, dtype=np.int64)
    if n == 0:
        return counts
    lo, width = bucket_bounds(y, g)
    b_shift = np.asarray(b, dtype=U64) - lo
    a = np.asarray(a, dtype=U64)
    xs = np.arange(k, dtype=U64)
    rows = max(1, min(n, block // max(k, 1)))
    buf = np.empty((rows, k), dtype=U64)
    mask = np.empty((rows, k), dtype=bool)
    for s in range(0, n, rows):
        e = min(n, s + rows)
        m = e - s
        bb, mm = buf[:m], mask[:m]
        np.multiply(a[s:e, None], xs[None, :], out=bb)
        np.add(bb, b_shift[s:e, None], out=bb)
        np.less(bb, width[s:e, None], out=mm)
        counts += np.add.reduce(mm.view(np.uint8), axis=0, dtype=np.int64)
    return counts
