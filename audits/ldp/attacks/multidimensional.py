"""Attacks on one user's report of a multidimensional protocol, registered per protocol class.

The inputs are two tuples v1, v2: at 'tuple' scope every attribute may differ, at 'attribute' scope only
attribute 0. :func:`multidimensional_statistic` builds the likelihood-ratio statistic from the per-attribute
statistics (SPL, SMP: the frequency oracles' own, :func:`~dpkit.audits.ldp.attacks.frequency_oracles.fo_statistic`;
RS+FD: per-attribute classes whose exact law mixes the sampled attribute's report with the fake data).
:func:`multidimensional_family_attack` is LDP-Auditor's A^{RS+FD}: a uniformly random attribute j' and its
single-attribute attack. A new protocol adds one registration of each
(``@multidimensional_statistic.register(MyProtocol)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import singledispatch
from typing import Any, cast

import numpy as np

from dpkit.audits.ldp.attacks.frequency_oracles import fo_family_attack, fo_statistic
from dpkit.audits.ldp.attacks.statistic import FamilyAttack, Statistic, guess_uniform_from_support, pair_pmf
from dpkit.mechanisms.multidimensional import RSFD, SMP, SPL, MultidimensionalProtocol

__all__ = ["multidimensional_statistic", "multidimensional_family_attack"]

Tuple = Sequence[int]


# ------------------------------------------------------------------------------------------------ statistics
@singledispatch
def multidimensional_statistic(proto: MultidimensionalProtocol, v1: Tuple, v2: Tuple, scope: str) -> Statistic | None:
    """The likelihood-ratio statistic of one report of ``proto`` for the input tuples v1, v2 (None: none
    registered). ``scope``: 'tuple' or 'attribute' (only attribute 0 differs)."""
    return None


def _exact(s: Statistic) -> tuple[np.ndarray, np.ndarray]:
    if s.pmf is None:
        raise ValueError(f"the statistic {s.name!r} has no exact distribution")
    return s.pmf


@multidimensional_statistic.register(SPL)
def _spl_statistic(proto: SPL, v1: Tuple, v2: Tuple, scope: str) -> Statistic:
    oracles = proto.oracles
    if scope == "attribute":
        s = fo_statistic(oracles[0], v1[0], v2[0])
        return Statistic(s.name + " of attribute 0", s.n_codes, lambda r: s.codes(r[0]), s.pmf)
    stats = [fo_statistic(o, v1[i], v2[i]) for i, o in enumerate(oracles)]
    sizes = [s.n_codes for s in stats]
    pm1, pm2 = np.ones(()), np.ones(())
    for s in stats:
        e1, e2 = _exact(s)
        pm1, pm2 = np.multiply.outer(pm1, e1), np.multiply.outer(pm2, e2)

    def codes(reports: Any) -> np.ndarray:
        return np.ravel_multi_index([s.codes(reports[i]) for i, s in enumerate(stats)], sizes)

    return Statistic("per-attribute codes", int(np.prod(sizes)), codes, (pm1.ravel(), pm2.ravel()))


@multidimensional_statistic.register(SMP)
def _smp_statistic(proto: SMP, v1: Tuple, v2: Tuple, scope: str) -> Statistic:
    oracles, d = proto.oracles, proto.d
    stats = [fo_statistic(o, v1[i], v2[i]) if v1[i] != v2[i] else None for i, o in enumerate(oracles)]
    width = max(s.n_codes if s else 1 for s in stats)
    pm1, pm2 = np.zeros(d * width), np.zeros(d * width)
    for i, s in enumerate(stats):
        if s is None:
            pm1[i * width] = pm2[i * width] = 1.0 / d
        else:
            e1, e2 = _exact(s)
            pm1[i * width : i * width + s.n_codes] = e1 / d
            pm2[i * width : i * width + s.n_codes] = e2 / d

    def codes(reports: Any) -> np.ndarray:
        attr, per = reports
        out = np.empty(len(attr), dtype=np.int64)
        for i, s in enumerate(stats):
            rows = np.flatnonzero(attr == i)
            out[rows] = i * width + (s.codes(np.asarray(per[i])) if s is not None else 0)
        return out

    return Statistic("(attribute, its code)", d * width, codes, (pm1, pm2))


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
            src: list[slice] = [slice(None)] * C
            dst: list[slice] = [slice(None)] * C
            src[c], dst[c] = slice(0, d), slice(1, d + 1)
            new[tuple(dst)] += t[c] * S[tuple(src)]
        S = new
    return S


def _rsfd_classes(proto: RSFD, a: int, b: int, y: np.ndarray) -> np.ndarray:
    """The class of every report ``y`` of one attribute w.r.t. the values a (of v1) and b (of v2)."""
    if proto.base != "GRR":
        if a == b:
            return y[:, a].astype(np.int64)
        return 2 * y[:, a].astype(np.int64) + y[:, b].astype(np.int64)
    if a == b:
        return (y == a).astype(np.int64)
    return np.where(y == a, 0, np.where(y == b, 1, 2))


def _rsfd_class_dists(proto: RSFD, i: int, a: int, b: int, value: int) -> tuple[np.ndarray, np.ndarray]:
    """(T, F): class distribution of attribute i when it is the sampled one holding ``value``, and when fake."""
    k = proto.domain_sizes[i]
    p, q = proto.pq[i]
    if proto.base == "GRR":
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


@multidimensional_statistic.register(RSFD)
def _rsfd_statistic(proto: RSFD, v1: Tuple, v2: Tuple, scope: str) -> Statistic:
    d = proto.d
    n_classes = 4 if proto.base != "GRR" else 3

    def dists(i: int, value: int) -> tuple[np.ndarray, np.ndarray]:
        return _rsfd_class_dists(proto, i, v1[i], v2[i], value)

    def classes(i: int, y: np.ndarray) -> np.ndarray:
        return _rsfd_classes(proto, v1[i], v2[i], y)

    if scope == "tuple":

        def pmf(which: int) -> np.ndarray:
            v = v1 if which == 0 else v2
            tot: Any = 0.0
            for j in range(d):
                per = [dists(i, v[i])[0 if i == j else 1] for i in range(d)]
                tot = tot + _count_pmf(per) / d
            return np.asarray(tot).ravel()

        def codes(reports: Any) -> np.ndarray:
            cls = np.stack([classes(i, np.asarray(reports[i])) for i in range(d)], axis=1)
            counts = [(cls == c).sum(axis=1) for c in range(n_classes)]
            return np.ravel_multi_index(counts, (d + 1,) * n_classes)

        return Statistic("class counts over attributes", (d + 1) ** n_classes, codes, (pmf(0), pmf(1)))

    # attribute scope: (class of attribute 0, #other attributes supporting their value)
    def pmf_attr(which: int) -> np.ndarray:
        v0 = v1[0] if which == 0 else v2[0]
        T0, F0 = dists(0, v0)
        tot = np.zeros((n_classes, d))
        for j in range(d):
            others = [dists(i, 0)[0 if i == j else 1] for i in range(1, d)]
            m = _count_pmf(others).sum(axis=0) if others else np.array([1.0])  # P(#others supporting)
            tot += np.outer(T0 if j == 0 else F0, m) / d
        return tot.ravel()

    def codes_attr(reports: Any) -> np.ndarray:
        c0 = classes(0, np.asarray(reports[0]))
        m = sum(classes(i, np.asarray(reports[i])) for i in range(1, d)) if d > 1 else 0 * c0
        return c0 * d + m

    return Statistic(
        "(class of attribute 0, #others supporting)", n_classes * d, codes_attr, (pmf_attr(0), pmf_attr(1))
    )


# ---------------------------------------------------------------------------------------------- family attacks
@singledispatch
def multidimensional_family_attack(proto: MultidimensionalProtocol, v1: Tuple) -> FamilyAttack | None:
    """LDP-Auditor's A^{RS+FD}: a uniformly random attribute j' and its single-attribute attack (x_hat = v1[j']),
    returning guess == v1 per trial (None: none registered, e.g. SMP, whose reports name their attribute)."""
    return None


def _random_attribute(d: int, per_attribute: Sequence[FamilyAttack]) -> FamilyAttack:
    """Guess == v1 by a uniformly random attribute j' and that attribute's attack on its report."""

    def attack(reports: Any, rng: np.random.Generator) -> np.ndarray:
        n = len(reports[0])
        j = rng.integers(0, d, size=n)
        out = np.zeros(n, dtype=bool)
        for i in range(d):
            out |= (j == i) & per_attribute[i](np.asarray(reports[i]), rng)
        return out

    return attack


@multidimensional_family_attack.register(SPL)
def _spl_attack(proto: SPL, v1: Tuple) -> FamilyAttack | None:
    # the attribute's own oracle's attack (its report is that oracle's); v2 plays no role in a family attack
    attacks = [fo_family_attack(o, v1[i], v1[i]) for i, o in enumerate(proto.oracles)]
    if any(a is None for a in attacks):
        return None
    return _random_attribute(proto.d, cast(list[FamilyAttack], attacks))


@multidimensional_family_attack.register(RSFD)
def _rsfd_attack(proto: RSFD, v1: Tuple) -> FamilyAttack:
    def grr(i: int) -> FamilyAttack:
        return lambda y, rng: y == v1[i]

    def ue(i: int) -> FamilyAttack:
        return lambda y, rng: guess_uniform_from_support(y[:, v1[i]], y.sum(axis=1), y.shape[1], rng)

    per = grr if proto.base == "GRR" else ue
    return _random_attribute(proto.d, [per(i) for i in range(proto.d)])
