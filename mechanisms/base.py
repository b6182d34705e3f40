"""The frequency-oracle interface (an abstract base class) and the mergeable server state.

Every frequency oracle is a frozen dataclass of its parameters that subclasses :class:`FrequencyOracle` (or
:class:`PureFrequencyOracle`) and implements its abstract methods. The client/server split, which the auditor,
the poisoning attacks and the command line use exactly:

* parameters: ``k`` (domain size), ``epsilon``, ``delta`` (0 for every pure-LDP protocol), ``name``;
* client: :meth:`~FrequencyOracle.perturb` ``(values, rng) -> reports``, vectorized over users (one row per user);
  a subclass implements :meth:`~FrequencyOracle._perturb` on validated values;
* server: :meth:`~FrequencyOracle.aggregate` ``(reports) -> SupportCounts`` (mergeable with ``+``),
  ``aggregate_stream(chunks)`` for memory-bounded streaming, :meth:`~FrequencyOracle.estimate`
  ``(state, postprocess=None)`` -> unbiased frequencies; a subclass implements ``_check_reports`` (validation of a
  report array) and ``_support_counts`` (the state's counts of validated reports) and ``estimate``;
* analysis: :meth:`~FrequencyOracle.variance` ``(n, f=None)`` (analytic), :meth:`~FrequencyOracle.privacy_event`
  (the guarantee as an accountants event) and, where the output space is small, ``channel_matrix()`` /
  ``output_probabilities(value)`` giving P(report | value) exactly.

Parameters are dataclass fields; ``__post_init__`` validates them (and stores normalized values with
:func:`dpkit.mechanisms._validation.set_fields`); every value derived from them (p, q, g, ...) is a
``functools.cached_property``, computed once on first use.

Unit of privacy: one user's value. Neighbouring relation: replace that value by any other value of the domain
(the usual local-DP definition: for all v, v' and every output y, P(y | v) <= e^epsilon P(y | v')).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike

from dpkit.accountants import DpEvent
from dpkit.mechanisms._validation import check_chunk_size, check_count, check_rng, check_values, set_domain_epsilon
from dpkit.mechanisms.postprocessing import check_postprocess
from dpkit.mechanisms.postprocessing import postprocess as apply_postprocess

__all__ = [
    "SupportCounts",
    "Keyed",
    "FrequencyOracle",
    "PureFrequencyOracle",
    "check_state_fields",
    "check_dict",
    "check_state_of",
    "check_frequencies",
]


# ----------------------------------------------------------------------------------------------------- state
STATE_FIELDS = ("counts", "n", "protocol")


def check_state_fields(where: str, counts: object, n: object, protocol: object) -> tuple[np.ndarray, int, str]:
    """The fields of a :class:`SupportCounts`, checked: ``protocol`` a str, ``n`` a whole number >= 0, ``counts`` a
    1-D array of finite numbers; integer counts are support counts, each in [0, n] (float counts are sums, e.g.
    SHE's, and need only be finite; each protocol checks their range when it reads the state)."""
    if not isinstance(protocol, str):
        raise TypeError(f"{where}.protocol must be a str (the key of the protocol), got {type(protocol).__name__}")
    n = check_count(f"{where}.n", n)
    arr = np.asarray(counts)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{where}.counts must be numbers (int or float), got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{where}.counts must be a 1-dimensional array, got shape {arr.shape}")
    if arr.size and arr.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise ValueError(f"{where}.counts[{int(bad[0])}] must be finite, got {arr[bad[0]]!r}")
    elif arr.size:
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi > n:
            i = int(np.argmin(arr) if lo < 0 else np.argmax(arr))
            raise ValueError(f"{where}.counts[{i}] must be in [0, n={n}] (a support count), got {int(arr[i])}")
    return arr, n, protocol


def check_dict(where: str, d: object, fields: tuple[str, ...]) -> Mapping[str, Any]:
    """A dict with exactly the keys ``fields`` (what ``to_dict`` writes)."""
    if not isinstance(d, Mapping):
        raise TypeError(f"{where} must be a dict (from to_dict), got {type(d).__name__}")
    missing = [f for f in fields if f not in d]
    if missing:
        raise ValueError(f"{where} is missing the field(s) {', '.join(map(repr, missing))}")
    unknown = sorted(str(f) for f in d if f not in fields)
    if unknown:
        raise ValueError(f"{where} has unknown field(s) {', '.join(map(repr, unknown))}; fields are {fields}")
    return d


def merge_stream(state: Any, aggregate: Callable[[Any], Any], chunks: Iterable[Any]) -> Any:
    """``state`` merged with ``aggregate(chunk)`` for every chunk of the iterable ``chunks`` (memory: one chunk). One
    array is refused: iterating it would aggregate its rows one by one (``aggregate`` takes one array)."""
    if isinstance(chunks, np.ndarray):
        raise TypeError("chunks must be an iterable of report chunks, got one array (aggregate(reports) takes one)")
    for chunk in chunks:
        state = state + aggregate(chunk)
    return state


def check_mergeable(a: str, b: str) -> None:
    """Two states merge only if the same protocol, with the same parameters, aggregated them."""
    if a != b:
        raise ValueError(f"cannot merge states of different protocols or parameters: {a!r} and {b!r}")


def _is_zero(other: object) -> bool:
    return isinstance(other, int) and not isinstance(other, bool) and other == 0


@dataclass(frozen=True, eq=False)
class SupportCounts:
    """Server state: per-item support counts (or sums, for SHE) of ``n`` reports of one protocol.

    ``protocol`` is the key of the protocol that aggregated the reports (its class and every parameter, e.g.
    ``"GRR(k=10, epsilon=1.0)"``): a protocol estimates only from its own states, and states merge only with states
    of the same key. States are mergeable: ``a + b`` (or ``a.merge(b)``) is the state of the union of the two report
    sets, so chunks, partitions and machines can be aggregated independently and combined in any order.
    The fields are checked on construction (:func:`check_state_fields`), so a state is well-formed or not made.
    """

    counts: np.ndarray
    n: int
    protocol: str = ""

    def __post_init__(self) -> None:
        counts, n, protocol = check_state_fields("SupportCounts", self.counts, self.n, self.protocol)
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "n", n)

    def __add__(self, other: SupportCounts) -> SupportCounts:
        if not isinstance(other, SupportCounts):
            return NotImplemented
        check_mergeable(self.protocol, other.protocol)
        if self.counts.shape != other.counts.shape:
            raise ValueError(f"cannot merge states with counts of shape {self.counts.shape} and {other.counts.shape}")
        return SupportCounts(self.counts + other.counts, self.n + other.n, self.protocol)

    def __radd__(self, other: object) -> SupportCounts:
        return self if _is_zero(other) else NotImplemented  # so that sum(states) works

    merge = __add__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SupportCounts):
            return NotImplemented
        return (
            self.n == other.n
            and self.protocol == other.protocol
            and self.counts.shape == other.counts.shape
            and bool(np.array_equal(self.counts, other.counts))
        )

    __hash__ = None  # type: ignore[assignment]  # mutable payload

    def to_dict(self) -> dict[str, Any]:
        return {"counts": self.counts.tolist(), "n": int(self.n), "protocol": self.protocol}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "SupportCounts") -> SupportCounts:
        """The state ``to_dict`` wrote, every field checked first (one-line errors naming the field)."""
        fields = check_dict(where, d, STATE_FIELDS)
        counts, n, protocol = check_state_fields(where, fields["counts"], fields["n"], fields["protocol"])
        return cls(counts, n, protocol)


