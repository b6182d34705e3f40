"""DiceSGD: DP-SGD whose clipping bias is fed back through a hidden, clipped error state.

Zhang, Bu, Wu, Hong, "Differentially Private SGD Without Clipping Bias: An Error-Feedback Approach", ICLR 2024
(arXiv 2311.14632), Algorithm 2. ``PrivacyEngine.make_private(..., max_grad_norm=C1, error_feedback_clip=C2)``
returns a :class:`DiceSGDOptimizer`. With B the expected batch size, z the noise multiplier and g_i example i's
gradient, one step is::

    v_t     = (1/B) sum_i clip(g_i, C1) + clip(e_t, C2)          the direction, before noise
    x_{t+1} = the wrapped optimizer's step on v_t + w_t,  w_t ~ N(0, (z C1 k / B)^2 I),  k = sqrt(1 + 2 C2 / C1)
    e_{t+1} = e_t + (1/B) sum_i g_i - v_t
            = (e_t - clip(e_t, C2)) + (1/B) sum_i (g_i - clip(g_i, C1))

with ``clip(u, C) = u * min(1, C / (||u|| + 1e-6))`` over all trainable parameters together (with
``clipping="per_layer"``, C1 is the clipping's overall sensitivity, the root of the sum of the squared per-layer
norms) and e_0 = 0 (step 0 is a DP-SGD step with the inflated noise). The state e is what clipping removed, not yet
given back; it is never released. The unclipped mean is not formed: the engine returns, from the same single
backward pass, the sum of ``(1 - c_i) g_i`` (what each example lost to clipping, ``ClippedSum.residual``); examples
with a NaN or inf gradient contribute zero to both sums. With ``torch.optim.SGD`` the wrapped step is the paper's
``x - lr (v + w)``; with ``torch.optim.Adam`` the released ``v_t + w_t`` enters Adam's moment estimates (the error
feedback sits in front of Adam, as in the authors' Adam runs); any other optimizer likewise receives ``v_t + w_t``
as its gradient.

**Why C2 >= C1.** Without noise, suppose the iterates settle at x*. Then e stops changing, so the unclipped mean
equals v: x* is a stationary point of the true (unclipped) loss, the clipping bias is gone. For that, the feedback
must cancel the clipped mean: ``clip(e*, C2) = -(1/B) sum_i clip(g_i(x*), C1)``, whose norm can be anything up to C1
(the mean of vectors of norm at most C1). ``clip(e, C2)`` reaches every such vector for every problem only if
C2 >= C1, so smaller values are refused. When it cannot, e grows without bound and x stops where the clipped mean
has norm C2. Example (1-D, f_i(x) = (x - a_i)^2 / 2, a = (0, 0, 0, 0, 10), full batch, lr 0.1, no noise, C1 = 1):
clipped GD stops at x = 0.25; DiceSGD with C2 = 1 or 3 reaches the true minimiser x = 2 with e -> -0.6 (the clipped
mean there is 0.6 <= C2); with C2 = 0.5 it stops at x = 0.875 and e drifts away linearly (about -2.25e4 after 20,000
steps).

**Privacy: the authors' claim, not a guarantee this toolkit can verify.** Each step records ``PoissonSampledEvent(q,
GaussianEvent(z))`` (the DP-SGD event of the noise multiplier z that the target epsilon, or the ``noise_multiplier``
given, calls for) while the noise actually added is inflated by ``k = dice_noise_inflation(C1, C2) = sqrt(1 + 2 C2 /
C1)``: dpkit's default, after the paper's algorithm-specific Renyi-DP analysis of the joint public/hidden process
(its privacy theorem, whose exact statement and constants dpkit could not check; its proof is reported to use the
asymptotic subsampled-Gaussian bound, not a tight accountant). The authors' public code
(github.com/564612540/DiceSGD) does not settle the factor either: one version draws two independent noises of std
z C1 and z C2 (a factor sqrt(1 + (C2 / C1)^2)), a later one draws 2 z C with C1 = C2 = C, and its Opacus-based
optimizer never feeds the error back (the stored error is written to a misspelt attribute). dpkit's accountants
check the DP-SGD part only. What they cannot check is the hidden state: e depends on every past batch and on
unclipped gradients, so the term ``clip(e_t, C2)`` of a released step can differ by up to 2 C2 between neighbouring
datasets even when the differing example is not in the batch. The argument this toolkit can verify, a per-step
sensitivity of C1 / B + 2 C2 on the averaged direction with no subsampling amplification, gives a far larger epsilon
(:func:`dicesgd_worst_case_event`). Two further cautions: the latest version of the authors' code applies C2 to the
*summed* error (so its feedback on the mean is at most C2 / B, B times smaller than the paper's rule implemented
here), and its README still lists the noise calibration as work to do. The factor is a plain function
passed to ``make_private(error_feedback_noise_inflation=...)``: replace it when a checked bound is available.
Neighbouring relation and unit: add/remove one training example.

Not implemented: the paper's "automatic" variant (Algorithm 4, normalisation instead of C1 and C2); its exact
update could not be pinned down from the sources available, so dpkit does not guess it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from numbers import Real
from typing import Any

import torch
from torch.optim import Optimizer

from dpkit.accountants import DpEvent, GaussianEvent, NonPrivateEvent, SelfComposedEvent
from dpkit.accountants.validation import check_count, check_nonnegative, check_positive
from dpkit.checkpoint import CheckpointError
from dpkit.grad_sample.clipping import NORM_EPS
from dpkit.grad_sample.engine import ClippedSum, flat_views
from dpkit.optimizer import DPOptimizer, check_noise_scale, state_without

# The key of the error state e in DiceSGDOptimizer.state_dict() (one tensor per trainable parameter).
ERROR_FEEDBACK_STATE = "error_feedback"

NoiseInflation = Callable[[float, float], float]


def dice_noise_inflation(max_grad_norm: float, error_feedback_clip: float) -> float:
    """``sqrt(1 + 2 C2 / C1)``: how much more noise DiceSGD adds than DP-SGD with the same noise multiplier.

    Noise std ``z C1 sqrt(1 + 2 C2 / C1)`` on the sum of clipped gradients, i.e. variance ``z^2 (C1^2 + 2 C1 C2)``,
    where z is DP-SGD's multiplier for the target: dpkit's default after the paper's privacy analysis (Zhang et al.,
    ICLR 2024, arXiv 2311.14632), which the authors' code versions do not agree on. Not verified by dpkit (see
    :mod:`dpkit.error_feedback`); pass another function of ``(C1, C2)`` to
    ``make_private(error_feedback_noise_inflation=...)`` to replace it.
    """
    c1 = check_positive("max_grad_norm", max_grad_norm)
    c2 = check_positive("error_feedback_clip", error_feedback_clip)
    return math.sqrt(1.0 + 2.0 * c2 / c1)


def check_error_feedback_clip(error_feedback_clip: object, max_grad_norm: float) -> float:
    """C2 in [C1, inf): the feedback clip must be at least the per-example clip (see the module docstring)."""
    c2 = check_positive("error_feedback_clip", error_feedback_clip)
    if c2 < max_grad_norm:
        raise ValueError(
            f"error_feedback_clip must be >= max_grad_norm (C2 >= C1, or the error feedback cannot cancel the "
            f"clipping bias and its state grows without bound), got error_feedback_clip={error_feedback_clip!r} < "
            f"max_grad_norm={max_grad_norm:g}"
        )
    return c2


def check_noise_inflation(name: str, value: object) -> float:
    """A noise inflation factor: a number in [1, inf) (DiceSGD releases everything DP-SGD releases and more, so it
    never needs less noise)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number in [1, inf), got {value!r} ({type(value).__name__})")
    if not 1 <= float(value) < math.inf:
        raise ValueError(f"{name} must be in [1, inf), got {value!r}")
    return float(value)


