"""Noise covariances across agents for decentralized DP-SGD: LDP, DECOR (pairwise) and CorN (mixing-aware).

Each round every agent i adds noise z_i to its clipped gradient sum before it gossips; across agents the noise
vector (per coordinate) is N(0, Sigma), independent over coordinates and rounds. Privacy (one sample of one
agent, against an eavesdropper who sees every message and knows Sigma, but not the agents' secret randomness):
replacing one sample of agent i moves the messages by u (x) e_i with ||u|| <= Delta = 2 C (replace-one), a
Gaussian mechanism whose Mahalanobis shift is Delta sqrt(e_i^T Sigma^-1 e_i). So a round is ``GaussianEvent(z)``
with z = 1 / (Delta sqrt(max_i e_i^T Sigma^-1 e_i)), and R rounds are (epsilon, delta)-DP whenever
e_i^T Sigma^-1 e_i <= B for every i, with B = 1 / (Delta^2 z*^2) and z* the multiplier that R Gaussian rounds need
(:func:`privacy_bound`, calibrated by a dpkit accountant).

Among covariances meeting the bound, the programs minimise trace(W Sigma W^T), the noise variance left after one
gossip step x <- W x (summed over agents, per coordinate):

* ``ldp``: Sigma = I / B (independent noise; closed form).
* ``decor``: Sigma = s I + c L, L the unweighted Laplacian of the graph, s, c >= 0 (DECOR: Allouah et al.,
  "The Privacy Power of Correlated Noise in Decentralized Learning", ICML 2024, arXiv 2405.01031): the
  correlated part is a sum over edges of secrets that one endpoint adds and the other subtracts.
* ``corn``: Sigma = s I + Sigma_cor with any Sigma_cor PSD (CorN-DSGD: Rodio, Chen and Larsson, "Optimizing
  Privacy-Utility Trade-off in Decentralized Learning with Generalized Correlated Noise", arXiv 2501.14644; its
  first version, "Whisper D-SGD", and the authors' public code state this program). Sigma_cor is not restricted
  to the graph's sparsity: agents that are not neighbours may share noise components.

Semidefinite programs, solved by cvxpy with Clarabel (``pip install dpkit[corn]``). The n constraints
[[Sigma, e_i], [e_i^T, B]] >= 0 of the papers are written as one LMI [[Sigma, I], [I, M]] >= 0 with diag(M) <= B
(equivalent by the Schur complement: M >= Sigma^-1 then bounds diag(Sigma^-1); M = Sigma^-1 shows the converse),
which is one (2n x 2n) cone instead of n cones of size n + 1. Programs are solved at B = 1 and scaled by 1/B.

The solver's answer is never trusted: :func:`certify` recomputes max_i e_i^T Sigma^-1 e_i of the covariance the
noise will actually have (s I + F F^T from the factor F the agents use) in float64 by a Cholesky factorization,
inflated by a bound on its rounding error (4 n u cond(Sigma)). A covariance that violates the bound by more than
``repair_tolerance`` (default 1e-4, relative) is refused (``ValueError``); a smaller violation (the solver's own
tolerance) is repaired by scaling Sigma up by the violation factor, which restores every constraint exactly and
costs at most that fraction of extra variance. The reported guarantee uses the certified value.

Decisions on open points: the CorN program follows the first version's public code (the second version's text
could not be read beyond its abstract; it may generalize the objective or constraints); the bound B comes from
dpkit's accountant (PLD by default) rather than the papers' zCDP conversion (:func:`zcdp_privacy_bound`), which
needs more noise for the same (epsilon, delta).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable

import numpy as np
import scipy.linalg

from dpkit.accountants import NeighbouringRelation
from dpkit.accountants.validation import check_count, check_positive
from dpkit.distributed.accounting import calibrate_rounds, zcdp_rho
from dpkit.distributed.topology import laplacian, make_topology, metropolis_hastings

__all__ = [
    "NoiseCovariance",
    "privacy_bound",
    "zcdp_privacy_bound",
    "solve_covariance",
    "certify",
    "max_inverse_diagonal",
    "gossip_noise_variance",
    "noise_variances",
    "available_mechanisms",
    "register_mechanism",
]


@dataclasses.dataclass(frozen=True)
class NoiseCovariance:
    """A certified noise covariance Sigma = s I + F F^T across n agents.

    ``private_variance`` s: each agent's own independent noise; ``factor`` F (n x r): agent i adds
    sum_k F[i, k] u_k, with u_k a noise component shared by the agents ``groups()[k]``. ``inverse_diagonal``:
    a certified upper bound on max_i e_i^T Sigma^-1 e_i (at most ``bound``); ``objective``: trace(W Sigma W^T).
    """

    mechanism: str
    bound: float
    private_variance: float
    factor: np.ndarray
    inverse_diagonal: float
    objective: float
    repair_scale: float
    solve_seconds: float

    @property
    def num_agents(self) -> int:
        return self.factor.shape[0]

    @property
    def covariance(self) -> np.ndarray:
        return self.private_variance * np.eye(self.num_agents) + self.factor @ self.factor.T

    def groups(self) -> list[tuple[int, ...]]:
        """For each shared component k, the agents that add it (the rows where F[:, k] is non-zero)."""
        return [tuple(int(i) for i in np.flatnonzero(col)) for col in self.factor.T]


# ----------------------------------------------------------------------------------------------- the bound B
def privacy_bound(
    epsilon: float,
    delta: float,
    rounds: int,
    clip_norm: float,
    *,
    accountant: str = "pld",
) -> float:
    """B: the largest e_i^T Sigma^-1 e_i with which ``rounds`` rounds of per-sample clipping at ``clip_norm`` are
    (epsilon, delta)-DP for one sample of one agent under replace-one: B = 1 / (2 C z*)^2, z* from
    ``calibrate_rounds``."""
    clip_norm = check_positive("clip_norm", clip_norm)
    relation = NeighbouringRelation.REPLACE_ONE
    z = calibrate_rounds(epsilon, delta, rounds, neighbouring_relation=relation, accountant=accountant)
    return 1.0 / (2.0 * clip_norm * z) ** 2


def zcdp_privacy_bound(epsilon: float, delta: float, rounds: int, clip_norm: float) -> float:
    """The papers' bound through zCDP under replace-one: B = rho(epsilon, delta) / (2 rounds C^2)."""
    rounds = check_count("rounds", rounds, minimum=1)
    return zcdp_rho(epsilon, delta) / (2.0 * rounds * check_positive("clip_norm", clip_norm) ** 2)


