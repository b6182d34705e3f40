"""Poisoning the longitudinal protocols (L-GRR, L-SUE/L-OUE/L-OSUE/L-SOUE, LOLOHA, dBitFlipPM) over many collections.

A genuine user memoizes a permanent randomized response (PRR) per memo key and sends a fresh instantaneous one
(IRR) of it at every collection. A fake user can do the same with a *crafted* memo, so that every report it sends
is an honest IRR of a fixed payload (``consistent=True``: its reports over time are distributed exactly like a
genuine user's whose PRR happened to be that payload), or send the crafted report itself every time (the largest
gain per collection, but the same report at every collection). :func:`crafted_memo` (``functools.singledispatch``
on the protocol class) builds the fake users' memo for 'rpa', 'ria' and 'mga':

* L-GRR: MGA memoizes a target (PRR output t), RPA a uniform value, RIA the honest PRR of a target;
* L-UE: MGA memoizes the bit vector of the targets, padded with non-target ones at the PRR's mean count;
* LOLOHA: MGA keeps a hash function under which the most targets share a bucket (as for local hashing) and
  memoizes that bucket;
* dBitFlipPM: MGA samples the target buckets into its d reported buckets and memoizes bit 1 on them (its reports
  have no IRR, so both modes coincide).

Every memo comes with the closed-form expected score of one of its reports, E phi_v, in both modes, so the
expected gain per collection is beta (sum_t E phi_t - f_T). The single-report attacks (:func:`~.attacks.rpa`,
:func:`~.attacks.mga`) on these classes send the crafted report directly. :func:`simulate_longitudinal` runs tau
collections of a :class:`~dpkit.mechanisms.longitudinal.ClientPopulation` against m fake users.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import singledispatch
from typing import Any

import numpy as np

from dpkit.audits.poisoning.attacks import (
    FakeReports,
    mga,
    ones_padding,
    pure_scores,
    rpa,
    search_hash_functions,
    uniform_subsets,
)
from dpkit.audits.poisoning.scores import n_items, report_scores, true_frequencies
from dpkit.audits.poisoning.simulation import PoisoningResult, check_attack
from dpkit.audits.poisoning.threat import check_fake_fraction, check_targets, fake_count
from dpkit.mechanisms import hashing
from dpkit.mechanisms._validation import check_count, check_rng, check_values
from dpkit.mechanisms.longitudinal import LGRR, LOLOHA, LUE, ClientPopulation, DBitFlipPM, LongitudinalProtocol

__all__ = ["FakeMemo", "crafted_memo", "simulate_longitudinal"]


@dataclass(frozen=True)
class FakeMemo:
    """The fake users' memo: ``payload`` (one PRR row per fake user, the protocol's format), ``users`` (their
    persistent parameters), the expected score of one report sent as an IRR of the payload (``consistent_scores``)
    or as the payload itself (``direct_scores``), and ``direct`` (the payload as reports; None for RIA, whose fake
    users are honest clients and always send an IRR)."""

    payload: np.ndarray
    users: dict[str, np.ndarray]
    consistent_scores: np.ndarray
    direct_scores: np.ndarray
    direct: np.ndarray | None
    info: dict[str, Any] = field(default_factory=dict)

    def reports(self, proto: LongitudinalProtocol, rng: np.random.Generator, consistent: bool = True) -> np.ndarray:
        """One collection's reports of the fake users."""
        if consistent or self.direct is None:
            return proto.second_round(self.payload, self.users, rng)
        return self.direct


def _one_hot_mix(k: int, targets: np.ndarray, inside: float, outside: float) -> np.ndarray:
    out = np.full(k, float(outside))
    out[targets] = inside
    return out


@singledispatch
def crafted_memo(
    proto: LongitudinalProtocol, attack: str, targets: np.ndarray, m: int, rng: np.random.Generator, **options: Any
) -> FakeMemo:
    """The memo of m fake users for ``attack`` ('rpa', 'ria', 'mga'), per protocol class."""
    raise TypeError(f"no crafted memo registered for {type(proto).__name__}")


def _honest_memo(proto: LongitudinalProtocol, targets: np.ndarray, m: int, rng: np.random.Generator):
    """RIA: users' parameters and the honest PRR of a target each (consistent scores: [v in T]/r, unbiased)."""
    users = proto.init_users(m, rng)
    values = rng.choice(targets, size=m)
    payload = proto.first_round(proto.memo_key(values, users), users, rng)
    return users, payload, _one_hot_mix(n_items(proto), targets, 1.0 / len(targets), 0.0)


