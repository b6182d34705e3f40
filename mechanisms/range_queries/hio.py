"""HIO: multidimensional range queries (Wang, Ding, Zhou, Hong, Huang, Li, Jha, "Answering Multi-Dimensional
Analytical Queries under Local Differential Privacy", SIGMOD 2019).

Hierarchy per attribute: an ordinal attribute with c values gets a B-ary interval tree over c padded to B^H
(H = ceil(log_B c)) with levels 0 (the root, '*') to H (the values); a categorical attribute gets 2 levels ('*' and
its c values). A *layer* is one level per attribute; a user of layer (t_1..t_d) holds the cell (product of their
level-t_i nodes), one of prod_i (#nodes at t_i).

Client: users are split uniformly at random among the layers, every layer except the all-'*' one (the prototype's
'rl' style), and report their cell through a frequency oracle at the full epsilon over that layer's cells: by
default the prototype's adaptive choice, GRR if #cells < 3 e^eps + 2, else OLH ('adaptive'); any
:func:`dpkit.mechanisms.make_oracle` name otherwise.

Query: a conjunction of one range (or point, or '*') per attribute. Each attribute's range is decomposed into its
B-adic tree nodes (at most 2(B - 1) per level, or the root if it is the whole domain); the query is the union of
the products of those node sets, a set of disjoint cells each in one layer; the answer sums their estimates, each
from its layer's users (unbiased; the all-'*' cell is the known total 1). Vectorized over queries: per layer, the
product of <= 2 node intervals per attribute is read off a summed-area table of the layer's estimates.

Variance: f -> 0, sum over layers of (#cells used) V*_layer(n / #layers); for a population f, the oracles' noise
plus the layer-sampling term (see :mod:`dpkit.mechanisms.range_queries.base`).

Privacy: one report per user, at a layer chosen independently of the data, through an epsilon-LDP oracle:
epsilon-LDP for the user's whole tuple under replacement (unit of privacy: one user's row of all d attributes).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dpkit.mechanisms import make_oracle
from dpkit.mechanisms._validation import check_count, check_epsilon
from dpkit.mechanisms.range_queries import base
from dpkit.mechanisms.range_queries.hierarchical import badic_decomposition

__all__ = ["HIO"]


@dataclass(frozen=True)
class HIO(base.LevelSampledProtocol):
    """HIO over the columns of a DataFrame (see the module docstring: algorithm, variance and guarantee).

    ``columns``: the attribute names; ``domains``: their sizes (values are integer codes in [0, c)); ``categorical``:
    the names of the categorical ones (2-level hierarchy); ``branching``: B of the ordinal trees; ``oracle``:
    'adaptive' (GRR/OLH by the layer's size, as the prototype) or a :func:`dpkit.mechanisms.make_oracle` name.

    Data: a DataFrame with those columns (integer codes), or an (n, d) integer array in the order of ``columns``.
    Queries: a list of dicts {column: (lo, hi) | value} (a missing column is '*'), or an (m, d, 2) array of inclusive
    [lo, hi] per attribute. Reports (``perturb``): a tuple with one report array per layer (``layers`` order).
    """

    columns: tuple
    domains: tuple
    epsilon: float
    categorical: tuple = ()
    branching: int = 5
    oracle: str = "adaptive"
    name = "HIO"
    oracles: tuple = field(init=False, repr=False, compare=False, default=())
    trees: tuple = field(init=False, repr=False, compare=False, default=())
    layers: tuple = field(init=False, repr=False, compare=False, default=())
    layer_shapes: tuple = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self):
        cols = tuple(self.columns) if not isinstance(self.columns, str) else (self.columns,)
        if not cols or len(set(cols)) != len(cols):
            raise ValueError(f"columns must be distinct names, at least one, got {self.columns!r}")
        doms = tuple(check_count(f"domains[{i}]", c, minimum=2) for i, c in enumerate(self.domains))
        if len(doms) != len(cols):
            raise ValueError(f"domains must give one size per column ({len(cols)}), got {len(doms)}")
        cat = tuple(self.categorical)
        unknown = [c for c in cat if c not in cols]
        if unknown:
            raise ValueError(f"categorical must name columns of {cols}, got {unknown}")
        B = check_count("branching", self.branching, minimum=2)
        object.__setattr__(self, "columns", cols)
        object.__setattr__(self, "domains", doms)
        object.__setattr__(self, "categorical", cat)
        object.__setattr__(self, "branching", B)
        object.__setattr__(self, "epsilon", check_epsilon("epsilon", self.epsilon))
        # per attribute: (branching, height) of its tree; categorical: one level below the root
        trees = tuple(
            (c, 1) if col in cat else (B, base.n_levels_needed(c, B)) for col, c in zip(cols, doms, strict=True)
        )
        object.__setattr__(self, "trees", trees)
        layers = [t for t in itertools.product(*(range(H + 1) for _, H in trees)) if any(t)]
        object.__setattr__(self, "layers", tuple(layers))
        object.__setattr__(self, "layer_shapes", tuple(tuple(b**t for (b, _), t in zip(trees, lay, strict=True))
                                                       for lay in layers))  # fmt: skip
        cells = [math.prod(s) for s in self.layer_shapes]
        if max(cells) > 2**32:
            raise ValueError(f"the finest layer has {max(cells)} cells, more than 2^32: fewer or smaller attributes")
        object.__setattr__(self, "oracles", tuple(self._layer_oracle(k) for k in cells))

    def _layer_oracle(self, k: int):
        if str(self.oracle).lower() == "adaptive":
            return make_oracle("GRR" if k < 3 * math.exp(self.epsilon) + 2 else "OLH", k, self.epsilon)
        return make_oracle(self.oracle, k, self.epsilon)

    # ------------------------------------------------------------------------------------------- client
    def _check_values(self, values) -> np.ndarray:
        if isinstance(values, pd.DataFrame):
            missing = [c for c in self.columns if c not in values.columns]
            if missing:
                raise ValueError(f"values is missing the columns {missing}")
            arr = values[list(self.columns)].to_numpy()
        else:
            arr = np.asarray(values)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"values must hold integer codes, got dtype {arr.dtype} (encode categories first)")
        if arr.ndim != 2 or arr.shape[1] != len(self.columns):
            raise ValueError(f"values must have shape (n, {len(self.columns)}), got {arr.shape}")
        for i, (col, c) in enumerate(zip(self.columns, self.domains, strict=True)):
            if arr.shape[0] and (arr[:, i].min() < 0 or arr[:, i].max() >= c):
                bad = arr[:, i].min() if arr[:, i].min() < 0 else arr[:, i].max()
                raise ValueError(f"values[{col!r}] must be in [0, {c}), got {int(bad)}")
        return arr.astype(np.int64, copy=False)

    def _node_index(self, values, level):
        layer, shape = self.layers[level], self.layer_shapes[level]
        cell = np.zeros(len(values), dtype=np.int64)
        for i, ((b, H), t) in enumerate(zip(self.trees, layer, strict=True)):
            cell = cell * shape[i] + values[:, i] // b ** (H - t)
        return cell

    # ------------------------------------------------------------------------------------------- queries
    def _check_queries(self, queries) -> tuple[np.ndarray, np.ndarray]:
        """(lo, e) arrays of shape (m, d), e exclusive (extended over the padding when it reaches the end)."""
        if isinstance(queries, dict):
            queries = [queries]
        if isinstance(queries, (list, tuple)) and (not queries or isinstance(queries[0], dict)):
            arr = np.empty((len(queries), len(self.columns), 2), dtype=np.int64)
            for qi, q in enumerate(queries):
                unknown = [c for c in q if c not in self.columns]
                if unknown:
                    raise ValueError(f"queries[{qi}] names unknown columns {unknown}; columns are {self.columns}")
                for i, (col, c) in enumerate(zip(self.columns, self.domains, strict=True)):
                    pred = q.get(col)
                    lo, hi = (0, c - 1) if pred is None else (pred if np.ndim(pred) == 1 else (pred, pred))
                    arr[qi, i] = (lo, hi)
        else:
            arr = np.asarray(queries)
            if arr.dtype.kind not in "iu" or arr.ndim != 3 or arr.shape[1:] != (len(self.columns), 2):
                raise ValueError(
                    f"queries must be dicts or an integer array of shape (m, {len(self.columns)}, 2), got "
                    f"{arr.dtype} {arr.shape}"
                )
        lo, hi = arr[..., 0].astype(np.int64), arr[..., 1].astype(np.int64)
        for i, (col, c) in enumerate(zip(self.columns, self.domains, strict=True)):
            bad = np.flatnonzero(lo[:, i] > hi[:, i])
            if bad.size:
                j = int(bad[0])
                raise ValueError(f"queries[{j}][{col!r}] must have lo <= hi, got ({lo[j, i]}, {hi[j, i]})")
            bad = np.flatnonzero((lo[:, i] < 0) | (hi[:, i] >= c))
            if bad.size:
                j = int(bad[0])
                raise ValueError(f"queries[{j}][{col!r}] must lie in [0, {c - 1}], got ({lo[j, i]}, {hi[j, i]})")
        e = hi + 1
        for i, ((b, H), c) in enumerate(zip(self.trees, self.domains, strict=True)):
            e[:, i] = np.where(e[:, i] == c, b**H, e[:, i])
        return lo, e

    def _decompositions(self, lo, e):
        """Per attribute, per level: the two node intervals of every query."""
        return [badic_decomposition(lo[:, i], e[:, i], b, H) for i, (b, H) in enumerate(self.trees)]

    def answer(self, state: base.RangeState, queries) -> np.ndarray:
        """Estimated frequency of every query (fraction of users whose row satisfies it), vectorized."""
        lo, e = self._check_queries(queries)
        est = self.level_estimates(state)
        dec = self._decompositions(lo, e)
        d = len(self.columns)
        m = lo.shape[0]
        total = np.ones(m) * np.all([dec[i][0][1] > dec[i][0][0] for i in range(d)], axis=0)  # the all-'*' cell
        for layer, shape, x in zip(self.layers, self.layer_shapes, est, strict=True):
            sat = x.reshape(shape)
            for ax in range(d):
                sat = np.cumsum(sat, axis=ax)
                sat = np.concatenate([np.zeros_like(sat.take([0], axis=ax)), sat], axis=ax)
            for choice in itertools.product((0, 1), repeat=d):
                ivl = [dec[i][t][2 * c : 2 * c + 2] for i, (t, c) in enumerate(zip(layer, choice, strict=True))]
                total += _box_sums(sat, ivl)
        return total

    def cells_per_layer(self, queries) -> np.ndarray:
        """Number of cells of every layer used by each query, shape (#layers, m)."""
        lo, e = self._check_queries(queries)
        dec = self._decompositions(lo, e)
        out = []
        for layer in self.layers:
            cnt = np.ones(lo.shape[0], dtype=np.int64)
            for i, t in enumerate(layer):
                lo1, hi1, lo2, hi2 = dec[i][t]
                cnt *= (hi1 - lo1) + (hi2 - lo2)
            out.append(cnt)
        return np.stack(out)

    def variance(self, n: int, queries, f=None) -> np.ndarray:
        """Variance of every answer with ``n`` users. ``f=None``: the f -> 0 form, sum over layers of (#cells used)
        V*_layer(n / #layers). ``f``: the population's joint frequencies (an array of shape ``domains``): the
        oracles' noise (exact for GRR and OUE layers, the sum of the cells' variances for OLH) plus the layer-sampling
        term (:mod:`dpkit.mechanisms.range_queries.base`), up to O(1/n^2)."""
        n = check_count("n", n, minimum=1)
        L = len(self.layers)
        if f is None:
            sig = np.array([fo.variance(1) * L / n for fo in self.oracles])
            return sig @ self.cells_per_layer(queries).astype(np.float64)
        F = self._layer_frequencies(f)
        lo, e = self._check_queries(queries)
        dec = self._decompositions(lo, e)
        m = lo.shape[0]
        root = np.all([dec[i][0][1] > dec[i][0][0] for i in range(len(self.columns))], axis=0).astype(np.float64)
        fo_var, fq, phi = np.zeros(m), root.copy(), []
        for layer, shape, fo, Fl in zip(self.layers, self.layer_shapes, self.oracles, F, strict=True):
            w = np.ones((1, m))
            for i, t in enumerate(layer):
                lo1, hi1, lo2, hi2 = dec[i][t]
                idx = np.arange(shape[i])[:, None]
                vi = (((idx >= lo1) & (idx < hi1)) | ((idx >= lo2) & (idx < hi2))).astype(np.float64)
                w = (w[:, None, :] * vi[None, :, :]).reshape(-1, m)
            fo_var += base.oracle_sum_variance(fo, n / L, w, Fl)
            phi.append(base.population_variance(Fl, w))
            fq += Fl @ w
        return np.maximum(fo_var + base.sampling_variance(n, L, np.stack(phi), fq * (1 - fq)), 0.0)

    def _layer_frequencies(self, f) -> list[np.ndarray]:
        f = base.check_distribution("f", f, self.domains)
        padded = np.zeros(tuple(b**H for b, H in self.trees))
        padded[tuple(slice(0, c) for c in self.domains)] = f
        out = []
        for layer in self.layers:
            g = padded
            for i, ((b, H), t) in enumerate(zip(self.trees, layer, strict=True)):
                shp = g.shape
                g = g.reshape(*shp[:i], b**t, b ** (H - t), *shp[i + 1 :]).sum(axis=i + 1)
            out.append(g.ravel())
        return out


def _box_sums(sat: np.ndarray, intervals) -> np.ndarray:
    """Sums of the boxes prod_i [lo_i, hi_i) read from a zero-padded summed-area table (inclusion-exclusion)."""
    d = sat.ndim
    out: np.ndarray = np.zeros(np.shape(intervals[0][0]))
    for corner in itertools.product((0, 1), repeat=d):
        idx = tuple(intervals[i][corner[i]] for i in range(d))
        sign = (-1) ** (d - sum(corner))
        out = out + sign * sat[idx]
    # an empty interval (lo >= hi) on any axis gives 0: inclusion-exclusion already cancels for lo == hi
    return out