class CompositeState:
    """A state made of several :class:`SupportCounts` (one per attribute, per level, ...) and the key of the protocol
    that aggregated them: checked on construction, mergeable part by part with a state of the same key (``+``,
    ``merge``, ``sum``), written and read back by ``to_dict`` / ``from_dict`` (checked first, one-line errors).

    A subclass is a frozen dataclass (``eq=False``) whose fields are the tuple named by ``PARTS`` and
    ``protocol: str = ""`` (e.g. :class:`~dpkit.mechanisms.multidimensional.MultiState`,
    :class:`~dpkit.mechanisms.range_queries.RangeState`).
    """

    PARTS: ClassVar[str]
    protocol: str

    @property
    def parts(self) -> tuple[SupportCounts, ...]:
        return getattr(self, self.PARTS)

    def __post_init__(self) -> None:
        where = f"{type(self).__name__}.{self.PARTS}"
        raw = getattr(self, self.PARTS)
        parts = tuple(raw) if isinstance(raw, (list, tuple)) else None
        if parts is None or not all(isinstance(p, SupportCounts) for p in parts):
            raise TypeError(f"{where} must be a tuple of SupportCounts")
        if not isinstance(self.protocol, str):
            raise TypeError(
                f"{type(self).__name__}.protocol must be a str (the key of the protocol), got {self.protocol!r}"
            )
        object.__setattr__(self, self.PARTS, parts)

    def __add__(self, other: Any) -> Any:
        if type(other) is not type(self):
            return NotImplemented
        check_mergeable(self.protocol, other.protocol)
        if len(self.parts) != len(other.parts):
            raise ValueError(f"cannot merge states of {len(self.parts)} and {len(other.parts)} {self.PARTS}")
        return type(self)(tuple(a + b for a, b in zip(self.parts, other.parts, strict=True)), self.protocol)  # type: ignore[call-arg]

    def __radd__(self, other: object) -> Any:
        return self if _is_zero(other) else NotImplemented  # so that sum(states) works

    def merge(self, other: Any) -> Any:
        return self + other

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.protocol == other.protocol and self.parts == other.parts

    __hash__ = None  # type: ignore[assignment]  # mutable payload

    def to_dict(self) -> dict[str, Any]:
        return {self.PARTS: [p.to_dict() for p in self.parts], "protocol": self.protocol}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        """The state ``to_dict`` wrote, every field checked first (one-line errors naming the field)."""
        name = cls.__name__
        fields = check_dict(name, d, (cls.PARTS, "protocol"))
        raw = fields[cls.PARTS]
        if not isinstance(raw, (list, tuple)) or not raw:
            raise ValueError(f"{name}.{cls.PARTS} must be a non-empty list of states")
        if not isinstance(fields["protocol"], str):
            raise TypeError(f"{name}.protocol must be a str, got {type(fields['protocol']).__name__}")
        parts = tuple(SupportCounts.from_dict(p, where=f"{name}.{cls.PARTS}[{i}]") for i, p in enumerate(raw))
        return cls(parts, fields["protocol"])  # type: ignore[call-arg]


