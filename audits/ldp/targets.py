"""Audit targets: what the game runs. dpkit protocols, the anchor libraries, or any user function.

A :class:`Target` knows its claimed guarantee (``epsilon``, ``delta``), its domain ``k``, the input pair
(``v1``, ``v2``; LDP-Auditor's 0 and k - 1), how to draw ``n`` trials of reports for v1 (``which = 0``) or v2
(``which = 1``) by running the *real* randomizer, and which tests apply: a likelihood-ratio :class:`Statistic`
(exact distribution under the claimed model, or None) and LDP-Auditor's family attack (or None).

TARGET strings (``resolve``):

* ``dpkit:NAME``: a frequency oracle (GRR, SUE, OUE, BLH, OLH, SS, SHE, THE, HR, HR-general, ADP), a longitudinal
  protocol (L-GRR, L-SUE, L-OUE, L-OSUE, L-SOUE, dBitFlipPM, LOLOHA; over ``tau`` reports of a constant value, with the
  memo kept in a :class:`dpkit.mechanisms.longitudinal.ClientPopulation`), or a multidimensional one
  (``RS+FD[GRR|OUE-z|OUE-r|SUE-z|SUE-r]``, ``SPL[FO]``, ``SMP[FO]``; ``d`` attributes of domain ``k``; ``scope``
  'tuple' (all attributes change) or 'attribute' (attribute 0 changes)).
* ``multi-freq-ldpy:NAME`` (GRR, SUE, OUE, BLH, OLH, SS, SHE, THE) and ``pure-ldp:NAME`` (GRR, SUE, OUE, BLH, OLH,
  SHE, THE): the library's own per-user client, imported only when asked. These are Python loops (2-60 us per
  report), so their default is ``ANCHOR_TRIALS`` trials, not 1e6.
* ``package.module:callable``: any function ``f(value) -> report`` (an int, or a length-k vector of bits or
  floats); the user declares epsilon, delta and k. Its event is chosen on a training split (no model is known).
"""

from __future__ import annotations

import importlib
import random
import re

import numpy as np

from dpkit.audits.ldp.attacks import (
    Statistic,
    fo_family_attack,
    fo_statistic,
    guess_uniform_from_support,
    mixture_binomial_pmf,
    pair_pmf,
    trinomial_pmf,
)
from dpkit.mechanisms.frequency_oracles import FREQUENCY_ORACLES, make_oracle
from dpkit.mechanisms.longitudinal import (
    LGRR,
    LOLOHA,
    LONGITUDINAL_PROTOCOLS,
    LUE,
    ClientPopulation,
    DBitFlipPM,
    LongitudinalProtocol,
)
from dpkit.mechanisms.multidimensional import RSFD, SMP, SPL

__all__ = [
    "Target",
    "ProtocolTarget",
    "LongitudinalTarget",
    "MultidimensionalTarget",
    "AnchorTarget",
    "CallableTarget",
    "resolve",
    "dpkit_protocol_names",
    "MULTIDIMENSIONAL_NAMES",
    "ANCHOR_PROTOCOLS",
    "ANCHOR_TRIALS",
    "DEFAULT_TRIALS",
]

DEFAULT_TRIALS = 1_000_000
ANCHOR_TRIALS = 50_000
_CELLS = 1 << 22  # report cells per chunk (bounds memory at a few tens of MB)

MULTIDIMENSIONAL_NAMES = (
    "RS+FD[GRR]",
    "RS+FD[OUE-z]",
    "RS+FD[OUE-r]",
    "RS+FD[SUE-z]",
    "RS+FD[SUE-r]",
    "SPL[GRR]",
    "SPL[OUE]",
    "SMP[GRR]",
    "SMP[OUE]",
)


class Target:
    """Base class. Subclasses set the attributes below and implement ``sample``."""

    name: str = "target"
    k: int
    epsilon: float
    delta: float = 0.0
    v1: object = 0
    v2: object = 1
    default_trials: int = DEFAULT_TRIALS
    chunk_rows: int = 1 << 16
    reference_epsilon: float | None = None  # a weaker claim to report findings against (RS+FD tuple scope)
    note: str = ""

    def sample(self, which: int, n: int, rng: np.random.Generator):
        raise NotImplementedError

    def statistic(self) -> Statistic | None:
        return None

    def family_attack(self):
        return None

    def params(self) -> dict:
        return {}


