"""CorN-DSGD: decentralized SGD whose privacy noise is correlated across agents to cancel in the gossip.

Rodio, Chen and Larsson, "Optimizing Privacy-Utility Trade-off in Decentralized Learning with Generalized Correlated
Noise" (arXiv 2501.14644; first version "Whisper D-SGD"). n agents on a graph with mixing matrix W; each round::

    each agent i: b samples drawn without replacement from its data;  G_i = sum_j clip(grad l(x_i; xi_j), C)
                  x_i <- x_i - eta (G_i + z_i) / b          (z_i: agent i's part of the round's noise)
    gossip:       x_i <- sum_j W_ij x_j                     (agents send their x_i to their neighbours)

The noise vector (z_1, ..., z_n) of every coordinate is N(0, Sigma), with Sigma = s I + F F^T chosen by
:func:`dpkit.distributed.covariance.solve_covariance` (``ldp``, ``decor`` or ``corn``). Agent i adds
sqrt(s) xi_i + sum_k F[i, k] u_k: xi_i is its own noise, u_k a component it shares with the other agents of group
k. The shared randomness is a seed per component, drawn by the component's lowest agent and sent to its other
members once at set-up (:meth:`dpkit.distributed.Communicator.share_seeds`); every round each member regenerates
u_k from (seed_k, round). Nothing else is shared.

Privacy. Unit: one sample of one agent; neighbouring relation: replace-one (add/remove is not offered: with
fixed-size minibatches an added sample can displace another one from the batch, so its sensitivity is 2 C too);
trust model: an eavesdropper who sees every message of every round and knows Sigma, but neither the agents'
private noise nor the shared seeds (agents themselves are trusted not to pool their seeds; against a curious
agent, the components it shares are no noise at all). Given the past, a round releases G + Z, a Gaussian mechanism
with Mahalanobis sensitivity Delta sqrt(e_i^T Sigma^-1 e_i) (Delta = 2 C), i.e.
``GaussianEvent(z)`` with z = 1 / (Delta sqrt(max_i e_i^T Sigma^-1 e_i)); the gossip is post-processing. R rounds
are ``SelfComposedEvent(GaussianEvent(z), R)`` (:meth:`CornDSGD.privacy_event`), computed from the certified
covariance, so (epsilon, delta) follow from any dpkit accountant. No privacy amplification by the minibatch
sampling is claimed.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.func import vmap

from dpkit.accountants import DpEvent, NeighbouringRelation
from dpkit.accountants.validation import check_count, check_positive
from dpkit.distributed.accounting import epsilon_of_rounds, rounds_event
from dpkit.distributed.comm import Communicator, SimulatedCommunicator
from dpkit.distributed.covariance import NoiseCovariance, privacy_bound, solve_covariance
from dpkit.distributed.per_sample import LossFn, clip_rows, per_sample_gradients
from dpkit.distributed.randomness import (
    NOISE_STREAM,
    SAMPLER_STREAM,
    SHARED_STREAM,
    generator,
    standard_normal,
    stream_seed,
)
from dpkit.distributed.run_state import check_same_run, check_state_tensor, checked_round, run_identity

__all__ = ["CornConfig", "CornDSGD", "CorrelatedNoise", "corn_noise", "NEIGHBOURING_RELATION"]

#: CorN-DSGD's neighbouring relation: one sample of one agent replaced by another.
NEIGHBOURING_RELATION = NeighbouringRelation.REPLACE_ONE


@dataclasses.dataclass(frozen=True)
class CornConfig:
    """R rounds of local steps (step size eta, per-sample clip C, minibatch b) each followed by one gossip step."""

    rounds: int
    learning_rate: float
    clip_norm: float
    batch_size: int

    def __post_init__(self):
        object.__setattr__(self, "rounds", check_count("rounds", self.rounds, minimum=1))
        object.__setattr__(self, "learning_rate", check_positive("learning_rate", self.learning_rate))
        object.__setattr__(self, "clip_norm", check_positive("clip_norm", self.clip_norm))
        object.__setattr__(self, "batch_size", check_count("batch_size", self.batch_size, minimum=1))

    @property
    def sensitivity(self) -> float:
        """L2 sensitivity of an agent's clipped gradient sum under replace-one: 2 C."""
        return 2.0 * self.clip_norm


def corn_noise(
    weights: np.ndarray,
    epsilon: float,
    delta: float,
    config: CornConfig,
    mechanism: str = "corn",
    *,
    accountant: str = "pld",
) -> NoiseCovariance:
    """The certified ``mechanism`` covariance for ``config.rounds`` rounds at (epsilon, delta)."""
    bound = privacy_bound(
        epsilon,
        delta,
        config.rounds,
        config.clip_norm,
        accountant=accountant,
    )
    return solve_covariance(weights, bound, mechanism)