@crafted_memo.register(LGRR)
def _memo_lgrr(proto: LGRR, attack: str, targets, m, rng, **options) -> FakeMemo:
    k, r, p2, q2 = proto.k, len(targets), proto.p2, proto.q2
    if attack == "ria":
        users, payload, scores = _honest_memo(proto, targets, m, rng)
        return _finish(proto, payload, users, scores, None, None)
    if attack == "rpa":
        users, payload = {}, rng.integers(0, k, size=(m, 1))
        scores = pure_scores(proto, np.full(k, 1.0 / k))  # a uniform memo gives uniform reports
        direct_p = np.full(k, 1.0 / k)
    else:
        users, payload = {}, rng.choice(targets, size=(m, 1))
        scores = pure_scores(proto, _one_hot_mix(k, targets, p2 / r + (1 - 1 / r) * q2, q2))
        direct_p = _one_hot_mix(k, targets, 1.0 / r, 0.0)
    direct = payload[:, 0].astype(np.int64)
    return _finish(proto, payload, users, scores, direct, direct_p)


def _finish(proto, payload, users, scores, direct, direct_p, info=None) -> FakeMemo:
    """direct_p None: an honest client (RIA), whose reports are always IRRs of its memo."""
    if direct_p is None:
        return FakeMemo(payload, users, scores, scores, None, {"honest": True, **(info or {})})
    return FakeMemo(payload, users, scores, pure_scores(proto, direct_p), direct, dict(info or {}))


@crafted_memo.register(LUE)
def _memo_lue(proto: LUE, attack: str, targets, m, rng, padding: str | None = "mean", **options) -> FakeMemo:
    k, p2, q2 = proto.k, proto.p2, proto.q2
    from dpkit.mechanisms.bernoulli import bernoulli_matrix

    info: dict[str, Any] = {}
    if attack == "ria":
        users, payload, scores = _honest_memo(proto, targets, m, rng)
        return _finish(proto, payload, users, scores, None, None)
    if attack == "rpa":
        rate_in = rate_out = 0.5
    else:
        rate_in = 1.0
        rate_out = ones_padding(k, len(targets), proto.p1 + (k - 1) * proto.q1) if padding == "mean" else 0.0
        info = {"padding": padding, "padding_rate": rate_out}
    is_target = np.zeros(k, dtype=bool)
    is_target[targets] = True
    bits = bernoulli_matrix((m, k), rate_out, rng)
    if rate_in == 1.0:
        bits[:, targets] = True
    p_memo = np.where(is_target, rate_in, rate_out)
    scores = pure_scores(proto, p_memo * p2 + (1 - p_memo) * q2)
    return _finish(proto, np.packbits(bits, axis=1), {}, scores, bits, p_memo, info)