# ---------------------------------------------------------------------------------------------- interface
class Keyed:
    """A protocol whose states carry its ``key``, its identity: its class and every parameter (``repr``). A state
    is merged with and read by only the protocol of its key (:func:`check_key`)."""

    @property
    def key(self) -> str:
        """The protocol's identity in its states: its class and every parameter (``repr``); states of different
        keys do not merge and are not estimated from."""
        return repr(self)


class FrequencyOracle(Keyed, ABC):
    """A local-DP frequency oracle: the interface every protocol implements (see the module docstring).

    Subclasses are frozen dataclasses with (at least) the fields ``k`` and ``epsilon``; they implement the abstract
    methods below and state their guarantee in their docstring. Privacy: ``epsilon``-LDP (``delta = 0`` unless a
    subclass says otherwise) for one user's value under replacement (any v -> any v').

    The server trusts nothing it is given: reports are checked (dtype, shape, every value in range) before they are
    counted, and a state is read only by the protocol that made it (same ``key``) and only if its counts are in the
    range its reports can produce (:meth:`_check_state`).
    """

    k: int
    # ``epsilon`` is a field of most oracles and derived (a cached property) in others (L-GRR's is eps_1): a
    # read-only property for the type checker, and no class attribute at run time (a dataclass field would take an
    # inherited class attribute for its default).
    if TYPE_CHECKING:

        @property
        def epsilon(self) -> float: ...

    delta: float = 0.0
    name: ClassVar[str] = "FO"
    default_chunk: ClassVar[int] = 1 << 18  # users per chunk for chunked helpers
    count_dtype: ClassVar[type[np.number]] = np.int64  # dtype of the state's counts

    # ---------------------------------------------------------------- client
    def perturb(self, values: ArrayLike, rng: np.random.Generator) -> np.ndarray:
        """Randomize each user's value (vectorized over users). ``values``: int array in [0, k)."""
        checked = check_values("values", values, self.k)
        check_rng(rng)
        return self._perturb(checked, rng)

    @abstractmethod
    def _perturb(self, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The client's randomizer on validated values (int64 array in [0, k)): one report row per user."""

    # ---------------------------------------------------------------- server
    @abstractmethod
    def _check_reports(self, reports: ArrayLike) -> np.ndarray:
        """Validate a report array (dtype, shape, range) and return it as the array ``_support_counts`` reads."""

    @abstractmethod
    def _support_counts(self, reports: np.ndarray) -> np.ndarray:
        """The state's counts (shape of ``empty_state().counts``) of validated reports."""

    def support_counts(self, reports: ArrayLike) -> np.ndarray:
        return self._support_counts(self._check_reports(reports))

    def aggregate(self, reports: ArrayLike) -> SupportCounts:
        """Server state of one batch of reports (mergeable with ``+``)."""
        checked = self._check_reports(reports)
        return SupportCounts(self._support_counts(checked), int(len(checked)), self.key)

    @property
    def state_shape(self) -> tuple[int, ...]:
        """The shape of a state's counts: (k,) (one count per item) unless a protocol keeps another statistic."""
        return (self.k,)

    def empty_state(self) -> SupportCounts:
        return SupportCounts(np.zeros(self.state_shape, dtype=self.count_dtype), 0, self.key)

    def aggregate_stream(self, chunks: Iterable[ArrayLike]) -> SupportCounts:
        """Aggregate an iterable of report chunks in memory bounded by one chunk (e.g. 1e8 users in 1e6 chunks)."""
        return merge_stream(self.empty_state(), self.aggregate, chunks)

    def perturb_aggregate(
        self, values: ArrayLike, rng: np.random.Generator, chunk_size: int | None = None
    ) -> SupportCounts:
        """Clients then server, chunk by chunk, so that the reports never all live in memory at once.

        ``chunk_size``: users per chunk (None: ``default_chunk``); the state does not depend on it."""
        checked = check_values("values", values, self.k)
        check_rng(rng)
        size = check_chunk_size("chunk_size", chunk_size) or self.default_chunk
        state = self.empty_state()
        for start in range(0, len(checked), size):
            reports = self._perturb(checked[start : start + size], rng)
            state = state + SupportCounts(self._support_counts(reports), len(reports), self.key)
        return state

    def sample_aggregate(self, values: ArrayLike, rng: np.random.Generator) -> SupportCounts:
        """A state with the law of ``aggregate(perturb(values, rng))`` exactly, for simulations that need only the
        state. Default: ``perturb_aggregate``; an oracle whose counts have a known exact law draws them directly
        (unary encoding: sums of exact Bernoulli bits), which is not the same random stream as its clients'."""
        return self.perturb_aggregate(values, rng)

    @abstractmethod
    def estimate(self, state: SupportCounts, postprocess: str | None = None) -> np.ndarray:
        """Frequencies from a state. ``postprocess=None`` is the unbiased estimator; 'clip', 'norm-sub' or 'ibu'
        give consistent (non-negative, summing to 1) but biased estimates."""

    def _count_bounds(self, n: int) -> tuple[float, float] | None:
        """The range of a state's counts after ``n`` reports (None: any finite value). Default: support counts."""
        return 0.0, float(n)

    def _check_state(self, state: SupportCounts, postprocess: str | None = None) -> None:
        """A state this protocol can estimate from (its own key, its shape, n >= 1, counts in their range), and a
        known ``postprocess``."""
        check_postprocess(postprocess)
        check_state_of(state, self.key, self.state_shape, self._count_bounds)

    # ---------------------------------------------------------------- analysis
    @abstractmethod
    def variance(self, n: int, f: ArrayLike | None = None) -> float | np.ndarray:
        """Analytic variance of the unbiased estimator for ``n`` users.

        ``f=None``: the approximate variance V* (f_v -> 0), a scalar. ``f`` given (scalar or length-k array of the
        population's frequencies): the exact per-item variance over the mechanism's randomness for that fixed
        population.
        """

    def mean_variance(self, n: int, f: ArrayLike) -> float:
        """Mean over items of the exact variance: the expected MSE of the raw estimator."""
        return float(np.mean(self.variance(n, f)))

    @abstractmethod
    def privacy_event(self) -> DpEvent:
        """The guarantee of one report of one user as an accountants event (e.g. ``PureDpEvent(epsilon)``)."""

    def _check_n(self, n: int) -> int:
        return check_count("n", n, minimum=1)

    def _set_k_epsilon(self, max_k: int = 2**32, **more: object) -> None:
        """The ``__post_init__`` of a (k, epsilon) protocol: k in [2, max_k], epsilon in the shared range
        (:func:`~dpkit.mechanisms._validation.set_domain_epsilon`)."""
        set_domain_epsilon(self, "k", max_k, **more)

    def _check_f(self, f: ArrayLike, size: int | None = None) -> np.ndarray:
        return check_frequencies("f", f, self.k if size is None else size)


def check_state_of(
    state: object,
    key: str,
    shape: tuple[int, ...],
    bounds: Callable[[int], tuple[float, float] | None] | None = None,
    what: str = "state",
) -> SupportCounts:
    """``state`` is a :class:`SupportCounts` of the protocol ``key`` with n >= 1 and counts of ``shape``, within
    ``bounds(n)`` (up to float rounding) if given."""
    if not isinstance(state, SupportCounts):
        raise TypeError(f"{what} must be a SupportCounts (from aggregate), got {type(state).__name__}")
    if state.counts.shape != shape:
        raise ValueError(f"{what}.counts must have shape {shape}, got {state.counts.shape}")
    check_key(what, state.protocol, key)
    if state.n <= 0:
        raise ValueError(f"{what}.n must be >= 1 to estimate, got {state.n}")
    limits = None if bounds is None else bounds(state.n)
    if limits is not None and state.counts.size:
        lo, hi = limits
        tol = 1e-9 * max(1.0, abs(lo), abs(hi))
        c = state.counts
        bad = np.flatnonzero((c < lo - tol) | (c > hi + tol))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"{what}.counts[{i}] must be in [{lo:g}, {hi:g}] after n={state.n} reports, got {float(c[i])!r}"
            )
    return state


