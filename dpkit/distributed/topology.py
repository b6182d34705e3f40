"""Communication graphs of decentralized learning and their Metropolis-Hastings mixing matrices.

A topology is a symmetric boolean adjacency matrix without self-loops; :func:`metropolis_hastings` turns it into
the symmetric doubly-stochastic mixing matrix W_ij = 1 / (1 + max(deg_i, deg_j)) on edges,
W_ii = 1 - sum_{j != i} W_ij (Xiao and Boyd, "Fast linear iterations for distributed averaging", 2004).
Topologies are registered by name (:func:`register_topology`); :func:`make_topology` builds one for n agents.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.sparse.csgraph import connected_components

from dpkit.accountants.validation import check_count, check_probability

__all__ = [
    "ring",
    "torus",
    "complete",
    "erdos_renyi",
    "metropolis_hastings",
    "laplacian",
    "make_topology",
    "register_topology",
    "available_topologies",
]


def _from_edges(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    adjacency = np.zeros((n, n), dtype=bool)
    keep = i != j
    adjacency[i[keep], j[keep]] = True
    adjacency[j[keep], i[keep]] = True
    return adjacency


def ring(n: int) -> np.ndarray:
    """Agent i talks to i - 1 and i + 1 (mod n)."""
    n = check_count("num_agents", n, minimum=2)
    i = np.arange(n)
    return _from_edges(n, i, (i + 1) % n)


def torus(rows: int, cols: int) -> np.ndarray:
    """A rows x cols grid wrapped around in both directions (agent r * cols + c)."""
    rows = check_count("rows", rows, minimum=1)
    cols = check_count("cols", cols, minimum=1)
    r, c = np.divmod(np.arange(rows * cols), cols)
    n = rows * cols
    right = r * cols + (c + 1) % cols
    down = ((r + 1) % rows) * cols + c
    return _from_edges(n, np.concatenate([r * cols + c] * 2), np.concatenate([right, down]))


def complete(n: int) -> np.ndarray:
    """Every agent talks to every other."""
    n = check_count("num_agents", n, minimum=2)
    return ~np.eye(n, dtype=bool)


def erdos_renyi(n: int, edge_probability: float, seed: int, *, max_trials: int = 1000) -> np.ndarray:
    """A connected G(n, p) graph: each edge independently with probability p, redrawn until connected
    (``numpy.random.default_rng(seed)``)."""
    n = check_count("num_agents", n, minimum=2)
    p = check_probability("edge_probability", edge_probability)
    rng = np.random.default_rng(seed)
    for _ in range(max_trials):
        upper = np.triu(rng.random((n, n)) < p, k=1)
        adjacency = upper | upper.T
        if connected_components(adjacency, directed=False)[0] == 1:
            return adjacency
    raise ValueError(f"no connected Erdos-Renyi graph with num_agents={n}, edge_probability={p} in {max_trials} draws")


def _check_adjacency(adjacency) -> np.ndarray:
    a = np.asarray(adjacency)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 1:
        raise ValueError(f"adjacency must be a square matrix, got shape {a.shape}")
    a = a.astype(bool)
    if not np.array_equal(a, a.T) or a.diagonal().any():
        raise ValueError("adjacency must be symmetric with an empty diagonal (an undirected graph without self-loops)")
    return a


def metropolis_hastings(adjacency) -> np.ndarray:
    """The Metropolis-Hastings mixing matrix of an undirected graph (symmetric, doubly stochastic)."""
    a = _check_adjacency(adjacency)
    degree = a.sum(axis=1)
    w = np.where(a, 1.0 / (1.0 + np.maximum(degree[:, None], degree[None, :])), 0.0)
    w[np.diag_indices_from(w)] = 1.0 - w.sum(axis=1)
    return w


def laplacian(adjacency) -> np.ndarray:
    """The unweighted graph Laplacian D - A."""
    a = _check_adjacency(adjacency).astype(float)
    return np.diag(a.sum(axis=1)) - a


def _torus_for(n: int, **_) -> np.ndarray:
    rows = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)  # the squarest factorization
    return torus(rows, n // rows)


_TOPOLOGIES: dict[str, Callable[..., np.ndarray]] = {
    "ring": lambda n, **_: ring(n),
    "torus": _torus_for,
    "complete": lambda n, **_: complete(n),
    "erdos_renyi": lambda n, edge_probability=0.5, seed=0, **_: erdos_renyi(n, edge_probability, seed),
}


def register_topology(name: str, build: Callable[..., np.ndarray]) -> None:
    """Make ``make_topology(name, n, **options)`` call ``build(n, **options)`` (an adjacency matrix)."""
    if name in _TOPOLOGIES:
        raise ValueError(f"topology {name!r} is already registered")
    _TOPOLOGIES[name] = build


def available_topologies() -> list[str]:
    return sorted(_TOPOLOGIES)


def make_topology(name: str, num_agents: int, *, edge_probability: float = 0.5, seed: int = 0) -> np.ndarray:
    """The adjacency matrix of topology ``name`` on ``num_agents`` agents (torus: the squarest rows x cols grid;
    Erdos-Renyi: ``edge_probability`` and ``seed``)."""
    if name not in _TOPOLOGIES:
        raise ValueError(f"topology must be one of {available_topologies()}, got {name!r}")
    num_agents = check_count("num_agents", num_agents, minimum=2)
    return _check_adjacency(_TOPOLOGIES[name](num_agents, edge_probability=edge_probability, seed=seed))
