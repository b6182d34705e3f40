"""DIFF2-GD: differentially private distributed gradient descent on gradient differences.

Murata and Suzuki, "DIFF2: Differential Private Optimization via Gradient Differences for Nonconvex Distributed
Learning", ICML 2023 (arXiv 2302.03884). P nodes hold local datasets; f(x) = (1/P) sum_p f_p(x) with f_p the mean
per-sample loss of node p. Every ``restart_period`` (T) rounds the global gradient estimator v is rebuilt from
clipped gradients; in the rounds between, nodes send clipped *gradient differences*, whose sensitivity is at most
L ||x_{r-1} - x_{r-2}|| for an L-smooth loss and is small when iterates are close, so little noise is needed::

    round r = 1, 2, ..., R (x_0 given; x_{-1} unused):
      restart round ((r - 1) mod T == 0): C_r = C1,
          d_p = (1/n_p) sum_i clip(grad l(x_{r-1}; z_pi), C1) + N_p,            v_r = (1/P) sum_p d_p
      difference round:                  C_r = C2 ||x_{r-1} - x_{r-2}||   (public: a function of released iterates)
          d_p = (1/n_p) sum_i clip(grad l(x_{r-1}; z_pi) - grad l(x_{r-2}; z_pi), C_r) + N_p,
          v_r = v_{r-1} + (1/P) sum_p d_p
      x_r = x_{r-1} - eta v_r                                                      (the GD routine)

Without noise and with inactive clipping (C1 >= every per-sample gradient norm, C2 >= L) v telescopes to
grad f(x_{r-1}) and DIFF2-GD is gradient descent; with T = 1 it is DP-GD.

Privacy. Unit: one record (sample) of one node; neighbouring relation: replace-one (node sizes n_p are public and
fixed, so add/remove is not used). Given the released past, round r is a Gaussian mechanism: replacing one record of
node p moves d_p by at most Delta_{p,r} = 2 C_r / n_p. Every round gets noise ``noise_multiplier`` (z) times its
sensitivity, so R rounds are ``SelfComposedEvent(GaussianEvent(z), R)`` (adaptive composition) and the run is
(epsilon, delta)-DP for the epsilon a dpkit accountant gives that event at delta
(:meth:`Diff2Config.from_budget` calibrates z for a target). Trust models:

* ``trust="central"`` (default; what the paper's utility O(d^(2/3) / (n_min P eps)^(4/3)) presumes): only the average
  (1/P) sum_p d_p is released (a trusted aggregator, or secure aggregation). Its sensitivity is
  2 C_r / (n_min P); node p adds N(0, s_r^2 I) with s_r = z 2 C_r / (n_min sqrt(P)), so the sum of the P shares
  has std z times that sensitivity. Guarantee: the released estimators and iterates are (epsilon, delta)-DP
  against anyone who sees only them. The individual messages d_p carry 1/sqrt(P) of the noise: in this
  implementation the P processes exchange them by an all-gather, so the ranks and their network must be trusted.
* ``trust="local"``: each node's messages are DP on their own (an untrusted server or peers see every d_p): node p
  adds s_{p,r} = z 2 C_r / n_p. Guarantee: everything node p sends is (epsilon, delta)-DP for its records, against
  everyone else. The average then has about P times the variance of the central model.

Decisions on points the paper's text available to us leaves open (its algorithm boxes and privacy proposition could
not be read): the per-node clipped mean and the relative clip radius C2 ||x_{r-1} - x_{r-2}|| follow the published
summary of the paper's Algorithms 1-3; the noise of every round is calibrated to one common multiplier z (each round
is equally private), which makes the accounting a plain composition of R Gaussians; defaults T = ceil(sqrt(R)) when
no restart period is given (a heuristic, not the paper's theory value T ~ (G^2 sqrt(d) / (L n_min P eps))^(2/3) R,
which needs constants L and G that are rarely known); the released model is the last iterate (the theory picks a
uniformly random one). DIFF2 with the BVR-L-SGD subroutine is not implemented: its algorithm box (its own clip radius
C3 and noise sigma3 for the local steps, and how they are accounted) could not be read, and a guess would risk an
unsound privacy claim.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import torch

from dpkit.accountants import DpEvent, NeighbouringRelation
from dpkit.accountants.validation import check_count, check_nonnegative, check_positive
from dpkit.distributed.accounting import calibrate_rounds, epsilon_of_rounds, rounds_event
from dpkit.distributed.comm import Communicator, SimulatedCommunicator
from dpkit.distributed.per_sample import LossFn, clipped_segment_sums, per_sample_gradients
from dpkit.distributed.randomness import NOISE_STREAM, standard_normal
from dpkit.distributed.run_state import check_same_run, check_state_tensor, checked_round, run_identity

__all__ = ["Diff2Config", "Diff2", "RoundInfo", "NEIGHBOURING_RELATION"]

#: DIFF2's neighbouring relation: one record of one node replaced by another.
NEIGHBOURING_RELATION = NeighbouringRelation.REPLACE_ONE
_TRUST = ("central", "local")


@dataclasses.dataclass(frozen=True)
class Diff2Config:
    """DIFF2-GD's parameters: R rounds, restart period T, step size eta, clip radii C1 and C2, multiplier z."""

    rounds: int
    restart_period: int
    learning_rate: float
    gradient_clip: float  # C1
    difference_clip: float  # C2: difference rounds clip at C2 * ||x_{r-1} - x_{r-2}||
    noise_multiplier: float  # z; 0 runs without privacy (tests and baselines)
    trust: str = "central"

    def __post_init__(self):
        object.__setattr__(self, "rounds", check_count("rounds", self.rounds, minimum=1))
        object.__setattr__(self, "restart_period", check_count("restart_period", self.restart_period, minimum=1))
        object.__setattr__(self, "learning_rate", check_positive("learning_rate", self.learning_rate))
        object.__setattr__(self, "gradient_clip", check_positive("gradient_clip", self.gradient_clip, allow_inf=True))
        c2 = check_positive("difference_clip", self.difference_clip, allow_inf=True)
        object.__setattr__(self, "difference_clip", c2)
        object.__setattr__(self, "noise_multiplier", check_nonnegative("noise_multiplier", self.noise_multiplier))
        if self.trust not in _TRUST:
            raise ValueError(f"trust must be one of {_TRUST}, got {self.trust!r}")
        if self.noise_multiplier > 0 and not (math.isfinite(self.gradient_clip) and math.isfinite(c2)):
            raise ValueError("gradient_clip and difference_clip must be finite when noise_multiplier > 0")

    @classmethod
    def from_budget(
        cls,
        epsilon: float,
        delta: float,
        *,
        rounds: int,
        learning_rate: float,
        gradient_clip: float,
        difference_clip: float,
        restart_period: int | None = None,
        trust: str = "central",
        accountant: str = "pld",
    ) -> Diff2Config:
        """The configuration whose R rounds are (epsilon, delta)-DP (replace-one), z calibrated by ``accountant``.

        ``restart_period`` defaults to ceil(sqrt(rounds)) (a heuristic; see the module docstring).
        """
        rounds = check_count("rounds", rounds, minimum=1)
        z = calibrate_rounds(epsilon, delta, rounds, neighbouring_relation=NEIGHBOURING_RELATION, accountant=accountant)
        period = math.ceil(math.sqrt(rounds)) if restart_period is None else restart_period
        return cls(rounds, period, learning_rate, gradient_clip, difference_clip, z, trust)

    def privacy_event(self) -> DpEvent:
        """What the run releases: ``rounds`` x Gaussian(z), under replace-one (non-private when z = 0)."""
        return rounds_event(self.noise_multiplier, self.rounds)

    def epsilon(self, delta: float, accountant: str = "pld") -> float:
        """Epsilon of the whole run at ``delta`` (replace-one, one record of one node)."""
        return epsilon_of_rounds(
            self.noise_multiplier,
            self.rounds,
            delta,
            neighbouring_relation=NEIGHBOURING_RELATION,
            accountant=accountant,
        )