# ----------------------------------------------------------------------------------------------- certification
def max_inverse_diagonal(covariance: np.ndarray) -> float:
    """A float64 upper bound on max_i e_i^T Sigma^-1 e_i (inf if Sigma is not positive definite)."""
    sigma = np.asarray(covariance, dtype=np.float64)
    n = sigma.shape[0]
    eig = np.linalg.eigvalsh(sigma)
    if not eig[0] > 0:
        return math.inf
    try:
        chol = scipy.linalg.cholesky(sigma, lower=True)
    except np.linalg.LinAlgError:
        return math.inf
    inv_chol = scipy.linalg.solve_triangular(chol, np.eye(n), lower=True)
    diag = (inv_chol**2).sum(axis=0)  # e_i^T Sigma^-1 e_i = ||L^-1 e_i||^2
    margin = 4.0 * n * np.finfo(np.float64).eps * (eig[-1] / eig[0])
    return float(diag.max()) * (1.0 + margin)


def gossip_noise_variance(weights: np.ndarray, covariance: np.ndarray) -> float:
    """trace(W Sigma W^T): the noise variance per coordinate left after one gossip step, summed over agents."""
    w = np.asarray(weights, dtype=np.float64)
    return float(np.trace(w @ np.asarray(covariance, dtype=np.float64) @ w.T))


