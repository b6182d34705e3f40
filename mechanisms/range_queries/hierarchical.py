"""Hierarchical histograms for 1-D range queries (Cormode, Kulkarni, Srivastava, "Answering Range Queries Under
Local Differential Privacy", PVLDB 12(10) 2019, arXiv 1812.10942).

A B-ary tree over the domain [0, D) padded to B^h leaves (h = ceil(log_B D); the padding leaves hold no user). The
root (the total, 1) is known and not collected. Each user samples one level l in 1..h uniformly at random and
reports the index of their node at that level (value // B^(h-l), one of B^l) through a frequency oracle at the full
epsilon, any of dpkit's (default 'ADP': GRR or OUE by least variance at each level's size).

Server: each level's node frequencies from its ~n/h users; then either

* raw: a range [a, b] is the sum of its B-adic decomposition, at most 2(B - 1) nodes per level (the nodes inside
  the range whose parent is not); or
* consistent (default): Hay et al.'s least-squares tree (:mod:`.consistency`, per-level variances), after which a
  range is the sum of its leaves; optionally Norm-Sub on the leaves (non-negative, summing to 1; biased).

A range that ends at D - 1 is extended over the padding (whose true frequency is 0), which only saves nodes.

Variance (``variance(n, queries, f)``, see :mod:`.base`): about sum over levels of (#nodes) h V*_l / n for raw
answers, where V*_l is the level oracle's variance for one user; the consistent answers' weights come from the
least-squares operator. Branching factor: when not given, the B in 2..16 that minimizes the average raw range
variance (B - 1) h sum_l V*_l (``choose_branching``); the paper's analysis gives B ~ 5 with the same oracle at
every level ((B - 1)/ln^2 B is least at B = 4.92), and the ceiling in h moves the optimum for a given D.

Privacy: each user sends one report, at a level chosen independently of their value, through an epsilon-LDP oracle:
epsilon-LDP for the user's value under replacement (any v -> any v'; unit of privacy: one user's value).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dpkit.mechanisms._validation import check_count, check_domain, check_epsilon, set_fields
from dpkit.mechanisms.postprocessing import norm_sub
from dpkit.mechanisms.range_queries.base import (
    RangeState,
    TreeProtocol,
    check_distribution,
    make_level_oracle,
    n_levels_needed,
    oracle_sum_variance,
    population_variance,
    sampling_variance,
)
from dpkit.mechanisms.range_queries.consistency import query_weights, tree_consistency

__all__ = ["HierarchicalHistogram", "choose_branching", "badic_decomposition"]

MAX_BRANCHING = 16


def choose_branching(domain: int, epsilon: float, oracle: str = "ADP", candidates=range(2, MAX_BRANCHING + 1)) -> int:
    """The branching factor B of least average raw range variance, (B - 1) h sum_l V*_l, with h = ceil(log_B D)
    and V*_l the variance of the level-l oracle (B^l nodes) for one user. Ties go to the smaller B."""
    domain = check_domain("domain", domain)
    epsilon = check_epsilon("epsilon", epsilon)
    best, best_cost = 2, np.inf
    for B in candidates:
        if B > max(domain, 2):
            break
        h = n_levels_needed(domain, B)
        cost = (B - 1) * h * sum(make_level_oracle(oracle, B**lvl, epsilon).variance(1) for lvl in range(1, h + 1))
        if cost < best_cost * (1 - 1e-12):
            best, best_cost = B, cost
    return best


def badic_decomposition(a: np.ndarray, e: np.ndarray, branching: int, height: int) -> list[tuple[np.ndarray, ...]]:
    """The B-adic decomposition of the ranges [a, e) (leaf indices, e exclusive) of a tree of height h.

    Returns, for every level l = 0..h (0 = root), four arrays (lo1, hi1, lo2, hi2): the level-l nodes used are
    [lo1, hi1) and [lo2, hi2) (either may be empty; at most 2(B - 1) nodes in all, none at the root unless the
    range is the whole tree). Vectorized over the ranges.
    """
    B, h = int(branching), int(height)
    out: list[tuple[np.ndarray, ...]] = []
    for lvl in range(h + 1):
        s = B ** (h - lvl)
        lo, hi = -(-a // s), e // s
        lo = np.minimum(lo, hi)
        if lvl == 0:
            out.append((lo, hi, hi, hi))
            continue
        S = s * B
        plo, phi = -(-a // S) * B, (e // S) * B
        has_parent = plo < phi
        hi1 = np.where(has_parent, np.minimum(plo, hi), hi)
        lo2 = np.where(has_parent, np.maximum(phi, lo), hi)
        out.append((lo, hi1, lo2, hi))
    return out


@dataclass(frozen=True)
class HierarchicalHistogram(TreeProtocol):
    """Hierarchical histogram (HH) for range queries over [0, domain): B-ary tree, one level per user, any frequency
    oracle per level, Hay et al. consistency (optional Norm-Sub). See the module docstring for the algorithm, the
    variance and the guarantee (epsilon-LDP, unit: one user's value, neighbouring relation: replacement).

    ``branching=None`` chooses B by the variance formula (:func:`choose_branching`); ``oracle`` is a name for
    :func:`dpkit.mechanisms.make_oracle` ('GRR', 'OUE', 'OLH', 'HR', ...) or 'ADP' (GRR or OUE per level).
    Reports (``perturb``): a tuple of h arrays, the level-l oracle's reports of the users who sampled level l.
    """

    domain: int
    epsilon: float
    branching: int | None = None
    oracle: str = "ADP"
    consistency: bool = True
    name = "HH"

    def __post_init__(self):
        self._init_domain()
        if self.branching is None:
            B = choose_branching(self.domain, self.epsilon, self.oracle)
        else:
            B = check_count("branching", self.branching, minimum=2)
            if B > max(self.domain, 2):
                raise ValueError(f"branching must be in [2, domain={self.domain}], got {self.branching!r}")
        if not isinstance(self.consistency, (bool, np.bool_)):
            raise TypeError(f"consistency must be True or False, got {self.consistency!r}")
        set_fields(self, branching=B, consistency=bool(self.consistency))
        self._init_tree(B)
        oracles = tuple(make_level_oracle(self.oracle, B**lvl, self.epsilon) for lvl in range(1, self.height + 1))
        set_fields(self, oracles=oracles)

    # ------------------------------------------------------------------------------------------- client
    @property
    def B(self) -> int:
        """The branching factor (``branching`` after the choice)."""
        return int(self.branching or 0)

    def _node_index(self, values, level):
        return values // self.B ** (self.height - level - 1)

    # ------------------------------------------------------------------------------------------- server
    def level_variances(self, n: int) -> list[float]:
        """V* of one node estimate at every level with n/h users there."""
        n = check_count("n", n, minimum=1)
        return [float(fo.variance(1)) * self.height / n for fo in self.oracles]

    def node_estimates(self, state: RangeState, consistency: bool | None = None) -> list[np.ndarray]:
        """Node frequencies of levels 1..h (leaves last): raw, or consistent (default: ``self.consistency``)."""
        raw = self.level_estimates(state)
        if not self._consistent(consistency):
            return raw
        return tree_consistency(raw, self.B, self.level_variances(state.n), root=1.0)

    def estimate(self, state: RangeState, consistency: bool | None = None, postprocess: str | None = None):
        """Frequencies of the domain's values (the leaves over [0, domain)). ``postprocess='norm-sub'`` (consistent
        leaves only) makes them non-negative and sum to 1 (biased)."""
        leaves = self.node_estimates(state, consistency)[-1][: self.domain]
        return self._postprocess(leaves, consistency, postprocess)

    def _postprocess(self, leaves, consistency, postprocess):
        if postprocess is None or postprocess == "none":
            return leaves
        if postprocess not in ("norm-sub", "norm_sub"):
            raise ValueError(f"postprocess must be None or 'norm-sub', got {postprocess!r}")
        if not self._consistent(consistency):
            raise ValueError("postprocess='norm-sub' needs consistency=True (it post-processes the consistent leaves)")
        return norm_sub(leaves)

    def _consistent(self, consistency: bool | None) -> bool:
        return self.consistency if consistency is None else bool(consistency)

    def answer(self, state: RangeState, queries, consistency: bool | None = None, postprocess: str | None = None):
        """Estimated frequency of every range [a, b] (inclusive) in ``queries`` ((m, 2) array), vectorized."""
        a, e = self._ends(queries)
        if self._consistent(consistency) or postprocess not in (None, "none"):
            leaves = self.node_estimates(state, consistency)[-1]
            if postprocess not in (None, "none"):
                leaves = np.concatenate([self._postprocess(leaves[: self.domain], consistency, postprocess),
                                         np.zeros(self.leaves - self.domain)])  # fmt: skip
            cs = np.concatenate([[0.0], np.cumsum(leaves)])
            return cs[e] - cs[a]
        raw = self.level_estimates(state)
        total = np.zeros(a.shape, dtype=np.float64)
        for lvl, (lo1, hi1, lo2, hi2) in enumerate(badic_decomposition(a, e, self.B, self.height)):
            if lvl == 0:
                total += hi1 > lo1  # the root: the whole tree, known total 1
                continue
            cs = np.concatenate([[0.0], np.cumsum(raw[lvl - 1])])
            total += cs[hi1] - cs[lo1] + cs[hi2] - cs[lo2]
        return total

    # ----------------------------------------------------------------------------------------- analysis
    def nodes_per_level(self, queries) -> np.ndarray:
        """Number of nodes of every level (rows 1..h) in each query's B-adic decomposition, shape (h, m)."""
        a, e = self._ends(queries)
        dec = badic_decomposition(a, e, self.B, self.height)
        return np.stack([(hi1 - lo1) + (hi2 - lo2) for lo1, hi1, lo2, hi2 in dec[1:]])

    def weights(self, n: int, queries, consistency: bool | None = None) -> list[np.ndarray]:
        """The weight of every node (levels 1..h, arrays (B^l, m)) in each answer (a linear function of the raw
        node estimates; the root's part is a constant)."""
        a, e = self._ends(queries)
        if self._consistent(consistency):
            idx = np.arange(self.leaves)[:, None]
            leaf_q = ((idx >= a[None, :]) & (idx < e[None, :])).astype(np.float64)
            return query_weights(leaf_q, self.B, self.level_variances(n))
        out = []
        for lvl, (lo1, hi1, lo2, hi2) in enumerate(badic_decomposition(a, e, self.B, self.height)):
            if lvl == 0:
                continue
            idx = np.arange(self.B**lvl)[:, None]
            out.append((((idx >= lo1) & (idx < hi1)) | ((idx >= lo2) & (idx < hi2))).astype(np.float64))
        return out

    def variance(self, n: int, queries, f=None, consistency: bool | None = None) -> np.ndarray:
        """Variance of every range answer with ``n`` users (see :mod:`dpkit.mechanisms.range_queries.base`).

        ``f=None``: the f -> 0 form sum_l V*_l(n/h) sum_v w_lv^2 (raw: (#nodes at l) V*_l). ``f`` (the population's
        frequencies over [0, domain)): the oracles' noise for that population (exact for GRR and OUE levels) plus the
        level-sampling term; exact up to O(1/n^2). Not defined after Norm-Sub (non-linear, biased).
        """
        n = check_count("n", n, minimum=1)
        a, _ = self._ends(queries)
        if f is None and not self._consistent(consistency):
            sig = np.array(self.level_variances(n))
            return sig @ self.nodes_per_level(queries).astype(np.float64)
        F = None if f is None else self._level_frequencies(f)
        q = np.asarray(queries)
        q = q[None, :] if q.ndim == 1 else q
        out = np.empty(len(a))
        step = max(1, (1 << 22) // self.leaves)
        for s in range(0, len(a), step):
            out[s : s + step] = self._variance_batch(n, q[s : s + step], F, consistency)
        return out

    def _variance_batch(self, n, queries, F, consistency):
        w = self.weights(n, queries, consistency)
        nl = n / self.height
        fo_var = sum(
            oracle_sum_variance(fo, nl, wl, None if F is None else F[i])
            for i, (fo, wl) in enumerate(zip(self.oracles, w, strict=True))
        )
        if F is None:
            return fo_var
        phi = np.stack([population_variance(F[i], wl) for i, wl in enumerate(w)])
        a, e = self._ends(queries)
        cs = np.concatenate([[0.0], np.cumsum(F[-1])])
        fr = cs[e] - cs[a]
        return np.maximum(fo_var + sampling_variance(n, self.height, phi, fr * (1 - fr)), 0.0)  # 0 up to rounding

    def _level_frequencies(self, f) -> list[np.ndarray]:
        f = check_distribution("f", f, (self.domain,))
        leaves = np.zeros(self.leaves)
        leaves[: self.domain] = f
        out = [leaves]
        for _ in range(self.height - 1):
            out.append(out[-1].reshape(-1, self.B).sum(axis=1))
        return out[::-1]

    def channel_matrix(self) -> np.ndarray:
        """P(report | value) for small trees: rows = values, columns = (level, level report) pairs; each level's
        block is 1/h times that level oracle's channel matrix at the value's node."""
        blocks = []
        for lvl, fo in enumerate(self.oracles):
            m = np.asarray(fo.channel_matrix())
            blocks.append(m[self._node_index(np.arange(self.domain), lvl)] / self.height)
        return np.concatenate(blocks, axis=1)
