"""End-to-end membership-inference audit of dpkit's private training (DP-SGD via :class:`PrivacyEngine`).

The game (several canaries per model; a heuristic, see :mod:`dpkit.audits.canaries`): a fixed base training set of
digits, plus ``num_canaries`` canaries (held-out digits with a wrong label, which a model can only fit by
memorising them). For each of ``num_models`` models each canary is included with probability 1/2; the model
(multinomial logistic regression) is trained with DP-SGD. Attacks, one score per (model, canary):

* ``loss``: the negative loss of the canary (global threshold test).
* ``lira``: an online likelihood-ratio attack with shadow models: the first ``num_shadow`` models act as
  shadows (their bits are used to fit, per canary, Gaussians to its IN and OUT losses); the score on each
  remaining (target) model is the log-likelihood ratio log N(loss; IN) - log N(loss; OUT).

Scores of the target models give an epsilon interval (:func:`dpkit.audits.scores.estimate_from_scores`); the
accountant's epsilon for one model's training (same delta) is the claim under audit. A sound audit's lower
bound never exceeds it (up to the confidence level); small noise shows leakage, strong noise little. An attack whose
test carries no evidence about epsilon (e.g. it guessed "non-member" for every evaluation sample) gets no estimate:
:attr:`MiaResult.no_evidence` says why (:mod:`dpkit.audits.evidence`).

The harness trains with dpkit and audits with :mod:`dpkit.audits`, so it sits above both, in the application
layer; ``dpkit mia-run`` (:mod:`dpkit.cli.estimate`) runs it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from dpkit.accountants.validation import check_count, check_nonnegative, check_positive
from dpkit.audits import EpsilonEstimate, InsufficientEvidenceError, canary_game, estimate_from_scores
from dpkit.audits._checks import check_alpha, check_audit_delta

__all__ = ["MiaConfig", "MiaResult", "run_mia"]

ATTACKS = ("loss", "lira")


@dataclasses.dataclass(frozen=True)
class MiaConfig:
    """Parameters of one harness run.

    The defaults are sized so the attacks have power: with 40 epochs on 100 base examples a model memorizes its
    mislabelled canaries, and at noise multiplier 0.3 the harness certifies epsilon > 1 while at 4.0 it reports
    less than 0.5 (tests/test_estimation_mia.py). Much smaller runs are sound but cannot tell the two apart.
    """

    noise_multiplier: float = 1.0
    max_grad_norm: float = 1.0
    epochs: int = 40
    batch_size: int = 32
    lr: float = 1.0
    base_size: int = 100
    num_canaries: int = 24
    num_models: int = 32
    num_shadow: int = 8
    delta: float = 1e-5
    alpha: float = 0.05
    method: str = "bayes"
    seed: int = 0

    def __post_init__(self):
        check_nonnegative("noise_multiplier", self.noise_multiplier)
        check_positive("max_grad_norm", self.max_grad_norm)
        check_positive("lr", self.lr)
        for name, minimum in (("epochs", 1), ("batch_size", 1), ("base_size", 1), ("num_canaries", 1)):
            check_count(name, getattr(self, name), minimum=minimum)
        check_count("num_shadow", self.num_shadow, minimum=2)
        check_count("num_models", self.num_models, minimum=self.num_shadow + 1)
        check_audit_delta("delta", self.delta)
        check_alpha("alpha", self.alpha)


@dataclasses.dataclass(frozen=True)
class MiaResult:
    """Accountant epsilon and one estimate per attack (``no_evidence``: the attacks without one, and why)."""

    config: MiaConfig
    accountant_epsilon: float
    estimates: tuple[tuple[str, EpsilonEstimate], ...]
    no_evidence: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": dataclasses.asdict(self.config),
            "accountant_epsilon": self.accountant_epsilon,
            "estimates": {name: e.to_dict() for name, e in self.estimates},
            "no_evidence": dict(self.no_evidence),
        }


def _data(cfg: MiaConfig):
    import torch

    from dpkit.datasets import load_digits

    train, test = load_digits(seed=0)
    check_count("base_size", cfg.base_size, minimum=1, maximum=len(train))  # before any training
    check_count("num_canaries", cfg.num_canaries, minimum=1, maximum=len(test))
    g = torch.Generator().manual_seed(cfg.seed)
    base_idx = torch.randperm(len(train), generator=g)[: cfg.base_size]
    xb, yb = train.tensors[0][base_idx].flatten(1), train.tensors[1][base_idx]
    can_idx = torch.randperm(len(test), generator=g)[: cfg.num_canaries]
    xc = test.tensors[0][can_idx].flatten(1)
    yc = (test.tensors[1][can_idx] + 1 + torch.randint(0, 9, (cfg.num_canaries,), generator=g)) % 10  # wrong
    return xb, yb, xc, yc


def run_mia(cfg: MiaConfig, progress: Callable[[int], None] | None = None) -> MiaResult:
    """Train ``cfg.num_models`` private models and audit them (see the module docstring)."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from dpkit.privacy_engine import PrivacyEngine

    xb, yb, xc, yc = _data(cfg)
    epsilons: list[float] = []

    def train(mask: np.ndarray, rng: np.random.Generator):
        seed = int(rng.integers(2**31))
        torch.manual_seed(seed)
        sel = torch.from_numpy(mask)
        x = torch.cat([xb, xc[sel]])
        y = torch.cat([yb, yc[sel]])
        model: nn.Module = nn.Linear(64, 10)
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr)
        engine = PrivacyEngine("rdp", seed=seed)
        loader = DataLoader(TensorDataset(x, y), batch_size=cfg.batch_size)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # noise 0 warns "NOT private": intended in experiments
            model, opt, loader = engine.make_private(
                model, opt, loader, noise_multiplier=cfg.noise_multiplier, max_grad_norm=cfg.max_grad_norm
            )
        for _ in range(cfg.epochs):
            for xs, ys in loader:
                if len(ys) == 0:
                    continue
                opt.zero_grad()
                nn.functional.cross_entropy(model(xs), ys).backward()
                opt.step()
        eps = engine.get_epsilon(cfg.delta) if cfg.noise_multiplier > 0 else math.inf
        epsilons.append(float(eps))
        return model

    def attack(model) -> np.ndarray:  # per-canary loss (the attack only sees the model)
        with torch.no_grad():
            return nn.functional.cross_entropy(model(xc), yc, reduction="none").numpy()

    game = canary_game(train, attack, cfg.num_canaries, cfg.num_models, seed=cfg.seed, progress=progress)
    k, m = cfg.num_models, cfg.num_canaries
    losses = game.scores.reshape(k, m)
    bits = game.is_member.reshape(k, m)
    s = cfg.num_shadow
    target_bits = bits[s:].ravel()
    scores = {"loss": -losses[s:].ravel(), "lira": _lira(losses[:s], bits[:s], losses[s:]).ravel()}
    estimates, no_evidence = [], []
    for name, sc in scores.items():
        try:
            est = estimate_from_scores(
                target_bits, sc, method=cfg.method, alpha=cfg.alpha, delta=cfg.delta, selection="holdout", seed=0
            )
        except InsufficientEvidenceError as err:
            no_evidence.append((name, str(err)))
        else:
            estimates.append((name, est))
    # every model has the same schedule, so the same accountant epsilon; report the largest to be safe
    return MiaResult(cfg, max(epsilons), tuple(estimates), tuple(no_evidence))


