"""What every range-query protocol shares: the query check, the mergeable per-level state, level sampling and the
variance of a weighted sum of frequency-oracle estimates.

Structure of a protocol (``FlatRange``, ``HierarchicalHistogram``, ``HaarHRR``, ``HIO``): the data domain is split
into *levels* (or layers); each user samples one level uniformly at random (a public, data-independent choice) and
reports the index of the node (cell, coefficient) that holds their value at that level through a frequency oracle
at the full epsilon. The server keeps one :class:`~dpkit.mechanisms.SupportCounts` per level
(:class:`RangeState`, mergeable with ``+``, so chunks, partitions and machines aggregate independently), estimates
every level's node frequencies and answers range queries as linear combinations of them.

Variance of an answer (``variance(n, queries, f)``): an answer is R_hat = c + sum_l sum_v w_lv x_hat_lv, a fixed
weighted sum of the level estimates. Two parts, both exact up to O(1/n^2) terms (the level sizes are taken at their
mean n/h):

* the oracles' noise given which users sit at which level: sum_l Var_FO(sum_v w_lv x_hat_lv) with n/h users,
  exact for GRR and OUE (:func:`oracle_sum_variance`);
* the level sampling: level l estimates the frequencies of its own users, a random 1/h sample, so with
  phi_l(x) = w_{l, node_l(x)} it adds (h sum_l Var_f(phi_l) - Var_f(sum_l phi_l)) / n (disjoint simple random
  samples; sum_l phi_l(x) = 1[x in range] - c for an unbiased answer).

With ``f=None`` the variance is the usual f -> 0 form sum_l V*_l sum_v w_lv^2 (the papers' V* per node).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from dpkit.accountants import DpEvent, PureDpEvent
from dpkit.mechanisms import GRR, SupportCounts, choose_protocol, make_oracle
from dpkit.mechanisms._validation import check_chunk_size, check_rng, check_values, set_domain_epsilon, set_fields
from dpkit.mechanisms.base import CompositeState, Keyed, check_key, merge_stream
from dpkit.mechanisms.frequency_oracles.grr import grr_pq

__all__ = [
    "RangeState",
    "check_ranges",
    "check_distribution",
    "make_level_oracle",
    "oracle_sum_variance",
    "sampling_variance",
    "LevelSampledProtocol",
    "DomainProtocol",
    "TreeProtocol",
    "ADAPTIVE",
]

ADAPTIVE = ("ADP", "ADAPTIVE", "AUTO")


# ----------------------------------------------------------------------------------------------------- state
@dataclass(frozen=True, eq=False)
class RangeState(CompositeState):
    """Server state of a level-sampled protocol: one :class:`SupportCounts` per level (or layer), and the key of the
    protocol that aggregated them.

    Mergeable: ``a + b`` is the state of the union of the two report sets (chunks, partitions, machines), only for
    states of the same protocol and parameters, and ``sum(states)`` works; ``to_dict`` / ``from_dict``. ``n`` is the
    number of reports over all levels.
    """

    levels: tuple[SupportCounts, ...]
    protocol: str = ""
    PARTS = "levels"

    @property
    def n(self) -> int:
        return int(sum(s.n for s in self.levels))

    @property
    def level_sizes(self) -> np.ndarray:
        return np.array([s.n for s in self.levels], dtype=np.int64)


# --------------------------------------------------------------------------------------------------- queries
def check_ranges(name: str, queries, domain: int) -> tuple[np.ndarray, np.ndarray]:
    """Range queries [a, b] (inclusive) over [0, domain): an (m, 2) integer array, or one pair (a, b).

    Returns (a, b) as int64 arrays of length m. Errors name the query: a > b, or an end outside [0, domain).
    """
    arr = np.asarray(queries)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"{name} must be integer pairs (a, b) with 0 <= a <= b < {domain}, got dtype {arr.dtype}")
    if arr.ndim == 1 and arr.shape == (2,):
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must have shape (m, 2) (one (a, b) pair per query), got shape {arr.shape}")
    a, b = arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64)
    bad = np.flatnonzero(a > b)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name}[{i}] must have a <= b, got a={int(a[i])} > b={int(b[i])}")
    bad = np.flatnonzero((a < 0) | (b >= domain))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name}[{i}] must lie in [0, {domain - 1}], got ({int(a[i])}, {int(b[i])})")
    return a, b


# ------------------------------------------------------------------------------------------------- oracles
def check_distribution(name: str, f, shape: tuple[int, ...]) -> np.ndarray:
    """A population's frequencies: a float array of ``shape``, finite, non-negative, summing to 1."""
    arr = np.asarray(f)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be an array of frequencies, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if arr.shape != shape:
        raise ValueError(f"{name} must be the frequencies, an array of shape {shape}, got shape {arr.shape}")
    if not np.isfinite(arr).all() or (arr < 0).any() or abs(arr.sum() - 1) > 1e-9:
        raise ValueError(f"{name} must be finite, non-negative and sum to 1, got sum {arr.sum()!r}")
    return arr


