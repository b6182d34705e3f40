"""The DP optimizer: wraps any ``torch.optim.Optimizer`` and turns its step into a DP-SGD step.

``step()`` on one logical batch:

1. asks the privacy ledger whether one more step fits the budget (``BudgetExceededError`` otherwise, before
   anything is computed or changed);
2. gets the sum of clipped per-example gradients from the grad-sample engine (physical chunks handled there);
3. adds Gaussian noise of std ``noise_multiplier * sensitivity`` (sensitivity = max_grad_norm for flat
   clipping), drawn in one call into one flat buffer that then receives the clipped sums;
4. divides by the expected batch size (q * N under Poisson sampling, a constant: dividing by the realized
   batch size would leak it; folded into the noise's std and the clip factors, so no extra pass) and writes
   the result to ``p.grad``;
5. records the step's event (``PoissonSampledEvent(q, GaussianEvent(sigma))``) in the ledger, then runs the
   wrapped optimizer's step.

Empty batches are valid steps (noise only). ``zero_grad()`` clears parameter gradients and the engine's
record.

Where the gradients are: between ``loss.backward()`` and ``step()`` the parameters' ``.grad`` are ``None`` (the
engine holds what it needs to form each example's gradient; they are formed, clipped and summed at the step), so
``torch.nn.utils.clip_grad_norm_`` there finds no gradient and returns 0: it is not needed (per-example clipping to
``max_grad_norm`` is what DP-SGD does). After ``step()`` each ``p.grad`` holds the gradient the wrapped optimizer
applied: the clipped, noised sum divided by the expected batch size (views of the one flat buffer the step forms;
no copy), until the next ``zero_grad()``.

Non-finite examples: an example whose per-example gradient (or its norm) is NaN or inf contributes exactly zero
to the step (its rows are removed before the sums, the step is the step of the batch without it); the step then
warns with :class:`NonFiniteGradientWarning` (filter it, or turn it into an error that refuses the step before
anything changes, with ``warnings.simplefilter("error", NonFiniteGradientWarning)``) and counts those examples in
``nonfinite_examples``. The count is a statistic of the batch, not a private release: use it for debugging.

The wrapped optimizer refuses ``step()`` while it is wrapped (it would apply gradients that were never clipped or
noised, or none at all): step the ``DPOptimizer``.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import torch
from torch.optim import Optimizer

from dpkit.accountants import DpEvent, GaussianEvent, NonPrivateEvent, PoissonSampledEvent
from dpkit.accountants.validation import check_nonnegative, check_positive, check_probability
from dpkit.checkpoint import check_optimizer_state
from dpkit.grad_sample.clipping import ClippingPolicy
from dpkit.grad_sample.engine import ClippedSum, GradSampleEngine
from dpkit.noise import GaussianNoise


class NonFiniteGradientWarning(UserWarning):
    """Some examples of a step had a NaN or inf gradient and were left out of it (they contributed zero)."""


class StepLedger(Protocol):
    """Where the optimizer checks and records each step's privacy event (the PrivacyEngine)."""

    def check_step(self, event: DpEvent) -> None: ...

    def record_step(self, event: DpEvent) -> None: ...