def _rows(width: int) -> int:
    return max(256, _CELLS // max(int(width), 1))


# ------------------------------------------------------------------------------------- frequency oracles
class ProtocolTarget(Target):
    """A dpkit frequency oracle (or anything with its interface: ``perturb(values, rng)``, ``k``, ``epsilon``)."""

    def __init__(self, protocol, name: str | None = None, v1: int = 0, v2: int | None = None):
        self.protocol = protocol
        self.name = name or f"dpkit:{protocol.name}"
        self.k = protocol.k
        self.epsilon = float(protocol.epsilon)
        self.delta = float(getattr(protocol, "delta", 0.0))
        self.v1, self.v2 = v1, (protocol.k - 1 if v2 is None else v2)
        self.chunk_rows = _rows(self.k)

    def sample(self, which, n, rng):
        v = self.v1 if which == 0 else self.v2
        return self.protocol.perturb(np.full(n, v, dtype=np.int64), rng)

    def statistic(self):
        return fo_statistic(self.protocol, self.v1, self.v2)

    def family_attack(self):
        return fo_family_attack(self.protocol, self.v1, self.v2)

    def params(self):
        return {"protocol": repr(self.protocol)}


# --------------------------------------------------------------------------------------------- longitudinal
class LongitudinalTarget(Target):
    """``tau`` reports of one user holding a constant value, memo kept by ``population`` (a ClientPopulation).

    Claimed: ``protocol.privacy_spent(tau, 1)`` = min(tau eps_1, eps_perm) (one distinct memo key), the
    guarantee dpkit states for the whole sequence. Reports: shape (n, tau, ...).
    """

    def __init__(
        self,
        protocol: LongitudinalProtocol,
        tau: int,
        population=ClientPopulation,
        name: str | None = None,
        v1: int = 0,
        v2: int | None = None,
    ):
        if not isinstance(protocol, LongitudinalProtocol):
            raise TypeError(f"protocol must be a LongitudinalProtocol, got {type(protocol).__name__}")
        self.protocol, self.tau, self.population = protocol, int(tau), population
        self.name = name or f"dpkit:{protocol.name}"
        self.k = protocol.k
        self.epsilon = float(protocol.privacy_spent(self.tau, 1))
        self.v1, self.v2 = v1, (protocol.k - 1 if v2 is None else v2)
        width = {LUE: self.k, LOLOHA: 3}.get(next((c for c in (LUE, LOLOHA) if isinstance(protocol, c)), None), 2)
        if isinstance(protocol, DBitFlipPM):
            width = 2 * protocol.d
        self.chunk_rows = _rows(width * self.tau * (4 if isinstance(protocol, LGRR) else 1))

    def params(self):
        return {"protocol": repr(self.protocol), "tau": self.tau}

    def sample(self, which, n, rng):
        v = self.v1 if which == 0 else self.v2
        pop = self.population(self.protocol, n, rng)
        values = np.full(n, v, dtype=np.int64)
        return np.stack([pop.report(values, rng) for _ in range(self.tau)], axis=1)

    # -------------------------------------------------------------- statistic: counts of the two inputs
    def statistic(self):
        p, tau, v1, v2 = self.protocol, self.tau, self.v1, self.v2
        side = tau + 1
        if isinstance(p, (LGRR, LOLOHA)):
            m = p.k if isinstance(p, LGRR) else p.g
            rest = 1 - p.p1 - p.q1  # PRR lands on a third value (0 when m = 2)
            t_own, t_other, t_rest = (
                trinomial_pmf(tau, p.p2, p.q2),
                trinomial_pmf(tau, p.q2, p.p2),
                (trinomial_pmf(tau, p.q2, p.q2) if m > 2 else 0.0),
            )
            pm1 = (p.p1 * t_own + p.q1 * t_other + rest * t_rest).ravel()
            pm2 = (p.q1 * t_own + p.p1 * t_other + rest * t_rest).ravel()
            if isinstance(p, LGRR):

                def codes(r):
                    return (r == v1).sum(axis=1) * side + (r == v2).sum(axis=1)

                return Statistic("(#reports = v1, #reports = v2)", side * side, codes, (pm1, pm2))
            c = 1.0 / p.g
            from dpkit.mechanisms import hashing

            def codes_lh(r):
                a, b, y = r[:, 0, 0], r[:, 0, 1], r[:, :, 2].astype(np.int64)
                h1 = hashing.hash_values(a, b, np.uint64(v1), p.g)
                h2 = hashing.hash_values(a, b, np.uint64(v2), p.g)
                out = (y == h1[:, None]).sum(axis=1) * side + (y == h2[:, None]).sum(axis=1)
                return np.where(h1 == h2, side * side, out)

            pm1 = np.append((1 - c) * pm1, c)
            pm2 = np.append((1 - c) * pm2, c)
            return Statistic("(#y = H(v1), #y = H(v2), collision)", side * side + 1, codes_lh, (pm1, pm2))
        if isinstance(p, LUE):
            own = mixture_binomial_pmf(tau, p.p1, p.p2, p.q2)
            other = mixture_binomial_pmf(tau, p.q1, p.p2, p.q2)

            def codes_ue(r):
                return r[:, :, v1].sum(axis=1).astype(np.int64) * side + r[:, :, v2].sum(axis=1).astype(np.int64)

            return Statistic(
                "(#bit v1, #bit v2)",
                side * side,
                codes_ue,
                (np.outer(own, other).ravel(), np.outer(other, own).ravel()),
            )
        if isinstance(p, DBitFlipPM):
            return self._dbit_statistic()
        return None

    def _dbit_statistic(self):
        p, tau = self.protocol, self.tau
        d, b = p.d, p.b
        B1, B2 = int(p.bucket(np.array([self.v1]))[0]), int(p.bucket(np.array([self.v2]))[0])
        side = tau + 2  # count of ones in [0, tau], or tau + 1 = bucket not sampled

        def codes(r):
            J, bits = r[:, 0, :d], r[:, :, d:]

            def count(B):
                hit = J == B
                c = (bits * hit[:, None, :]).sum(axis=(1, 2))
                return np.where(hit.any(axis=1), c, tau + 1)

            return count(B1) * side + count(B2)

        pb = b * (b - 1)
        both, only, none = d * (d - 1) / pb, d * (b - d) / pb, (b - d) * (b - d - 1) / pb

        def marg(prob_one):  # memoized bit: all tau reports equal
            m = np.zeros(side)
            m[tau] += prob_one
            m[0] += 1 - prob_one
            return m

        absent = np.zeros(side)
        absent[tau + 1] = 1.0
        if B1 == B2:
            return None

        def pmf(own_bucket):
            a1 = marg(p.p if own_bucket == 1 else p.q)
            a2 = marg(p.p if own_bucket == 2 else p.q)
            return (
                both * np.outer(a1, a2)
                + only * np.outer(a1, absent)
                + only * np.outer(absent, a2)
                + none * np.outer(absent, absent)
            ).ravel()

        return Statistic("(#ones at bucket(v1), #ones at bucket(v2))", side * side, codes, (pmf(1), pmf(2)))

    def family_attack(self):
        """LDP-Auditor's A^L: add up per-report scores for every item, guess the argmax (random ties)."""
        p, k, v1 = self.protocol, self.k, self.v1

        def argmax_guess(score, rng):
            top = score.max(axis=1, keepdims=True)
            tied = score == top
            return guess_uniform_from_support(tied[:, v1], tied.sum(axis=1), k, rng)

        if isinstance(p, LGRR):

            def lgrr(r, rng):
                n = len(r)
                idx = (np.arange(n)[:, None] * k + r).ravel()
                return argmax_guess(np.bincount(idx, minlength=n * k).reshape(n, k), rng)

            return lgrr
        if isinstance(p, LUE):
            return lambda r, rng: argmax_guess(r.sum(axis=1, dtype=np.int64), rng)
        if isinstance(p, LOLOHA):
            from dpkit.mechanisms import hashing

            xs = np.arange(k, dtype=np.uint64)

            def loloha(r, rng):
                n, g = len(r), p.g
                y = r[:, :, 2].astype(np.int64)
                cnt = np.bincount((np.arange(n)[:, None] * g + y).ravel(), minlength=n * g).reshape(n, g)
                h = hashing.hash_values(r[:, 0, 0][:, None], r[:, 0, 1][:, None], xs[None, :], g)
                return argmax_guess(np.take_along_axis(cnt, h, axis=1), rng)

            return loloha
        return None


# --------------------------------------------------------------------------------------- multidimensional
def _count_pmf(dists: list[np.ndarray]) -> np.ndarray:
    """Distribution of the class counts (c_0, ..., c_{C-1}) of independent attributes, shape (d + 1,)^C."""
    C, d = len(dists[0]), len(dists)
    S = np.zeros((d + 1,) * C)
    S[(0,) * C] = 1.0
    for t in dists:
        new = np.zeros_like(S)
        for c in range(C):
            if t[c] == 0:
                continue
            src = [slice(None)] * C
            dst = [slice(None)] * C
            src[c], dst[c] = slice(0, d), slice(1, d + 1)
            new[tuple(dst)] += t[c] * S[tuple(src)]
        S = new
    return S


class MultidimensionalTarget(Target):
    """SPL, SMP or RS+FD on d attributes; v1 = (0, ..., 0), v2 = (k_j - 1)_j ('tuple') or (k_0 - 1, 0, ...)
    ('attribute').

    Claims: SPL and SMP are epsilon-LDP for whole tuples. RS+FD claims epsilon against a change of one attribute
    only; for whole tuples dpkit states ``tuple_epsilon`` = eps' = ln(d (e^eps - 1) + 1). So at tuple scope the
    audit checks eps' (a violation would be a bug) and reports a *finding* when the bound exceeds the
    attribute-level epsilon (the RS+FD caveat, ldp.md 4.2).
    """

    def __init__(self, protocol, scope: str = "tuple", name: str | None = None):
        if scope not in ("tuple", "attribute"):
            raise ValueError(f"scope must be 'tuple' or 'attribute', got {scope!r}")
        self.protocol, self.scope = protocol, scope
        sizes = protocol.domain_sizes
        self.d, self.k = len(sizes), max(sizes)
        self.v1 = tuple(0 for _ in sizes)
        self.v2 = tuple(k - 1 for k in sizes) if scope == "tuple" else (sizes[0] - 1,) + self.v1[1:]
        kind = type(protocol).__name__
        label = {"RSFD": "RS+FD", "RSRFD": "RS+RFD"}.get(kind, kind)
        self.name = name or f"dpkit:{label}[{protocol.protocol}]"
        if isinstance(protocol, RSFD) and scope == "tuple":
            self.epsilon = float(protocol.tuple_epsilon)
            self.reference_epsilon = float(protocol.epsilon)
            self.note = (
                f"RS+FD claims epsilon = {protocol.epsilon:g} per attribute; for whole tuples dpkit states "
                f"eps' = {protocol.tuple_epsilon:.4g} (ldp.md 4.2)"
            )
        else:
            self.epsilon = float(protocol.epsilon)
        self.chunk_rows = _rows(sum(sizes) * 2)

    def params(self):
        return {"protocol": repr(self.protocol), "scope": self.scope, "d": self.d}

    def sample(self, which, n, rng):
        v = np.asarray(self.v1 if which == 0 else self.v2, dtype=np.int64)
        return self.protocol.perturb(np.tile(v, (n, 1)), rng)

    # ------------------------------------------------------------------------ per-attribute class model
    def _ue(self) -> bool:
        return getattr(self.protocol, "base", "GRR") != "GRR"

    def _classes(self, i: int, y) -> np.ndarray:
        a, b = self.v1[i], self.v2[i]
        if self._ue():
            if a == b:
                return y[:, a].astype(np.int64)
            return 2 * y[:, a].astype(np.int64) + y[:, b].astype(np.int64)
        if a == b:
            return (y == a).astype(np.int64)
        return np.where(y == a, 0, np.where(y == b, 1, 2))

    def _class_dists(self, i: int, value: int):
        """(T, F): class distribution of attribute i when it is the sampled one holding ``value``, and when fake."""
        proto = self.protocol
        k = proto.domain_sizes[i]
        p, q = proto.pq[i]
        a, b = self.v1[i], self.v2[i]
        if not self._ue():
            if a == b:
                return np.array([1 - p, p]), np.array([1 - 1 / k, 1 / k])
            T = np.array([p, q, 1 - p - q]) if value == a else np.array([q, p, 1 - p - q])
            return T, np.array([1 / k, 1 / k, 1 - 2 / k])
        if a == b:
            r = q if proto.fake == "z" else p / k + (k - 1) * q / k
            return np.array([1 - p, p]), np.array([1 - r, r])
        T = pair_pmf(p, q, q, p)[0 if value == a else 1]
        if proto.fake == "z":
            F = pair_pmf(q, q, q, q)[0]
        else:
            F = (pair_pmf(p, q, q, p)[0] + pair_pmf(p, q, q, p)[1]) / k + (k - 2) / k * pair_pmf(q, q, q, q)[0]
        return T, F

    def statistic(self):
        proto = self.protocol
        if isinstance(proto, SPL):
            return self._spl_statistic()
        if isinstance(proto, SMP):
            return self._smp_statistic()
        d = self.d
        if self.scope == "tuple":
            C = 4 if self._ue() else 3

            def pmf(which):
                v = self.v1 if which == 0 else self.v2
                tot = 0.0
                for j in range(d):
                    dists = [self._class_dists(i, v[i])[0 if i == j else 1] for i in range(d)]
                    tot = tot + _count_pmf(dists) / d
                return tot.ravel()

            def codes(reports):
                cls = np.stack([self._classes(i, np.asarray(reports[i])) for i in range(d)], axis=1)
                counts = [(cls == c).sum(axis=1) for c in range(C)]
                return np.ravel_multi_index(counts, (d + 1,) * C)

            return Statistic("class counts over attributes", (d + 1) ** C, codes, (pmf(0), pmf(1)))
        # attribute scope: (class of attribute 0, #other attributes supporting their value)
        C0 = 4 if self._ue() else 3

        def pmf_attr(which):
            v0 = self.v1[0] if which == 0 else self.v2[0]
            T0, F0 = self._class_dists(0, v0)
            tot = np.zeros((C0, d))
            for j in range(d):
                others = [self._class_dists(i, 0)[0 if i == j else 1] for i in range(1, d)]
                m = _count_pmf(others).sum(axis=0) if others else np.array([1.0])  # P(#others supporting)
                tot += np.outer(T0 if j == 0 else F0, m) / d
            return tot.ravel()

        def codes_attr(reports):
            c0 = self._classes(0, np.asarray(reports[0]))
            m = sum(self._classes(i, np.asarray(reports[i])) for i in range(1, d)) if d > 1 else 0 * c0
            return c0 * d + m

        return Statistic("(class of attribute 0, #others supporting)", C0 * d, codes_attr, (pmf_attr(0), pmf_attr(1)))

    def _spl_statistic(self):
        oracles = self.protocol.oracles
        if self.scope == "attribute":
            s = fo_statistic(oracles[0], self.v1[0], self.v2[0])
            return Statistic(s.name + " of attribute 0", s.n_codes, lambda r: s.codes(r[0]), s.pmf)
        stats = [fo_statistic(o, self.v1[i], self.v2[i]) for i, o in enumerate(oracles)]
        sizes = [s.n_codes for s in stats]
        pm1, pm2 = np.ones(()), np.ones(())
        for s in stats:
            pm1, pm2 = np.multiply.outer(pm1, s.pmf[0]), np.multiply.outer(pm2, s.pmf[1])

        def codes(reports):
            return np.ravel_multi_index([s.codes(reports[i]) for i, s in enumerate(stats)], sizes)

        return Statistic("per-attribute codes", int(np.prod(sizes)), codes, (pm1.ravel(), pm2.ravel()))

    def _smp_statistic(self):
        oracles, d = self.protocol.oracles, self.d
        stats = [
            fo_statistic(o, self.v1[i], self.v2[i]) if self.v1[i] != self.v2[i] else None for i, o in enumerate(oracles)
        ]
        width = max(s.n_codes if s else 1 for s in stats)
        pm1, pm2 = np.zeros(d * width), np.zeros(d * width)
        for i, s in enumerate(stats):
            if s is None:
                pm1[i * width] = pm2[i * width] = 1.0 / d
            else:
                pm1[i * width : i * width + s.n_codes] = s.pmf[0] / d
                pm2[i * width : i * width + s.n_codes] = s.pmf[1] / d

        def codes(reports):
            attr, per = reports
            out = np.empty(len(attr), dtype=np.int64)
            for i, s in enumerate(stats):
                rows = np.flatnonzero(attr == i)
                out[rows] = i * width + (s.codes(np.asarray(per[i])) if s is not None else 0)
            return out

        return Statistic("(attribute, its code)", d * width, codes, (pm1, pm2))

    def family_attack(self):
        """LDP-Auditor's A^{RS+FD}: a uniformly random attribute j', its single-attribute attack (x_hat = v1[j'])."""
        proto = self.protocol
        if isinstance(proto, SMP):
            return None
        ue = self._ue() if isinstance(proto, RSFD) else proto.protocol.upper() != "GRR"

        def attack(reports, rng):
            n = len(reports[0])
            j = rng.integers(0, self.d, size=n)
            out = np.zeros(n, dtype=bool)
            for i in range(self.d):
                y = np.asarray(reports[i])
                k = y.shape[1] if ue else self.protocol.domain_sizes[i]
                hit = guess_uniform_from_support(y[:, self.v1[i]], y.sum(axis=1), k, rng) if ue else y == self.v1[i]
                out |= (j == i) & hit
            return out

        return attack


# -------------------------------------------------------------------------------------------------- anchors
ANCHOR_PROTOCOLS = {
    "multi-freq-ldpy": ("GRR", "SUE", "OUE", "BLH", "OLH", "SS", "SHE", "THE"),
    "pure-ldp": ("GRR", "SUE", "OUE", "BLH", "OLH", "SHE", "THE"),
}


_NUMBA_SEEDER = []


def _seed_numba(seed: int) -> None:
    """Seed numba's own RNG (np.random.seed in Python does not reach it); compiled once per process."""
    if not _NUMBA_SEEDER:
        from numba import njit

        @njit(cache=False)
        def _seed(s):
            np.random.seed(s)

        _NUMBA_SEEDER.append(_seed)
    _NUMBA_SEEDER[0](seed)


class AnchorTarget(Target):
    """multi-freq-ldpy or pure-LDP's client for one protocol, one Python call per trial.

    The likelihood-ratio statistic and family attack are dpkit's for the same protocol (the claimed model:
    same p, q, g, theta); local-hashing reports carry the library's xxh32 seed and are hashed with xxh32 as the
    library does. Imported only when the target is built.
    """

    default_trials = ANCHOR_TRIALS

    def __init__(self, library: str, protocol: str, k: int, epsilon: float):
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

    def params(self):
        return {"library": self.library, "protocol": self.proto_name}

    def _make_client(self):
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

    def _seed(self, rng):
        s = int(rng.integers(0, 2**31 - 1))
        if self.library == "multi-freq-ldpy":
            _seed_numba(s)
        np.random.seed(s)
        random.seed(s)

    def sample(self, which, n, rng):
        self._seed(rng)
        v = self.v1 if which == 0 else self.v2
        f = self.client
        out = [f(v) for _ in range(n)]
        if self.proto_name in ("BLH", "OLH"):
            return np.array([(int(y), int(seed)) for y, seed in out], dtype=np.int64)
        if self.proto_name in ("GRR",):
            return np.asarray(out, dtype=np.int64)
        if self.proto_name in ("SUE", "OUE"):
            return np.asarray(out).astype(bool)
        return np.asarray(out)

    def _xxh(self, values, seeds) -> np.ndarray:
        import xxhash

        g = self.model.g
        return np.array(
            [xxhash.xxh32(str(int(v)), seed=int(s)).intdigest() % g for v, s in zip(values, seeds, strict=True)]
        )

    def statistic(self):
        if self.proto_name not in ("BLH", "OLH"):
            return fo_statistic(self.model, self.v1, self.v2)
        base = fo_statistic(self.model, self.v1, self.v2)

        def codes(r):
            y, seeds = r[:, 0], r[:, 1]
            h1 = self._xxh(np.full(len(r), self.v1), seeds)
            h2 = self._xxh(np.full(len(r), self.v2), seeds)
            return np.where(h1 == h2, 3, np.where(y == h1, 0, np.where(y == h2, 1, 2)))

        return Statistic(base.name + " (xxh32)", 4, codes, base.pmf)

    def family_attack(self):
        if self.proto_name not in ("BLH", "OLH"):
            return fo_family_attack(self.model, self.v1, self.v2)
        k = self.k

        def lh(r, rng):
            y, seeds = r[:, 0], r[:, 1]
            h = np.stack([self._xxh(np.full(len(r), v), seeds) for v in range(k)], axis=1)
            support = h == y[:, None]
            return guess_uniform_from_support(support[:, self.v1], support.sum(axis=1), k, rng)

        return lh


# ------------------------------------------------------------------------------------------ user callables
class CallableTarget(Target):
    """``f(value) -> report`` with a declared (epsilon, delta, k); reports are ints or length-k vectors.

    No model is known, so the likelihood-ratio event is chosen on a training split (see the game). The statistic
    is (y = v1, y = v2, other) for int reports, (bit v1, bit v2) for 0/1 vectors, binned (y_v1, y_v2) for floats.
    """

    default_trials = 100_000

    def __init__(self, func, k: int, epsilon: float, delta: float = 0.0, name: str | None = None):
        if not callable(func):
            raise TypeError(f"target must be callable, got {type(func).__name__}")
        self.func, self.k, self.epsilon, self.delta = func, int(k), float(epsilon), float(delta)
        self.v1, self.v2 = 0, self.k - 1
        self.name = name or f"{getattr(func, '__module__', '?')}:{getattr(func, '__qualname__', repr(func))}"
        self.chunk_rows = 8192
        self._kind = None

    def sample(self, which, n, rng):
        v = self.v1 if which == 0 else self.v2
        seed = int(rng.integers(0, 2**31 - 1))
        np.random.seed(seed)
        random.seed(seed)
        out = np.asarray([self.func(v) for _ in range(n)])
        if out.ndim == 1:
            if out.dtype.kind not in "iub":
                raise TypeError(f"{self.name} must return an int or a length-{self.k} vector, got {out.dtype}")
            self._kind = "int"
            return out.astype(np.int64)
        if out.ndim != 2 or out.shape[1] != self.k:
            raise ValueError(f"{self.name} must return an int or a length-{self.k} vector, got shape {out.shape[1:]}")
        self._kind = "bits" if np.isin(out, (0, 1)).all() else "float"
        return out

    def statistic(self):
        v1, v2 = self.v1, self.v2
        from dpkit.audits.ldp.attacks import _HE_EDGES

        def codes(r):
            if r.ndim == 1:
                return np.where(r == v1, 0, np.where(r == v2, 1, 2))
            if np.isin(r, (0, 1)).all():
                return 3 + 2 * r[:, v1].astype(np.int64) + r[:, v2].astype(np.int64)
            return 7 + 6 * np.digitize(r[:, v1], _HE_EDGES) + np.digitize(r[:, v2], _HE_EDGES)

        return Statistic("generic (y_v1, y_v2)", 7 + 36, codes, None)

    def family_attack(self):
        k, v1 = self.k, self.v1

        def attack(r, rng):
            if r.ndim == 1:
                return r == v1
            if np.isin(r, (0, 1)).all():
                return guess_uniform_from_support(r[:, v1].astype(bool), r.sum(axis=1), k, rng)
            top = r.max(axis=1, keepdims=True)
            tied = r == top
            return guess_uniform_from_support(tied[:, v1], tied.sum(axis=1), k, rng)

        return attack


# --------------------------------------------------------------------------------------------------- resolve
def dpkit_protocol_names() -> list[str]:
    """Every LDP protocol dpkit ships, read from the mechanisms registries (new ones are picked up)."""
    return [*FREQUENCY_ORACLES, *LONGITUDINAL_PROTOCOLS, *MULTIDIMENSIONAL_NAMES]


_MD = re.compile(r"^(RS\+?FD|SPL|SMP)[\[\-_:]?([A-Za-z\-]+)\]?$", re.IGNORECASE)


def _dpkit(
    name: str,
    k: int,
    epsilon: float,
    *,
    eps_1=None,
    tau: int = 10,
    d: int = 3,
    scope: str = "tuple",
    calibration: str = "paper",
):
    key = name.upper().replace("_", "-")
    fos = {n.upper(): n for n in FREQUENCY_ORACLES}
    if key in fos or key in ("ADP", "ADAPTIVE", "AUTO"):
        return ProtocolTarget(make_oracle(key, k, epsilon), name=f"dpkit:{fos.get(key, 'ADP')}")
    longs = {n.upper().replace("_", "-"): n for n in LONGITUDINAL_PROTOCOLS}
    if key in longs:
        cls = LONGITUDINAL_PROTOCOLS[longs[key]]
        if cls is DBitFlipPM:
            proto = cls(k, epsilon)
        else:
            e1 = epsilon / 2 if eps_1 is None else eps_1
            kw = {"calibration": calibration} if cls in (LGRR, LOLOHA) else {}
            proto = cls(k, epsilon, e1, **kw)
        return LongitudinalTarget(proto, tau, name=f"dpkit:{longs[key]}")
    m = _MD.match(name.strip())
    if m:
        kind, fo = m.group(1).upper().replace("+", ""), m.group(2)
        sizes = (k,) * d
        if kind == "RSFD":
            fo_name = {"GRR": "GRR", "OUE-Z": "OUE-z", "OUE-R": "OUE-r", "SUE-Z": "SUE-z", "SUE-R": "SUE-r"}.get(
                fo.upper()
            )
            if fo_name is None:
                raise ValueError(f"RS+FD protocol must be one of GRR, OUE-z, OUE-r, SUE-z, SUE-r, got {fo!r}")
            proto = RSFD(sizes, epsilon, fo_name)
        else:
            proto = (SPL if kind == "SPL" else SMP)(sizes, epsilon, fo.upper())
        return MultidimensionalTarget(proto, scope=scope)
    raise ValueError(f"unknown dpkit protocol {name!r}; choose one of {', '.join(dpkit_protocol_names())}")


def resolve(spec: str, *, k: int, epsilon: float, delta: float = 0.0, **options) -> Target:
    """Build a target from a TARGET string (see the module docstring). ``options``: eps_1, tau, d, scope,
    calibration for dpkit protocols."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(
            f"target must be dpkit:PROTOCOL, multi-freq-ldpy:PROTOCOL, pure-ldp:PROTOCOL or "
            f"package.module:callable, got {spec!r}"
        )
    prefix, _, name = spec.partition(":")
    if prefix == "dpkit":
        return _dpkit(name, k, epsilon, **options)
    if prefix in ANCHOR_PROTOCOLS:
        return AnchorTarget(prefix, name, k, epsilon)
    try:
        module = importlib.import_module(prefix)
    except ImportError as err:
        raise ValueError(f"cannot import module {prefix!r} of target {spec!r}: {err}") from None
    func = module
    for part in name.split("."):
        if not hasattr(func, part):
            raise ValueError(f"module {prefix!r} has no attribute {name!r} (target {spec!r})")
        func = getattr(func, part)
    return CallableTarget(func, k, epsilon, delta, name=spec)
