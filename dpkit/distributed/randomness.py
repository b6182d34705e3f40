"""Per-agent random streams: the draw of agent ``a`` in round ``t`` depends on (seed, stream, a, t) only.

Every agent draws its own noise and minibatches from torch generators seeded by
``numpy.random.SeedSequence([seed, stream, agent, round])``, so a multi-process run and the single-process
simulation with the same seed draw the same numbers, whatever the number of processes. Seeded noise can be
recomputed by anyone holding the seed: keep the seed as secret as the data, or pass ``secure=True`` to draw the
private noise from the operating system's CSPRNG (then runs are not reproducible). ``torch.Generator`` is a
Mersenne Twister: statistically sound, not cryptographic. Neither mode defends against floating-point
(least-significant-bit) attacks on the Gaussian mechanism.
"""

from __future__ import annotations

import numpy as np
import torch

from dpkit.noise import secure_standard_normal

__all__ = ["NOISE_STREAM", "SAMPLER_STREAM", "SHARED_STREAM", "stream_seed", "generator", "standard_normal"]

NOISE_STREAM = 101  # private Gaussian noise of one agent
SAMPLER_STREAM = 102  # minibatch indices of one agent
SHARED_STREAM = 103  # seeds of noise components shared by a group of agents (drawn by the group's owner)


def stream_seed(seed: int, stream: int, *counters: int) -> int:
    """A 63-bit seed for ``(seed, stream, *counters)`` (SeedSequence hashing: well mixed, no overlaps)."""
    words = np.random.SeedSequence([int(seed), int(stream), *map(int, counters)]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def generator(seed: int, stream: int, *counters: int) -> torch.Generator:
    return torch.Generator().manual_seed(stream_seed(seed, stream, *counters))


def standard_normal(size: int, dtype: torch.dtype, seed: int | None, stream: int, *counters: int) -> torch.Tensor:
    """``size`` iid N(0, 1) values (CPU); from the stream ``(seed, stream, *counters)``, or the OS CSPRNG if seed
    is None."""
    if seed is None:
        return torch.from_numpy(secure_standard_normal(size)).to(dtype)
    return torch.randn(size, generator=generator(seed, stream, *counters), dtype=dtype)
