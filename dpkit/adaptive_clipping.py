"""Adaptive clipping: the clipping norm follows a target quantile of the per-example gradient norms, estimated with
differential privacy as training goes.

Andrew, Thakkar, McMahan, Ramaswamy, "Differentially Private Learning with Adaptive Clipping", NeurIPS 2021
(arXiv 1905.03871). ``PrivacyEngine.make_private(..., max_grad_norm="adaptive")`` (or
``max_grad_norm=AdaptiveClipping(target_quantile=0.5, ...)``) returns an :class:`AdaptiveClippingOptimizer`. With B
the expected batch size, gamma the target quantile, eta the learning rate and C_t the current norm, each step:

1. clips every example's gradient to C_t (flat clipping) and adds noise of std ``sigma_grad * C_t`` to their sum,
   as DP-SGD does;
2. releases the centred count ``s_t = sum_i (1[g_i unclipped] - 1/2) + N(0, sigma_b^2)`` over the batch (unclipped:
   ``||g_i|| + 1e-6 <= C_t``, its clip factor is 1, as Opacus counts; an example whose gradient is NaN or inf
   counts 0) and estimates the unclipped fraction
   ``b_t = clamp(1/2 + s_t / B, 0, 1)``;
3. updates the norm geometrically: ``C_{t+1} = C_t * exp(-eta (b_t - gamma))`` (kept in [1e-12, 1e12]).

**Privacy.** Under add/remove-one neighbouring, one example moves the gradient sum by at most C_t and the centred
count by at most 1/2 (hence the centring: the uncentred count moves by 1). The two Gaussian releases together are one
Gaussian mechanism on the joint vector, with noise multiplier sigma given by (the paper's Theorem 1)::

    sigma^-2 = sigma_grad^-2 + (2 sigma_b)^-2,  i.e.  sigma_grad = (sigma^-2 - (2 sigma_b)^-2)^(-1/2)

dpkit calibrates sigma as DP-SGD's noise multiplier (from ``noise_multiplier`` or the target epsilon), draws the
gradient noise with the larger ``sigma_grad`` (this needs ``2 sigma_b > sigma``) and records
``PoissonSampledEvent(q, GaussianEvent(sigma))`` per step: the combined mechanism, so ``get_epsilon`` and the budget
cover both releases. (Opacus' ``AdaClipDPOptimizer`` computes ``sigma_grad`` the same way; its releases before 1.6
charged the accountant ``sigma_grad`` instead of sigma, under-reporting epsilon, and it releases the uncentred count,
whose add/remove sensitivity is 1 while the split formula assumes 1/2.) The norm C_t depends on the data only
through earlier released counts, so steps compose adaptively.
Guarantee: (epsilon, delta)-DP for one training example, add/remove-one, Poisson subsampled Gaussian accounting.

Defaults are the paper's recommendations: gamma = 0.5 (the median), eta = 0.2, sigma_b = B / 20; the initial norm
0.1 is the starting value of the paper's experiments.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.optim import Optimizer

from dpkit.accountants.validation import check_nonnegative, check_positive, check_probability
from dpkit.checkpoint import CheckpointError
from dpkit.grad_sample.clipping import NORM_EPS, FlatClipping
from dpkit.grad_sample.engine import ClippedSum
from dpkit.noise import secure_standard_normal
from dpkit.optimizer import DPOptimizer, check_noise_scale, state_without
from dpkit.seeding import COUNT_NOISE_STREAM, derive_seed

# The key of the current clipping norm in AdaptiveClippingOptimizer.state_dict().
ADAPTIVE_CLIPPING_STATE = "adaptive_clipping"
ADAPTIVE = "adaptive"  # max_grad_norm="adaptive": AdaptiveClipping() with the paper's defaults
NORM_RANGE = (1e-12, 1e12)  # the norm is kept in this range (a float that neither vanishes nor overflows)


@dataclasses.dataclass(frozen=True)
class AdaptiveClipping:
    """Settings of adaptive clipping (pass as ``max_grad_norm``; the paper's defaults).

    ``target_quantile``: the fraction of examples left unclipped, in (0, 1); ``learning_rate``: eta of the
    geometric update, > 0; ``initial_norm``: C_0 > 0; ``count_noise``: sigma_b, the std of the noise on the count
    (>= 0; None: expected batch size / 20).
    """

    target_quantile: float = 0.5
    learning_rate: float = 0.2
    initial_norm: float = 0.1
    count_noise: float | None = None

    def __post_init__(self) -> None:
        check_probability("target_quantile", self.target_quantile, open_low=True, open_high=True)
        check_positive("learning_rate", self.learning_rate)
        check_positive("initial_norm", self.initial_norm)
        if self.count_noise is not None:
            check_nonnegative("count_noise", self.count_noise)

    def count_noise_for(self, expected_batch_size: float) -> float:
        """sigma_b for batches of ``expected_batch_size`` examples."""
        return expected_batch_size / 20.0 if self.count_noise is None else float(self.count_noise)

    def gradient_noise(
        self, noise_multiplier: float, expected_batch_size: float, params: Sequence[torch.Tensor]
    ) -> float:
        """sigma_grad for the combined multiplier ``noise_multiplier`` (checked: 2 sigma_b > sigma, and the noise of
        any norm the clipping may reach fits the parameters' dtype)."""
        sigma_grad = gradient_noise_multiplier(noise_multiplier, self.count_noise_for(expected_batch_size))
        check_noise_scale(sigma_grad, NORM_RANGE[1], expected_batch_size, params)
        return sigma_grad


def adaptive_clipping(max_grad_norm: object) -> AdaptiveClipping | None:
    """The adaptive-clipping settings ``max_grad_norm`` asks for (``"adaptive"`` or an :class:`AdaptiveClipping`),
    or None for a fixed norm."""
    if isinstance(max_grad_norm, AdaptiveClipping):
        return max_grad_norm
    if isinstance(max_grad_norm, str):
        if max_grad_norm != ADAPTIVE:
            raise ValueError(
                f"max_grad_norm must be a number > 0, one per parameter tensor, {ADAPTIVE!r} or an "
                f"AdaptiveClipping, got {max_grad_norm!r}"
            )
        return AdaptiveClipping()
    return None


def gradient_noise_multiplier(noise_multiplier: float, count_noise: float) -> float:
    """sigma_grad such that gradient noise sigma_grad and count noise sigma_b together are a Gaussian mechanism of
    multiplier sigma: ``(sigma^-2 - (2 sigma_b)^-2)^(-1/2)`` (0 for sigma = 0: no privacy). Needs 2 sigma_b > sigma."""
    sigma = check_nonnegative("noise_multiplier", noise_multiplier)
    sigma_b = check_nonnegative("count_noise", count_noise)
    if sigma == 0:
        return 0.0
    if not 2 * sigma_b > sigma:
        raise ValueError(
            f"count_noise must be > noise_multiplier / 2 = {sigma / 2:g} (the count's share of the privacy budget, "
            f"sigma^-2 = sigma_grad^-2 + (2 count_noise)^-2, must leave some for the gradients), got "
            f"count_noise={count_noise!r}"
        )
    return 1.0 / math.sqrt(sigma**-2 - (2.0 * sigma_b) ** -2)


class AdaptiveClippingOptimizer(DPOptimizer):
    """DP-SGD whose clipping norm tracks a quantile of the per-example gradient norms (see the module docstring).

    ``noise_multiplier`` is the combined sigma the accountant is charged; the gradient noise uses
    :attr:`gradient_noise_multiplier`. The current norm is :attr:`max_grad_norm`; the last privatized unclipped
    fraction :attr:`unclipped_fraction`. Both are saved in :meth:`state_dict` under ``"adaptive_clipping"``.
    """

    def __init__(self, optimizer: Optimizer, *, adaptive: AdaptiveClipping, **kwargs: Any):
        if not isinstance(adaptive, AdaptiveClipping):
            raise TypeError(f"adaptive must be an AdaptiveClipping, got {adaptive!r}")
        if not isinstance(kwargs["clipping"], FlatClipping):
            raise ValueError(f"adaptive clipping needs flat clipping (one norm), got {kwargs['clipping']!r}")
        batch = check_positive("expected_batch_size", kwargs["expected_batch_size"])
        sigma_grad = adaptive.gradient_noise(kwargs["noise_multiplier"], batch, kwargs["engine"].params)
        super().__init__(optimizer, **kwargs)
        self.adaptive = adaptive
        self.count_noise = adaptive.count_noise_for(batch)
        self.gradient_noise_multiplier = sigma_grad
        self.unclipped_fraction: float | None = None

    def __repr__(self) -> str:
        return (
            f"AdaptiveClippingOptimizer({type(self.original_optimizer).__name__}, "
            f"noise_multiplier={self.noise_multiplier:g} (gradients {self.gradient_noise_multiplier:g}, count "
            f"{self.count_noise:g}), max_grad_norm={self.max_grad_norm:g}, {self.adaptive!r})"
        )

    @property
    def max_grad_norm(self) -> float:
        """The current clipping norm C_t."""
        return self.clipping.sensitivity

    def _set_norm(self, norm: float) -> None:
        self.clipping = FlatClipping(min(max(norm, NORM_RANGE[0]), NORM_RANGE[1]))

    # ----------------------------------------------------------------- the step
    def _noise_std(self) -> float:
        return self.gradient_noise_multiplier * self.clipping.sensitivity

    def _count_noise_draw(self) -> float:
        """A standard normal for this step's count: the OS CSPRNG with secure noise, else a function of (seed,
        step) on a stream of its own (independent of the gradient noise; a resumed run draws the same value)."""
        if self.noise.secure:
            return float(secure_standard_normal(1)[0])
        assert self.noise.seed is not None
        rng = np.random.default_rng(derive_seed(self.noise.seed, COUNT_NOISE_STREAM, self.steps_taken))
        return float(rng.standard_normal())

    def _after_step(self, clipped: ClippedSum) -> None:
        norm = self.max_grad_norm
        norms = clipped.norms
        finite = torch.isfinite(norms)
        centred = float(torch.where(finite, (norms + NORM_EPS <= norm).double() - 0.5, 0.0).sum())
        noisy = centred + self.count_noise * self._count_noise_draw()
        fraction = min(1.0, max(0.0, 0.5 + noisy / self.expected_batch_size))
        self.unclipped_fraction = fraction
        self._set_norm(norm * math.exp(-self.adaptive.learning_rate * (fraction - self.adaptive.target_quantile)))

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state[ADAPTIVE_CLIPPING_STATE] = {
            "max_grad_norm": self.max_grad_norm,
            "unclipped_fraction": self.unclipped_fraction,
        }
        return state

    def check_state_dict(self, state_dict: Any) -> None:
        saved = state_dict.get(ADAPTIVE_CLIPPING_STATE) if isinstance(state_dict, Mapping) else None
        if not isinstance(saved, Mapping) or set(saved) != {"max_grad_norm", "unclipped_fraction"}:
            raise CheckpointError(
                f"optimizer state must have {ADAPTIVE_CLIPPING_STATE!r} = {{'max_grad_norm': ..., "
                f"'unclipped_fraction': ...}} (adaptive clipping's state; save the optimizer make_private returned), "
                f"got {saved!r}"
            )
        super().check_state_dict(state_without(state_dict, ADAPTIVE_CLIPPING_STATE))
        norm = check_positive(f"{ADAPTIVE_CLIPPING_STATE}.max_grad_norm", saved["max_grad_norm"])
        if not NORM_RANGE[0] <= norm <= NORM_RANGE[1]:
            raise CheckpointError(
                f"{ADAPTIVE_CLIPPING_STATE}.max_grad_norm must be in [{NORM_RANGE[0]:g}, {NORM_RANGE[1]:g}], got "
                f"{norm!r}"
            )
        if saved["unclipped_fraction"] is not None:
            check_probability(
                f"{ADAPTIVE_CLIPPING_STATE}.unclipped_fraction", saved["unclipped_fraction"], open_low=False
            )

    def _assign_state_dict(self, state_dict: dict[str, Any]) -> None:
        super()._assign_state_dict(state_without(state_dict, ADAPTIVE_CLIPPING_STATE))
        saved = state_dict[ADAPTIVE_CLIPPING_STATE]
        self._set_norm(float(saved["max_grad_norm"]))
        fraction = saved["unclipped_fraction"]
        self.unclipped_fraction = None if fraction is None else float(fraction)


__all__ = [
    "ADAPTIVE",
    "ADAPTIVE_CLIPPING_STATE",
    "AdaptiveClipping",
    "AdaptiveClippingOptimizer",
    "NORM_RANGE",
    "adaptive_clipping",
    "gradient_noise_multiplier",
]
