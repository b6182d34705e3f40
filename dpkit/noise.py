"""Gaussian noise for DP-SGD: seeded and reproducible, or drawn from the operating system's CSPRNG.

* Seeded (default): the noise of step ``t`` is a flat vector cut into blocks of ``BLOCK`` values; block ``j``
  is drawn by ``torch.Tensor.normal_`` from a ``torch.Generator`` seeded with word ``j`` of
  ``SeedSequence([seed, NOISE_STREAM, t])`` (:mod:`dpkit.seeding`). The values depend on (seed, t, position)
  only, never on the number of threads, so a resumed run adds exactly the noise of the uninterrupted run; the
  blocks are drawn in parallel on ``torch.get_num_threads()`` threads (``normal_`` itself is serial, and it
  is the largest cost of a DP step on small models: see benchmarks/README.md). The seed is part of
  checkpoints: anyone holding it can recompute the noise, so keep checkpoints as secret as the training
  data. ``torch.Generator`` is a Mersenne Twister: fine statistically, not cryptographically.
* Secure (``secure=True``): every noise value comes from ``os.urandom`` (the OS CSPRNG): 2 x 64 random bits
  per pair of Gaussians via the Box-Muller transform in float64, then rounded to the parameter dtype. Nothing
  about the noise is stored anywhere, so it cannot be recomputed or predicted from earlier outputs,
  checkpoints or seeds; the price is speed (several times slower per value than seeded noise;
  ``benchmark_noise()`` measures both on your machine) and runs that cannot be resumed bit-exactly. It does not
  defend against floating-point (least-significant-bit) attacks on the Gaussian mechanism.

Shards (data-parallel training): ``shard=(rank, world_size)`` draws only the blocks ``j`` with
``j % world_size == rank`` and writes zeros elsewhere, so the ``world_size`` shards of one step sum to exactly the
unsharded noise (seeded: the same values, block by block), each value drawn by one process only.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from dpkit.accountants.validation import check_count, check_nonnegative
from dpkit.seeding import NOISE_STREAM, check_seed, check_seeded_state, new_seed

BLOCK = 1 << 16  # values per independently seeded block of seeded noise

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="dpkit-noise")
        return _pool


def block_seeds(seed: int, step: int, blocks: int) -> list[int]:
    """One 63-bit seed per noise block of step ``step`` (one SeedSequence hash for all of them)."""
    words = np.random.SeedSequence([int(seed), NOISE_STREAM, int(step)]).generate_state(2 * blocks, dtype=np.uint32)
    return [(int(words[2 * j]) << 31) ^ int(words[2 * j + 1]) for j in range(blocks)]


def secure_standard_normal(n: int) -> np.ndarray:
    """``n`` independent N(0, 1) values (float64) from the OS CSPRNG (Box-Muller)."""
    pairs = (n + 1) // 2
    bits = np.frombuffer(os.urandom(16 * pairs), dtype=np.uint64).reshape(2, pairs)
    # 53-bit uniforms; u1 in (0, 1] so log(u1) is finite, u2 in [0, 1).
    u1 = ((bits[0] >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0**-53
    u2 = (bits[1] >> np.uint64(11)).astype(np.float64) * 2.0**-53
    r = np.sqrt(-2.0 * np.log(u1))
    z = np.concatenate([r * np.cos(2 * math.pi * u2), r * np.sin(2 * math.pi * u2)])
    return z[:n]


class GaussianNoise:
    """Draws the Gaussian noise of step ``t`` for a list of tensor shapes."""

    def __init__(self, seed: int | None = None, *, secure: bool = False):
        if not isinstance(secure, bool):
            raise TypeError(f"secure must be True or False, got {secure!r}")
        checked = check_seed("seed", seed, optional=True)
        if secure and checked is not None:
            raise ValueError("seed must be None with secure_rng=True (secure noise comes from the OS CSPRNG)")
        self.secure = secure
        self.seed = None if self.secure else (new_seed() if checked is None else checked)
        self._generators: list[torch.Generator] = []

    def fill_(self, buf: torch.Tensor, std: float, step: int, *, shard: tuple[int, int] | None = None) -> torch.Tensor:
        """Overwrite the flat buffer ``buf`` with the noise of step ``step`` (std ``std``), in place.

        Seeded: one ``normal_`` call per block of ``BLOCK`` values, the blocks spread over
        ``torch.get_num_threads()`` threads (CPU float32; otherwise the values are drawn into a CPU float32 buffer
        and copied, so they depend on neither the device nor the thread count). Secure: OS CSPRNG values,
        rounded to ``buf``'s dtype. Same values as :meth:`draw` on the concatenated shapes. ``shard``: only this
        process's blocks (see the module docs), zeros elsewhere.
        """
        if buf.dim() != 1:
            raise ValueError(f"buf must be a flat (1-D) tensor, got shape {tuple(buf.shape)}")
        std, step = _check_std_and_step(std, step)
        mine = _shard_blocks(buf.numel(), shard)
        if self.secure:
            return buf.copy_(self._secure(buf.numel(), std, mine))
        if buf.device.type == "cpu" and buf.dtype == torch.float32 and buf.is_contiguous():
            return self._seeded_(buf, std, step, mine)
        return buf.copy_(self._seeded_(torch.empty(buf.numel(), dtype=torch.float32), std, step, mine))

    @staticmethod
    def _secure(n: int, std: float, mine: range) -> torch.Tensor:
        """``n`` values (float64): OS CSPRNG noise of std ``std`` in the blocks ``mine``, zeros elsewhere."""
        blocks = max(1, -(-n // BLOCK))
        if len(mine) == blocks:
            return torch.from_numpy(secure_standard_normal(n)).mul_(std)
        out = torch.zeros(n, dtype=torch.float64)
        for j in mine:
            part = out[j * BLOCK : (j + 1) * BLOCK]
            part.copy_(torch.from_numpy(secure_standard_normal(part.numel()))).mul_(std)
        return out

    def _seeded_(self, flat: torch.Tensor, std: float, step: int, mine: range) -> torch.Tensor:
        if self.seed is None:
            raise RuntimeError("secure noise has no seed: it is drawn from the OS CSPRNG, never seeded")
        n = flat.numel()
        blocks = max(1, -(-n // BLOCK))
        seeds = block_seeds(self.seed, step, blocks)
        while len(self._generators) < blocks:
            self._generators.append(torch.Generator())
        if len(mine) < blocks:
            flat.zero_()  # other processes draw the other blocks

        def fill(j: int) -> None:
            g = self._generators[j]
            g.manual_seed(seeds[j])
            flat[j * BLOCK : (j + 1) * BLOCK].normal_(0.0, std, generator=g)

        workers = min(torch.get_num_threads(), len(mine))
        if workers <= 1:
            for j in mine:
                fill(j)
            return flat

        # Thread w fills this process's blocks w, w + workers, ...; the calling thread takes w = 0.
        def run(w: int) -> None:
            for j in mine[w::workers]:
                fill(j)

        futures = [_executor().submit(run, w) for w in range(1, workers)]
        try:
            run(0)
        finally:
            for f in futures:
                f.result()
        return flat

    def draw(
        self, like: Sequence[torch.Tensor], std: float, step: int, *, shard: tuple[int, int] | None = None
    ) -> list[torch.Tensor]:
        """Noise of standard deviation ``std``, one tensor shaped like each of ``like``, for step ``step`` (blocks
        of the concatenation, as :meth:`fill_`; ``shard`` as there)."""
        std, step = _check_std_and_step(std, step)
        sizes = [t.numel() for t in like]
        total = sum(sizes)
        mine = _shard_blocks(total, shard)
        if self.secure:
            flat = self._secure(total, std, mine)
        else:
            flat = self._seeded_(torch.empty(total, dtype=torch.float32), std, step, mine)
        out = []
        for t, part in zip(like, flat.split(sizes), strict=True):
            out.append(part.to(device=t.device, dtype=t.dtype).view_as(t))
        return out

    def state_dict(self) -> dict:
        return {"seed": self.seed, "secure": self.secure}

    def check_state(self, state: object, name: str = "noise state") -> int | None:
        """The seed of a :meth:`state_dict` output for this noise source (a clear error otherwise)."""
        return check_seeded_state(name, state, ("seed", "secure"), self.secure)

    def load_state_dict(self, state: dict) -> None:
        """Restore the seed (validated first: a refused state changes nothing)."""
        self.seed = self.check_state(state)


def _shard_blocks(n: int, shard: tuple[int, int] | None) -> range:
    """The noise blocks of ``n`` values that process ``rank`` of ``world_size`` draws (all of them without a shard)."""
    blocks = max(1, -(-n // BLOCK))
    if shard is None:
        return range(blocks)
    rank, world_size = shard
    world_size = check_count("shard world_size", world_size, minimum=1)
    rank = check_count("shard rank", rank, minimum=0, maximum=world_size - 1)
    return range(rank, blocks, world_size)


def _check_std_and_step(std: float, step: int) -> tuple[float, int]:
    return check_nonnegative("std", std), check_count("step", step, minimum=0)


def benchmark_noise(num_values: int = 1_000_000, repeats: int = 5) -> dict[str, float]:
    """Nanoseconds per noise value, seeded vs secure (median of ``repeats``)."""
    like = [torch.empty(num_values)]
    out = {}
    for name, src in (("seeded", GaussianNoise(0)), ("secure", GaussianNoise(secure=True))):
        times = []
        for t in range(repeats):
            t0 = time.perf_counter()
            src.fill_(like[0], 1.0, t)
            times.append(time.perf_counter() - t0)
        out[name] = sorted(times)[len(times) // 2] / num_values * 1e9
    return out