class DPOptimizer(Optimizer):
    """DP-SGD step around ``optimizer`` (shares its ``param_groups``, ``state`` and ``defaults``)."""

    def __init__(
        self,
        optimizer: Optimizer,
        *,
        engine: GradSampleEngine,
        clipping: ClippingPolicy,
        noise_multiplier: float,
        expected_batch_size: float,
        sample_rate: float,
        noise: GaussianNoise,
        ledger: StepLedger | None = None,
    ):
        if isinstance(optimizer, DPOptimizer) or not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a plain torch.optim.Optimizer, got {type(optimizer).__name__}")
        expected_batch_size = check_positive("expected_batch_size", expected_batch_size)
        sample_rate = check_probability("sample_rate", sample_rate)
        noise_multiplier = check_nonnegative("noise_multiplier", noise_multiplier)
        check_noise_scale(noise_multiplier, clipping.sensitivity, expected_batch_size, engine.params)
        self.original_optimizer = optimizer
        self.engine = engine
        self.clipping = clipping
        self.noise_multiplier = noise_multiplier
        self.expected_batch_size = expected_batch_size
        self.sample_rate = sample_rate
        self.noise = noise
        self.ledger = ledger
        self.steps_taken = 0
        self.nonfinite_examples = 0  # examples left out of the steps taken (NaN or inf gradient)
        self.last_clipped: ClippedSum | None = None  # diagnostics of the last step (norms before clipping)
        self._written: dict[int, tuple[torch.Tensor, int]] = {}
        self._stepping_wrapped = False
        self._refuse_handle: Any = optimizer.register_step_pre_hook(self._refuse_wrapped_step)
        # What torch.optim.Optimizer.__init__ would set and hooks/schedulers may touch.
        self._optimizer_step_pre_hooks = OrderedDict()
        self._optimizer_step_post_hooks = OrderedDict()
        self._optimizer_state_dict_pre_hooks = OrderedDict()
        self._optimizer_state_dict_post_hooks = OrderedDict()
        self._optimizer_load_state_dict_pre_hooks = OrderedDict()
        self._optimizer_load_state_dict_post_hooks = OrderedDict()

    def _refuse_wrapped_step(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        """Step pre-hook on the wrapped optimizer: only this DP optimizer may step it."""
        if not self._stepping_wrapped:
            raise RuntimeError(
                f"this {type(optimizer).__name__} was made private by make_private: call step() on the optimizer "
                f"make_private returned ({self!r}); stepping this one would apply gradients that were never "
                "clipped or noised (or none at all)"
            )

    def release(self) -> None:
        """Let the wrapped optimizer step on its own again (``PrivacyEngine.detach`` calls it)."""
        self._refuse_handle.remove()

    # ----------------------------------------------------------------- delegation
    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.original_optimizer.param_groups

    @param_groups.setter
    def param_groups(self, value) -> None:
        self.original_optimizer.param_groups = value

    @property
    def state(self):
        return self.original_optimizer.state

    @state.setter
    def state(self, value) -> None:
        self.original_optimizer.state = value

    @property
    def defaults(self) -> dict[str, Any]:
        return self.original_optimizer.defaults

    @defaults.setter
    def defaults(self, value) -> None:
        self.original_optimizer.defaults = value

    def state_dict(self) -> dict[str, Any]:
        return self.original_optimizer.state_dict()

    def check_state_dict(self, state_dict: Any) -> None:
        """Refuse (with a clear error) a state :meth:`load_state_dict` could not load; changes nothing."""
        check_optimizer_state(self.original_optimizer, state_dict)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """The wrapped optimizer's state, checked first (parameter groups and their sizes): a refused state changes
        nothing."""
        self.check_state_dict(state_dict)
        self._assign_state_dict(state_dict)

    def _assign_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Assign a state :meth:`check_state_dict` accepted (a subclass with state of its own extends it)."""
        self.original_optimizer.load_state_dict(state_dict)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        raise RuntimeError("parameters cannot be added to a DP optimizer after make_private")

    def __repr__(self) -> str:
        return (
            f"DPOptimizer({type(self.original_optimizer).__name__}, "
            f"noise_multiplier={self.noise_multiplier:g}, "
            f"clipping={self.clipping!r}, expected_batch_size={self.expected_batch_size:g})"
        )

    # ----------------------------------------------------------------- DP step
    @property
    def params(self) -> list[torch.nn.Parameter]:
        return self.engine.params

    @property
    def step_event(self) -> DpEvent:
        if self.noise_multiplier == 0:
            return NonPrivateEvent()
        return PoissonSampledEvent(self.sample_rate, GaussianEvent(self.noise_multiplier))

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None
        self._written.clear()
        self.original_optimizer.zero_grad(set_to_none=set_to_none)
        self.engine.clear()

    def _check_foreign_grads(self) -> None:
        """Parameters must get gradients only from the engine (else they would bypass clipping)."""
        for name, p in zip(self.engine.param_names, self.params, strict=True):
            if p.grad is None:
                continue
            mine = self._written.get(id(p))
            if mine is None or mine[0] is not p.grad or mine[1] != p.grad._version:
                raise RuntimeError(
                    f"parameter {name!r} received a gradient outside the per-sample engine (it would bypass "
                    "clipping): compute the loss from the outputs of the module passed to make_private (not "
                    "of a "
                    "submodule or a copy) and do not write to .grad yourself"
                )

    def _flat_buffer(self) -> torch.Tensor | None:
        params = self.params
        first = params[0]
        if any(p.dtype != first.dtype or p.device != first.device for p in params):
            return None
        return torch.empty(sum(p.numel() for p in params), dtype=first.dtype, device=first.device)

    def pre_step(self) -> None:
        """Everything of a DP step except the wrapped optimizer's update.

        Subclasses change one stage by overriding its method: :meth:`_noise_std` (how much noise),
        :meth:`_fill_noise` / :meth:`_draw_noise` (which noise: independent or correlated across steps),
        :meth:`_noisy_clipped_mean` (how the update direction is formed), :meth:`_clipped_sum` (what is asked of the
        engine), :meth:`_after_step` (state updated after a step, e.g. a clipping norm), and :attr:`step_event` (what
        the step costs in privacy); a subclass with state of its own extends :meth:`state_dict`,
        :meth:`check_state_dict` and :meth:`_assign_state_dict` (checkpoints go through them).
        """
        event = self.step_event
        if self.ledger is not None:
            self.ledger.check_step(event)
        self._check_foreign_grads()
        clipped, grads = self._noisy_clipped_mean()
        if clipped.nonfinite:  # before anything changes: an error filter refuses the step
            warn_nonfinite(clipped.nonfinite, clipped.batch_size, self.steps_taken)
        self._written.clear()
        for p, g in zip(self.params, grads, strict=True):
            p.grad = g
            self._written[id(p)] = (g, g._version)
        self.last_clipped = clipped
        self._after_step(clipped)
        if self.ledger is not None:
            self.ledger.record_step(event)
        self.steps_taken += 1
        self.nonfinite_examples += clipped.nonfinite
        self.engine.clear()

    def _noise_std(self) -> float:
        """Std of the Gaussian noise on the clipped sum (before the division by the expected batch size)."""
        return self.noise_multiplier * self.clipping.sensitivity

    def _fill_noise(self, buf: torch.Tensor, std: float) -> None:
        """Write this step's noise of standard deviation ``std`` into the flat buffer ``buf``."""
        self.noise.fill_(buf, std, self.steps_taken)

    def _draw_noise(self, grads: Sequence[torch.Tensor], std: float) -> list[torch.Tensor]:
        """This step's noise of standard deviation ``std``, one tensor per gradient (mixed dtypes or devices)."""
        return self.noise.draw(grads, std, self.steps_taken)

    def _noisy_clipped_mean(self) -> tuple[ClippedSum, list[torch.Tensor]]:
        """(the engine's clipped sum, the gradients to apply): (sum of clipped gradients + noise) / B."""
        std = self._noise_std()
        scale = 1.0 / self.expected_batch_size
        buf = self._flat_buffer()
        if buf is not None:
            # One flat buffer: the noise (already divided by the expected batch size: std / B) is drawn into it
            # in place in one call, the engine adds the clipped sums weighted by 1 / B; the parameters' gradients
            # are views of it.
            if std > 0:
                self._fill_noise(buf, std * scale)
            else:
                buf.zero_()
            clipped = self._clipped_sum(out=buf, weight=scale)
            return clipped, list(clipped.grads)
        # parameters of several dtypes / devices
        clipped = self._clipped_sum()
        grads = list(clipped.grads)
        if std > 0:
            noise = self._draw_noise(grads, std)
            grads = [g.add_(z) for g, z in zip(grads, noise, strict=True)]
        for g in grads:
            g.div_(self.expected_batch_size)
        return clipped, grads

    def _clipped_sum(self, out: torch.Tensor | None = None, weight: float = 1.0) -> ClippedSum:
        """The engine's sum of clipped per-example gradients times ``weight`` (into ``out`` if given); a subclass
        that needs more of the engine (e.g. ``residual=True``) asks for it here."""
        return self.engine.clipped_sum(self.clipping, out=out, weight=weight)

    def _after_step(self, clipped: ClippedSum) -> None:
        """Called once a step's gradients are formed (before it is recorded); nothing to do for DP-SGD."""

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        if closure is not None and not callable(closure):
            raise TypeError(f"closure must be None or a callable returning the loss, got {closure!r}")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.pre_step()
        self._stepping_wrapped = True
        try:
            self.original_optimizer.step()
        finally:
            self._stepping_wrapped = False
        # The wrapped step may legitimately touch .grad in place: remember the versions it left.
        self._written = {i: (g, g._version) for i, (g, _) in self._written.items()}
        return loss


def state_without(state_dict: Mapping[str, Any], key: str) -> dict[str, Any]:
    """``state_dict`` without a subclass's own ``key`` (what the wrapped optimizer's state dict holds)."""
    return {k: v for k, v in state_dict.items() if k != key}


def check_noise_scale(
    noise_multiplier: float, sensitivity: float, expected_batch_size: float, params: Sequence[torch.Tensor]
) -> None:
    """The noise std of a gradient coordinate, ``noise_multiplier * sensitivity / expected_batch_size``, times 40
    (no draw exceeds 40 standard deviations) must be finite in every parameter's dtype: else the step would write
    inf into the parameters without a word."""
    std = noise_multiplier * sensitivity / expected_batch_size
    limit = min(torch.finfo(p.dtype).max for p in params) / 40
    if not std <= limit:
        raise ValueError(
            f"noise_multiplier * max_grad_norm / expected batch size must be at most {limit:.3g} (the largest noise "
            f"std the parameters' dtype holds), got {noise_multiplier:g} * {sensitivity:g} / {expected_batch_size:g}"
        )


def warn_no_noise(stacklevel: int = 3) -> None:
    """Warn that ``noise_multiplier=0`` is not private (``stacklevel`` as in ``warnings.warn``)."""
    warnings.warn(
        "noise_multiplier=0: training is NOT private (epsilon is infinite); use it for debugging only",
        UserWarning,
        stacklevel=stacklevel,
    )


def warn_nonfinite(count: int, batch_size: int, step: int, stacklevel: int = 5) -> None:
    """Warn that ``count`` of ``batch_size`` examples of step ``step`` were left out (NaN or inf gradient);
    ``stacklevel`` 5 names the line that called ``DPOptimizer.step`` (through ``pre_step`` and ``torch.no_grad``)."""
    warnings.warn(
        f"{count} of {batch_size} examples of step {step} had a NaN or inf gradient and contributed nothing to the "
        "step (the step is that of the batch without them); look for non-finite inputs or a loss that overflows",
        NonFiniteGradientWarning,
        stacklevel=stacklevel,
    )