def _lira(shadow_loss: np.ndarray, shadow_bits: np.ndarray, target_loss: np.ndarray) -> np.ndarray:
    """Online LiRA on logit-scaled confidences: per canary Gaussian fits to IN / OUT shadow statistics."""

    def stat(loss):  # log(p / (1 - p)) of the canary label's probability, p = exp(-loss)
        p = np.clip(np.exp(-loss), 1e-12, 1 - 1e-12)
        return np.log(p) - np.log1p(-p)

    sh, tg = stat(shadow_loss), stat(target_loss)
    out = np.empty_like(tg)
    for j in range(sh.shape[1]):
        ins, outs = sh[shadow_bits[:, j], j], sh[~shadow_bits[:, j], j]
        pooled = np.std(sh[:, j]) + 1e-6
        mu_in = ins.mean() if ins.size else sh[:, j].mean() + pooled
        mu_out = outs.mean() if outs.size else sh[:, j].mean() - pooled
        sd_in = ins.std() + 1e-3 * pooled if ins.size > 1 else pooled
        sd_out = outs.std() + 1e-3 * pooled if outs.size > 1 else pooled
        x = tg[:, j]
        out[:, j] = (
            -0.5 * ((x - mu_in) / sd_in) ** 2 - np.log(sd_in) + 0.5 * ((x - mu_out) / sd_out) ** 2 + np.log(sd_out)
        )
    return out
