"""Exact Bernoulli bits from few random bits, vectorized: the unary-encoding clients' hot path.

A float64 probability x in [0, 1] is a dyadic rational, so it has a finite expansion

    x = c / 2^4 + e / 2^12 + sum_i d_i / 2^(12 + 64 i),    0 <= c <= 16, 0 <= e < 2^8, 0 <= d_i < 2^64

(:func:`bernoulli_expansion`). A bit is 1 iff U < x for a uniform U in [0, 1) whose binary digits are read lazily:
the first 4 from a nibble V; if V < c the bit is 1, if V > c it is 0, and only on a tie (V = c, probability 1/16)
the next 8 from a byte W compared with e the same way; only on a second tie (probability 1/4096 in all) the next 64
from one raw output per digit d_i; a tie beyond the last digit gives 0 (the remaining digits of x are 0, so U >= x).
Hence P(bit = 1) = x *exactly*, as a real number, with no rounding in either direction: every guarantee computed
from the nominal probabilities (epsilon, channel matrices, variances, the unbiased estimators) holds as stated. On
average a bit costs 4 + 8/16 random bits instead of the 64 of a float64 uniform.

Where the random bits come from (so that a run is reproducible from the generator's state):

* bulk: for N bits in C order, the next ceil(N / 16) raw 64-bit outputs of ``rng.bit_generator``; output i
  holds the nibbles of bits 16 i to 16 i + 15: bit 16 i + j (j < 8) is the low nibble of its byte j, bit 16 i + 8 + j
  the high nibble of byte j (bytes in memory order, i.e. byte j is bits 8 j to 8 j + 7 on little-endian machines);
* then the bytes W of the T tied bits, one byte per tie, from the next ceil(T / 8) raw outputs, in the order of the
  ties (flat C order for :func:`bernoulli_matrix`; for :func:`unary_perturb`, block of rows by block of rows,
  column by column within a block, rows ascending: the order in which the fused server counts them);
* then, level after level, one raw output per bit still tied, in the same order.

Blocks of rows run in threads when the bit generator can jump ahead (PCG64, PCG64DXSM): each thread reads its own
slice of the same bulk stream, so the bits, the counts and the generator's final state do not depend on the
number of threads (:func:`set_threads`). Other bit generators run the same blocks in one thread.

:func:`unary_support_counts` is the unary-encoding client and server fused: it draws exactly the bits of
:func:`unary_perturb` (the same bulk nibbles, ties, bytes and digits, in the same order) but sums them block by block
instead of writing the (n, k) report matrix, so its counts equal ``column_counts(unary_perturb(...))`` bit for bit.

:func:`bernoulli_sums` draws only the sums: Binomial(m_j, x) for every j, exactly (the number of m_j such bits that
are 1), from about 2 m_j random bits counted 64 at a time, where the bits themselves are not needed.
"""

from __future__ import annotations

import math
import os
import threading
from typing import Any

import numpy as np

__all__ = [
    "bernoulli_expansion",
    "bernoulli_matrix",
    "bernoulli_rows_packed_where",
    "unary_perturb",
    "unary_support_counts",
    "column_counts",
    "bernoulli_sums",
    "set_threads",
    "get_threads",
]

_BLOCK_BITS = 1 << 21  # bits per block: 1 MB of random bytes and temporaries of a few MB (fewer numpy calls)
_LINE_BYTES = 4096  # rows are summed in lines of about this many bytes (long inner loops)
_PARALLEL_MIN_BITS = 1 << 22  # below this one thread does all the work
_JUMPABLE = (np.random.PCG64, np.random.PCG64DXSM)  # advance(delta) skips exactly delta raw outputs
_threads: int | None = None


def set_threads(n: int | None = None) -> None:
    """Threads for the bulk draws (``None``: the ``DPKIT_THREADS`` environment variable if set, else one per
    available core, at most 8). Outputs never depend on it."""
    global _threads
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"threads must be a positive int or None, got {n!r}")
    _threads = n


def get_threads() -> int:
    """The number of threads the bulk draws use for large inputs (see :func:`set_threads`)."""
    return _n_threads()


