"""dBitFlipPM (Ding, Kulkarni, Yekhanin, NeurIPS'17): d sampled buckets per user, memoized bits."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import ArrayLike

from dpkit.mechanisms import _memory
from dpkit.mechanisms._validation import (
    check_bits,
    check_count,
    check_distinct_rows,
    check_report_array,
    check_values,
    set_fields,
)
from dpkit.mechanisms.base import SupportCounts
from dpkit.mechanisms.channels import enumerate_bit_vectors
from dpkit.mechanisms.longitudinal.base import LongitudinalProtocol, UserParams
from dpkit.mechanisms.postprocessing import ibu_structured
from dpkit.mechanisms.postprocessing import postprocess as apply_postprocess

__all__ = ["DBitFlipPM"]


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
    count_dtype = np.float64

    def __post_init__(self) -> None:
        self._set_k_epsilon()
        k = self.k
        b = check_count("b", self.b or k, minimum=2)
        if b > k:
            raise ValueError(f"b must be in [2, k={k}], got {self.b!r}")
        d = check_count("d", self.d, minimum=1)
        if d > b:
            raise ValueError(f"d must be in [1, b={b}], got {self.d!r}")
        set_fields(self, b=b, d=d)

    @cached_property
    def eps_perm(self) -> float:
        """The budget of one memoized pattern: epsilon."""
        return self.epsilon

    @cached_property
    def eps_1(self) -> float:
        """The budget of one report: epsilon."""
        return self.epsilon

    @cached_property
    def n_keys(self) -> int:
        return self.d + 1

    @cached_property
    def p(self) -> float:
        """P(bit = 1) for the user's own bucket: e^(eps/2)/(1 + e^(eps/2))."""
        h = math.exp(self.epsilon / 2)
        return h / (1 + h)

    @cached_property
    def q(self) -> float:
        """P(bit = 1) for another bucket: 1/(1 + e^(eps/2))."""
        return 1 / (1 + math.exp(self.epsilon / 2))

    def bucket(self, values: ArrayLike) -> np.ndarray:
        return (np.asarray(values, dtype=np.int64) * self.b) // self.k

    def init_users(self, n: int, rng: np.random.Generator) -> UserParams:
        if 2 * self.d * self.d > self.b:  # many draws would collide: random keys + partition, O(n b), in chunks
            j = np.empty((n, self.d), dtype=np.int64)
            for s, e in _memory.row_chunks(n, 16 * self.b):  # float64 keys and int64 indices per row
                keys = rng.random((e - s, self.b))
                part = np.argpartition(keys, self.d - 1, axis=1) if self.d < self.b else np.argsort(keys, axis=1)
                j[s:e] = part[:, : self.d]
            return {"J": j}
        # d distinct uniform buckets by rejection: redraw the rows that repeat a bucket (uniform given distinct)
        j = rng.integers(0, self.b, size=(n, self.d))
        bad = np.arange(n)
        while True:
            srt = np.sort(j[bad], axis=1)
            bad = bad[(srt[:, 1:] == srt[:, :-1]).any(axis=1)]
            if not len(bad):
                return {"J": j}
            j[bad] = rng.integers(0, self.b, size=(len(bad), self.d))

    def user_param_shapes(self, n: int) -> dict[str, tuple[int, ...]]:
        return {"J": (n, self.d)}  # each user's d sampled buckets

    def check_user_params(self, prefix: str, params: dict[str, np.ndarray], n: int) -> UserParams:
        J = super().check_user_params(prefix, params, n)["J"]
        J = check_values(prefix + "J", J, self.b, ndim=2)
        return {"J": check_distinct_rows(prefix + "J", J, self.b)}

    def check_payload(self, name: str, payload: np.ndarray) -> np.ndarray:
        """The memoized bits of the d sampled buckets: uint8 (m, d) in {0, 1}."""
        if payload.dtype != np.uint8 or payload.ndim != 2 or payload.shape[1] != self.d:
            raise ValueError(f"{name} must be uint8 rows of {self.d} bits, got {payload.dtype} {payload.shape}")
        return check_bits(name, payload)

    def memo_key(self, values: np.ndarray, users: UserParams) -> np.ndarray:
        hit = users["J"] == self.bucket(values)[:, None]
        return np.where(hit.any(axis=1), hit.argmax(axis=1), self.d)

    def first_round(self, keys: np.ndarray, users: UserParams, rng: np.random.Generator) -> np.ndarray:
        n = len(keys)
        u = rng.random((n, self.d))
        own = np.arange(self.d)[None, :] == keys[:, None]
        return np.where(own, u < self.p, u < self.q).astype(np.uint8)

    def second_round(self, payload: np.ndarray, users: UserParams, rng: np.random.Generator) -> np.ndarray:
        return np.concatenate([users["J"], payload.astype(np.int64)], axis=1)

    def _check_reports(self, reports: ArrayLike) -> np.ndarray:
        r = check_report_array("reports", reports, kinds="iu", shape_tail=(2 * self.d,), expected="rows (J, bits)")
        r = r.astype(np.int64, copy=False)
        check_values("reports[:, :d] (sampled buckets)", r[:, : self.d], self.b, ndim=2)
        check_distinct_rows("reports[:, :d] (sampled buckets)", r[:, : self.d], self.b)
        check_values("reports[:, d:] (bits)", r[:, self.d :], 2, ndim=2)
        return r

    @property
    def state_shape(self) -> tuple[int, ...]:
        """The state: per bucket, the sum of the unbiased bit indicators z of the users who sampled it."""
        return (self.b,)

    def _count_bounds(self, n: int) -> tuple[float, float] | None:
        """A user adds one z in {-1/(h - 1), h/(h - 1)} (h = e^(eps/2)) to each of its d distinct buckets."""
        h = math.exp(self.epsilon / 2)
        return -n / (h - 1), n * h / (h - 1)

    def _support_counts(self, reports: np.ndarray) -> np.ndarray:
        j, bits = reports[:, : self.d], reports[:, self.d :]
        h = math.exp(self.epsilon / 2)
        z = (bits * (h + 1) - 1) / (h - 1)  # unbiased per-bit indicator
        return np.bincount(j.ravel(), weights=z.ravel().astype(np.float64), minlength=self.b)

    def estimate(self, state: SupportCounts, postprocess: str | None = None) -> np.ndarray:
        self._check_state(state, postprocess)
        if postprocess == "ibu":
            return self.ibu(state)
        return apply_postprocess(self.b / (state.n * self.d) * state.counts, postprocess)

    def ibu(self, state: SupportCounts, n_iter: int = 10_000, tol: float = 1e-12) -> np.ndarray:
        """IBU on the bucketized channel: every sampled bucket j of a user is one observation (j, bit), with
        P((j, 1) | bucket u) = (q + (p - q) [u = j]) / b and P((j, 0) | u) = (1 - q - (p - q) [u = j]) / b.

        The state keeps sum z_j = ((e^(eps/2) + 1) S_j - N_j)/(e^(eps/2) - 1) (S_j ones among the N_j users who
        sampled j); N_j is replaced by its expectation n d / b, as in the unbiased estimator, so
        S_j = ((e^(eps/2) - 1) sum z_j + n d / b)/(e^(eps/2) + 1) (clipped to [0, n d / b]). For d = 1 this is the
        exact channel of a report; for d > 1 the d bits of a user are treated as independent observations (the
        composite likelihood). Returns bucket frequencies (length b) on the simplex; O(b) per iteration.
        """
        self._check_state(state)
        h, b = math.exp(self.epsilon / 2), self.b
        m = state.n * self.d / b
        ones = np.clip(((h - 1) * state.counts + m) / (h + 1), 0.0, m)
        obs = np.stack([ones, m - ones])
        base = np.array([[self.q / b], [(1 - self.q) / b]])
        diag = np.array([[(self.p - self.q) / b], [-(self.p - self.q) / b]])
        return ibu_structured(obs, base, diag, n_iter, tol)

    def variance(self, n: int, f: ArrayLike | None = None) -> float | np.ndarray:
        """Exact variance of the bucket estimate (f = bucket frequencies).

        At f = 0: b e^(eps/2) / (n d (e^(eps/2) - 1)^2).
        """
        n = self._check_n(n)
        h = math.exp(self.epsilon / 2)
        z2_other = h / (h - 1) ** 2
        z2_own = (h * h - h + 1) / (h - 1) ** 2
        if f is None:
            return self.b * z2_other / (n * self.d)
        fa = self._check_f(f, self.b)
        return self.b / (n * self.d) * ((1 - fa) * z2_other + fa * z2_own) - fa / n

    def single_report_epsilon(self) -> float:
        return self.epsilon

    def channel_matrix(self, J: ArrayLike) -> np.ndarray:
        """P(bits | value) given the sampled buckets J (k x 2^d)."""
        J = np.asarray(J)
        outs = enumerate_bit_vectors(self.d)
        rows = []
        for v in range(self.k):
            own = J == self.bucket(np.array([v]))[0]
            probs = np.where(outs, np.where(own, self.p, self.q), np.where(own, 1 - self.p, 1 - self.q))
            rows.append(probs.prod(axis=1))
        return np.stack(rows)