def check_key(what: str, protocol: str, key: str) -> None:
    """A state's ``protocol`` is the reader's ``key``: a protocol reads only the states it made."""
    if protocol != key:
        raise ValueError(
            f"{what} was aggregated by {protocol or 'an unnamed protocol'}, not by {key}: a protocol reads only its "
            "own states (same class and parameters)"
        )


def check_frequencies(name: str, f: ArrayLike, k: int) -> np.ndarray:
    """Frequencies for a variance: a number or a length-k array, every entry finite in [0, 1]. Returns float64."""
    arr = np.asarray(f)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be frequencies in [0, 1] (a number or a length-{k} array), got dtype {arr.dtype}")
    if arr.ndim > 1 or (arr.ndim == 1 and arr.shape != (k,)):
        raise ValueError(f"{name} must be a number or a length-{k} array of frequencies, got shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    bad = np.flatnonzero(~((arr >= 0) & (arr <= 1)).reshape(-1))
    if bad.size:
        raise ValueError(f"{name} must be frequencies in [0, 1], got {arr.reshape(-1)[bad[0]]!r}")
    return arr


class PureFrequencyOracle(FrequencyOracle):
    """A "pure" protocol (Wang et al. 2017): a report supports its own value with probability ``p_star`` and any
    other value with probability ``q_star`` < ``p_star``, so (C_v / n - q*) / (p* - q*) is unbiased.

    Subclasses define ``p_star`` and ``q_star`` (cached properties of their parameters); estimate and variance
    follow (Wang et al. USENIX Security'17, Eq. 2 and Theorem 2).
    """

    @property
    @abstractmethod
    def p_star(self) -> float:
        """P(a report supports the user's own value)."""

    @property
    @abstractmethod
    def q_star(self) -> float:
        """P(a report supports a given other value)."""

    def estimate(self, state: SupportCounts, postprocess: str | None = None) -> np.ndarray:
        self._check_state(state, postprocess)
        f = (state.counts / state.n - self.q_star) / (self.p_star - self.q_star)
        return apply_postprocess(f, postprocess, counts=state.counts, p=self.p_star, q=self.q_star)

    def variance(self, n: int, f: ArrayLike | None = None) -> float | np.ndarray:
        n = self._check_n(n)
        p, q = self.p_star, self.q_star
        v0 = q * (1 - q) / (n * (p - q) ** 2)
        if f is None:
            return v0
        fa = self._check_f(f)
        return v0 + fa * (1 - p - q) / (n * (p - q))


class PQOracle(PureFrequencyOracle):
    """A pure protocol whose report supports exactly the value(s) it reports: p* = p and q* = q, the probabilities
    that a report holds the user's own value and a given other value (GRR; unary encoding's bits; local hashing's
    hashed value, whose q* is 1/g from collisions). Subclasses define ``p`` and ``q``."""

    @property
    @abstractmethod
    def p(self) -> float:
        """P(the report holds the user's own value)."""

    @property
    @abstractmethod
    def q(self) -> float:
        """P(the report holds a given other value)."""

    @property
    def p_star(self) -> float:
        return self.p

    @property
    def q_star(self) -> float:
        return self.q