def make_level_oracle(name: str, k: int, epsilon: float):
    """The frequency oracle of one level: ``make_oracle(name, k, epsilon)``; 'ADP' (default of the protocols) is
    the adaptive choice between GRR and OUE by least V* (GRR iff k < 3 e^eps + 2)."""
    if str(name).upper().replace("-", "").replace("_", "") in ADAPTIVE:
        return choose_protocol(k, epsilon, ("GRR", "OUE"))
    return make_oracle(name, k, epsilon)


def oracle_sum_variance(oracle, n: float, w: np.ndarray, F: np.ndarray | None = None) -> np.ndarray:
    """Var of sum_v w_v f_hat_v for one frequency oracle run by ``n`` users (may be fractional: n/h) whose value
    distribution is ``F``.

    ``w``: weights of shape (k, m) (one column per query) or (k,). ``F=None``: the f -> 0 form V* sum_v w_v^2.
    With ``F``: exact for GRR (the report is one item: Var of w_Y per user) and OUE (independent bits: the items'
    variances add); for other oracles the sum of the per-item variances (their covariances are neglected).
    """
    w = np.asarray(w, dtype=np.float64)
    if F is None:
        return oracle.variance(1) / n * np.sum(w * w, axis=0)
    F = np.asarray(F, dtype=np.float64)
    if isinstance(oracle, GRR):
        p, q = grr_pq(oracle.epsilon, oracle.k)
        W, W2 = w.sum(axis=0), (w * w).sum(axis=0)
        Fu = F if w.ndim == 1 else F[:, None]
        mean = p * w + q * (W - w)  # E[w_Y | value u]
        second = p * w * w + q * (W2 - w * w)  # E[w_Y^2 | value u]
        return np.sum(Fu * (second - mean * mean), axis=0) / (n * (p - q) ** 2)
    per_item = np.asarray(oracle.variance(1, F), dtype=np.float64) / n  # every oracle's variance is (...)/n
    if w.ndim == 2:
        per_item = per_item[:, None]
    return np.sum(w * w * per_item, axis=0)


def sampling_variance(n: int, h: int, phi_var: np.ndarray, total_var: np.ndarray) -> np.ndarray:
    """(h sum_l Var_f(phi_l) - Var_f(sum_l phi_l)) / n: the variance that level sampling adds (see the module).

    ``phi_var``: shape (h, m), Var over the population of each level's weight function; ``total_var``: (m,), the
    population variance of their sum (f_R (1 - f_R) for an unbiased range answer)."""
    return (h * np.sum(phi_var, axis=0) - total_var) / n


