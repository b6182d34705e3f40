"""Poisoning RS+FD and RS+RFD (Arcolezi et al., CIKM'21, VLDB'23): fake users attack one attribute.

A genuine RS+FD user reports one hidden sampled attribute through GRR or unary encoding at the amplified eps'
and fake data for every other one, and the server's estimator multiplies by d: f_hat_v = d (N_v/n - a0_v)/(p - q).
A fake report's score for item v of the attacked attribute is therefore phi_v = d [y supports v]/(p - q) + f0_v,
with f0 the estimate of an empty state (-d a0/(p - q)): the d in front amplifies whatever the fake users put in
that attribute's slot. The attacks fill the attacked attribute's slot:

* RPA: a uniform value (GRR) or a uniform bit vector (UE);
* RIA: the honest client on tuples whose attacked attribute is a target (the other attributes uniform);
* MGA: a target (GRR) or every target bit (UE, ``padding='mean'`` adds non-target ones up to a genuine report's
  mean count);

and, for RPA and MGA, every other slot with what a genuine client sends for a uniform random tuple, so only the
attacked slot differs from genuine reports. :func:`simulate_rsfd` measures the gain on the attacked attribute next to
the closed form beta (sum_t E phi_t - f_T).
"""

from __future__ import annotations

import math
from functools import singledispatch
from typing import Any

import numpy as np

from dpkit.audits.poisoning.attacks import FakeReports, ones_padding
from dpkit.audits.poisoning.simulation import PoisoningResult, check_attack
from dpkit.audits.poisoning.threat import check_fake_fraction, check_targets, fake_count
from dpkit.mechanisms._validation import check_values
from dpkit.mechanisms.base import SupportCounts
from dpkit.mechanisms.bernoulli import bernoulli_matrix
from dpkit.mechanisms.multidimensional import RSFD, MultiState

__all__ = ["rsfd_attack", "simulate_rsfd"]


def _slot_scores(proto: RSFD, attribute: int, p_support: np.ndarray) -> np.ndarray:
    """E phi_v of the attacked attribute given P(fake slot supports v) (see the module)."""
    p, q = proto.pq[attribute]
    parts = (SupportCounts(np.zeros(kk), 1, proto.attribute_key(i)) for i, kk in enumerate(proto.domain_sizes))
    zero = MultiState(tuple(parts), proto.key)
    f0 = proto.estimate(zero)[attribute]  # counts 0 of one report: -d a0 / (p - q)
    return proto.d * np.asarray(p_support, dtype=np.float64) / (p - q) + f0


@singledispatch
def rsfd_attack(
    proto: RSFD, attack: str, targets: np.ndarray, m: int, rng: np.random.Generator, attribute: int = 0, **options
) -> FakeReports:
    """m fake RS+FD reports (a list of d per-attribute arrays) attacking ``attribute`` (see the module)."""
    k = proto.domain_sizes[attribute]
    r = len(targets)
    uniform = np.stack([rng.integers(0, kk, size=m) for kk in proto.domain_sizes], axis=1)
    if attack == "ria":
        uniform[:, attribute] = rng.choice(targets, size=m)
        scores = np.zeros(k)
        scores[targets] = 1.0 / r
        return FakeReports(proto.perturb(uniform, rng), scores)
    reports = proto.perturb(uniform, rng)  # genuine-looking slots for the other attributes
    info: dict[str, Any] = {"attribute": attribute}
    if proto.base == "GRR":
        if attack == "rpa":
            slot, p_s = rng.integers(0, k, size=m), np.full(k, 1.0 / k)
        else:
            slot = rng.choice(targets, size=m)
            p_s = np.zeros(k)
            p_s[targets] = 1.0 / r
    else:
        is_t = np.zeros(k, dtype=bool)
        is_t[targets] = True
        if attack == "rpa":
            rate_in = rate_out = 0.5
        else:
            p, q = proto.pq[attribute]
            fake_ones = k * q if proto.fake == "z" else p + (k - 1) * q
            honest = (p + (k - 1) * q + (proto.d - 1) * fake_ones) / proto.d
            rate_in, rate_out = 1.0, ones_padding(k, r, honest) if options.get("padding", "mean") == "mean" else 0.0
            info["padding_rate"] = rate_out
        slot = bernoulli_matrix((m, k), rate_out, rng)
        if rate_in == 1.0:
            slot[:, targets] = True
        p_s = np.where(is_t, rate_in, rate_out)
    reports[attribute] = slot
    return FakeReports(reports, _slot_scores(proto, attribute, p_s), info)


def simulate_rsfd(
    protocol: RSFD,
    attack: str,
    data: Any,
    targets: Any,
    beta: float,
    rng: np.random.Generator,
    *,
    attribute: int = 0,
    **attack_options: Any,
) -> PoisoningResult:
    """n genuine tuples (``data``: (n, d) codes) and m fake users attacking ``attribute``; the gain on its targets."""
    key = check_attack(attack)
    arr = np.asarray(data)
    if arr.ndim != 2 or arr.shape[1] != protocol.d or len(arr) == 0:
        raise ValueError(f"data must have shape (n, {protocol.d}) with n >= 1, got {arr.shape}")
    codes = np.stack([check_values(f"data[:, {i}]", arr[:, i], kk) for i, kk in enumerate(protocol.domain_sizes)], 1)
    n = len(codes)
    if not 0 <= int(attribute) < protocol.d:
        raise ValueError(f"attribute must be in [0, {protocol.d}), got {attribute!r}")
    attribute = int(attribute)
    k = protocol.domain_sizes[attribute]
    targets = check_targets("targets", targets, k)
    beta = check_fake_fraction("beta", beta)
    m = fake_count(n, beta)
    beta_real = m / (n + m)
    fake = rsfd_attack(protocol, key, targets, m, rng, attribute, **attack_options)
    state_g = protocol.aggregate(protocol.perturb(codes, rng))
    before = protocol.estimate(state_g)[attribute]
    after = protocol.estimate(state_g + protocol.aggregate(fake.reports))[attribute]
    f_true = np.bincount(codes[:, attribute], minlength=k) / n
    f_t = float(f_true[targets].sum())
    freqs = [np.bincount(codes[:, i], minlength=kk) / n for i, kk in enumerate(protocol.domain_sizes)]
    var_g = float(np.sum(np.asarray(protocol.variance(n, freqs)[attribute])[targets]))
    p, q = protocol.pq[attribute]
    slot = np.asarray(fake.reports[attribute])
    hits = (slot[:, None] == targets[None, :]) if protocol.base == "GRR" else slot[:, targets]
    var_f = float(np.var(protocol.d * hits.sum(axis=1) / (p - q))) if m else 0.0
    return PoisoningResult.of(
        protocol,
        key,
        k,
        targets,
        n,
        m,
        gain=float(np.sum(after[targets] - before[targets])),
        analytic_gain=fake.expected_gain(targets, beta_real, f_t),
        gain_std=beta_real * math.sqrt(var_g + var_f / m) if m else None,
        target_frequency=f_t,
        target_frequency_before=float(before[targets].sum()),
        target_frequency_after=float(after[targets].sum()),
        info={**fake.info, "d": protocol.d, "epsilon_amplified": protocol.epsilon_amplified},
    )
