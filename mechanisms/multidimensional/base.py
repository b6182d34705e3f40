"""The interface of the multidimensional protocols, their mergeable state and the encoding of a DataFrame.

A user holds d categorical attributes (a row of a pandas DataFrame; attribute j has k_j categories, encoded as
integer codes by :func:`encode_dataframe`). A protocol is a frozen dataclass of its parameters (at least
``domain_sizes`` and ``epsilon``) that subclasses :class:`MultidimensionalProtocol` and implements:

* client: ``perturb(data, rng) -> reports`` (data: (n, d) codes or a DataFrame), vectorized over users;
* server: ``aggregate(reports) -> MultiState`` (one :class:`~dpkit.mechanisms.base.SupportCounts` per attribute,
  mergeable with ``+``) and ``estimate(state, postprocess=None)`` -> one frequency vector per attribute;
* analysis: ``variance(n, f=None)`` (one entry per attribute) and ``privacy_event()``.

Each class states its guarantee: ``epsilon`` holds for the neighbouring relation ``neighbouring`` ('tuple': any
change of the whole tuple; 'attribute': a change of one attribute), and ``tuple_epsilon`` is the guarantee for
whole tuples (equal to ``epsilon`` when ``neighbouring == 'tuple'``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from dpkit.accountants import DpEvent
from dpkit.mechanisms._validation import check_domain, check_values
from dpkit.mechanisms.base import CompositeState, Keyed, SupportCounts, check_key, check_state_of, merge_stream
from dpkit.mechanisms.postprocessing import check_postprocess

__all__ = ["MultidimensionalProtocol", "MultiState", "encode_dataframe", "check_domains"]


def encode_dataframe(
    df: pd.DataFrame, domains: Mapping[Any, Iterable[Any]] | None = None
) -> tuple[np.ndarray, list[list[Any]]]:
    """Integer codes (n, d) and the category list of every column.

    ``domains`` maps a column to its categories (the published domain; recommended, since deriving it from the data
    reveals which categories occur). Otherwise a Categorical column's categories, or the sorted distinct values.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, got {type(df).__name__}")
    codes, cats = [], []
    for col in df.columns:
        s = df[col]
        if domains and col in domains:
            c = list(domains[col])
        elif isinstance(s.dtype, pd.CategoricalDtype):
            c = list(s.cat.categories)
        else:
            c = sorted(s.dropna().unique().tolist())
        outside = ~s.isin(c)
        if outside.any():
            bad = s[outside].iloc[0]
            raise ValueError(f"column {col!r} has value {bad!r} outside its domain {c!r} (or a missing value)")
        cat = pd.Categorical(s, categories=c)
        codes.append(cat.codes.astype(np.int64))
        cats.append(c)
    return np.stack(codes, axis=1) if codes else np.empty((len(df), 0), np.int64), cats


@dataclass(frozen=True, eq=False)
class MultiState(CompositeState):
    """One :class:`SupportCounts` per attribute, and the key of the protocol that aggregated them; mergeable with
    ``+`` (only with a state of the same protocol and parameters); ``to_dict`` / ``from_dict``."""

    states: tuple[SupportCounts, ...]
    protocol: str = ""
    PARTS = "states"


def check_domains(domain_sizes: Iterable[int]) -> tuple[int, ...]:
    """The attributes' domain sizes, each a whole number >= 2; at least one attribute."""
    sizes = tuple(domain_sizes)
    if len(sizes) < 1:
        raise ValueError("domain_sizes must list at least one attribute")
    return tuple(check_domain(f"domain_sizes[{i}]", k) for i, k in enumerate(sizes))