def noise_inflation_factor(inflation: object, max_grad_norm: float, error_feedback_clip: float) -> float:
    """``inflation(C1, C2)``, checked: ``inflation`` is a function whose value is in [1, inf)."""
    if not callable(inflation):
        raise TypeError(
            f"error_feedback_noise_inflation must be a function of (max_grad_norm, error_feedback_clip), got "
            f"{inflation!r}"
        )
    value = inflation(max_grad_norm, error_feedback_clip)
    return check_noise_inflation(f"error_feedback_noise_inflation({max_grad_norm:g}, {error_feedback_clip:g})", value)


def dicesgd_worst_case_event(
    noise_multiplier: float,
    max_grad_norm: float,
    error_feedback_clip: float,
    expected_batch_size: float,
    steps: int,
    noise_inflation: NoiseInflation = dice_noise_inflation,
) -> DpEvent:
    """A privacy event for ``steps`` DiceSGD steps that dpkit can verify (and that is far looser than the authors'
    claim): ``steps`` Gaussian mechanisms, no subsampling amplification, each with noise multiplier
    ``z C1 k / (C1 + 2 B C2)``.

    Why: revealing every batch's membership (a fair coin for the differing example in the world without it) can
    only help an adversary; given that and the past iterates, a step's direction ``v_t`` moves by at most C1 / B
    (the example's clipped gradient) plus 2 C2 (``clip(e_t, C2)`` is any vector of norm <= C2 in each world) between
    neighbouring datasets, against noise of std ``z C1 k / B``; steps compose adaptively.
    """
    z = check_nonnegative("noise_multiplier", noise_multiplier)
    c1 = check_positive("max_grad_norm", max_grad_norm)
    c2 = check_error_feedback_clip(error_feedback_clip, c1)
    b = check_positive("expected_batch_size", expected_batch_size)
    steps = check_count("steps", steps, minimum=1)
    k = noise_inflation_factor(noise_inflation, c1, c2)
    if z == 0:
        return NonPrivateEvent()
    return SelfComposedEvent(GaussianEvent(z * c1 * k / (c1 + 2.0 * b * c2)), steps)