def _n_threads() -> int:
    if _threads is not None:
        return _threads
    env = os.environ.get("DPKIT_THREADS", "")
    if env.isdigit() and int(env) >= 1:
        return int(env)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def bernoulli_expansion(prob: float) -> tuple[int, int, tuple[int, ...]]:
    """``(c, e, (d_1, d_2, ...))`` with prob = c/2^4 + e/2^12 + sum_i d_i/2^(12 + 64 i) exactly (trailing zeros cut)."""
    x = float(prob)
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {prob!r}")
    num, den = x.as_integer_ratio()  # den is a power of two: the expansion is finite
    c, rem = divmod(num << 4, den)
    e, rem = divmod(rem << 8, den)
    digits = []
    while rem:
        d, rem = divmod(rem << 64, den)
        digits.append(d)
    return c, e, tuple(digits)


# ---------------------------------------------------------------------------------------------------- blocks
def _clone(bg, skip: int):
    clone = type(bg)(0)
    clone.state = bg.state
    clone.advance(skip)
    return clone


def _run_blocks(
    nbits: int, block_bits: int, rng: np.random.Generator, block, threads: int | None, scratches: list | None = None
) -> list:
    """``block(a, b, u, scratch)`` over the flat bit ranges [a, b) of ``block_bits`` (a multiple of 16) bits.

    ``u`` holds the bulk bytes of the range: its ceil((b - a) / 16) raw outputs. Returns, per thread, the block results
    and that thread's ``scratch`` dict (``scratches[i]`` when given, so that buffers outlive the call: fresh large
    arrays cost page faults); threads take consecutive blocks, so the concatenation is in block order.
    """
    bg = rng.bit_generator
    starts = list(range(0, nbits, block_bits))
    t = min(threads or _n_threads(), len(starts))
    if t <= 1 or nbits < _PARALLEL_MIN_BITS or type(bg) not in _JUMPABLE:
        t = 1
    if scratches is None:
        scratches = []
    scratches.extend({} for _ in range(t - len(scratches)))

    def run(bgen, idx, scratch):
        out = []
        for a in idx:
            nb = min(block_bits, nbits - a)
            out.append(block(a, a + nb, bgen.random_raw(-(-nb // 16)).view(np.uint8), scratch))
        return out, scratch

    if t == 1:
        return [run(bg, starts, scratches[0])]
    groups = [[starts[j] for j in g] for g in np.array_split(np.arange(len(starts)), t)]
    state = bg.state
    clones = [_clone(bg, g[0] // 16) for g in groups]
    results: list = [None] * t

    def work(i):
        results[i] = run(clones[i], groups[i], scratches[i])

    _in_threads(t, work)
    end = clones[-1].state  # ceil(nbits / 16) outputs past `state`: where the sequential loop ends ...
    end["has_uint32"], end["uinteger"] = state["has_uint32"], state["uinteger"]  # ... its 32-bit buffer untouched
    bg.state = end
    return results


def _in_threads(t: int, work) -> None:
    """``work(i)`` for i < t, i = 0 in this thread and the others in new threads; re-raises a worker's error."""
    errors: list = []

    def guarded(i):
        try:
            work(i)
        except BaseException as err:  # noqa: BLE001 (handed to the caller below)
            errors.append(err)

    workers = [threading.Thread(target=guarded, args=(i,)) for i in range(1, t)]
    for w in workers:
        w.start()
    try:
        work(0)
    finally:
        for w in workers:
            w.join()
    if errors:
        raise errors[0]


def _buffer(scratch: dict, name: str, shape, dtype=bool) -> np.ndarray:
    """A reusable array of at least ``shape`` (1-D: size; 2-D: (rows, size)), returned cut to it."""
    size = shape if isinstance(shape, int) else shape[-1]
    rows = None if isinstance(shape, int) else shape[0]
    buf = scratch.get(name)
    if buf is None or buf.shape[-1] < size or (rows is not None and buf.shape[0] != rows):
        buf = scratch[name] = np.empty(size if rows is None else (rows, size), dtype=dtype)
    return buf[..., :size]


# ------------------------------------------------------------------------------------------- tie resolution
def _resolve_digits(count: int, digits, bg, sel=None, digits_where=()) -> np.ndarray:
    """Levels 3+: one raw output per still-tied bit and digit, in order; a tie past the last digit gives 0."""
    bits = np.zeros(count, dtype=bool)
    active = np.arange(count)
    for i in range(max(len(digits), len(digits_where))):
        if active.size == 0:
            break
        w = bg.random_raw(active.size)
        d: np.ndarray | np.uint64 = np.uint64(digits[i] if i < len(digits) else 0)
        if sel is not None:
            d = np.where(sel[active], np.uint64(digits_where[i] if i < len(digits_where) else 0), d)
        bits[active] = w < d
        active = active[w == d]
    return bits


def _needs_bytes(exp) -> bool:
    return exp[1] > 0 or bool(exp[2])


def _tie_bytes(count: int, exp, bg, exp_where=None):
    """The level-2 bytes of ``count`` nibble ties, or None when x = c/16 exactly (then every tie gives 0)."""
    if count == 0 or not (_needs_bytes(exp) or (exp_where is not None and _needs_bytes(exp_where))):
        return None
    return bg.random_raw(-(-count // 8)).view(np.uint8)[:count]


class _Ties:
    """Nibble ties resolved in stream order, a batch at a time: one byte per tie against e (e_where where ``sel``),
    from raw outputs read as they are needed (ceil(T / 8) of them for T ties in all, as one read would), then, after
    every byte, the 64-bit digits of the byte ties (:meth:`finish`). Memory: one batch, and the byte ties."""

    def __init__(self, exp, bg, exp_where=None):
        self.exp, self.exp_where, self.bg = exp, exp_where, bg
        self.live = _needs_bytes(exp) or (exp_where is not None and _needs_bytes(exp_where))  # else every tie is 0
        self.spare = np.empty(0, dtype=np.uint8)
        self.pending: list[tuple[np.ndarray, np.ndarray | None]] = []

    def _bytes(self, m: int) -> np.ndarray:
        if m <= self.spare.size:
            w, self.spare = self.spare[:m], self.spare[m:]
            return w
        need = m - self.spare.size
        new = self.bg.random_raw(-(-need // 8)).view(np.uint8)
        w, self.spare = np.concatenate([self.spare, new[:need]]), new[need:]
        return w

    def feed(self, out: np.ndarray, pos: np.ndarray, sel: np.ndarray | None = None) -> None:
        """Resolve the ties at positions ``pos`` of ``out`` (uint8 or bool), the next ones of the stream."""
        if pos.size == 0:
            return
        if not self.live:
            out[pos] = 0
            return
        w = self._bytes(pos.size)
        e: Any = np.uint8(self.exp[1])
        if sel is not None and self.exp_where is not None:
            e = np.where(sel, np.uint8(self.exp_where[1]), e)
        out[pos] = w < e
        sub = np.flatnonzero(w == e)
        if sub.size:
            self.pending.append((pos[sub], None if sel is None else sel[sub]))

    def finish(self, out: np.ndarray) -> None:
        """The byte ties: one raw output per digit level and still-tied bit, in the order they were fed."""
        if not self.pending:
            return
        pos = np.concatenate([p for p, _ in self.pending])
        sel = None if self.pending[0][1] is None else np.concatenate([s for _, s in self.pending])
        digits_where = () if self.exp_where is None else self.exp_where[2]
        out[pos] = _resolve_digits(pos.size, self.exp[2], self.bg, sel, digits_where)
        self.pending = []


def _resolve_ties(count: int, exp, bg, sel=None, exp_where=None) -> np.ndarray:
    """Bits of ``count`` nibble ties, in order: a byte each against e, then the 64-bit digits on byte ties."""
    bits = np.zeros(count, dtype=bool)
    ties = _Ties(exp, bg, exp_where)
    ties.feed(bits, np.arange(count), sel)
    ties.finish(bits)
    return bits


# ------------------------------------------------------------------------------------------------ the matrix
_LOW_NIBBLES = np.uint64(0x0F0F0F0F0F0F0F0F)


def _nibbles(u: np.ndarray, nbits: int, scratch: dict) -> np.ndarray:
    """The bulk nibbles of ``nbits`` bits from whole raw outputs ``u`` (bytes), one uint8 per bit, in bit order.

    Per output: its 8 low nibbles, then its 8 high nibbles (a shift and two masks on uint64 words).
    """
    w = u.view(np.uint64)
    z = _buffer(scratch, "nibbles", 2 * w.size, np.uint64)
    np.bitwise_and(w, _LOW_NIBBLES, out=z[0::2])
    np.bitwise_and(
        np.right_shift(w, np.uint64(4), out=_buffer(scratch, "shifted", w.size, np.uint64)), _LOW_NIBBLES, out=z[1::2]
    )
    return z.view(np.uint8)[:nbits]


def _mark(nib: np.ndarray, thr, out: np.ndarray, scratch: dict) -> None:
    """The bulk outcome of each nibble, written into the output's bytes ``out`` (uint8): 1 (nibble < thr), 0 (>),
    2 (=: a tie, resolved once the bulk is drawn). The output holds the ties' marks, so no list of ties is kept
    (memory: the output and one block's buffers)."""
    np.less(nib, thr, out=out.view(bool))
    tie = np.equal(nib, thr, out=_buffer(scratch, "tie", nib.size)).view(np.uint8)
    np.bitwise_or(out, np.left_shift(tie, 1, out=tie), out=out)


def _fill_bernoulli(out: np.ndarray, rng: np.random.Generator, exp, where_of, exp_where, threads) -> None:
    """Fill the flat uint8 view ``out`` with Bernoulli bits: the bulk block by block (ties marked 2), then the ties
    in flat C order. ``where_of(a, b)``: the bool mask of the flat range [a, b) (None: no mask)."""
    c = np.uint8(exp[0])

    def block(a, b, u, scratch):
        thr: Any = c
        if where_of is not None:
            thr = _buffer(scratch, "thr", b - a, np.uint8)
            np.copyto(thr, c)
            np.copyto(thr, np.uint8(exp_where[0]), where=where_of(a, b))
        _mark(_nibbles(u, b - a, scratch), thr, out[a:b], scratch)

    _run_blocks(out.size, _BLOCK_BITS, rng, block, threads)
    ties = _Ties(exp, rng.bit_generator, exp_where)
    for a in range(0, out.size, _BLOCK_BITS):
        b = min(out.size, a + _BLOCK_BITS)
        pos = np.flatnonzero(out[a:b] == 2)
        ties.feed(out, a + pos, None if where_of is None else where_of(a, b)[pos])
    ties.finish(out)


def bernoulli_matrix(
    shape, prob, rng: np.random.Generator, where: np.ndarray | None = None, prob_where=None, *, threads=None
) -> np.ndarray:
    """Independent Bernoulli bits: a bool array of ``shape``.

    Each bit is Bernoulli(prob), or Bernoulli(prob_where) where the bool mask ``where`` (same shape) is set, and
    P(bit = 1) equals the float64 probability *exactly* (module docstring: a nibble, then a byte and 64-bit digits
    on ties, resolved in flat C order). About 4.5 random bits per bit; memory: the output and one block.
    """
    shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)
    exp = bernoulli_expansion(prob)
    exp_where = where_of = None
    if where is not None:
        if prob_where is None:
            raise ValueError("where needs prob_where")
        exp_where = bernoulli_expansion(prob_where)
        mask = np.asarray(where, dtype=bool)
        if mask.shape != shape:
            raise ValueError(f"where must have shape {shape}, got {mask.shape}")
        flat_mask = mask.reshape(-1)

        def where_of(a: int, b: int) -> np.ndarray:
            return flat_mask[a:b]

    out = np.empty(shape, dtype=bool)
    _fill_bernoulli(out.reshape(-1).view(np.uint8), rng, exp, where_of, exp_where, threads)
    return out


def bernoulli_rows_packed_where(
    where_packed: np.ndarray, k: int, prob, prob_where, rng: np.random.Generator, out=None, *, threads=None
) -> np.ndarray:
    """``bernoulli_matrix((n, k), prob, rng, where=W, prob_where=prob_where)`` for the mask W given as rows of
    packed bits (``np.packbits(W, axis=1)``, n x ceil(k / 8) bytes): the same bits, without the n x k mask (each
    block unpacks its own rows). ``out``: an (n, k) bool array to fill (default: a new one)."""
    packed = np.asarray(where_packed, dtype=np.uint8)
    n = packed.shape[0]
    if packed.ndim != 2 or packed.shape[1] != -(-k // 8):
        raise ValueError(
            f"where_packed must have shape (n, {-(-k // 8)}) (packed rows of {k} bits), got {packed.shape}"
        )
    exp, exp_where = bernoulli_expansion(prob), bernoulli_expansion(prob_where)

    def where_of(a: int, b: int) -> np.ndarray:
        r0, r1 = a // k, -(-b // k)
        rows = np.unpackbits(packed[r0:r1], axis=1, count=k).view(bool).reshape(-1)
        return rows[a - r0 * k : b - r0 * k]

    out = np.empty((n, k), dtype=bool) if out is None else out
    _fill_bernoulli(out.reshape(-1).view(np.uint8), rng, exp, where_of, exp_where, threads)
    return out


# ----------------------------------------------------------------------------------------- unary encoding
def _unary_blocking(k: int) -> tuple[int, int]:
    """(m, rows): rows per summing line, a multiple of 16 / gcd(k, 16) (lines start on whole raw outputs) of about
    _LINE_BYTES bytes, and rows per block, at most 255 whole lines (uint8 sums) and about _BLOCK_BITS bits."""
    base = 16 // math.gcd(k, 16)
    m = base * max(1, round(2 * _LINE_BYTES / (base * k)))
    return m, m * max(1, min(255, _BLOCK_BITS // (m * k)))


def unary_perturb(
    values: np.ndarray, k: int, p: float, q: float, rng: np.random.Generator, *, threads=None, out=None
) -> np.ndarray:
    """Unary-encoding reports: bool (n, k), bit v_i of row i ~ Bernoulli(p), every other bit ~ Bernoulli(q).

    Exact probabilities (module docstring). Random bits, in order: the n own bits ``bernoulli_matrix(n, p, rng)``;
    the bulk of an (n, k) matrix at q; the resolution of the bulk's ties off the users' own positions, block of
    rows by block of rows (blocks of ``_unary_blocking(k)[1]`` rows), column by column within a block, rows
    ascending within a column. The own bits are written over the positions (i, v_i): they never depend on a q-draw.
    Memory: the output (``out``, an (n, k) bool array, or a new one) and one block; the ties are marked in the
    output's bytes until they are resolved.
    """
    n = values.shape[0]
    exp = bernoulli_expansion(q)
    c = np.uint8(exp[0])
    block_bits = _unary_blocking(k)[1] * k
    key = np.uint16 if k <= 1 << 16 else np.int64  # a stable argsort of uint16 keys is a radix sort
    own_bits = bernoulli_matrix(n, p, rng, threads=threads)
    out = np.empty((n, k), dtype=bool) if out is None else out
    flat = out.reshape(-1).view(np.uint8)

    def block(a, b, u, scratch):
        _mark(_nibbles(u, b - a, scratch), c, flat[a:b], scratch)

    _run_blocks(n * k, block_bits, rng, block, threads)
    flat[np.arange(0, n * k, k) + values] = own_bits  # the own positions: their bits come from p, never ties
    ties = _Ties(exp, rng.bit_generator)
    for a in range(0, n * k, block_bits):
        pos = np.flatnonzero(flat[a : a + block_bits] == 2)
        ties.feed(flat, a + pos[np.argsort((pos % k).astype(key), kind="stable")])  # by column, rows ascending
    ties.finish(flat)
    return out


_LOW_BITS = np.array([(1 << j) - 1 for j in range(8)], dtype=np.uint8)


def _segment_counts(bits: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Number of True in each of the consecutive segments of ``bits`` of the given lengths (int64): prefix counts
    of the packed bits (one popcount per byte), read at the segment ends."""
    packed = np.packbits(bits, bitorder="little")
    prefix = np.zeros(packed.size + 1, dtype=np.int64)
    np.cumsum(np.bitwise_count(packed), out=prefix[1:])
    ends = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=ends[1:])
    byte, bit = ends >> 3, ends & 7
    partial = packed[np.minimum(byte, max(packed.size - 1, 0))] & _LOW_BITS[bit] if packed.size else 0
    return np.diff(prefix[byte] + np.bitwise_count(partial))


def _tie_byte_counts(lengths: np.ndarray, exp, rng: np.random.Generator, threads, scratches: list):
    """Level 2 of the ties of consecutive segments of the given lengths, in order: per segment, the number of tie
    bytes below e (bits 1) and equal to e (ties again). Reads the ceil(T / 8) raw outputs of ``_tie_bytes``; with
    threads, each one reads the outputs of its own run of segments (a shared boundary output is read by both)."""
    bg = rng.bit_generator
    total = int(lengths.sum())
    e = np.uint8(exp[1])
    t = min(threads or _n_threads(), lengths.size)
    if total < _PARALLEL_MIN_BITS // 16 or t <= 1 or type(bg) not in _JUMPABLE:
        w = _tie_bytes(total, exp, bg)
        if w is None:
            return np.zeros(lengths.size, dtype=np.int64), np.zeros(lengths.size, dtype=np.int64)
        hits = _buffer(scratches[0], "w", w.size)
        return _segment_counts(np.less(w, e, out=hits), lengths), _segment_counts(np.equal(w, e, out=hits), lengths)
    if not _needs_bytes(exp):  # x = c/16 exactly: every tie gives 0, no byte is read
        return np.zeros(lengths.size, dtype=np.int64), np.zeros(lengths.size, dtype=np.int64)
    scratches.extend({} for _ in range(t - len(scratches)))
    ends = np.cumsum(lengths)
    cuts = [0, *np.searchsorted(ends, [total * i // t for i in range(1, t)], side="right").tolist(), lengths.size]
    state = bg.state
    out: list = [None] * t

    def work(i):
        a, b = cuts[i], cuts[i + 1]
        first = int(ends[a - 1]) if a else 0
        last = int(ends[b - 1]) if b > a else first
        clone = _clone(bg, first // 8)
        w = clone.random_raw(-(-last // 8) - first // 8).view(np.uint8)[first % 8 : first % 8 + last - first]
        hits = _buffer(scratches[i], "w", w.size)
        out[i] = (
            _segment_counts(np.less(w, e, out=hits), lengths[a:b]),
            _segment_counts(np.equal(w, e, out=hits), lengths[a:b]),
        )

    _in_threads(t, work)
    end = _clone(bg, -(-total // 8)).state  # where the sequential read ends, its 32-bit buffer untouched
    end["has_uint32"], end["uinteger"] = state["has_uint32"], state["uinteger"]
    bg.state = end
    return np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out])


def unary_support_counts(
    values: np.ndarray,
    k: int,
    p: float,
    q: float,
    rng: np.random.Generator,
    *,
    chunk_size: int | None = None,
    threads=None,
) -> np.ndarray:
    """Support counts (int64, length k) of the unary-encoding reports of ``values``, chunk by chunk.

    Client and server fused: for each chunk of ``chunk_size`` users (default: all), the random bits of
    ``unary_perturb(chunk, k, p, q, rng)`` in the same order, so the counts equal the column sums of those reports
    and the generator ends in the same state; the (n, k) matrix is never written. Per block of rows: the bulk
    comparisons V < c and V <= c are summed per column (low nibbles: lo <= c - 1, lo <= c; high nibbles: byte <=
    16 c - 1, byte <= 16 c + 15) with uint8 sums of at most 255 lines of rows, and each user's own nibble is read
    off; the ties per block and column (own positions left out) then say how many tie bytes and digits each column
    gets, in ``unary_perturb``'s order, and the users' own nibbles and bits give the corrections.
    """
    n = values.shape[0]
    size = n if chunk_size is None else chunk_size
    exp = bernoulli_expansion(q)
    c = exp[0]
    m, rows = _unary_blocking(k)
    line = m * k // 2  # bytes per line
    # Indicator rows: lo <= c - 1, lo <= c, byte <= 16 c - 1, byte <= 16 c + 15 (V < c and V <= c of the low and
    # the high nibbles). A threshold below its range gives a constant False row, one at its top a True row.
    thr = np.array([c - 1, c, 16 * c - 1, 16 * c + 15])
    top = np.array([15, 15, 255, 255])
    live = (thr >= 0) & (thr < top)
    rows_lo = slice(0, 2) if live[0] else slice(1, 2) if live[1] else None
    rows_hi = slice(2, 4) if live[2] else slice(3, 4) if live[3] else None
    thr_lo = None if rows_lo is None else thr[rows_lo, None].astype(np.uint8)
    thr_hi = None if rows_hi is None else thr[rows_hi, None].astype(np.uint8)
    case_of = np.array([1] * min(c, 16) + [2] + [0] * 15, dtype=np.uint8)[:16]  # own nibble: 0 > c, 1 < c, 2 = c
    first_bit = np.arange(0, rows * k, k)  # a block's row starts, in bits
    scratches: list = []
    cases = np.empty(min(size, n), dtype=np.int64)  # per user: 6 value + case (+ 3 if the own bit is 1)
    counts = np.zeros(k, dtype=np.int64)

    def block(a, b, u, scratch):
        s, e = a // k, b // k
        r = e - s
        f = first_bit[:r] + vals[s:e]  # own bit in the block: byte 8 (f // 16) + f % 8, high nibble if f % 16 >= 8
        nib = np.bitwise_and(np.right_shift(np.take(u, ((f >> 4) << 3) | (f & 7)), ((f & 8) >> 1).astype(np.uint8)), 15)
        case = np.take(case_of, nib)
        ties = -np.bincount(vals[s:e][case == 2], minlength=k)  # own ties are left out
        case += own_bits[s:e].view(np.uint8) * np.uint8(3)
        np.add(vals[s:e] * 6, case, out=cases[s:e])
        lt = np.zeros(k, dtype=np.int64)
        full = r - r % m
        if full:
            nb = full * k // 2
            t = _buffer(scratch, "t", (4, rows * k // 2))
            if scratch.get("t_const") is not t.base:
                t[~live] = (thr >= top)[~live, None]  # constant rows (fixed for the call)
                scratch["t_const"] = t.base
            t = t[:, :nb]
            if rows_lo is not None and thr_lo is not None:  # (None together)
                np.less_equal(
                    np.bitwise_and(u[:nb], 15, out=_buffer(scratch, "lo", nb, np.uint8)), thr_lo, out=t[rows_lo]
                )
            if rows_hi is not None and thr_hi is not None:
                np.less_equal(u[None, :nb], thr_hi, out=t[rows_hi])
            acc = np.add.reduce(t.view(np.uint8).reshape(4, -1, line), axis=1, dtype=np.uint8)
            per_bit = np.empty((2, line // 8, 2, 8), dtype=np.int64)  # per output: 8 low nibbles, 8 high ones
            per_bit[:, :, 0], per_bit[:, :, 1] = acc[0:2].reshape(2, -1, 8), acc[2:4].reshape(2, -1, 8)
            per_col = per_bit.reshape(2, m, k).sum(axis=1)
            lt += per_col[0]
            ties += per_col[1] - per_col[0]
        if full < r:  # the last block's rows past its last whole line (they start on a whole raw output)
            v = _nibbles(u[full * k // 2 :], (r - full) * k, {}).reshape(-1, k)
            lt += column_counts(v < c)
            ties += column_counts(v == c)
        return lt, ties

    for start in range(0, n, max(size, 1)):
        vals = values[start : start + size]  # the block function reads vals and own_bits
        nc = vals.shape[0]
        own_bits = bernoulli_matrix(nc, p, rng, threads=threads)
        per_block = [x for res, _ in _run_blocks(nc * k, rows * k, rng, block, threads, scratches) for x in res]
        own = np.bincount(cases[:nc], minlength=6 * k).reshape(k, 6)
        part = sum(lt for lt, _ in per_block) - own[:, 1] - own[:, 4] + own[:, 3:].sum(axis=1)
        ties = np.concatenate([t for _, t in per_block])  # block by block, column by column
        ones, sub = _tie_byte_counts(ties, exp, rng, threads, scratches)
        part += ones.reshape(-1, k).sum(axis=0)
        if sub.any():
            hit = _resolve_digits(int(sub.sum()), exp[2], rng.bit_generator)
            part += _segment_counts(hit, sub).reshape(-1, k).sum(axis=0)
        counts += part
    return counts


def column_counts(bits: np.ndarray, *, check: str | None = None) -> np.ndarray:
    """Column sums (int64) of a 2-D bool or 0/1 uint8 array: uint8 sums of at most 255 lines of rows at a time.

    Memory: one group of 255 lines (a copy only when ``bits`` is not C-contiguous). ``check`` (a name): first check
    that every byte is 0 or 1 (a bool array made by viewing other bytes can hold 2..255, which the byte sums would
    count), raising a ValueError naming it."""
    n, k = bits.shape
    counts = np.zeros(k, dtype=np.int64)
    if n == 0 or k == 0:
        return counts
    m = max(1, _LINE_BYTES // k)  # rows per line
    for s in range(0, n, 255 * m):
        b = np.ascontiguousarray(bits[s : s + 255 * m]).view(np.uint8)
        if check is not None and b.max() > 1:
            raise ValueError(f"{check} must be bits (0 or 1), got {int(b.max())}")
        full = b.shape[0] - b.shape[0] % m
        if full:
            acc = np.add.reduce(b[:full].reshape(-1, m * k), axis=0, dtype=np.uint8)
            counts += acc.reshape(m, k).sum(axis=0, dtype=np.int64)
        if full < b.shape[0]:
            counts += b[full:].sum(axis=0, dtype=np.int64)
    return counts


_SUM_WORDS = 1 << 16  # raw outputs per slab of a stage of bernoulli_sums (512 kB: reused, no fresh pages)


def _fair_counts(m: np.ndarray, bg) -> np.ndarray:
    """Binomial(m_j, 1/2) for every j, exactly: the number of ones among m_j fresh random bits (the low m_j bits of
    ceil(m_j / 64) raw 64-bit outputs, popcounts summed per j), in order of j, in slabs of about _SUM_WORDS."""
    out = np.zeros(m.size, dtype=np.int64)
    live = np.flatnonzero(m)
    words = (m[live] + 63) >> 6
    ends = np.cumsum(words)
    start = 0
    while start < live.size:
        base = int(ends[start - 1]) if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, base + _SUM_WORDS, side="right")))
        w = bg.random_raw(int(ends[stop - 1]) - base)
        rem = (m[live[start:stop]] & 63).astype(np.uint64)
        last = ends[start:stop][rem > 0] - base - 1  # the last output of every j whose m_j is not a multiple of 64
        w[last] &= (np.uint64(1) << rem[rem > 0]) - np.uint64(1)
        firsts = ends[start:stop] - words[start:stop] - base
        out[live[start:stop]] = np.add.reduceat(np.bitwise_count(w), firsts, dtype=np.int64)
        start = stop
    return out


def bernoulli_sums(trials, prob: float, rng: np.random.Generator) -> np.ndarray:
    """Binomial(trials_j, prob) for every j, exactly: the number of ones among trials_j independent bits that are
    1 with probability prob *exactly* (the float64 prob's binary value, as :func:`bernoulli_matrix`'s bits).

    Each bit compares a uniform U = 0.u_1 u_2 ... with prob = 0.b_1 b_2 ... b_L digit by digit: at digit i the
    bits still undecided split by u_i, exactly Binomial(., 1/2) (:func:`_fair_counts`); those with u_i != b_i are
    decided (1 if b_i = 1, else 0), the others go on; after b_L the rest are 0 (U >= prob). About 2 random bits per
    bit, 64 counted per popcount; the undecided halve at every digit, so the loop ends after about log2(max m) + 2
    digits. Reads ``rng.bit_generator``'s raw outputs (a different stream from the bits' own samplers).
    """
    m = np.asarray(trials, dtype=np.int64).copy()
    if m.ndim != 1 or (m < 0).any():
        raise ValueError("trials must be a 1-D array of non-negative counts")
    num, den = float(prob).as_integer_ratio()
    if not 0 <= num <= den:
        raise ValueError(f"prob must be in [0, 1], got {prob!r}")
    if num == den:
        return m
    bg = rng.bit_generator
    ones = np.zeros(m.size, dtype=np.int64)
    length = den.bit_length() - 1  # prob = num / 2^length
    for i in range(1, length + 1):
        if not m.any():
            break
        high = _fair_counts(m, bg)  # u_i = 1
        if (num >> (length - i)) & 1:  # b_i = 1: u_i = 0 decides a 1, u_i = 1 goes on
            ones += m - high
            m = high
        else:  # b_i = 0: u_i = 1 decides a 0, u_i = 0 goes on
            m = m - high
    return ones