class CorrelatedNoise:
    """Draws the local agents' noise z_i = sqrt(s) xi_i + sum_k F[i, k] u_k for each round.

    ``seed``: private noise of agent a in round t from the stream (seed, a, t), shared seeds derived from
    (seed, component); ``None``: private noise from the OS CSPRNG and shared seeds drawn by ``secrets``.
    """

    def __init__(self, covariance: NoiseCovariance, comm: Communicator, seed: int | None):
        self.covariance = covariance
        self.local_agents = comm.local_agents
        self.seed = None if seed is None else int(seed)

        def make_seed(k: int) -> int:
            return secrets.randbits(63) if self.seed is None else _shared_seed(self.seed, k)

        self.shared_seeds = comm.share_seeds(covariance.groups(), make_seed)
        self.components = sorted(self.shared_seeds)
        factor = covariance.factor[np.ix_(list(self.local_agents), self.components)]
        self._factor = torch.from_numpy(np.ascontiguousarray(factor))
        self._private_std = math.sqrt(covariance.private_variance)

    def draw(self, round: int, size: int, dtype: torch.dtype) -> torch.Tensor:
        """``[len(local_agents), size]``: this round's noise of the local agents."""
        out = torch.stack([standard_normal(size, dtype, self.seed, NOISE_STREAM, a, round) for a in self.local_agents])
        out.mul_(self._private_std)
        if self.components:
            shared = torch.stack(
                [standard_normal(size, dtype, self.shared_seeds[k], SHARED_STREAM, round) for k in self.components]
            )
            out.add_(self._factor.to(dtype) @ shared)
        return out


def _shared_seed(seed: int, component: int) -> int:
    return stream_seed(seed, SHARED_STREAM, component)


