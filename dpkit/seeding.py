"""Counter-based seeds: the random state of step ``t`` is a function of (seed, stream, t) only.

A run's sampler and noise are then reproducible from the seed and the number of steps taken, which is what a
checkpoint stores (no generator state to capture at the right moment, even with prefetching data-loader
workers).
"""

from __future__ import annotations

import secrets
from numbers import Integral

import numpy as np

SAMPLER_STREAM = 0
NOISE_STREAM = 1
COUNT_NOISE_STREAM = 2  # the noise on adaptive clipping's count of unclipped examples (dpkit.adaptive_clipping)
MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed takes 64-bit seeds


def check_seed(name: str, value: object, *, optional: bool = False) -> int | None:
    """A seed: a whole number in [0, 2**64 - 1] (or, with ``optional``, None: a fresh seed is drawn)."""
    if value is None and optional:
        return None
    allowed = "None or a whole number" if optional else "a whole number"
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be {allowed} in [0, 2**64 - 1], got {value!r}")
    if not 0 <= int(value) <= MAX_SEED:
        raise ValueError(f"{name} must be {allowed} in [0, 2**64 - 1], got {value!r}")
    return int(value)


def check_seeded_state(name: str, state: object, keys: tuple[str, ...], secure: bool) -> int | None:
    """The seed of the state of a random source (a dict with exactly ``keys``, among them ``seed`` and ``secure``)
    whose ``secure`` flag is ``secure``: a seed for a seeded source, None for a secure one (a clear error
    otherwise)."""
    if not isinstance(state, dict) or set(state) != set(keys):
        raise ValueError(f"{name} must be a dict with keys {', '.join(keys)}; got {state!r}")
    if state["secure"] is not secure:
        raise ValueError(f"{name} has secure={state['secure']!r}, but this one has secure={secure}")
    if secure:
        if state["seed"] is not None:
            raise ValueError(f"{name}.seed must be None for a secure source (OS CSPRNG), got {state['seed']!r}")
        return None
    return check_seed(f"{name}.seed", state["seed"])


def new_seed() -> int:
    """A fresh 63-bit seed from the operating system's CSPRNG."""
    return secrets.randbits(63)


def derive_seed(seed: int, stream: int, counter: int) -> int:
    """A 63-bit seed for step ``counter`` of ``stream``, well mixed (numpy SeedSequence hashing)."""
    words = np.random.SeedSequence([int(seed), int(stream), int(counter)]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])
