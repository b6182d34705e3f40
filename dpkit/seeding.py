"""Counter-based seeds: the random state of step ``t`` is a function of (seed, stream, t) only.

A run's sampler and noise are then reproducible from the seed and the number of steps taken, which is what a
checkpoint stores (no generator state to capture at the right moment, even with prefetching data-loader
workers).
"""

from __future__ import annotations

import secrets

import numpy as np

SAMPLER_STREAM = 0
NOISE_STREAM = 1


def new_seed() -> int:
    """A fresh 63-bit seed from the operating system's CSPRNG."""
    return secrets.randbits(63)


def derive_seed(seed: int, stream: int, counter: int) -> int:
    """A 63-bit seed for step ``counter`` of ``stream``, well mixed (numpy SeedSequence hashing)."""
    words = np.random.SeedSequence([int(seed), int(stream), int(counter)]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])