class CornDSGD:
    """Decentralized DP-SGD with correlated noise on the agents held by ``comm`` (default: all, simulated).

    ``datasets[k]``: the ``(inputs, targets)`` of agent ``comm.local_agents[k]`` (at least ``batch_size`` samples);
    ``weights``: the mixing matrix (every rank passes the same); ``noise``: the certified covariance (on a
    multi-process run, agent 0's is broadcast to all, so the other ranks may pass ``None``). Every agent starts at
    ``params``. :attr:`params` is ``[len(local_agents), d]``. In a multi-process run every rank calls :meth:`step`,
    :meth:`run` and :meth:`evaluate` in the same order (they communicate).
    """

    def __init__(
        self,
        loss_fn: LossFn,
        params: torch.Tensor,
        datasets: Sequence[tuple[torch.Tensor, torch.Tensor]],
        weights: np.ndarray,
        noise: NoiseCovariance | None,
        config: CornConfig,
        *,
        comm: Communicator | None = None,
        seed: int | None = None,
    ):
        if not isinstance(config, CornConfig):
            raise TypeError(f"config must be a CornConfig, got {type(config).__name__}")
        comm = SimulatedCommunicator(len(datasets)) if comm is None else comm
        noise = comm.broadcast_object(noise, src=0)
        if not isinstance(noise, NoiseCovariance):
            raise TypeError(f"noise must be a NoiseCovariance (on agent 0 at least), got {type(noise).__name__}")
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (comm.num_agents, comm.num_agents) or noise.num_agents != comm.num_agents:
            raise ValueError(
                f"weights ({w.shape}) and noise ({noise.num_agents} agents) must match the {comm.num_agents} agents"
            )
        if len(datasets) != len(comm.local_agents):
            raise ValueError(
                f"datasets must hold one pair per local agent ({len(comm.local_agents)}), got {len(datasets)}"
            )
        for k, (x, y) in enumerate(datasets):
            if x.shape[0] != y.shape[0] or x.shape[0] < config.batch_size:
                raise ValueError(
                    f"datasets[{k}] must hold as many targets as inputs and at least batch_size={config.batch_size} "
                    f"samples, got {x.shape[0]} inputs and {y.shape[0]} targets"
                )
        if params.dim() != 1 or not params.is_floating_point():
            raise ValueError(f"params must be a flat floating-point vector, got shape {tuple(params.shape)}")
        self.loss_fn = loss_fn
        self.datasets = list(datasets)
        self.weights = w
        self.noise = noise
        self.config = config
        self.comm = comm
        self.seed = None if seed is None else int(seed)
        self.sampler_seed: int = secrets.randbits(63) if seed is None else int(seed)
        self.sampler = CorrelatedNoise(noise, comm, self.seed)
        self.params = params.detach().clone().unsqueeze(0).repeat(len(comm.local_agents), 1)
        self.round = 0

        def agent_gradients(p, x, y):
            return per_sample_gradients(loss_fn, p, x, y)

        self._gradients = vmap(agent_gradients)

    def _batches(self) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for agent, (x, y) in zip(self.comm.local_agents, self.datasets, strict=True):
            g = generator(self.sampler_seed, SAMPLER_STREAM, agent, self.round)
            idx = torch.randperm(x.shape[0], generator=g)[: self.config.batch_size]
            xs.append(x[idx])
            ys.append(y[idx])
        return torch.stack(xs), torch.stack(ys)

    def step(self) -> None:
        """One round: local noisy clipped step on every local agent, then one gossip step."""
        cfg = self.config
        if self.round >= cfg.rounds:
            raise RuntimeError(f"all {cfg.rounds} rounds have run; the privacy guarantee covers no more")
        inputs, targets = self._batches()
        grads = clip_rows(self._gradients(self.params, inputs, targets), cfg.clip_norm).sum(dim=1)
        noise = self.sampler.draw(self.round, self.params.shape[1], self.params.dtype).to(self.params.device)
        half = self.params - cfg.learning_rate * (grads + noise) / cfg.batch_size
        self.params = self.comm.gossip(half, self.weights)
        self.round += 1

    def run(self, callback: Callable[[CornDSGD], None] | None = None) -> torch.Tensor:
        """All remaining rounds (``callback(self)`` after each); returns the local agents' parameters."""
        while self.round < self.config.rounds:
            self.step()
            if callback is not None:
                callback(self)
        return self.params

    # ------------------------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Everything a resumed run needs (seeds included: keep checkpoints as secret as the data)."""
        return {
            **run_identity(self.config, self.comm.local_agents, self.seed),
            "sampler_seed": self.sampler_seed,
            "shared_seeds": dict(self.sampler.shared_seeds),
            "round": self.round,
            "params": self.params.clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output of a run with the same configuration, agents and covariance."""
        check_same_run(state, self.config, self.comm.local_agents, self.seed, "agents")
        shared = {int(k): int(v) for k, v in state["shared_seeds"].items()}
        if set(shared) != set(self.sampler.shared_seeds):
            raise ValueError("state['shared_seeds'] does not cover this run's shared noise components")
        rnd = checked_round(state, self.config.rounds)
        check_state_tensor(state, "params", self.params)
        self.round = rnd
        self.params = state["params"].to(self.params).clone()
        self.sampler_seed = int(state["sampler_seed"])
        self.sampler.shared_seeds = shared

    # ------------------------------------------------------------------------------------------ privacy
    @property
    def noise_multiplier(self) -> float:
        """z = 1 / (Delta sqrt(max_i e_i^T Sigma^-1 e_i)), from the certified covariance."""
        return 1.0 / (self.config.sensitivity * math.sqrt(self.noise.inverse_diagonal))

    def privacy_event(self) -> DpEvent:
        """The whole run: ``rounds`` x ``GaussianEvent(noise_multiplier)`` under replace-one."""
        return rounds_event(self.noise_multiplier, self.config.rounds)

    def epsilon(self, delta: float, accountant: str = "pld") -> float:
        """Epsilon at ``delta`` for one sample of one agent, against the eavesdropper of the module docstring."""
        return epsilon_of_rounds(
            self.noise_multiplier,
            self.config.rounds,
            delta,
            neighbouring_relation=NEIGHBOURING_RELATION,
            accountant=accountant,
        )

    # ------------------------------------------------------------------------------------------ monitoring
    def evaluate(self) -> tuple[float, float]:
        """``(f(x_bar), consensus)``: the global objective (1/n) sum_i f_i at the agents' average model, and
        (1/n) sum_i ||x_i - x_bar||^2. Monitoring only: reads the private data without noise; do not release."""
        mean = self.comm.mean(self.params)
        k = len(self.comm.local_agents)
        local = torch.zeros((k, 2), dtype=torch.float64)
        for j, (x, y) in enumerate(self.datasets):
            local[j, 0] = float(self.loss_fn(mean, x, y).mean())
            local[j, 1] = float(((self.params[j] - mean) ** 2).sum())
        total = self.comm.all_gather(local).sum(dim=0) / self.comm.num_agents
        return float(total[0]), float(total[1])