@dataclasses.dataclass(frozen=True)
class RoundInfo:
    """What one round did. ``noise_variance``: per-coordinate variance of the noise this round added to v;
    ``estimator_noise_variance``: of all the noise in v (summed since the last restart)."""

    round: int  # 1-based
    restart: bool
    clip_radius: float
    noise_std: tuple[float, ...]  # per local node
    noise_variance: float
    estimator_noise_variance: float


class Diff2:
    """DIFF2-GD on the nodes held by ``comm`` (default: all ``len(datasets)`` nodes simulated in this process).

    ``datasets[k]`` is the ``(inputs, targets)`` of node ``comm.local_agents[k]``; ``loss_fn(params, inputs,
    targets)`` gives per-sample losses (see :func:`dpkit.distributed.module_loss`); ``params`` is the public
    starting point x_0 (a flat vector, the same on every rank). ``seed`` fixes every node's noise (the noise of node
    p in round r is the stream (seed, p, r), the same in a simulation and a multi-process run); ``seed=None`` draws
    the noise from the OS CSPRNG. Each :meth:`step` is one round; :attr:`params` is the current iterate.
    In a multi-process run every rank calls :meth:`step`, :meth:`run` and :meth:`evaluate` in the same order
    (they communicate).
    """

    def __init__(
        self,
        loss_fn: LossFn,
        params: torch.Tensor,
        datasets: Sequence[tuple[torch.Tensor, torch.Tensor]],
        config: Diff2Config,
        *,
        comm: Communicator | None = None,
        seed: int | None = None,
        chunk_size: int = 1024,
    ):
        if not isinstance(config, Diff2Config):
            raise TypeError(f"config must be a Diff2Config, got {type(config).__name__}")
        comm = SimulatedCommunicator(len(datasets)) if comm is None else comm
        if len(datasets) != len(comm.local_agents):
            raise ValueError(
                f"datasets must hold one (inputs, targets) pair per local node ({len(comm.local_agents)}), "
                f"got {len(datasets)}"
            )
        if params.dim() != 1 or not params.is_floating_point():
            raise ValueError(f"params must be a flat floating-point vector, got shape {tuple(params.shape)}")
        sizes = []
        for k, (x, y) in enumerate(datasets):
            if x.shape[0] < 1 or x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"datasets[{k}] must hold as many targets as inputs (at least one), got {x.shape[0]} and "
                    f"{y.shape[0]}"
                )
            sizes.append(x.shape[0])
        self.loss_fn = loss_fn
        self.config = config
        self.comm = comm
        self.seed = None if seed is None else int(seed)
        self.chunk_size = check_count("chunk_size", chunk_size, minimum=1)
        self.inputs = torch.cat([x for x, _ in datasets])
        self.targets = torch.cat([y for _, y in datasets])
        self.segments = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes)).to(params.device)
        self.local_sizes = torch.tensor(sizes, dtype=params.dtype, device=params.device)
        all_sizes = comm.all_gather(torch.tensor(sizes, dtype=torch.int64))  # node sizes are public
        self.node_sizes = tuple(int(n) for n in all_sizes)
        self.params = params.detach().clone()
        self.previous: torch.Tensor | None = None
        self.estimator = torch.zeros_like(self.params)
        self.round = 0
        self._estimator_noise_variance = 0.0

    # ------------------------------------------------------------------------------------------ one round
    def _noise_std(self, clip_radius: float) -> list[float]:
        z = self.config.noise_multiplier
        if self.config.trust == "local":
            return [z * 2.0 * clip_radius / float(n) for n in self.local_sizes]
        n_min = min(self.node_sizes)
        share = z * 2.0 * clip_radius / (n_min * math.sqrt(self.comm.num_agents))
        return [share] * len(self.comm.local_agents)

    def _noise_variance(self, clip_radius: float) -> float:
        """Per-coordinate variance of (1/P) sum_p N_p."""
        z, P = self.config.noise_multiplier, self.comm.num_agents
        if self.config.trust == "local":
            return sum((z * 2.0 * clip_radius / n) ** 2 for n in self.node_sizes) / P**2
        return (z * 2.0 * clip_radius / min(self.node_sizes)) ** 2 / P**2

    def step(self) -> RoundInfo:
        """Run one round; raises once ``config.rounds`` rounds have run (the privacy budget covers that many)."""
        cfg = self.config
        if self.round >= cfg.rounds:
            raise RuntimeError(f"all {cfg.rounds} rounds have run; the privacy guarantee covers no more")
        restart = self.round % cfg.restart_period == 0
        x = self.params
        if restart:
            clip = cfg.gradient_clip

            def rows_of(inp, tgt):
                return per_sample_gradients(self.loss_fn, x, inp, tgt)
        else:
            assert self.previous is not None
            prev = self.previous
            step_norm = float(torch.linalg.vector_norm(x - prev))
            clip = cfg.difference_clip * step_norm if math.isfinite(cfg.difference_clip) else math.inf

            def rows_of(inp, tgt):
                return per_sample_gradients(self.loss_fn, x, inp, tgt) - per_sample_gradients(
                    self.loss_fn, prev, inp, tgt
                )

        k = len(self.comm.local_agents)
        sums = clipped_segment_sums(
            rows_of, self.inputs, self.targets, self.segments, k, clip, chunk_size=self.chunk_size
        )
        messages = sums / self.local_sizes.unsqueeze(1)
        stds = self._noise_std(clip) if cfg.noise_multiplier > 0 else [0.0] * k
        for j, agent in enumerate(self.comm.local_agents):
            if stds[j] > 0:
                noise = standard_normal(x.numel(), x.dtype, self.seed, NOISE_STREAM, agent, self.round)
                messages[j].add_(noise.to(x.device), alpha=stds[j])
        increment = self.comm.mean(messages)
        variance = self._noise_variance(clip) if cfg.noise_multiplier > 0 else 0.0
        if restart:
            self.estimator = increment
            self._estimator_noise_variance = variance
        else:
            self.estimator = self.estimator + increment
            self._estimator_noise_variance += variance
        self.previous = x
        self.params = x - cfg.learning_rate * self.estimator
        self.round += 1
        return RoundInfo(self.round, restart, clip, tuple(stds), variance, self._estimator_noise_variance)

    def run(self, callback: Callable[[Diff2, RoundInfo], None] | None = None) -> torch.Tensor:
        """All remaining rounds (``callback(self, info)`` after each); returns the last iterate."""
        while self.round < self.config.rounds:
            info = self.step()
            if callback is not None:
                callback(self, info)
        return self.params

    # ------------------------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Everything a resumed run needs (the seed included: keep checkpoints as secret as the data)."""
        return {
            **run_identity(self.config, self.comm.local_agents, self.seed),
            "round": self.round,
            "params": self.params.clone(),
            "previous": None if self.previous is None else self.previous.clone(),
            "estimator": self.estimator.clone(),
            "estimator_noise_variance": self._estimator_noise_variance,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output of a run with the same configuration, nodes and seed."""
        check_same_run(state, self.config, self.comm.local_agents, self.seed, "nodes")
        rnd = checked_round(state, self.config.rounds)
        for key in ("params", "estimator") + (("previous",) if rnd > 0 else ()):
            check_state_tensor(state, key, self.params)
        variance = check_nonnegative("state['estimator_noise_variance']", state["estimator_noise_variance"])
        self.round = rnd
        self.params = state["params"].to(self.params).clone()
        self.estimator = state["estimator"].to(self.params).clone()
        self.previous = None if rnd == 0 else state["previous"].to(self.params).clone()
        self._estimator_noise_variance = variance

    # ------------------------------------------------------------------------------------------ monitoring
    def evaluate(self, params: torch.Tensor | None = None) -> tuple[float, float]:
        """``(f(x), ||grad f(x)||)`` of the global objective at ``params`` (default: the current iterate).

        Monitoring for experiments only: it reads the private data without noise and is not covered by the privacy
        guarantee, so do not release it.
        """
        x = self.params if params is None else params
        k = len(self.comm.local_agents)
        x_req = x.detach().clone().requires_grad_(True)
        losses = self.loss_fn(x_req, self.inputs, self.targets)
        per_node = torch.zeros(k, dtype=losses.dtype, device=losses.device).index_add_(0, self.segments, losses)
        per_node = per_node / self.local_sizes
        objective = per_node.sum() / self.comm.num_agents  # local part of (1/P) sum_p f_p
        (g,) = torch.autograd.grad(objective, x_req)
        local = torch.zeros((k, 1 + x.numel()), dtype=g.dtype, device=g.device)  # this process's part: first row
        local[0, 0] = per_node.detach().sum()
        local[0, 1:] = g.detach()
        total = self.comm.all_gather(local).sum(dim=0)
        return float(total[0]) / self.comm.num_agents, float(torch.linalg.vector_norm(total[1:]))
