"""Longitudinal protocols with memoization: L-GRR, L-SUE (basic RAPPOR), L-OUE, L-OSUE, L-SOUE, dBitFlipPM, LOLOHA.

Two rounds of randomization (ldp.md 3.1): a permanent randomized response (PRR) at the longitudinal budget
``eps_perm`` (epsilon_inf), memoized per user and per distinct memo key (the value; the hashed value for LOLOHA;
the bucket pattern for dBitFlipPM), then a fresh instantaneous randomized response (IRR) for every report, so that
one report is ``eps_1``-LDP. The per-user memo lives in a :class:`ClientPopulation`, which is serializable
(``save``/``load``) so a collection can continue another day with the same memoized responses.

What is protected: one user's whole sequence of values; neighbouring relation: replace the sequence.
Guarantees (pure, delta = 0):

* one report is ``eps_1``-LDP (L-GRR and LOLOHA with the paper calibration: at most ``eps_1``, exactly
  ``single_report_epsilon``; dBitFlipPM: ``epsilon``);
* after tau reports with m distinct memo keys a user has spent at most ``min(tau * eps_1, m * eps_perm)``
  (sequential composition of the reports, or of the memoized PRRs of which every report is post-processing);
  for LOLOHA m <= g, so the loss is bounded by ``g * eps_perm`` whatever the values; for dBitFlipPM m <= d + 1.
  ``privacy_spent(tau, m)`` returns it and ``longitudinal_event(tau, m)`` returns it as an accountants event.

Every protocol is a pure frequency oracle for one round: P = p1 p2 + (1 - p1) q2 (own value),
Q = q1 p2 + (1 - q1) q2 (others; 1/g for LOLOHA), estimator (C/n - Q)/(P - Q) (DCN'22 Eq. 9).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from dpkit.accountants import DpEvent, PureDpEvent, RandomizedResponseEvent, SelfComposedEvent
from dpkit.mechanisms import hashing
from dpkit.mechanisms._validation import (
    check_count,
    check_domain,
    check_epsilon,
    check_report_array,
    check_rng,
    check_values,
)
from dpkit.mechanisms.base import PureFrequencyOracle, SupportCounts, _post, enumerate_bit_vectors, ibu_structured
from dpkit.mechanisms.bernoulli import bernoulli_matrix, unary_perturb
from dpkit.mechanisms.frequency_oracles import BitVectorReports, grr_perturb

__all__ = [
    "LongitudinalProtocol",
    "LGRR",
    "LUE",
    "LSUE",
    "LOUE",
    "LOSUE",
    "LSOUE",
    "DBitFlipPM",
    "LOLOHA",
    "ClientPopulation",
    "LONGITUDINAL_PROTOCOLS",
    "loloha_optimal_g",
    "lgrr_round2",
]


def _check_eps_pair(eps_perm, eps_1) -> tuple[float, float]:
    eps_perm = check_epsilon("eps_perm", eps_perm)
    eps_1 = check_epsilon("eps_1", eps_1)
    if not eps_1 < eps_perm:
        raise ValueError(f"eps_1 must be in (0, eps_perm={eps_perm}), got {eps_1!r}")
    return eps_perm, eps_1


def lgrr_round2(k: int, p1: float, q1: float, eps_perm: float, eps_1: float, calibration: str) -> tuple[float, float]:
    """Round-2 (p2, q2) of GRR-over-GRR on a domain of size k (ldp.md 3.2).

    'paper': eps_IRR = ln((e^(eps_inf + eps_1) - 1)/(e^eps_inf - e^eps_1)), GRR at eps_IRR (conservative for k > 2);
    'exact': q2 = (p1 - e^eps_1 q1)/((k p1 - 1) - e^eps_1 (k q1 - 1)), p2 = 1 - (k - 1) q2 (loss exactly eps_1).
    """
    if calibration == "paper":
        e_irr = (math.exp(eps_perm + eps_1) - 1) / (math.exp(eps_perm) - math.exp(eps_1))
        p2 = e_irr / (e_irr + k - 1)
        return p2, (1 - p2) / (k - 1)
    if calibration == "exact":
        e1 = math.exp(eps_1)
        q2 = (p1 - e1 * q1) / ((k * p1 - 1) - e1 * (k * q1 - 1))
        return 1 - (k - 1) * q2, q2
    raise ValueError(f"calibration must be 'paper' or 'exact', got {calibration!r}")


def _grr_channel(k: int, p: float, q: float) -> np.ndarray:
    m = np.full((k, k), q)
    np.fill_diagonal(m, p)
    return m


# -------------------------------------------------------------------------------------------------- base
class LongitudinalProtocol(PureFrequencyOracle):
    """Base: subclasses define the memo key, the PRR payload and the IRR, and P (``p_star``), Q (``q_star``)."""

    n_keys: int
    payload_dtype = np.int64

    # ------------------------------------------------ per-user persistent parameters (hash seed, sampled buckets)
    def init_users(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {}

    def memo_key(self, values: np.ndarray, users: dict[str, np.ndarray]) -> np.ndarray:
        return values

    def first_round(self, keys: np.ndarray, users: dict[str, np.ndarray], rng) -> np.ndarray:
        raise NotImplementedError

    def second_round(self, payload: np.ndarray, users: dict[str, np.ndarray], rng) -> np.ndarray:
        raise NotImplementedError

    # ------------------------------------------------ one fresh report (no memo; what one collection looks like)
    def _perturb(self, values, rng):
        users = self.init_users(len(values), rng)
        payload = self.first_round(self.memo_key(values, users), users, rng)
        return self.second_round(payload, users, rng)

    # ------------------------------------------------ privacy
    def single_report_epsilon(self) -> float:
        """The exact worst-case privacy loss of one report."""
        return self.eps_1

    def privacy_event(self) -> DpEvent:
        return PureDpEvent(self.single_report_epsilon())

    def memo_event(self) -> DpEvent:
        """The PRR of one memo key (epsilon_inf-LDP)."""
        return PureDpEvent(self.eps_perm)

    def privacy_spent(self, tau, distinct):
        """Longitudinal epsilon after ``tau`` reports with ``distinct`` memo keys: min(tau eps_1, distinct eps_inf)."""
        tau = np.asarray(tau)
        distinct = np.asarray(distinct)
        return np.minimum(tau * self.single_report_epsilon(), distinct * self.eps_perm)

    def longitudinal_event(self, tau: int, distinct: int) -> DpEvent:
        tau = check_count("tau", tau)
        distinct = check_count("distinct", distinct)
        if distinct * self.eps_perm <= tau * self.single_report_epsilon():
            return SelfComposedEvent(self.memo_event(), distinct)
        return SelfComposedEvent(self.privacy_event(), tau)

    def population(self, n_users: int, rng: np.random.Generator) -> ClientPopulation:
        return ClientPopulation(self, n_users, rng)


# ------------------------------------------------------------------------------------------------- L-GRR
@dataclass(frozen=True)
class LGRR(LongitudinalProtocol):
    """L-GRR (Arcolezi et al., DCN 2022): GRR at eps_perm memoized per value, then GRR at eps_IRR per report.

    ``calibration='paper'`` (default, reproduces the paper) or ``'exact'`` (ldp.md 3.2: the single-report loss is
    exactly eps_1; the paper's is smaller than eps_1 for k > 2, wasting utility). Reports: int64 (n,) in [0, k).
    """

    k: int
    eps_perm: float
    eps_1: float
    calibration: str = "paper"
    name = "L-GRR"

    def __post_init__(self):
        object.__setattr__(self, "k", check_domain("k", self.k))
        eps_perm, eps_1 = _check_eps_pair(self.eps_perm, self.eps_1)
        object.__setattr__(self, "eps_perm", eps_perm)
        object.__setattr__(self, "eps_1", eps_1)
        k, e = self.k, math.exp(eps_perm)
        p1, q1 = e / (e + k - 1), 1 / (e + k - 1)
        p2, q2 = lgrr_round2(k, p1, q1, eps_perm, eps_1, self.calibration)
        _set(self, p1=p1, q1=q1, p2=p2, q2=q2, n_keys=k, epsilon=eps_1)
        _set(self, p_star=p1 * p2 + (1 - p1) * q2, q_star=q1 * p2 + (1 - q1) * q2)

    def first_round(self, keys, users, rng):
        return grr_perturb(keys, self.k, self.p1, rng)[:, None]

    def second_round(self, payload, users, rng):
        return grr_perturb(payload[:, 0], self.k, self.p2, rng)

    def _check_reports(self, reports):
        r = check_report_array("reports", reports, kinds="iu", shape_tail=(), expected=f"reports in [0, {self.k})")
        return check_values("reports", r, self.k)

    def _support_counts(self, reports):
        return np.bincount(reports, minlength=self.k).astype(np.int64)

    def first_round_matrix(self) -> np.ndarray:
        return _grr_channel(self.k, self.p1, self.q1)

    def channel_matrix(self) -> np.ndarray:
        """P(report | value) of one report (PRR then IRR), k x k."""
        return self.first_round_matrix() @ _grr_channel(self.k, self.p2, self.q2)

    def single_report_epsilon(self) -> float:
        m = self.channel_matrix()
        return float(math.log(m[0, 0] / m[0, 1]))

    def privacy_event(self) -> DpEvent:
        return RandomizedResponseEvent(self.single_report_epsilon(), self.k)

    def memo_event(self) -> DpEvent:
        return RandomizedResponseEvent(self.eps_perm, self.k)


# --------------------------------------------------------------------------------------------- L-UE family
def _ue_eps(p1, q1, p2, q2) -> float:
    P = p1 * p2 + (1 - p1) * q2
    Q = q1 * p2 + (1 - q1) * q2
    return math.log(P * (1 - Q) / (Q * (1 - P)))


@dataclass(frozen=True)
class LUE(BitVectorReports, LongitudinalProtocol):
    """Unary encoding twice (RAPPOR style): PRR bits (p1, q1) at eps_perm memoized per value, IRR bits (p2, q2).

    Round 1: ``first`` in {'SUE', 'OUE'}; round 2: symmetric (p2 + q2 = 1) or p2 = 1/2, with q2 solved so that one
    report is exactly eps_1-LDP (ldp.md 3.3). Reports: bool (n, k). Use the named subclasses.
    """

    k: int
    eps_perm: float
    eps_1: float
    name = "L-UE"
    first = "SUE"
    symmetric_second = True
    default_chunk = 1 << 14
    payload_dtype = np.uint8

    def __post_init__(self):
        object.__setattr__(self, "k", check_domain("k", self.k))
        eps_perm, eps_1 = _check_eps_pair(self.eps_perm, self.eps_1)
        object.__setattr__(self, "eps_perm", eps_perm)
        object.__setattr__(self, "eps_1", eps_1)
        if self.first == "SUE":
            h = math.exp(eps_perm / 2)
            p1, q1 = h / (h + 1), 1 / (h + 1)
        else:
            p1, q1 = 0.5, 1 / (math.exp(eps_perm) + 1)

        def second(q2):
            return (1 - q2, q2) if self.symmetric_second else (0.5, q2)

        tiny = 1e-15
        eps_max = _ue_eps(p1, q1, *second(tiny))
        if not eps_1 < eps_max:
            raise ValueError(
                f"eps_1 must be in (0, {eps_max:.6g}) for {self.name} at eps_perm={eps_perm}, got {self.eps_1!r}"
            )
        q2 = brentq(lambda q: _ue_eps(p1, q1, *second(q)) - eps_1, tiny, 0.5 - 1e-15, xtol=1e-15, rtol=1e-15)
        p2, q2 = second(q2)
        _set(self, p1=p1, q1=q1, p2=p2, q2=q2, n_keys=self.k, epsilon=eps_1)
        _set(self, p_star=p1 * p2 + (1 - p1) * q2, q_star=q1 * p2 + (1 - q1) * q2)

    def first_round(self, keys, users, rng):
        return np.packbits(unary_perturb(keys, self.k, self.p1, self.q1, rng), axis=1)  # bits exactly (p1, q1)

    def second_round(self, payload, users, rng):
        prr = np.unpackbits(payload, axis=1, count=self.k).view(bool)
        return bernoulli_matrix(prr.shape, self.q2, rng, where=prr, prob_where=self.p2)

    def output_probabilities(self, value: int) -> np.ndarray:
        """P(report | value) of one report for every bit vector (k <= 16), bits independent with P / Q."""
        outs = enumerate_bit_vectors(self.k)
        probs = np.where(outs, self.q_star, 1 - self.q_star)
        probs[:, value] = np.where(outs[:, value], self.p_star, 1 - self.p_star)
        return probs.prod(axis=1)

    def channel_matrix(self) -> np.ndarray:
        return np.stack([self.output_probabilities(v) for v in range(self.k)])

    def first_round_matrix(self) -> np.ndarray:
        outs = enumerate_bit_vectors(self.k)
        rows = []
        for v in range(self.k):
            probs = np.where(outs, self.q1, 1 - self.q1)
            probs[:, v] = np.where(outs[:, v], self.p1, 1 - self.p1)
            rows.append(probs.prod(axis=1))
        return np.stack(rows)


@dataclass(frozen=True)
class LSUE(LUE):
    """L-SUE = basic RAPPOR: SUE then symmetric UE."""

    name = "L-SUE"
    first = "SUE"
    symmetric_second = True


@dataclass(frozen=True)
class LOUE(LUE):
    """L-OUE: OUE then OUE-shaped (p2 = 1/2) IRR."""

    name = "L-OUE"
    first = "OUE"
    symmetric_second = False


@dataclass(frozen=True)
class LOSUE(LUE):
    """L-OSUE: OUE then symmetric UE (the best UE chain; V* equals OUE's at eps_1)."""

    name = "L-OSUE"
    first = "OUE"
    symmetric_second = True


@dataclass(frozen=True)
class LSOUE(LUE):
    """L-SOUE: SUE then p2 = 1/2."""

    name = "L-SOUE"
    first = "SUE"
    symmetric_second = False


# ------------------------------------------------------------------------------------------------- LOLOHA
def loloha_optimal_g(eps_perm: float, alpha: float) -> int:
    """OLOLOHA's g* (ldp.md 3.5): the stationary point of V*(g), rounded, at least 2."""
    e = eps_perm
    disc = (
        math.exp(4 * e)
        - 14 * math.exp(2 * e)
        - 12 * math.exp(2 * e * (alpha + 1))
        + 12 * math.exp(e * (alpha + 1))
        + 12 * math.exp(e * (alpha + 3))
        + 1
    )
    num = math.sqrt(max(disc, 0.0)) - math.exp(2 * e) + 6 * math.exp(e) - 6 * math.exp(alpha * e) + 1
    return max(2, int(round(num / (6 * (math.exp(e) - math.exp(alpha * e))))))


@dataclass(frozen=True)
class LOLOHA(LongitudinalProtocol):
    """LOLOHA (Arcolezi, Pinzon, Palamidessi, Gambs, EDBT'23): local hashing with memoization on the hash.

    Each user draws one hash function for all collections (the universal family of :mod:`dpkit.mechanisms.hashing`);
    the PRR (GRR over [g] at eps_perm) is memoized per *hashed* value, so a user spends at most g * eps_perm over
    any number of reports and any value changes. ``g=0`` picks OLOLOHA's optimal g for alpha = eps_1/eps_perm;
    BiLOLOHA is g = 2. Server: support {v : H(v) = y}, q* = 1/g. Reports: uint64 (n, 3) rows (a, b, y).
    ``calibration='exact'`` calibrates the IRR so a report is exactly eps_1-LDP (the paper's is conservative
    for g > 2).
    """

    k: int
    eps_perm: float
    eps_1: float
    g: int = 0
    calibration: str = "paper"
    name = "LOLOHA"
    default_chunk = 1 << 16

    def __post_init__(self):
        object.__setattr__(self, "k", check_domain("k", self.k, maximum=hashing.MAX_DOMAIN))
        eps_perm, eps_1 = _check_eps_pair(self.eps_perm, self.eps_1)
        object.__setattr__(self, "eps_perm", eps_perm)
        object.__setattr__(self, "eps_1", eps_1)
        g = self.g if self.g else loloha_optimal_g(eps_perm, eps_1 / eps_perm)
        g = check_domain("g", g, maximum=2**32 - 1)
        object.__setattr__(self, "g", g)
        e = math.exp(eps_perm)
        p1, q1 = e / (e + g - 1), 1 / (e + g - 1)
        p2, q2 = lgrr_round2(g, p1, q1, eps_perm, eps_1, self.calibration)
        _set(self, p1=p1, q1=q1, p2=p2, q2=q2, n_keys=g, epsilon=eps_1)
        _set(self, p_star=p1 * p2 + (1 - p1) * q2, q_star=1.0 / g)

    def init_users(self, n, rng):
        a, b = hashing.draw_hash_params(n, rng)
        return {"a": a, "b": b}

    def memo_key(self, values, users):
        return hashing.hash_values(users["a"], users["b"], values, self.g)

    def first_round(self, keys, users, rng):
        return grr_perturb(keys, self.g, self.p1, rng)[:, None]

    def second_round(self, payload, users, rng):
        y = grr_perturb(payload[:, 0], self.g, self.p2, rng)
        return np.stack([users["a"], users["b"], y.astype(np.uint64)], axis=1)

    def _check_reports(self, reports):
        r = check_report_array("reports", reports, kinds="iu", shape_tail=(3,), expected="uint64 rows (a, b, y)")
        r = r.astype(np.uint64, copy=False)
        if len(r) and r[:, 2].max() >= self.g:
            raise ValueError(f"reports[:, 2] must be in [0, {self.g}), got {int(r[:, 2].max())}")
        return r

    def _support_counts(self, reports):
        return hashing.support_counts(reports[:, 0], reports[:, 1], reports[:, 2], self.g, self.k)

    def hashed_channel_matrix(self) -> np.ndarray:
        """P(y | hashed value) over [g] x [g] for one report; given the hash, this is the whole channel."""
        return _grr_channel(self.g, self.p1, self.q1) @ _grr_channel(self.g, self.p2, self.q2)

    def channel_matrix(self, a: int, b: int) -> np.ndarray:
        """P(y | value, hash (a, b)) for one report, k x g."""
        h = hashing.hash_values(np.uint64(a), np.uint64(b), np.arange(self.k), self.g)
        return self.hashed_channel_matrix()[h]

    def first_round_matrix(self) -> np.ndarray:
        return _grr_channel(self.g, self.p1, self.q1)

    def single_report_epsilon(self) -> float:
        m = self.hashed_channel_matrix()
        return float(math.log(m[0, 0] / m[0, 1]))

    def privacy_event(self) -> DpEvent:
        return RandomizedResponseEvent(self.single_report_epsilon(), self.g)

    def memo_event(self) -> DpEvent:
        return RandomizedResponseEvent(self.eps_perm, self.g)

    def max_privacy_spent(self) -> float:
        """The bound over any number of reports: g * eps_perm."""
        return self.g * self.eps_perm


# --------------------------------------------------------------------------------------------- dBitFlipPM
@dataclass(frozen=True)
class DBitFlipPM(LongitudinalProtocol):
    """dBitFlipPM (Ding, Kulkarni, Yekhanin, NeurIPS'17): b buckets, d sampled buckets per user, memoized bits.

    Bucket of v: floor(v b / k). Each user samples d distinct buckets J once; for j in J it reports
    Bern(e^(eps/2)/(1 + e^(eps/2))) if its bucket is j, else Bern(1/(1 + e^(eps/2))), memoized per pattern
    (which element of J, if any, is the user's bucket). Each report is ``epsilon``-LDP; a user spends at most
    (#patterns <= min(d + 1, b)) * epsilon. Estimates the b bucket frequencies (``postprocess='ibu'``: EM on the
    bucketized channel, :meth:`ibu`). Reports: int64 (n, 2d) = (J, bits).
    """

    k: int
    epsilon: float
    b: int = 0  # 0 = k buckets
    d: int = 1
    name = "dBitFlipPM"

    def __post_init__(self):
        object.__setattr__(self, "k", check_domain("k", self.k))
        eps = check_epsilon("epsilon", self.epsilon)
        object.__setattr__(self, "epsilon", eps)
        b = self.b or self.k
        b = check_count("b", b, minimum=2)
        if b > self.k:
            raise ValueError(f"b must be in [2, k={self.k}], got {self.b!r}")
        object.__setattr__(self, "b", b)
        d = check_count("d", self.d, minimum=1)
        if d > b:
            raise ValueError(f"d must be in [1, b={b}], got {self.d!r}")
        object.__setattr__(self, "d", d)
        h = math.exp(eps / 2)
        _set(self, p=h / (1 + h), q=1 / (1 + h), n_keys=d + 1, eps_perm=eps, eps_1=eps)

    def bucket(self, values):
        return (np.asarray(values, dtype=np.int64) * self.b) // self.k

    def init_users(self, n, rng):
        if 2 * self.d * self.d > self.b:  # many draws would collide: random keys + partition, O(n b)
            keys = rng.random((n, self.b))
            j = np.argpartition(keys, self.d - 1, axis=1)[:, : self.d] if self.d < self.b else np.argsort(keys, axis=1)
            return {"J": j.astype(np.int64)}
        # d distinct uniform buckets by rejection: redraw the rows that repeat a bucket (uniform given distinct)
        j = rng.integers(0, self.b, size=(n, self.d))
        bad = np.arange(n)
        while True:
            srt = np.sort(j[bad], axis=1)
            bad = bad[(srt[:, 1:] == srt[:, :-1]).any(axis=1)]
            if not len(bad):
                return {"J": j}
            j[bad] = rng.integers(0, self.b, size=(len(bad), self.d))

    def memo_key(self, values, users):
        hit = users["J"] == self.bucket(values)[:, None]
        return np.where(hit.any(axis=1), hit.argmax(axis=1), self.d)

    def first_round(self, keys, users, rng):
        n = len(keys)
        u = rng.random((n, self.d))
        own = np.arange(self.d)[None, :] == keys[:, None]
        return np.where(own, u < self.p, u < self.q).astype(np.uint8)

    def second_round(self, payload, users, rng):
        return np.concatenate([users["J"], payload.astype(np.int64)], axis=1)

    def _check_reports(self, reports):
        r = check_report_array("reports", reports, kinds="iu", shape_tail=(2 * self.d,), expected="rows (J, bits)")
        r = r.astype(np.int64, copy=False)
        check_values("reports[:, :d] (sampled buckets)", r[:, : self.d], self.b, ndim=2)
        check_values("reports[:, d:] (bits)", r[:, self.d :], 2, ndim=2)
        return r

    def empty_state(self) -> SupportCounts:
        return SupportCounts(np.zeros(self.b, dtype=np.float64), 0, self.key)

    def _support_counts(self, reports):
        j, bits = reports[:, : self.d], reports[:, self.d :]
        h = math.exp(self.epsilon / 2)
        z = (bits * (h + 1) - 1) / (h - 1)  # unbiased per-bit indicator
        return np.bincount(j.ravel(), weights=z.ravel().astype(np.float64), minlength=self.b)

    def estimate(self, state: SupportCounts, postprocess: str | None = None) -> np.ndarray:
        if not isinstance(state, SupportCounts) or state.counts.shape != (self.b,) or state.n <= 0:
            raise ValueError(f"state must be a SupportCounts of shape ({self.b},) with n >= 1")
        if postprocess == "ibu":
            return self.ibu(state)
        return _post(self.b / (state.n * self.d) * state.counts, postprocess, None, None, None)

    def ibu(self, state: SupportCounts, n_iter: int = 10_000, tol: float = 1e-12) -> np.ndarray:
        """IBU on the bucketized channel: every sampled bucket j of a user is one observation (j, bit), with
        P((j, 1) | bucket u) = (q + (p - q) [u = j]) / b and P((j, 0) | u) = (1 - q - (p - q) [u = j]) / b.

        The state keeps sum z_j = ((e^(eps/2) + 1) S_j - N_j)/(e^(eps/2) - 1) (S_j ones among the N_j users who
        sampled j); N_j is replaced by its expectation n d / b, as in the unbiased estimator, so
        S_j = ((e^(eps/2) - 1) sum z_j + n d / b)/(e^(eps/2) + 1) (clipped to [0, n d / b]). For d = 1 this is the
        exact channel of a report; for d > 1 the d bits of a user are treated as independent observations (the
        composite likelihood). Returns bucket frequencies (length b) on the simplex; O(b) per iteration.
        """
        if not isinstance(state, SupportCounts) or state.counts.shape != (self.b,) or state.n <= 0:
            raise ValueError(f"state must be a SupportCounts of shape ({self.b},) with n >= 1")
        h, b = math.exp(self.epsilon / 2), self.b
        m = state.n * self.d / b
        ones = np.clip(((h - 1) * state.counts + m) / (h + 1), 0.0, m)
        obs = np.stack([ones, m - ones])
        base = np.array([[self.q / b], [(1 - self.q) / b]])
        diag = np.array([[(self.p - self.q) / b], [-(self.p - self.q) / b]])
        return ibu_structured(obs, base, diag, n_iter, tol)

    def variance(self, n: int, f=None):
        """Exact variance of the bucket estimate (f = bucket frequencies).

        At f = 0: b e^(eps/2) / (n d (e^(eps/2) - 1)^2).
        """
        n = self._check_n(n)
        h = math.exp(self.epsilon / 2)
        z2_other = h / (h - 1) ** 2
        z2_own = (h * h - h + 1) / (h - 1) ** 2
        if f is None:
            return self.b * z2_other / (n * self.d)
        f = np.asarray(f, dtype=np.float64)
        return self.b / (n * self.d) * ((1 - f) * z2_other + f * z2_own) - f / n

    def single_report_epsilon(self) -> float:
        return self.epsilon

    def channel_matrix(self, J) -> np.ndarray:
        """P(bits | value) given the sampled buckets J (k x 2^d)."""
        J = np.asarray(J)
        outs = enumerate_bit_vectors(self.d)
        rows = []
        for v in range(self.k):
            own = J == self.bucket(np.array([v]))[0]
            probs = np.where(outs, np.where(own, self.p, self.q), np.where(own, 1 - self.p, 1 - self.q))
            rows.append(probs.prod(axis=1))
        return np.stack(rows)


def _set(obj, **kw):
    for key, val in kw.items():
        object.__setattr__(obj, key, val)


LONGITUDINAL_PROTOCOLS: dict[str, type[LongitudinalProtocol]] = {
    "L-GRR": LGRR,
    "L-SUE": LSUE,
    "L-OUE": LOUE,
    "L-OSUE": LOSUE,
    "L-SOUE": LSOUE,
    "dBitFlipPM": DBitFlipPM,
    "LOLOHA": LOLOHA,
}


# ------------------------------------------------------------------------------------------ client population
class ClientPopulation:
    """The clients of a longitudinal collection: per-user parameters and memoized PRRs, vectorized.

    ``report(values, rng, users=None)`` runs one collection round for all users (or the given user indices) and
    returns their reports; memoized responses are reused whenever a user's memo key repeats. The memo is a sorted
    table keyed by ``user * n_keys + key``, so a round costs O(n log n) whatever the history length.
    ``save(path)`` / ``ClientPopulation.load(path)`` persist everything (npz, no pickle).
    """

    def __init__(self, protocol: LongitudinalProtocol, n_users: int, rng: np.random.Generator):
        if not isinstance(protocol, LongitudinalProtocol):
            raise TypeError(f"protocol must be a LongitudinalProtocol, got {type(protocol).__name__}")
        self.protocol = protocol
        self.n_users = check_count("n_users", n_users, minimum=1)
        self.user_params = protocol.init_users(self.n_users, check_rng(rng))
        self.memo_keys = np.empty(0, dtype=np.uint64)
        self.memo_payload = None
        self.n_reports = np.zeros(self.n_users, dtype=np.int64)

    # ------------------------------------------------------------------------------ rounds
    def report(self, values, rng: np.random.Generator, users=None) -> np.ndarray:
        proto = self.protocol
        check_rng(rng)
        if users is None:
            users = np.arange(self.n_users)
        else:
            users = check_values("users", users, self.n_users)
            if len(np.unique(users)) != len(users):
                raise ValueError("users must be distinct within one round")
        values = check_values("values", values, proto.k)
        if len(values) != len(users):
            raise ValueError(f"values must have one entry per reporting user ({len(users)}), got {len(values)}")
        params = {name: arr[users] for name, arr in self.user_params.items()}
        keys = proto.memo_key(values, params).astype(np.uint64)
        combined = users.astype(np.uint64) * np.uint64(proto.n_keys) + keys
        idx = np.searchsorted(self.memo_keys, combined)
        found = idx < len(self.memo_keys)
        found[found] = self.memo_keys[idx[found]] == combined[found]
        missing = ~found
        fresh = None
        if missing.any():
            sub = {name: arr[missing] for name, arr in params.items()}
            fresh = proto.first_round(keys[missing].astype(np.int64), sub, rng)
        # assemble this round's PRR payloads
        width = fresh.shape[1] if fresh is not None else self.memo_payload.shape[1]
        dtype = fresh.dtype if fresh is not None else self.memo_payload.dtype
        payload = np.empty((len(users), width), dtype=dtype)
        if found.any():
            payload[found] = self.memo_payload[idx[found]]
        if fresh is not None:
            payload[missing] = fresh
            new_keys = np.concatenate([self.memo_keys, combined[missing]])
            new_payload = fresh if self.memo_payload is None else np.concatenate([self.memo_payload, fresh])
            order = np.argsort(new_keys, kind="stable")
            self.memo_keys, self.memo_payload = new_keys[order], new_payload[order]
        self.n_reports[users] += 1
        return proto.second_round(payload, params, rng)

    # ------------------------------------------------------------------------------ privacy
    def distinct_memoized(self) -> np.ndarray:
        """Per user: the number of distinct memo keys used so far."""
        owners = (self.memo_keys // np.uint64(self.protocol.n_keys)).astype(np.int64)
        return np.bincount(owners, minlength=self.n_users)

    def privacy_spent(self) -> np.ndarray:
        """Per user: min(tau * eps_1, distinct * eps_perm) after their tau reports."""
        return self.protocol.privacy_spent(self.n_reports, self.distinct_memoized())

    def privacy_event(self, user: int) -> DpEvent:
        user = int(check_values("user", np.array([user]), self.n_users)[0])
        return self.protocol.longitudinal_event(int(self.n_reports[user]), int(self.distinct_memoized()[user]))

    # ------------------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        meta = {"class": type(self.protocol).__name__, "params": dataclasses.asdict(self.protocol)}
        arrays = {f"user_{k}": v for k, v in self.user_params.items()}
        if self.memo_payload is not None:
            arrays["memo_payload"] = self.memo_payload
        np.savez(path, meta=np.array(json.dumps(meta)), memo_keys=self.memo_keys, n_reports=self.n_reports, **arrays)

    @classmethod
    def load(cls, path) -> ClientPopulation:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            classes = {c.__name__: c for c in LONGITUDINAL_PROTOCOLS.values()}
            protocol = classes[meta["class"]](**meta["params"])
            pop = cls.__new__(cls)
            pop.protocol = protocol
            pop.n_reports = z["n_reports"]
            pop.n_users = len(pop.n_reports)
            pop.memo_keys = z["memo_keys"]
            pop.memo_payload = z["memo_payload"] if "memo_payload" in z else None
            pop.user_params = {k[5:]: z[k] for k in z.files if k.startswith("user_")}
        return pop