def check_dice_noise(
    noise_multiplier: float, max_grad_norm: float, noise_inflation: float, expected_batch_size: float, params
) -> None:
    """The inflated noise std ``z C1 k / B`` fits the parameters' dtype (:func:`~dpkit.optimizer.check_noise_scale`)."""
    z = check_nonnegative("noise_multiplier", noise_multiplier)
    k = check_noise_inflation("noise_inflation", noise_inflation)
    check_noise_scale(z * k, max_grad_norm, check_positive("expected_batch_size", expected_batch_size), params)


class DiceSGDOptimizer(DPOptimizer):
    """DiceSGD around ``optimizer`` (see the module docstring): DP-SGD plus the hidden error state ``error``.

    ``error_feedback_clip`` is C2 (>= the clipping's sensitivity C1); ``noise_inflation`` the factor k >= 1 by which
    the noise std exceeds DP-SGD's ``noise_multiplier * C1`` (the step's event is DP-SGD's with ``noise_multiplier``).
    ``error`` holds e, one tensor per trainable parameter (views of one flat buffer when they share dtype and
    device); it is saved in :meth:`state_dict` under ``"error_feedback"``.
    """

    def __init__(self, optimizer: Optimizer, *, error_feedback_clip: float, noise_inflation: float, **kwargs: Any):
        clipping = kwargs["clipping"]
        c2 = check_error_feedback_clip(error_feedback_clip, clipping.sensitivity)
        check_dice_noise(
            kwargs["noise_multiplier"],
            clipping.sensitivity,
            noise_inflation,
            kwargs["expected_batch_size"],
            kwargs["engine"].params,
        )
        super().__init__(optimizer, **kwargs)
        self.error_feedback_clip = c2
        self.noise_inflation = float(noise_inflation)
        self._error_flat, self.error = flat_views(self.params, None)
        self._sum_weight = 1.0  # the weight of this step's clipped and residual sums
        self._keep = 1.0  # this step's clip factor of e: clip(e, C2) = keep * e

    def __repr__(self) -> str:
        return (
            f"DiceSGDOptimizer({type(self.original_optimizer).__name__}, noise_multiplier={self.noise_multiplier:g}, "
            f"noise_inflation={self.noise_inflation:g}, clipping={self.clipping!r}, "
            f"error_feedback_clip={self.error_feedback_clip:g}, expected_batch_size={self.expected_batch_size:g})"
        )

    # ----------------------------------------------------------------- the step
    def _noise_std(self) -> float:
        return super()._noise_std() * self.noise_inflation

    def _clipped_sum(self, out: torch.Tensor | None = None, weight: float = 1.0) -> ClippedSum:
        self._sum_weight = weight
        return self.engine.clipped_sum(self.clipping, out=out, weight=weight, residual=True)

    def error_norm(self) -> float:
        """``||e||`` over all trainable parameters together."""
        if self._error_flat is not None:
            return float(torch.linalg.vector_norm(self._error_flat))
        return math.sqrt(sum(float(torch.linalg.vector_norm(e)) ** 2 for e in self.error))

    def _noisy_clipped_mean(self) -> tuple[ClippedSum, list[torch.Tensor]]:
        clipped, grads = super()._noisy_clipped_mean()  # (clipped sum + noise) / B
        self._keep = min(1.0, self.error_feedback_clip / (self.error_norm() + NORM_EPS))  # clip(e, C2) = keep * e
        for g, e in zip(grads, self.error, strict=True):
            g.add_(e, alpha=self._keep)  # released: clipped mean + clip(e, C2) + noise
        return clipped, grads

    def _after_step(self, clipped: ClippedSum) -> None:
        """e <- e - clip(e, C2) + mean of what clipping removed (once the step is accepted: a refused step leaves
        e as it was)."""
        assert clipped.residual is not None
        to_mean = (1.0 / self.expected_batch_size) / self._sum_weight  # the residual came weighted by _sum_weight
        for e, r in zip(self.error, clipped.residual, strict=True):
            e.mul_(1.0 - self._keep).add_(r, alpha=to_mean)

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state[ERROR_FEEDBACK_STATE] = [e.detach().clone() for e in self.error]
        return state

    def check_state_dict(self, state_dict: Any) -> None:
        if not isinstance(state_dict, Mapping) or ERROR_FEEDBACK_STATE not in state_dict:
            raise CheckpointError(
                f"optimizer state lacks {ERROR_FEEDBACK_STATE!r} (DiceSGD's error state): it was not saved from a "
                "DiceSGD optimizer; save the optimizer make_private returned"
            )
        super().check_state_dict(state_without(state_dict, ERROR_FEEDBACK_STATE))
        saved = state_dict[ERROR_FEEDBACK_STATE]
        if not isinstance(saved, list | tuple) or len(saved) != len(self.error):
            got = len(saved) if isinstance(saved, list | tuple) else type(saved).__name__
            raise CheckpointError(
                f"optimizer state {ERROR_FEEDBACK_STATE!r} must hold {len(self.error)} tensors (one per trainable "
                f"parameter), got {got}"
            )
        for name, mine, theirs in zip(self.engine.param_names, self.error, saved, strict=True):
            if not isinstance(theirs, torch.Tensor) or theirs.shape != mine.shape or not theirs.is_floating_point():
                got = f"{theirs.dtype} {tuple(theirs.shape)}" if isinstance(theirs, torch.Tensor) else repr(theirs)
                raise CheckpointError(
                    f"optimizer state {ERROR_FEEDBACK_STATE!r} for {name!r} must be a floating tensor of shape "
                    f"{tuple(mine.shape)}, got {got}"
                )
            if not bool(torch.isfinite(theirs).all()):
                raise CheckpointError(f"optimizer state {ERROR_FEEDBACK_STATE!r} for {name!r} has NaN or inf values")

    def _assign_state_dict(self, state_dict: dict[str, Any]) -> None:
        super()._assign_state_dict(state_without(state_dict, ERROR_FEEDBACK_STATE))
        with torch.no_grad():
            for e, saved in zip(self.error, state_dict[ERROR_FEEDBACK_STATE], strict=True):
                e.copy_(saved)


__all__ = [
    "DiceSGDOptimizer",
    "ERROR_FEEDBACK_STATE",
    "NoiseInflation",
    "check_dice_noise",
    "check_error_feedback_clip",
    "check_noise_inflation",
    "dice_noise_inflation",
    "dicesgd_worst_case_event",
    "noise_inflation_factor",
]
