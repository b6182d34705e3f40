"""RS+FD and RS+RFD: random sampling plus fake data (Arcolezi et al. CIKM'21, VLDB'23).

Each user samples one attribute (hidden), reports it through GRR or unary encoding at an amplified epsilon and sends
fake data for every other attribute. The guarantee is epsilon-LDP against a change of ONE attribute
(``neighbouring = 'attribute'``); for whole tuples it is ``tuple_epsilon`` = eps_amp. The published amplification
eps' = ln(d (e^eps - 1) + 1) overshoots the attribute-level epsilon in some configurations (see :class:`RSFD`);
dpkit computes the exact one-attribute loss in closed form and lowers eps_amp there, so the guarantee always holds.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import optimize

from dpkit.accountants import DpEvent, PureDpEvent
from dpkit.mechanisms._memory import check_fits
from dpkit.mechanisms._validation import MAX_EPSILON, check_count, check_epsilon, check_rng, set_fields
from dpkit.mechanisms.base import PureFrequencyOracle, SupportCounts, check_frequencies
from dpkit.mechanisms.bernoulli import bernoulli_matrix
from dpkit.mechanisms.channels import grr_channel, max_log_ratio, unary_output_probabilities
from dpkit.mechanisms.frequency_oracles.grr import GRR, grr_perturb
from dpkit.mechanisms.frequency_oracles.unary_encoding import OUE, SUE
from dpkit.mechanisms.multidimensional.base import MultidimensionalProtocol, MultiState, check_domains
from dpkit.mechanisms.postprocessing import ibu_structured
from dpkit.mechanisms.postprocessing import postprocess as apply_postprocess

__all__ = ["RSFD", "RSRFD"]

_ORACLES: dict[str, Callable[[int, float], PureFrequencyOracle]] = {"GRR": GRR, "OUE": OUE, "SUE": SUE}

_FAKES = {
    "GRR": ("GRR", None),
    "OUE-z": ("OUE", "z"),
    "OUE-r": ("OUE", "r"),
    "SUE-z": ("SUE", "z"),
    "SUE-r": ("SUE", "r"),
}


@dataclass(frozen=True)
class RSFD(MultidimensionalProtocol):
    """RS+FD: random sampling plus fake data (Arcolezi, Couchot, Al Bouna, Xiao, CIKM'21).

    Each user samples one attribute j (hidden), reports it through GRR or UE at eps' = ln(d (e^eps - 1) + 1) and
    sends fake data for every other attribute: uniform values ([GRR]), UE of the zero vector ([OUE-z]/[SUE-z]) or
    UE of a uniform one-hot vector ([OUE-r]/[SUE-r]).

    Guarantee: epsilon-LDP against a change of ONE attribute of the tuple. It is NOT epsilon-LDP for whole
    tuples: tuples differing in all d attributes have likelihood ratio up to e^{eps_amp} (``tuple_epsilon``;
    e.g. d = k = 2, eps = 1: 1.4899).

    [!] With the published amplification eps' = ln(d (e^eps - 1) + 1) the one-attribute loss is exactly eps only
    for [OUE-z]/[SUE-z], for [GRR] with equal domain sizes and for [OUE-r]/[SUE-r] with every k_j = 2; otherwise it
    exceeds eps (eps = 0.7: GRR with k = (2, 2, 5) gives 0.8485; OUE-r with k = (3, 3, 3) gives 0.8351). dpkit
    therefore computes the exact one-attribute loss in closed form (:meth:`attribute_loss`) and lowers the
    amplification ``epsilon_amplified`` until that loss equals ``epsilon``, so the stated guarantee always holds
    (the price is a little more noise in exactly those configurations).

    Estimator per attribute: f_hat = d (N_v/n - a0)/(p - q), with a0 the probability that a user whose value is
    not v supports v. ``postprocess='ibu'``: :meth:`ibu` per attribute.
    """

    domain_sizes: tuple[int, ...]
    epsilon: float
    protocol: str = "GRR"
    name = "RS+FD"
    neighbouring = "attribute"

    def __post_init__(self) -> None:
        set_fields(self, domain_sizes=check_domains(self.domain_sizes), epsilon=check_epsilon("epsilon", self.epsilon))
        if self.protocol not in _FAKES:
            raise ValueError(f"protocol must be one of {', '.join(_FAKES)}, got {self.protocol!r}")
        if self.published_amplification > MAX_EPSILON:
            limit = math.log((math.exp(MAX_EPSILON) - 1) / self.d + 1)
            raise ValueError(
                f"epsilon must be at most {limit:.6g} for {self.name} with d={self.d} attributes (the amplified "
                f"epsilon ln(d (e^epsilon - 1) + 1) must be at most {MAX_EPSILON:g}), got {self.epsilon!r}"
            )
        self._check_fake_data()

    def _check_fake_data(self) -> None:
        """Hook for subclasses whose fake data has parameters (RS+RFD's priors)."""

    @cached_property
    def base(self) -> str:
        """The frequency oracle of the sampled attribute: 'GRR', 'OUE' or 'SUE'."""
        return _FAKES[self.protocol][0]

    @cached_property
    def fake(self) -> str | None:
        """The fake data of UE: 'z' (zero vector) or 'r' (a random one-hot vector); None for GRR."""
        return _FAKES[self.protocol][1]

    @cached_property
    def published_amplification(self) -> float:
        """eps' = ln(d (e^eps - 1) + 1), the amplification of the paper."""
        inner = self.d * (math.exp(self.epsilon) - 1) + 1
        if math.isfinite(inner):
            return math.log(inner)
        return self.epsilon + math.log(self.d) + math.log1p((1 / self.d - 1) * math.exp(-self.epsilon))  # log-space

    @cached_property
    def epsilon_amplified(self) -> float:
        """The epsilon of the sampled attribute's oracle: the published amplification, lowered if needed so that
        the exact one-attribute loss is ``epsilon``."""
        return self._calibrate_amplification(self.published_amplification)

    @property
    def tuple_epsilon(self) -> float:
        """The guarantee for whole tuples: ``epsilon_amplified``."""
        return self.epsilon_amplified

    @cached_property
    def pq(self) -> tuple[tuple[float, float], ...]:
        """(p, q) of each attribute's oracle at ``epsilon_amplified``."""
        return self._pq(self.epsilon_amplified)

    def _pq(self, eps_amp: float) -> tuple[tuple[float, float], ...]:
        oracles = (_ORACLES[self.base](k, eps_amp) for k in self.domain_sizes)
        return tuple((o.p_star, o.q_star) for o in oracles)

    @cached_property
    def oracles(self) -> tuple[PureFrequencyOracle, ...]:
        """The oracle of each attribute at ``epsilon_amplified`` (its reports' format and check; the server's
        estimator is the fake-data one below, not the oracle's)."""
        return tuple(_ORACLES[self.base](k, self.epsilon_amplified) for k in self.domain_sizes)

    def attribute_loss(self, eps_amp: float) -> float:
        """Exact worst-case log-likelihood ratio when one attribute changes, for amplification ``eps_amp``.

        With r_j(y|x) = P(report y | true value x) / P(y | fake) for attribute j, changing attribute a gives the
        ratio (r_a(y|x_a) + S) / (r_a(y|x_a') + S) with S = sum_{j != a} r_j(y_j|x_j), largest at the smallest S.
        Closed forms (pi: the fake-data distribution, rho1 = p/q, rho0 = (1-p)/(1-q) for UE):
        GRR: min r = q / max(pi), worst = (p + S min(pi)) / (q + S min(pi));
        UE-z: min r = rho0, worst = (rho1 + S) / (rho0 + S);
        UE-r: min r = rho0 / (pi_min rho0 + (1 - pi_min) rho1), worst = (rho1 + S W) / (rho0 + S W) with
        W = pi_min rho1 + (1 - pi_min) rho0. Checked against exhaustive enumeration in the tests.
        """
        r_min: list[float] = []
        worst: list[tuple[float, float, float]] = []  # (a, b, c): the worst ratio is (a + S c) / (b + S c)
        for i, (p, q) in enumerate(self._pq(eps_amp)):
            pi = self._fake_dist(i)
            lo, hi = float(pi.min()), float(pi.max())
            if self.base == "GRR":
                r_min.append(q / hi)
                worst.append((p, q, lo))
                continue
            # 1 - p rounds to 0 for SUE beyond eps_amp ~ 74; there it is q exactly (p = h/(h + 1), q = 1/(h + 1))
            not_p = 1 - p if (p < 1 or self.base != "SUE") else q
            r1, r0 = p / q, not_p / (1 - q)
            if self.fake == "z":
                r_min.append(r0)
                worst.append((r1, r0, 1.0))
            else:
                w = lo * r1 + (1 - lo) * r0
                r_min.append(r0 / (lo * r0 + (1 - lo) * r1))
                worst.append((r1, r0, w))
        total = sum(r_min)
        return max(
            math.log((a + (total - r) * c) / (b + (total - r) * c)) for (a, b, c), r in zip(worst, r_min, strict=True)
        )

    def _calibrate_amplification(self, published: float) -> float:
        """The largest amplification whose exact one-attribute loss is at most ``epsilon``."""
        target = self.epsilon
        if self.attribute_loss(published) <= target * (1 + 1e-12):
            return published
        eps_amp: float = optimize.brentq(lambda e: self.attribute_loss(e) - target, 1e-9, published, xtol=1e-13)
        while self.attribute_loss(eps_amp) > target:
            eps_amp *= 1 - 1e-12
        return eps_amp

    # fake-data probability that attribute i supports value v (array over v)
    def _fake_support(self, i: int) -> np.ndarray:
        k = self.domain_sizes[i]
        p, q = self.pq[i]
        if self.base == "GRR":
            return np.full(k, 1.0 / k)
        if self.fake == "z":
            return np.full(k, q)
        return np.full(k, p / k + (k - 1) * q / k)

    def _fake_values(self, i: int, m: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, self.domain_sizes[i], size=m)

    def _a(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        p, q = self.pq[i]
        r = self._fake_support(i)
        d = self.d
        return p / d + (d - 1) / d * r, q / d + (d - 1) / d * r  # a1 (own value), a0 (other values)

    def perturb(self, data: ArrayLike | pd.DataFrame, rng: np.random.Generator) -> list[np.ndarray]:
        x = self._codes(data)
        check_rng(rng)
        n = len(x)
        j = rng.integers(0, self.d, size=n)
        out = []
        for i, k in enumerate(self.domain_sizes):
            p, q = self.pq[i]
            true = j == i
            if self.base == "GRR":
                y = self._fake_values(i, n, rng)
                y[true] = grr_perturb(x[true, i], k, p, rng)
                out.append(y)
                continue
            check_fits(f"{self.name}.perturb", (n, k), bool, "perturb fewer users at a time")
            bits = bernoulli_matrix((n, k), q, rng)
            if self.fake == "z":
                rows, pos = np.flatnonzero(true), x[true, i]
            else:
                rows, pos = np.arange(n), np.where(true, x[:, i], self._fake_values(i, n, rng))
            bits[rows, pos] = rng.random(len(rows)) < p
            out.append(bits)
        return out

    def aggregate(self, reports: Any) -> MultiState:
        reports = self._check_reports_list(reports)
        checked = []
        for i, (r, o) in enumerate(zip(reports, self.oracles, strict=True)):
            try:
                checked.append(o._check_reports(r))
            except (TypeError, ValueError) as err:
                raise type(err)(f"reports[{i}]: {err}") from None
            if len(checked[i]) != len(checked[0]):
                raise ValueError(
                    f"reports[{i}] must have {len(checked[0])} rows like reports[0], got {len(checked[i])}"
                )
        states = (
            SupportCounts(o._support_counts(r).astype(np.int64), len(r), self.attribute_key(i))
            for i, (r, o) in enumerate(zip(checked, self.oracles, strict=True))
        )
        return MultiState(tuple(states), self.key)

    def estimate(self, state: MultiState, postprocess: str | None = None) -> list[np.ndarray]:
        method = postprocess
        out = []
        for i, s in enumerate(self._check_state(state, postprocess).states):
            if method == "ibu":
                out.append(self.ibu(i, s))
                continue
            p, q = self.pq[i]
            _, a0 = self._a(i)
            f = self.d * (s.counts / s.n - a0) / (p - q)
            out.append(apply_postprocess(f, method))
        return out

    def ibu(self, i: int, state: SupportCounts, n_iter: int = 10_000, tol: float = 1e-12) -> np.ndarray:
        """IBU for attribute ``i`` on its channel including the fake-data mixture, from its support counts.

        A user's report of attribute i is its true report w.p. 1/d and fake data otherwise, so the probability that
        it supports y given the value u is a0_y + [u = y] (p - q)/d, with a0_y = q/d + (d - 1)/d pi_y and pi_y the
        probability that fake data support y (1/k_i, or the prior, for GRR fakes; q for UE-z; the mixture
        pi_y p + (1 - pi_y) q for UE-r). For [GRR] this is the exact channel of the report (its columns sum to 1)
        and IBU converges to the maximum-likelihood estimate; for the UE variants it is the per-bit channel with
        normalized columns, the same heuristic as IBU for unary encoding. O(k_i) per iteration.
        """
        i = check_count("i", i, maximum=self.d - 1)
        self._check_attribute_state(i, state)
        a1, a0 = self._a(i)
        a0 = np.broadcast_to(np.asarray(a0, dtype=np.float64), state.counts.shape)
        return ibu_structured(state.counts, a0, a1 - a0, n_iter, tol)

    def variance(self, n: int, f: Any = None) -> list[Any]:
        n = check_count("n", n, minimum=1)
        if f is not None and len(f) != self.d:
            raise ValueError(f"f must give one frequency vector per attribute ({self.d}), got {len(f)}")
        out = []
        for i, k in enumerate(self.domain_sizes):
            p, q = self.pq[i]
            a1, a0 = self._a(i)
            fi = np.zeros(k) if f is None else check_frequencies(f"f[{i}]", f[i], k)
            v = self.d**2 * (fi * a1 * (1 - a1) + (1 - fi) * a0 * (1 - a0)) / (n * (p - q) ** 2)
            out.append(float(v[0]) if f is None else v)
        return out

    def privacy_event(self) -> DpEvent:
        """Attribute-level guarantee (one attribute changes). See ``tuple_privacy_event`` for whole tuples."""
        return PureDpEvent(self.epsilon)

    def tuple_privacy_event(self) -> DpEvent:
        return PureDpEvent(self.tuple_epsilon)

    # ------------------------------------------------------------------ exact distribution (small domains)
    def _attr_channels(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(T, F): T[v, y] = P(y | true report of value v), F[y] = P(y | fake) for attribute i's outputs."""
        k = self.domain_sizes[i]
        p, q = self.pq[i]
        if self.base == "GRR":
            return grr_channel(k, p, q), self._fake_dist(i)
        outs = np.array(list(itertools.product([0, 1], repeat=k)), dtype=bool)
        T = np.stack([unary_output_probabilities(outs, v, p, q) for v in range(k)])
        fd = self._fake_dist(i)
        if self.fake == "z":
            F = np.where(outs, q, 1 - q).prod(axis=1)
        else:
            F = sum((fd[u] * T[u] for u in range(k)), np.zeros(()))
        return T, F

    def _fake_dist(self, i: int) -> np.ndarray:
        k = self.domain_sizes[i]
        return np.full(k, 1.0 / k)

    def output_probabilities(self, value_tuple: tuple[int, ...]) -> np.ndarray:
        """P(output tuple | input tuple) for every output tuple (product space, small domains only)."""
        chans = [self._attr_channels(i) for i in range(self.d)]
        sizes = [len(F) for _, F in chans]
        if math.prod(sizes) > 2_000_000:
            raise ValueError("the output space is too large to enumerate")
        total = np.zeros(sizes)
        for j in range(self.d):
            term = np.ones(())
            for i, (T, F) in enumerate(chans):
                vec = T[value_tuple[i]] if i == j else F
                term = np.multiply.outer(term, vec)
            total += term / self.d
        return total.ravel()

    def exact_epsilon(self, scope: str = "attribute") -> float:
        """max log-ratio over outputs and input pairs differing in one attribute ('attribute') or any ('tuple')."""
        inputs = list(itertools.product(*[range(k) for k in self.domain_sizes]))
        probs = {x: self.output_probabilities(x) for x in inputs}
        worst = 0.0
        for x, y in itertools.combinations(inputs, 2):
            diff = sum(a != b for a, b in zip(x, y, strict=False))
            if scope == "attribute" and diff != 1:
                continue
            worst = max(worst, max_log_ratio(np.stack([probs[x], probs[y]])))
        return worst


@dataclass(frozen=True)
class RSRFD(RSFD):
    """RS+RFD: RS+FD whose fake data follow published priors (Arcolezi, Gambs, Couchot, Palamidessi, VLDB'23).

    ``priors``: one probability vector per attribute. protocol in {'GRR', 'OUE-r', 'SUE-r'}.
    With non-uniform priors the published amplification is NOT epsilon-LDP even for one-attribute changes
    (d = k = 2, eps = 1, priors (0.9, 0.1) give 1.4093); as for RS+FD, dpkit lowers the amplification
    until the exact one-attribute loss (:meth:`RSFD.attribute_loss`, closed form) equals ``epsilon``.
    """

    priors: tuple[tuple[float, ...], ...] = ()
    name = "RS+RFD"

    def __post_init__(self) -> None:
        if self.protocol not in ("GRR", "OUE-r", "SUE-r"):
            raise ValueError(f"protocol must be one of GRR, OUE-r, SUE-r, got {self.protocol!r}")
        super().__post_init__()

    def _check_fake_data(self) -> None:
        if len(self.priors) != self.d:
            raise ValueError(
                f"priors must give one probability vector per attribute ({self.d}), got {len(self.priors)}"
            )
        pri = []
        for i, (pr, k) in enumerate(zip(self.priors, self.domain_sizes, strict=False)):
            a = np.asarray(pr, dtype=np.float64)
            if a.shape != (k,) or not np.isfinite(a).all() or (a < 0).any() or abs(a.sum() - 1) > 1e-9:
                raise ValueError(f"priors[{i}] must be a probability vector of length {k}, got {pr!r}")
            pri.append(tuple(float(x) for x in a))
        set_fields(self, priors=tuple(pri))

    def _fake_dist(self, i: int) -> np.ndarray:
        return np.asarray(self.priors[i])

    def _fake_support(self, i: int) -> np.ndarray:
        pi = np.asarray(self.priors[i])
        p, q = self.pq[i]
        if self.base == "GRR":
            return pi
        return pi * p + (1 - pi) * q

    def _fake_values(self, i: int, m: int, rng: np.random.Generator) -> np.ndarray:
        pi = np.asarray(self.priors[i])
        return np.minimum(np.searchsorted(np.cumsum(pi), rng.random(m), side="right"), len(pi) - 1)
