"""Byte strings as heavy-hitter keys: encoded exactly (strings of <= 8 bytes, big-endian, so that bit prefixes are
string prefixes) or hashed to <= 64 bits (longer strings; the heavy hitters are then hashes, to be matched against
a dictionary of candidate strings with the same function). Vectorized: numpy fixed-width byte arrays, no Python
loop over the strings' bytes.
"""

from __future__ import annotations

import numpy as np

from dpkit.mechanisms._validation import check_count, check_seed
from dpkit.mechanisms.heavy_hitters.base import check_bits

__all__ = ["encode_bytes", "decode_bytes", "hash_bytes"]

_U64 = np.uint64


def _as_fixed(name: str, strings, length: int) -> np.ndarray:
    arr = np.asarray(strings)
    if arr.dtype.kind == "U":
        arr = np.char.encode(arr, "utf-8")
    if arr.dtype.kind != "S" or arr.ndim != 1:
        raise TypeError(f"{name} must be a 1-D sequence of bytes (or str, UTF-8 encoded), got {arr.dtype} {arr.shape}")
    if arr.dtype.itemsize > length:
        lens = np.char.str_len(arr)
        i = int(np.argmax(lens))
        if lens[i] > length:
            raise ValueError(f"{name} must be at most {length} bytes long, got {int(lens[i])} at index {i}")
    return arr.astype(f"S{length}")


def encode_bytes(strings, length: int = 8) -> np.ndarray:
    """Strings of at most ``length`` <= 8 bytes as ``8 length``-bit keys (zero-padded on the right, big-endian).
    Trailing NUL bytes are not distinguished from padding. Use ``bits=8*length`` in the protocols."""
    length = check_count("length", length, minimum=1)
    if length > 8:
        raise ValueError(f"length must be in [1, 8] bytes (64-bit keys; hash_bytes for longer strings), got {length}")
    fixed = _as_fixed("strings", strings, length)
    raw = np.zeros((len(fixed), 8), dtype=np.uint8)
    raw[:, :length] = np.frombuffer(fixed.tobytes(), dtype=np.uint8).reshape(len(fixed), length)
    keys = raw.view(">u8").ravel().astype(_U64)
    return keys >> _U64(8 * (8 - length)) if length < 8 else keys


def decode_bytes(keys, length: int = 8) -> list[bytes]:
    """Inverse of :func:`encode_bytes` (trailing NULs stripped)."""
    length = check_count("length", length, minimum=1)
    k = np.asarray(keys, dtype=_U64)
    if length < 8:
        k = k << _U64(8 * (8 - length))
    raw = k.astype(">u8").view(np.uint8).reshape(-1, 8)[:, :length]
    return [bytes(row).rstrip(b"\0") for row in raw]


def hash_bytes(strings, bits: int = 64, max_length: int = 256, seed: int = 0) -> np.ndarray:
    """A fixed public hash of byte strings (<= ``max_length`` bytes) to ``bits``-bit keys: the strings are NUL-padded
    to a multiple of 8 bytes, read as 64-bit words w_i, and mixed as h = sum_i a_i (w_i + i + 1) + b mod 2^64 with
    odd constants a_i from ``seed``, then a 64-bit finalizer (splitmix64); the top ``bits`` bits are kept."""
    bits = check_bits("bits", bits)
    max_length = check_count("max_length", max_length, minimum=1)
    seed = check_seed("seed", seed)
    words = -(-max_length // 8)
    fixed = _as_fixed("strings", strings, 8 * words)
    w = np.frombuffer(fixed.tobytes(), dtype=">u8").reshape(len(fixed), words).astype(_U64)
    consts = np.random.default_rng(seed).integers(0, 2**64 - 1, size=words + 1, dtype=_U64, endpoint=True) | _U64(1)
    lens = np.char.str_len(fixed).astype(_U64)
    h = consts[-1] * (lens + _U64(1))
    for i in range(words):
        h = h + consts[i] * (w[:, i] + _U64(i + 1))
    h ^= h >> _U64(30)
    h *= _U64(0xBF58476D1CE4E5B9)
    h ^= h >> _U64(27)
    h *= _U64(0x94D049BB133111EB)
    h ^= h >> _U64(31)
    return h >> _U64(64 - bits) if bits < 64 else h