@crafted_memo.register(LOLOHA)
def _memo_loloha(proto: LOLOHA, attack: str, targets, m, rng, n_hashes: int = 1 << 20, pool: int = 1024,
                 objective: str = "targets", **options) -> FakeMemo:  # fmt: skip
    g, p2, q2 = proto.g, proto.p2, proto.q2
    if attack == "ria":
        users, payload, scores = _honest_memo(proto, targets, m, rng)
        return _finish(proto, payload, users, scores, None, None)
    info: dict[str, Any] = {}
    if attack == "rpa":
        a, b = hashing.draw_hash_params(m, rng)
        y = rng.integers(0, g, size=m)
        zero = np.zeros(proto.k)  # P(H(v) = report) = 1/g = q* for a uniform function, whatever the memo
        users, payload = {"a": a, "b": b}, y[:, None]
        direct = np.stack([a, b, y.astype(np.uint64)], axis=1)
        return FakeMemo(payload, users, zero, zero, direct, info)
    pool = max(1, min(pool, (1 << 24) // proto.k))
    pa, pb, py, c, share = search_hash_functions(targets, g, proto.k, rng, n_hashes, pool, objective)
    pick = rng.integers(0, len(pa), size=m)
    hit = hashing.hash_values(pa[:, None], pb[:, None], np.arange(proto.k, dtype=np.uint64)[None, :], g) == py[
        :, None
    ].astype(np.int64)
    direct_p = hit.mean(axis=0)
    users = {"a": pa[pick], "b": pb[pick]}
    payload = py[pick].astype(np.int64)[:, None]
    direct = np.stack([pa[pick], pb[pick], py[pick]], axis=1)
    info = {"collisions": c, "collateral": share, "pool": len(pa), "objective": objective}
    return _finish(proto, payload, users, pure_scores(proto, direct_p * p2 + (1 - direct_p) * q2), direct,
                   direct_p, info)  # fmt: skip


@crafted_memo.register(DBitFlipPM)
def _memo_dbit(proto: DBitFlipPM, attack: str, targets, m, rng, **options) -> FakeMemo:
    b, d = proto.b, proto.d
    h = math.exp(proto.epsilon / 2)
    z1, z0 = h / (h - 1), -1 / (h - 1)  # the estimator's per-bit score of a 1 and of a 0
    if attack == "ria":
        users = proto.init_users(m, rng)
        values = (rng.choice(targets, size=m) * proto.k + b - 1) // b  # the first value of each target bucket
        payload = proto.first_round(proto.memo_key(values, users), users, rng)
        scores = _one_hot_mix(b, targets, 1.0 / len(targets), 0.0)
    elif attack == "rpa":
        users = proto.init_users(m, rng)
        payload = rng.integers(0, 2, size=(m, d)).astype(np.uint8)
        scores = np.full(b, 0.5 * (z1 + z0) * 1.0)  # P(v in J) (b/d) E z = (d/b)(b/d)(z1 + z0)/2
    else:
        r = len(targets)
        t_in = min(d, r)
        chosen = uniform_subsets(targets, t_in, m, rng) if r > t_in else np.broadcast_to(targets, (m, r))
        others = np.setdiff1d(np.arange(b), targets)
        fill = uniform_subsets(others, d - t_in, m, rng) if d > t_in else np.empty((m, 0), dtype=np.int64)
        users = {"J": np.concatenate([chosen, fill], axis=1).astype(np.int64)}
        payload = np.concatenate([np.ones((m, t_in)), np.zeros((m, d - t_in))], axis=1).astype(np.uint8)
        scores = _one_hot_mix(b, targets, (t_in / r) * (b / d) * z1, ((d - t_in) / max(b - r, 1)) * (b / d) * z0)
    direct = proto.second_round(payload, users, rng)
    return FakeMemo(payload, users, scores, scores, direct)


# the single-report attacks on these classes: the crafted memo sent as the report
def _direct(proto: LongitudinalProtocol, attack: str, targets, m, rng, **options) -> FakeReports:
    memo = crafted_memo(proto, attack, targets, m, rng, **options)
    return FakeReports(memo.reports(proto, rng, consistent=False), memo.direct_scores, memo.info)


for _cls in (LGRR, LUE, LOLOHA, DBitFlipPM):
    rpa.register(_cls)(lambda proto, targets, m, rng: _direct(proto, "rpa", targets, m, rng))
    mga.register(_cls)(lambda proto, targets, m, rng, **o: _direct(proto, "mga", targets, m, rng, **o))


def simulate_longitudinal(
    protocol: LongitudinalProtocol,
    attack: str,
    values: Any,
    targets: Any,
    beta: float,
    rng: np.random.Generator,
    *,
    tau: int = 10,
    consistent: bool = True,
    **attack_options: Any,
) -> PoisoningResult:
    """``tau`` collections of n genuine users (a ClientPopulation: memoized PRRs) and m fake users with a crafted
    memo; the gain of every collection (``info['gain_per_round']``), their mean as ``gain`` and the closed-form
    expected gain per collection as ``analytic_gain``.

    ``values``: one item per user (the same at every collection) or an array (tau, n) of every collection's
    items. ``consistent``: fake users send an honest IRR of their memo (True) or the memo itself (False).
    """
    key = check_attack(attack)
    tau = check_count("tau", tau, minimum=1)
    check_rng(rng)
    k = n_items(protocol)
    arr = np.asarray(values)
    rounds = np.broadcast_to(arr, (tau, arr.shape[-1])) if arr.ndim == 1 else arr
    if rounds.shape[0] != tau:
        raise ValueError(f"values must be (n,) or (tau={tau}, n), got shape {arr.shape}")
    rounds = np.stack([check_values("values", v, protocol.k) for v in rounds])
    n = rounds.shape[1]
    targets = check_targets("targets", targets, k)
    beta = check_fake_fraction("beta", beta)
    m = fake_count(n, beta)
    beta_real = m / (n + m)
    memo = crafted_memo(protocol, key, targets, m, rng, **attack_options)
    scores = memo.consistent_scores if consistent else memo.direct_scores
    population = ClientPopulation(protocol, n, rng)
    gains, f_ts, before_t, after_t, spread = [], [], [], [], []
    for t in range(tau):
        truth = true_frequencies(protocol, rounds[t])
        state_g = protocol.aggregate(population.report(rounds[t], rng))
        fake = memo.reports(protocol, rng, consistent)
        before = protocol.estimate(state_g)
        after = protocol.estimate(state_g + protocol.aggregate(fake))
        gains.append(float(np.sum(after[targets] - before[targets])))
        f_ts.append(float(truth[targets].sum()))
        before_t.append(float(before[targets].sum()))
        after_t.append(float(after[targets].sum()))
        if t == 0 and m:
            spread.append(float(np.var(report_scores(protocol, fake[: min(m, 100_000)], targets).sum(axis=1))))
    f_t = float(np.mean(f_ts))
    analytic = float(beta_real * (np.sum(scores[targets]) - f_t))
    var_g = float(np.sum(np.asarray(protocol.variance(n, true_frequencies(protocol, rounds[0])))[targets]))
    # one collection's variance bounds the variance of the mean over collections (memos repeat: rounds correlate)
    std = beta_real * math.sqrt(var_g + spread[0] / m) if m else None
    info = {**memo.info, "tau": tau, "consistent": consistent, "gain_per_round": gains,
            "privacy_spent_max": float(population.privacy_spent().max())}  # fmt: skip
    return PoisoningResult.of(
        protocol,
        key,
        k,
        targets,
        n,
        m,
        gain=float(np.mean(gains)),
        analytic_gain=analytic,
        gain_std=std,
        target_frequency=f_t,
        target_frequency_before=float(np.mean(before_t)),
        target_frequency_after=float(np.mean(after_t)),
        info=info,
    )