class MultidimensionalProtocol(Keyed, ABC):
    """A local-DP protocol for d categorical attributes (see the module docstring for the interface)."""

    domain_sizes: tuple[int, ...]
    epsilon: float
    protocol: str
    delta: float = 0.0
    name: ClassVar[str] = "MD"
    neighbouring: ClassVar[str] = "tuple"  # the relation ``epsilon`` holds for: 'tuple' or 'attribute'

    @property
    def d(self) -> int:
        return len(self.domain_sizes)

    def attribute_key(self, i: int) -> str:
        """The key of attribute ``i``'s state (its oracle's, where the protocol runs one per attribute)."""
        return f"{self.key}[{i}]"

    @property
    def tuple_epsilon(self) -> float:
        """The guarantee for whole tuples (any change of the tuple)."""
        return self.epsilon

    # ---------------------------------------------------------------- client
    @abstractmethod
    def perturb(self, data: ArrayLike | pd.DataFrame, rng: np.random.Generator) -> Any:
        """Randomize every user's tuple (vectorized over users): the reports (see each class for their format)."""

    def _codes(self, data: ArrayLike | pd.DataFrame) -> np.ndarray:
        if isinstance(data, pd.DataFrame):
            data, _ = encode_dataframe(data)
        arr = np.asarray(data)
        if arr.ndim != 2 or arr.shape[1] != self.d:
            raise ValueError(f"data must have shape (n, {self.d}) (one column per attribute), got {arr.shape}")
        return (
            np.stack([check_values(f"data[:, {i}]", arr[:, i], k) for i, k in enumerate(self.domain_sizes)], axis=1)
            if len(arr)
            else arr.astype(np.int64)
        )

    # ---------------------------------------------------------------- server
    @abstractmethod
    def aggregate(self, reports: Any) -> MultiState:
        """Server state of one batch of reports (mergeable with ``+``)."""

    def empty_state(self) -> MultiState:
        """The state of no report (the start of ``aggregate_stream``)."""
        return MultiState(
            tuple(
                SupportCounts(np.zeros(k, dtype=np.int64), 0, self.attribute_key(i))
                for i, k in enumerate(self.domain_sizes)
            ),
            self.key,
        )

    def aggregate_stream(self, chunks: Iterable[Any]) -> MultiState:
        """Aggregate an iterable of report chunks in memory bounded by one chunk (no chunk: the empty state)."""
        return merge_stream(self.empty_state(), self.aggregate, chunks)

    def _check_state(self, state: MultiState, postprocess: str | None = None) -> MultiState:
        """A state this protocol can estimate from: its own key, one state per attribute (each checked by
        ``_check_attribute_state``), and a known ``postprocess``."""
        check_postprocess(postprocess)
        if not isinstance(state, MultiState):
            raise TypeError(f"state must be a MultiState (from aggregate), got {type(state).__name__}")
        check_key("state", state.protocol, self.key)
        if len(state.states) != self.d:
            raise ValueError(f"state must hold {self.d} attribute states, got {len(state.states)}")
        for i, st in enumerate(state.states):
            self._check_attribute_state(i, st)
        return state

    def _check_attribute_state(self, i: int, state: SupportCounts) -> None:
        check_state_of(
            state, self.attribute_key(i), (self.domain_sizes[i],), lambda n: (0.0, float(n)), f"state.states[{i}]"
        )

    @abstractmethod
    def estimate(self, state: MultiState, postprocess: str | None = None) -> list[np.ndarray]:
        """One frequency vector per attribute; ``postprocess`` as for the frequency oracles, per attribute."""

    def estimate_frame(
        self,
        state: MultiState,
        domains: Sequence[Sequence[Any]],
        columns: Sequence[Any] | None = None,
        postprocess: str | None = None,
    ) -> dict[Any, pd.Series]:
        est = self.estimate(state, postprocess=postprocess)
        columns = columns or list(range(self.d))
        return {c: pd.Series(e, index=dom) for c, e, dom in zip(columns, est, domains, strict=False)}

    def _check_reports_list(self, reports: Any) -> list[Any]:
        if not isinstance(reports, (list, tuple)) or len(reports) != self.d:
            raise ValueError(f"reports must be a list of {self.d} per-attribute report arrays")
        return list(reports)

    # ---------------------------------------------------------------- analysis
    @abstractmethod
    def variance(self, n: int, f: Sequence[ArrayLike] | None = None) -> list[Any]:
        """Per attribute, the analytic variance of the unbiased estimator (``f``: one frequency vector each)."""

    @abstractmethod
    def privacy_event(self) -> DpEvent:
        """The guarantee of one user's report as an accountants event (for the relation ``neighbouring``)."""