def population_variance(F: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Var of w_{node(x)} for x ~ F, node frequencies ``F`` (k,), weights ``w`` (k, m) -> (m,)."""
    Fw = F[:, None] if w.ndim == 2 else F
    mean = np.sum(Fw * w, axis=0)
    return np.sum(Fw * w * w, axis=0) - mean * mean


# -------------------------------------------------------------------------------------------- base protocol
class LevelSampledProtocol(Keyed):
    """Shared client/server machinery; subclasses define ``oracles`` (one per level, frequency-oracle API) and
    ``_node_index(values, level)`` (the node of each value at that level).

    Client: ``perturb(values, rng)`` -> a tuple with one report array per level (the users who sampled it).
    Server: ``aggregate(reports)`` -> :class:`RangeState`; ``aggregate_stream(chunks)``; ``perturb_aggregate``.
    Privacy: each user reports once, at one level chosen uniformly at random independently of their value, through
    an epsilon-LDP oracle; the report is epsilon-LDP for the user's value under replacement (any v -> v').
    """

    default_chunk: int = 1 << 20
    oracles: tuple
    epsilon: float

    def _check_values(self, values) -> np.ndarray:
        """The users' values, checked (subclasses)."""
        raise NotImplementedError

    def _node_index(self, values: np.ndarray, level: int) -> np.ndarray:
        """The node (cell, coefficient) of every value at ``level`` (subclasses)."""
        raise NotImplementedError

    @property
    def num_levels(self) -> int:
        return len(self.oracles)

    def _sample_levels(self, n: int, rng: np.random.Generator) -> np.ndarray:
        h = self.num_levels
        if h == 1:  # no draw: one level is the flat protocol, bit for bit
            return np.zeros(n, dtype=np.int64)
        # uniform on [0, h) either way; one byte per user makes the per-level masks several times cheaper
        return rng.integers(0, h, size=n, dtype=np.uint8 if h <= 256 else np.int64)

    def perturb(self, values, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """Each user samples a level and reports their node there through that level's oracle (vectorized)."""
        values = self._check_values(values)
        check_rng(rng)
        levels = self._sample_levels(len(values), rng)
        out = []
        for lvl, fo in enumerate(self.oracles):
            v = values[levels == lvl] if self.num_levels > 1 else values
            out.append(fo.perturb(self._node_index(v, lvl), rng))
        return tuple(out)

    def _check_reports(self, reports) -> tuple:
        if not isinstance(reports, (tuple, list)) or len(reports) != self.num_levels:
            got = (
                f"{type(reports).__name__} of length {len(reports)}"
                if isinstance(reports, (tuple, list))
                else (type(reports).__name__)
            )
            raise ValueError(f"reports must be a tuple of {self.num_levels} report arrays (one per level), got {got}")
        return tuple(reports)

    def aggregate(self, reports) -> RangeState:
        """Server state of one batch of reports (mergeable with ``+``)."""
        reports = self._check_reports(reports)
        return RangeState(tuple(fo.aggregate(r) for fo, r in zip(self.oracles, reports, strict=True)), self.key)

    def empty_state(self) -> RangeState:
        return RangeState(tuple(fo.aggregate_stream(()) for fo in self.oracles), self.key)

    def aggregate_stream(self, chunks: Iterable) -> RangeState:
        """Aggregate an iterable of report chunks in memory bounded by one chunk."""
        return merge_stream(self.empty_state(), self.aggregate, chunks)

    def perturb_aggregate(self, values, rng: np.random.Generator, chunk_size: int | None = None) -> RangeState:
        """Clients then server, chunk by chunk: each level's state drawn by its oracle's ``sample_aggregate``, with
        the law of ``aggregate(perturb(...))`` exactly (unary-encoding levels draw their column sums' exact law,
        the others run their fused ``perturb_aggregate``)."""
        values = self._check_values(values)
        check_rng(rng)
        size = check_chunk_size("chunk_size", chunk_size) or self.default_chunk
        state = self.empty_state()
        for start in range(0, len(values), size):
            chunk = values[start : start + size]
            levels = self._sample_levels(len(chunk), rng)
            parts = []
            for lvl, fo in enumerate(self.oracles):
                v = chunk[levels == lvl] if self.num_levels > 1 else chunk
                parts.append(fo.sample_aggregate(self._node_index(v, lvl), rng))
            state = state + RangeState(tuple(parts), self.key)
        return state

    def _check_state(self, state: RangeState) -> RangeState:
        """A state this protocol can answer from: its own key, one state per level of that level's oracle (key,
        shape, counts in range), every level with reports."""
        if not isinstance(state, RangeState):
            raise TypeError(f"state must be a RangeState (from aggregate), got {type(state).__name__}")
        check_key("state", state.protocol, self.key)
        if len(state.levels) != self.num_levels:
            raise ValueError(f"state must have {self.num_levels} levels, got {len(state.levels)}")
        empty = [i for i, s in enumerate(state.levels) if s.n <= 0]
        if empty:
            raise ValueError(
                f"state has no report at level(s) {empty}: every level needs users to estimate (more users, or a "
                "smaller tree)"
            )
        for i, (fo, s) in enumerate(zip(self.oracles, state.levels, strict=True)):
            try:
                fo._check_state(s)
            except (TypeError, ValueError) as err:
                raise type(err)(f"level {i}: {err}") from None
        return state

    def level_estimates(self, state: RangeState) -> list[np.ndarray]:
        """Unbiased node frequencies of every level (each from its own users)."""
        state = self._check_state(state)
        return [np.asarray(fo.estimate(s), dtype=np.float64) for fo, s in zip(self.oracles, state.levels, strict=True)]

    def privacy_event(self) -> DpEvent:
        """One report per user at one level: the level oracles' common event if they agree, else PureDpEvent(eps)
        (a data-independent mixture of epsilon-LDP reports is epsilon-LDP)."""
        events = {fo.privacy_event() for fo in self.oracles}
        return events.pop() if len(events) == 1 else PureDpEvent(self.epsilon)

    def _level_sizes(self, n: int) -> float:
        return n / self.num_levels


class DomainProtocol(LevelSampledProtocol):
    """A range protocol over the values [0, ``domain``) (flat, hierarchical histogram, HaarHRR): its ``domain`` and
    ``epsilon`` checked and the users' values checked against the domain."""

    domain: int

    def _init_domain(self) -> None:
        set_domain_epsilon(self, "domain")

    def _check_values(self, values) -> np.ndarray:
        return check_values("values", values, self.domain)


@dataclass(frozen=True)
class TreeProtocol(DomainProtocol):
    """A range protocol over a tree of branching B (hierarchical histogram, HaarHRR): its level ``oracles``, the
    ``height`` and the B^height ``leaves`` of the padded domain (set by ``_init_tree``), over which a range that
    ends at the domain's end is extended (the padding holds no user). Subclasses are frozen dataclasses."""

    oracles: tuple = field(init=False, repr=False, compare=False, default=())
    height: int = field(init=False, repr=False, compare=False, default=0)
    leaves: int = field(init=False, repr=False, compare=False, default=0)

    def _init_tree(self, branching: int) -> None:
        h = n_levels_needed(self.domain, branching)
        set_fields(self, height=h, leaves=branching**h)

    def _ends(self, queries) -> tuple[np.ndarray, np.ndarray]:
        """(a, e) of every range [a, b] of ``queries``, e = b + 1 exclusive, extended over the padding at the end."""
        a, b = check_ranges("queries", queries, self.domain)
        e = b + 1
        return a, np.where(e == self.domain, self.leaves, e)


def n_levels_needed(domain: int, branching: int) -> int:
    """h = ceil(log_B domain), computed exactly in integers."""
    h, size = 0, 1
    while size < domain:
        size *= branching
        h += 1
    return max(h, 1)
