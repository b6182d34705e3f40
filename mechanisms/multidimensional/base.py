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
from dpkit.mechanisms.base import SupportCounts

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
class MultiState:
    """One SupportCounts per attribute; mergeable with ``+``."""

    states: tuple[SupportCounts, ...]

    def __add__(self, other: MultiState) -> MultiState:
        if not isinstance(other, MultiState) or len(other.states) != len(self.states):
            raise ValueError("can only merge MultiStates with the same number of attributes")
        return MultiState(tuple(a + b for a, b in zip(self.states, other.states, strict=False)))

    merge = __add__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MultiState) and all(a == b for a, b in zip(self.states, other.states, strict=False))

    __hash__ = None  # type: ignore[assignment]  # mutable payload


def check_domains(domain_sizes: Iterable[int]) -> tuple[int, ...]:
    """The attributes' domain sizes, each a whole number >= 2; at least one attribute."""
    sizes = tuple(domain_sizes)
    if len(sizes) < 1:
        raise ValueError("domain_sizes must list at least one attribute")
    return tuple(check_domain(f"domain_sizes[{i}]", k) for i, k in enumerate(sizes))


class MultidimensionalProtocol(ABC):
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

    def aggregate_stream(self, chunks: Iterable[Any]) -> MultiState | None:
        state: MultiState | None = None
        for c in chunks:
            s = self.aggregate(c)
            state = s if state is None else state + s
        return state

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
