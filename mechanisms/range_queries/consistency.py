"""Consistency of a B-ary tree of noisy node estimates (Hay, Rastogi, Miklau, Suciu, PVLDB 2010), with per-level
variances, and the weights it puts on every node for a query.

Input: level l = 1..h holds B^l independent, unbiased node estimates x_l of variance s_l (one value per level); the
root is known exactly (the total, 1 for frequencies). Output: the generalized least-squares estimate of the whole
tree under the constraints "every node is the sum of its children" and "the level-1 nodes sum to the root": the
best linear unbiased estimate, so no linear query (a range is one) gets a larger variance than from the raw nodes.

Two passes (Hay et al.'s, with inverse-variance weights; for equal variances they are exactly Hay et al.'s
z = (B^i - B^(i-1))/(B^i - 1) x + (B^(i-1) - 1)/(B^i - 1) sum children):

* up: z_leaf = x_leaf, V_leaf = s_h; a node combines its own estimate with the sum of its children's z
  (variance B V_child) by inverse-variance weighting: z = (x/s + S/(B V_c)) / (1/s + 1/(B V_c)),
  V = 1 / (1/s + 1/(B V_c));
* down: the level-1 nodes share the root's gap equally, x_bar = z + (root - sum z)/B, and each node's children
  share its gap equally, x_bar_c = z_c + (x_bar_parent - sum_siblings z)/B (siblings have equal variances).

Every array may carry trailing batch axes (several trees at once, e.g. one per query for the weights).

Weights of a query (for its variance): the consistent answer to a^T x_bar_leaves is c + sum_v w_v x_v with
w = S^-1 P S a~ (a~ = a on the leaves, P the homogeneous operator with root 0, S = diag of the node variances):
P is the S^-1-orthogonal projection onto the constraint set, so P^T = S^-1 P S. ``query_weights`` computes w
with one pass of P; the tests check it against the explicit least-squares solution.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["tree_consistency", "query_weights"]


def _children_sum(x: np.ndarray, branching: int) -> np.ndarray:
    return x.reshape(x.shape[0] // branching, branching, *x.shape[1:]).sum(axis=1)


def _expand(x: np.ndarray, branching: int) -> np.ndarray:
    return np.repeat(x, branching, axis=0)


def tree_consistency(
    levels: Sequence[np.ndarray], branching: int, level_var: Sequence[float], root: float = 1.0
) -> list[np.ndarray]:
    """Consistent node estimates of every level (list of arrays, level 1 first; leaves last).

    ``levels[i]``: the B^(i+1) estimates of level i+1 (optionally with trailing batch axes); ``level_var[i]``: their
    common variance (> 0); ``root``: the known total.
    """
    B = int(branching)
    h = len(levels)
    if len(level_var) != h:
        raise ValueError(f"level_var must have one variance per level ({h}), got {len(level_var)}")
    s = [float(v) for v in level_var]
    if not all(v > 0 for v in s):
        raise ValueError(f"level_var must be positive, got {list(level_var)}")
    x = [np.asarray(lv, dtype=np.float64) for lv in levels]
    z: list[np.ndarray] = [None] * h  # type: ignore[list-item]
    V = [0.0] * h
    z[h - 1], V[h - 1] = x[h - 1], s[h - 1]
    for i in range(h - 2, -1, -1):
        vs = B * V[i + 1]
        alpha = vs / (s[i] + vs)  # weight of the node's own estimate
        z[i] = alpha * x[i] + (1 - alpha) * _children_sum(z[i + 1], B)
        V[i] = s[i] * vs / (s[i] + vs)
    out: list[np.ndarray] = [None] * h  # type: ignore[list-item]
    gap = root - z[0].sum(axis=0)
    out[0] = z[0] + gap / B
    for i in range(1, h):
        out[i] = z[i] + _expand(out[i - 1] - _children_sum(z[i], B), B) / B
    return out


def query_weights(leaf_queries: np.ndarray, branching: int, level_var: Sequence[float]) -> list[np.ndarray]:
    """Weights w_l (one array per level, shape (B^l, m)) of the consistent answers to the leaf queries
    ``leaf_queries`` (shape (B^h, m): the coefficient of every leaf, e.g. a range's indicator)."""
    a = np.asarray(leaf_queries, dtype=np.float64)
    h = len(level_var)
    B = int(branching)
    zeros = [np.zeros((B ** (i + 1), *a.shape[1:])) for i in range(h - 1)]
    tree = tree_consistency([*zeros, level_var[-1] * a], B, level_var, root=0.0)
    return [t / v for t, v in zip(tree, level_var, strict=True)]