def certify(
    mechanism: str,
    private_variance: float,
    factor: np.ndarray,
    bound: float,
    weights: np.ndarray,
    *,
    repair_tolerance: float = 1e-4,
    solve_seconds: float = 0.0,
) -> NoiseCovariance:
    """Check e_i^T Sigma^-1 e_i <= ``bound`` for Sigma = s I + F F^T; repair a violation up to ``repair_tolerance``
    (relative) by scaling Sigma up, refuse a larger one."""
    bound = check_positive("bound", bound)
    s = float(private_variance)
    if not (s >= 0 and math.isfinite(s)):
        raise ValueError(f"private_variance must be in [0, inf), got {private_variance!r}")
    f = np.asarray(factor, dtype=np.float64)
    if f.ndim != 2 or not np.isfinite(f).all():
        raise ValueError(f"factor must be a finite 2-D matrix, got shape {f.shape}")
    sigma = s * np.eye(f.shape[0]) + f @ f.T
    ratio = max_inverse_diagonal(sigma) / bound
    scale = 1.0
    if ratio > 1.0:
        if ratio > 1.0 + repair_tolerance:
            raise ValueError(
                f"the {mechanism} covariance violates the privacy bound: max_i e_i^T Sigma^-1 e_i = {ratio:.6g} x "
                f"bound (allowed up to {1 + repair_tolerance:.6g} x, repaired by scaling); refusing it"
            )
        scale = ratio * (1.0 + 1e-12)
        s, f = s * scale, f * math.sqrt(scale)
        sigma = s * np.eye(f.shape[0]) + f @ f.T
    inverse_diagonal = max_inverse_diagonal(sigma)
    if not inverse_diagonal <= bound:
        raise ValueError(f"the {mechanism} covariance could not be certified (ratio {inverse_diagonal / bound:.6g})")
    f.setflags(write=False)
    return NoiseCovariance(
        mechanism, bound, s, f, inverse_diagonal, gossip_noise_variance(weights, sigma), scale, solve_seconds
    )


# ----------------------------------------------------------------------------------------------- the programs
def _solve_sdp(weights: np.ndarray, family: str, solver: str):
    try:
        import cvxpy as cp
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError("the decor and corn covariances need cvxpy: pip install 'dpkit[corn]'") from None
    n = weights.shape[0]
    eye = np.eye(n)
    wtw = weights.T @ weights
    s = cp.Variable(nonneg=True)
    m = cp.Variable((n, n), symmetric=True)
    if family == "decor":
        lap = laplacian(weights - np.diag(np.diag(weights)) != 0)
        c = cp.Variable(nonneg=True)
        sigma = s * eye + c * lap
        objective = s * np.trace(wtw) + c * float(np.trace(wtw @ lap))
    else:
        cor = cp.Variable((n, n), PSD=True)
        sigma = s * eye + cor
        objective = s * np.trace(wtw) + cp.trace(wtw @ cor)
    problem = cp.Problem(cp.Minimize(objective), [cp.bmat([[sigma, eye], [eye, m]]) >> 0, cp.diag(m) <= 1])
    with warnings.catch_warnings():  # "may be inaccurate": the answer is certified afterwards either way
        warnings.simplefilter("ignore", UserWarning)
        problem.solve(solver=solver)
    if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        raise ValueError(f"the {family} covariance program was not solved: status {problem.status!r}")
    if family == "decor":
        return float(np.asarray(s.value)), float(np.asarray(c.value)), lap
    return float(np.asarray(s.value)), np.asarray(cor.value), None


def _ldp(weights: np.ndarray, solver: str) -> tuple[float, np.ndarray]:
    return 1.0, np.zeros((weights.shape[0], 0))


def _decor(weights: np.ndarray, solver: str) -> tuple[float, np.ndarray]:
    s, c, lap = _solve_sdp(weights, "decor", solver)
    i, j = np.nonzero(np.triu(lap < 0))  # one shared component per edge: +sqrt(c) at i, -sqrt(c) at j
    incidence = np.zeros((weights.shape[0], len(i)))
    incidence[i, np.arange(len(i))] = 1.0
    incidence[j, np.arange(len(i))] = -1.0
    return max(s, 0.0), math.sqrt(max(c, 0.0)) * incidence


