"""The flat baseline for range queries: one frequency oracle over the whole domain, a range is the sum of its
items' estimates (Cormode, Kulkarni, Srivastava PVLDB 2019, section 3; Wang et al. USENIX Sec'17 for the oracles).

Variance of a range of r items: about r V* (f -> 0), growing linearly with r; exact for a population f with GRR
(one reported item) and OUE (independent bits), the sum of the items' variances for the other oracles.

Privacy: one report per user through an epsilon-LDP oracle: epsilon-LDP for the user's value under replacement
(unit of privacy: one user's value); ``privacy_event()`` is the oracle's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dpkit.mechanisms._validation import check_count, set_fields
from dpkit.mechanisms.range_queries import base

__all__ = ["FlatRange"]


@dataclass(frozen=True)
class FlatRange(base.DomainProtocol):
    """Range queries over [0, domain) from one frequency oracle on the full domain (``oracle``: a
    :func:`dpkit.mechanisms.make_oracle` name, or 'ADP' = GRR or OUE by least variance).

    Reports (``perturb``): a 1-tuple holding the oracle's reports. ``postprocess`` ('clip', 'norm-sub', 'ibu') is the
    oracle's own and makes the answers biased.
    """

    domain: int
    epsilon: float
    oracle: str = "ADP"
    name = "Flat"
    oracles: tuple = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self):
        self._init_domain()
        set_fields(self, oracles=(base.make_level_oracle(self.oracle, self.domain, self.epsilon),))

    def _node_index(self, values, level):
        return values

    def estimate(self, state: base.RangeState, postprocess: str | None = None) -> np.ndarray:
        """Frequencies of the domain's values (unbiased unless ``postprocess``)."""
        state = self._check_state(state)
        return np.asarray(self.oracles[0].estimate(state.levels[0], postprocess), dtype=np.float64)

    def answer(self, state: base.RangeState, queries, postprocess: str | None = None) -> np.ndarray:
        """Estimated frequency of every range [a, b] (inclusive) in ``queries`` ((m, 2) array), vectorized."""
        a, b = base.check_ranges("queries", queries, self.domain)
        cs = np.concatenate([[0.0], np.cumsum(self.estimate(state, postprocess))])
        return cs[b + 1] - cs[a]

    def variance(self, n: int, queries, f=None) -> np.ndarray:
        """Variance of every range answer with ``n`` users: r V* for f=None (r = b - a + 1), else for the population
        f (exact for GRR and OUE; the sum of the items' variances for other oracles)."""
        n = check_count("n", n, minimum=1)
        a, b = base.check_ranges("queries", queries, self.domain)
        fo = self.oracles[0]
        if f is None:
            return fo.variance(n) * (b - a + 1).astype(np.float64)
        f = base.check_distribution("f", f, (self.domain,))
        out = np.empty(len(a))
        step = max(1, (1 << 22) // self.domain)
        idx = np.arange(self.domain)[:, None]
        for s in range(0, len(a), step):
            w = ((idx >= a[None, s : s + step]) & (idx <= b[None, s : s + step])).astype(np.float64)
            out[s : s + step] = base.oracle_sum_variance(fo, n, w, f)
        return out

    def channel_matrix(self) -> np.ndarray:
        return np.asarray(self.oracles[0].channel_matrix())
