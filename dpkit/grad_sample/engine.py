"""The per-sample gradient engine interface and its registry.

The contract between an engine and the DP optimizer:

1. ``attach()`` installs whatever the engine needs on the module (the module is never wrapped: it keeps its
   type, attributes and methods) and validates it (:func:`~dpkit.grad_sample.validation.check_module`).
2. The user runs forward and ``loss.backward()`` as usual, on one logical batch (any size; the engine
   processes it in physical chunks of at most ``max_physical_batch_size`` examples to bound memory).
3. ``clipped_sum(policy, out=None, weight=1.0)`` returns, for each trainable parameter, ``weight * sum_i c_i * g_i``
   where ``g_i`` is example i's gradient of its own loss term and ``c_i`` the policy's clip factor (the sum runs
   over the examples whose gradient norm is finite: an example with a NaN or inf in its gradient is removed
   before the sum, not multiplied by zero, and counted in ``ClippedSum.nonfinite``; a forward pass on examples
   that no backward pass reached is refused, :func:`no_backward_error`); with
   ``loss_reduction="mean"`` the loss is taken to be the mean over the logical batch and ``g_i`` is rescaled
   accordingly. With ``out`` (one flat buffer of all trainable parameters' values, e.g. pre-filled with the
   noise) the sums are added into it and the returned gradients are views of it. (``weight`` folds the
   optimizer's division by the expected batch size into the clip factors: no extra pass over the buffer.)
   With ``residual=True`` the same pass also forms ``weight * sum_i (1 - c_i) * g_i`` (what clipping removed, over
   the same finite examples) in ``ClippedSum.residual``: error-feedback optimizers need it, and it costs one more
   weighted sum per parameter from what the engine already holds, not a second backward pass.
4. ``clear()`` forgets the recorded batch (``optimizer.zero_grad()`` and ``optimizer.step()`` call it).

Batch checks (``follow_loader``, set by ``make_private`` with the Poisson loader): every step, the number of rows
the engine clips over (the first dimension of the model's first tensor argument) must be the number of examples
the loader drew for the batch it yielded last (an empty batch included); and a model argument that is a view of
that batch with the examples moved off dimension 0 (``batch.transpose(0, 1)``) is refused when the model is
called. Both raise :class:`~dpkit.grad_sample.validation.BatchDimensionError` before the step changes anything.
What they cannot see: a model that moves or mixes examples internally while every shape stays ``[B, ...]`` (a
sequence-first model or a transpose when ``T == B``, a normalization over the batch, a loss that is not a sum or
mean of per-example terms); the book-keeping engine's own checks (every layer with parameters sees
``[B, ...]``) catch internal transposes and reshapes when ``T != B``.

An engine may materialize per-example gradients (the generic ``functorch`` engine, one physical chunk at a
time) or only per-example norms (ghost clipping, book-keeping): the interface asks for norms and a clipped sum
only.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import torch
from torch import nn

from dpkit.accountants.validation import check_count
from dpkit.data import DrawnBatch
from dpkit.grad_sample.clipping import ClippingPolicy
from dpkit.grad_sample.validation import SEQUENCE_FIRST_FIX, BatchDimensionError, check_module

_ENGINES: dict[str, type[GradSampleEngine]] = {}

AUTO = "auto"

# Set in the module's __dict__ while an engine is attached to it: one engine per module.
_ATTACHED = "_dpkit_grad_sample_engine"

LOSS_REDUCTIONS = ("mean", "sum")

_NO_FORWARD = object()  # what replace_forward returns for a module without an instance-level forward


def register_engine(name: str):
    """Class decorator: make ``create_engine(name, ...)`` build this engine."""

    def deco(cls: type[GradSampleEngine]) -> type[GradSampleEngine]:
        if name in _ENGINES:
            raise ValueError(f"grad-sample engine {name!r} is already registered")
        _ENGINES[name] = cls
        cls.name = name
        return cls

    return deco


def available_engines() -> list[str]:
    """Registered engine names, plus ``"auto"`` (the fastest exact engine for the module)."""
    return sorted(_ENGINES) + [AUTO]


def select_engine(module: nn.Module) -> str:
    """The preferred engine (lowest ``auto_priority``) that declares itself exact for ``module``."""
    ranked = sorted((cls.auto_priority, name) for name, cls in _ENGINES.items() if cls.auto_priority is not None)
    for _, name in ranked:
        if _ENGINES[name].unsupported_reason(module) is None:
            return name
    raise ValueError("no registered per-sample gradient engine supports this module")


def create_engine(name: str, module: nn.Module, params: Sequence[nn.Parameter], **kwargs) -> GradSampleEngine:
    """Build engine ``name`` (``"auto"``: :func:`select_engine`) for the trainable ``params`` of ``module``."""
    if name == AUTO and isinstance(module, nn.Module):
        name = select_engine(module)
    try:
        cls = _ENGINES[name]
    except KeyError:
        raise ValueError(f"grad_sample_engine must be one of {available_engines()}, got {name!r}") from None
    return cls(module, params, **kwargs)


@dataclasses.dataclass
class ClippedSum:
    """Sum of clipped per-example gradients of one logical batch.

    ``grads[l]`` has the shape of ``params[l]``; ``batch_size`` is the number of examples; ``norms`` holds
    each example's gradient norm before clipping (all trainable parameters together), shape ``[batch_size]``.
    """

    grads: list[torch.Tensor]
    batch_size: int
    norms: torch.Tensor
    flat: torch.Tensor | None = None  # when set, ``grads`` are views of this one buffer
    nonfinite: int = 0  # examples left out of ``grads`` because their gradient or its norm is NaN or inf
    # with ``clipped_sum(..., residual=True)``: ``weight * sum_i (1 - c_i) * g_i`` per parameter (same examples)
    residual: list[torch.Tensor] | None = None


def no_backward_error(batch: int) -> RuntimeError:
    """The error of a step after a forward pass on ``batch`` examples that no backward pass reached."""
    return RuntimeError(
        f"optimizer.step() after a forward pass on {batch} examples that no backward pass reached: call "
        "loss.backward() before optimizer.step() (the step would add noise only and train nothing)"
    )


def finite_rows(sq_norms: torch.Tensor) -> torch.Tensor | None:
    """``None`` if every example's squared gradient norm (``[b]``) is finite, else the bool mask of the examples
    whose norm is: an example with a NaN or inf in its gradient (or a norm that overflows) contributes nothing to
    the clipped sum. One reduction over ``[b]``: the common, finite step pays nothing measurable."""
    if math.isfinite(float(sq_norms.sum())):  # squares are >= 0: a finite sum means every one is finite
        return None
    finite = torch.isfinite(sq_norms)  # (a sum that overflowed with every square finite comes here too)
    return None if bool(finite.all()) else finite


def flat_views(params: Sequence[torch.Tensor], out: torch.Tensor | None) -> tuple[torch.Tensor | None, list]:
    """Zero-initialised (or ``out``) flat buffer for ``params`` and per-parameter views of it.

    Returns ``(None, separate zero tensors)`` when the parameters do not share one dtype and device.
    """
    if out is None:
        first = params[0]
        if any(p.dtype != first.dtype or p.device != first.device for p in params):
            return None, [torch.zeros_like(p, memory_format=torch.contiguous_format) for p in params]
        out = torch.zeros(sum(p.numel() for p in params), dtype=first.dtype, device=first.device)
    total = sum(p.numel() for p in params)
    if out.dim() != 1 or out.numel() != total:
        raise ValueError(f"out must be a flat buffer of {total} values, got shape {tuple(out.shape)}")
    views, offset = [], 0
    for p in params:
        views.append(out[offset : offset + p.numel()].view(p.shape))
        offset += p.numel()
    return out, views


def replace_forward(module: nn.Module, forward: Any) -> Any:
    """Install ``forward`` as ``module``'s instance-level forward (its type is kept); returns what
    :func:`restore_forward` needs to put back the one it had (usually none)."""
    previous = module.__dict__.get("forward", _NO_FORWARD)
    module.__dict__["forward"] = forward
    return previous


def restore_forward(module: nn.Module, previous: Any) -> None:
    """Undo :func:`replace_forward` (``previous``: what it returned)."""
    if previous is _NO_FORWARD:
        module.__dict__.pop("forward", None)
    else:
        module.__dict__["forward"] = previous


def step_batch_size(sizes: Iterable[int]) -> int | None:
    """The one batch size of the calls recorded for a step (None: no call); calls on batches of different sizes
    are refused."""
    distinct = sorted(set(sizes))
    if len(distinct) > 1:
        raise RuntimeError(
            f"the module was called on batches of different sizes {distinct} before one optimizer step; "
            "per-example clipping needs one logical batch per step (call optimizer.step() after each batch)"
        )
    return distinct[0] if distinct else None


class DrawnBatchSource(Protocol):
    """What the engine checks each step against (:class:`~dpkit.data.PoissonDataLoader`)."""

    @property
    def drawn_batch(self) -> DrawnBatch | None: ...


class GradSampleEngine(abc.ABC):
    """Computes clipped per-example gradient sums for the trainable ``params`` of ``module``."""

    name: str = "engine"
    # Automatic selection (``"auto"``) tries engines by increasing priority; None: never chosen automatically.
    auto_priority: int | None = None

    @classmethod
    def unsupported_reason(cls, module: nn.Module) -> str | None:
        """Why this engine would not be exact for ``module`` (None: it is)."""
        return None

    def __init__(
        self,
        module: nn.Module,
        params: Sequence[nn.Parameter],
        *,
        loss_reduction: str = "mean",
        max_physical_batch_size: int | None = None,
    ):
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if loss_reduction not in LOSS_REDUCTIONS:
            raise ValueError(f"loss_reduction must be one of {LOSS_REDUCTIONS}, got {loss_reduction!r}")
        if max_physical_batch_size is not None:
            max_physical_batch_size = check_count("max_physical_batch_size", max_physical_batch_size, minimum=1)
        self.module = module
        self.params = list(params)
        if not self.params:
            raise ValueError("the module has no trainable parameters (requires_grad=True) to train privately")
        names = {id(p): n for n, p in module.named_parameters()}
        missing = [i for i, p in enumerate(self.params) if id(p) not in names]
        if missing:
            shapes = ", ".join(str(tuple(self.params[i].shape)) for i in missing[:3])
            raise ValueError(
                f"{len(missing)} trainable parameter(s) (shapes {shapes}) are not parameters of the module; "
                "the optimizer must only hold parameters of the module passed to make_private"
            )
        self.param_names = [names[id(p)] for p in self.params]
        self.loss_reduction = loss_reduction
        self.max_physical_batch_size = max_physical_batch_size
        self.attached = False
        self.loader: DrawnBatchSource | None = None

    # ------------------------------------------------------------------ batch checks (module docstring)
    def follow_loader(self, loader: DrawnBatchSource | None) -> None:
        """Check every step against the batches ``loader`` draws (None: no check)."""
        self.loader = loader

    def check_model_input(self, args: Iterable[Any]) -> None:
        """Refuse a model argument that is a view of the loader's batch with the examples off dimension 0."""
        drawn = None if self.loader is None else self.loader.drawn_batch
        if drawn is None:
            return
        for x in args:
            found = drawn.moved_examples(x) if isinstance(x, torch.Tensor) else None
            if found is not None:
                y, dim = found
                raise BatchDimensionError(
                    f"the model was called on a tensor of shape {tuple(x.shape)} that is a view of the batch the "
                    f"loader yielded (shape {tuple(y.shape)}, its {drawn.size} examples along dimension {dim}) "
                    "whose first dimension is not the examples: the engine clips along the first dimension, so each "
                    "clipped row would not be one example and the privacy guarantee would not hold. To fix: "
                    f"{SEQUENCE_FIRST_FIX}"
                )

    def model_tensors(self, leaves: Iterable[Any]) -> list[torch.Tensor]:
        """The tensors among the flattened arguments ``leaves`` of a call of the model; the first one's first
        dimension is the batch (refused: no tensor, a 0-d first tensor, :meth:`check_model_input`)."""
        tensors = [x for x in leaves if isinstance(x, torch.Tensor)]
        if not tensors or tensors[0].dim() == 0:
            raise ValueError(
                f"{type(self.module).__name__}.forward needs a tensor argument whose first dimension is the batch "
                "(the per-sample gradient engine splits the batch along it)"
            )
        self.check_model_input(tensors)
        return tensors

    def check_step_batch(self, batch: int | None) -> None:
        """Refuse a step that clips over ``batch`` rows when the loader drew another number of examples."""
        drawn = None if self.loader is None else self.loader.drawn_batch
        if drawn is None or batch is None or batch == drawn.size:
            return
        raise BatchDimensionError(
            f"this step would clip {batch} rows, but the Poisson loader drew {drawn.size} examples for the batch it "
            "yielded: the first dimension of the model's first tensor argument must index the examples of that "
            "batch, else each clipped row is not one example and the privacy guarantee does not hold. If the "
            f"model takes sequence-first input ([T, batch, ...]): {SEQUENCE_FIRST_FIX}. Otherwise call the model "
            "once per step on the whole batch the loader yielded (max_physical_batch_size splits it into chunks), "
            "not on a part of it or on other data"
        )

    def _check_attachable(self) -> None:
        """Refuse a module another engine is attached to, or one with layers per-example clipping cannot handle."""
        if self.module.__dict__.get(_ATTACHED) is not None:
            raise RuntimeError(
                "this module is already attached to a per-sample gradient engine (make_private was called on it "
                "before); detach that engine or build a fresh module"
            )
        check_module(self.module)

    def _mark_attached(self, attached: bool) -> None:
        """Set or remove the module's mark that an engine is attached to it (see :meth:`_check_attachable`)."""
        if attached:
            self.module.__dict__[_ATTACHED] = self
        else:
            del self.module.__dict__[_ATTACHED]
        self.attached = attached

    def chunks(self, batch_size: int) -> list[slice]:
        """The physical chunks of a logical batch of ``batch_size`` examples."""
        step = self.max_physical_batch_size or max(batch_size, 1)
        return [slice(i, min(i + step, batch_size)) for i in range(0, batch_size, step)]

    @abc.abstractmethod
    def attach(self) -> None:
        """Install the engine on the module (validates it first)."""

    @abc.abstractmethod
    def detach(self) -> None:
        """Remove everything ``attach`` installed; the module behaves exactly as before."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Forget the recorded batch."""

    @abc.abstractmethod
    def clipped_sum(
        self, policy: ClippingPolicy, out: torch.Tensor | None = None, weight: float = 1.0, residual: bool = False
    ) -> ClippedSum:
        """Sum over the recorded batch of the clipped per-example gradients (with ``residual``, also of what clipping
        removed; see the module docstring)."""

    @property
    @abc.abstractmethod
    def batch_size(self) -> int | None:
        """Number of examples recorded since the last ``clear()`` (``None``: no backward pass recorded)."""

    def per_sample_gradients(self) -> list[torch.Tensor]:
        """Per-example gradients ``[batch_size, *param.shape]`` (may be refused)."""
        raise NotImplementedError(f"the {self.name!r} engine does not materialize per-sample gradients")
