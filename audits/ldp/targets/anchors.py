"""multi-freq-ldpy's and pure-LDP's clients as audit targets (one Python call per trial; imported when asked)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, cast

import numpy as np

from dpkit.audits.ldp.attacks import FamilyAttack, Statistic, fo_family_attack, fo_statistic
from dpkit.audits.ldp.attacks.statistic import guess_uniform_from_support
from dpkit.audits.ldp.targets.base import Target
from dpkit.mechanisms.frequency_oracles import LocalHashing, make_oracle

__all__ = ["AnchorTarget", "ANCHOR_PROTOCOLS", "ANCHOR_TRIALS"]

ANCHOR_TRIALS = 50_000

ANCHOR_PROTOCOLS = {
    "multi-freq-ldpy": ("GRR", "SUE", "OUE", "BLH", "OLH", "SS", "SHE", "THE"),
    "pure-ldp": ("GRR", "SUE", "OUE", "BLH", "OLH", "SHE", "THE"),
}


_NUMBA_SEEDER: list[Callable[[int], None]] = []


def _seed_numba(seed: int) -> None:
    """Seed numba's own RNG (np.random.seed in Python does not reach it); compiled once per process."""
    if not _NUMBA_SEEDER:
        from numba import njit

        @njit(cache=False)
        def _seed(s: int) -> None:
            np.random.seed(s)

        _NUMBA_SEEDER.append(_seed)
    _NUMBA_SEEDER[0](seed)


class AnchorTarget(Target):
    """multi-freq-ldpy or pure-LDP's client for one protocol, one Python call per trial.

    The likelihood-ratio statistic and family attack are dpkit's for the same protocol (the claimed model:
    same p, q, g, theta); local-hashing reports carry the library's xxh32 seed and are hashed with xxh32 as the
    library does. Imported only when the target is built. Both libraries' clients are epsilon-LDP (neither ships an
    (epsilon, delta)-LDP frequency oracle), so ``delta`` must be 0: a nonzero one is refused before anything is
    imported.
    """

    default_trials = ANCHOR_TRIALS

    def __init__(self, library: str, protocol: str, k: int, epsilon: float, delta: float = 0.0):
        if delta != 0:
            raise ValueError(
                f"delta must be 0 for {library}:{protocol}, got {delta!r}: the anchor libraries' clients are "
                "epsilon-LDP (neither ships an (epsilon, delta)-LDP frequency oracle)"
            )
        if library not in ANCHOR_PROTOCOLS:
            raise ValueError(f"library must be one of {', '.join(ANCHOR_PROTOCOLS)}, got {library!r}")
        proto = protocol.upper()
        if proto not in ANCHOR_PROTOCOLS[library]:
            raise ValueError(
                f"protocol for {library} must be one of {', '.join(ANCHOR_PROTOCOLS[library])}, got {protocol!r}"
            )
        self.library, self.proto_name = library, proto
        self.model = make_oracle(proto, k, epsilon)  # dpkit's claimed model of the same protocol
        self.k, self.epsilon = int(k), float(epsilon)
        self.v1, self.v2 = 0, self.k - 1
        self.name = f"{library}:{proto}"
        self.client = self._make_client()
        self.chunk_rows = 4096

    def params(self) -> dict[str, Any]:
        return {"library": self.library, "protocol": self.proto_name}

    def _make_client(self) -> Callable[[int], Any]:
        k, eps, proto = self.k, self.epsilon, self.proto_name
        if self.library == "multi-freq-ldpy":
            from multi_freq_ldpy.pure_frequency_oracles import GRR as M_GRR
            from multi_freq_ldpy.pure_frequency_oracles import HE as M_HE
            from multi_freq_ldpy.pure_frequency_oracles import LH as M_LH
            from multi_freq_ldpy.pure_frequency_oracles import SS as M_SS
            from multi_freq_ldpy.pure_frequency_oracles import UE as M_UE

            return {
                "GRR": lambda v: M_GRR.GRR_Client(v, k, eps),
                "SUE": lambda v: M_UE.UE_Client(v, k, eps, False),
                "OUE": lambda v: M_UE.UE_Client(v, k, eps, True),
                "BLH": lambda v: M_LH.LH_Client(v, k, eps, False),
                "OLH": lambda v: M_LH.LH_Client(v, k, eps, True),
                "SS": lambda v: M_SS.SS_Client(v, k, eps),
                "SHE": lambda v: M_HE.HE_Client(v, k, eps),
                "THE": lambda v: M_HE.HE_Client(v, k, eps),
            }[proto]
        ident = lambda x: x  # noqa: E731  (pure-LDP items are 1-based unless mapped)
        if proto == "GRR":
            from pure_ldp.frequency_oracles.direct_encoding import DEClient

            c = DEClient(eps, k, index_mapper=ident)
        elif proto in ("SUE", "OUE"):
            from pure_ldp.frequency_oracles.unary_encoding import UEClient

            c = UEClient(eps, k, use_oue=proto == "OUE", index_mapper=ident)
        elif proto in ("BLH", "OLH"):
            from pure_ldp.frequency_oracles.local_hashing import LHClient

            c = LHClient(eps, k, g=2, use_olh=proto == "OLH", index_mapper=ident)
        else:
            from pure_ldp.frequency_oracles.histogram_encoding import HEClient

            c = HEClient(eps, k, index_mapper=ident)
        return c.privatise

    def _seed(self, rng: np.random.Generator) -> None:
        s = int(rng.integers(0, 2**31 - 1))
        if self.library == "multi-freq-ldpy":
            _seed_numba(s)
        np.random.seed(s)
        random.seed(s)

    def sample(self, which: int, n: int, rng: np.random.Generator) -> np.ndarray:
        self._seed(rng)
        v = self._value(which)
        f = self.client
        out = [f(v) for _ in range(n)]
        if self.proto_name in ("BLH", "OLH"):
            return np.array([(int(y), int(seed)) for y, seed in out], dtype=np.int64)
        if self.proto_name in ("GRR",):
            return np.asarray(out, dtype=np.int64)
        if self.proto_name in ("SUE", "OUE"):
            return np.asarray(out).astype(bool)
        return np.asarray(out)

    def _xxh(self, values: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        import xxhash

        g = cast(LocalHashing, self.model).g  # BLH or OLH: only local hashing reports carry a seed
        return np.array(
            [xxhash.xxh32(str(int(v)), seed=int(s)).intdigest() % g for v, s in zip(values, seeds, strict=True)]
        )

    def statistic(self) -> Statistic:
        if self.proto_name not in ("BLH", "OLH"):
            return fo_statistic(self.model, self.v1, self.v2)
        base = fo_statistic(self.model, self.v1, self.v2)

        def codes(r: np.ndarray) -> np.ndarray:
            y, seeds = r[:, 0], r[:, 1]
            h1 = self._xxh(np.full(len(r), self.v1), seeds)
            h2 = self._xxh(np.full(len(r), self.v2), seeds)
            return np.where(h1 == h2, 3, np.where(y == h1, 0, np.where(y == h2, 1, 2)))

        return Statistic(base.name + " (xxh32)", 4, codes, base.pmf)

    def family_attack(self) -> FamilyAttack | None:
        if self.proto_name not in ("BLH", "OLH"):
            return fo_family_attack(self.model, self.v1, self.v2)
        k = self.k

        def lh(r: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            y, seeds = r[:, 0], r[:, 1]
            h = np.stack([self._xxh(np.full(len(r), v), seeds) for v in range(k)], axis=1)
            support = h == y[:, None]
            return guess_uniform_from_support(support[:, self.v1], support.sum(axis=1), k, rng)

        return lh