def _corn(weights: np.ndarray, solver: str) -> tuple[float, np.ndarray]:
    s, cor, _ = _solve_sdp(weights, "corn", solver)
    eig, vec = np.linalg.eigh((cor + cor.T) / 2)
    keep = eig > 1e-12 * max(float(eig[-1]), s, 1e-300)  # dropping the rest is checked (and repaired) by certify
    return max(s, 0.0), vec[:, keep] * np.sqrt(eig[keep])


_MECHANISMS: dict[str, Callable[[np.ndarray, str], tuple[float, np.ndarray]]] = {
    "ldp": _ldp,
    "decor": _decor,
    "corn": _corn,
}


def register_mechanism(name: str, solve: Callable[[np.ndarray, str], tuple[float, np.ndarray]]) -> None:
    """``solve(weights, solver) -> (s, F)`` with s I + F F^T meeting the bound B = 1; certified after scaling."""
    if name in _MECHANISMS:
        raise ValueError(f"mechanism {name!r} is already registered")
    _MECHANISMS[name] = solve


def available_mechanisms() -> list[str]:
    return sorted(_MECHANISMS)


def _check_weights(weights) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] != w.shape[1] or w.shape[0] < 2:
        raise ValueError(f"weights must be a square mixing matrix of at least 2 agents, got shape {w.shape}")
    if not (np.allclose(w, w.T, atol=1e-12) and np.allclose(w.sum(axis=1), 1.0, atol=1e-12) and (w >= 0).all()):
        raise ValueError("weights must be symmetric, non-negative and doubly stochastic (e.g. metropolis_hastings)")
    return w


def solve_covariance(
    weights: np.ndarray, bound: float, mechanism: str = "corn", *, solver: str = "CLARABEL", repair_tolerance=1e-4
) -> NoiseCovariance:
    """The ``mechanism`` covariance minimising trace(W Sigma W^T) subject to e_i^T Sigma^-1 e_i <= ``bound``,
    certified by :func:`certify`."""
    w = _check_weights(weights)
    bound = check_positive("bound", bound)
    if mechanism not in _MECHANISMS:
        raise ValueError(f"mechanism must be one of {available_mechanisms()}, got {mechanism!r}")
    start = time.perf_counter()
    s, f = _MECHANISMS[mechanism](w, solver)
    seconds = time.perf_counter() - start
    return certify(
        mechanism, s / bound, f / math.sqrt(bound), bound, w, repair_tolerance=repair_tolerance, solve_seconds=seconds
    )


def noise_variances(
    topology: str,
    agents: int,
    epsilon: float,
    *,
    delta: float = 1e-5,
    rounds: int = 5000,
    clip_norm: float = 0.1,
    edge_probability: float = 0.5,
    seed: int = 0,
    accountant: str = "pld",
) -> dict[str, float]:
    """Noise variance after one gossip step, trace(W Sigma W^T), for LDP, DECOR and CorN on one graph.

    Metropolis-Hastings weights on ``make_topology(topology, agents)``; the bound B for ``rounds`` rounds at clip
    ``clip_norm`` and (epsilon, delta) under replace-one (defaults: the CorN-DSGD paper's a9a setting, delta = 1e-5,
    5000 rounds, C = 0.1). Returns ``{"ldp": ..., "decor": ..., "corn": ..., "seconds": wall time}``.
    """
    start = time.perf_counter()
    w = metropolis_hastings(make_topology(topology, agents, edge_probability=edge_probability, seed=seed))
    bound = privacy_bound(epsilon, delta, rounds, clip_norm, accountant=accountant)
    out = {name: solve_covariance(w, bound, name).objective for name in ("ldp", "decor", "corn")}
    out["seconds"] = time.perf_counter() - start
    return out
