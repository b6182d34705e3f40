"""What the book-keeping engine records of one layer call, one type per mode, and the :class:`Tap` that fills it.

A rule's ``forward`` chooses the mode of each call by the record it passes to ``tap`` (:class:`TapFn`):

* :class:`GradRecord`: the rule's saved object (input activations, indices, ...) and the output gradient, summed
  over backward passes; the rule forms norms and sums from both at the step.
* :class:`PositionSumRecord`: a :class:`GradRecord` of a sequence layer ``[B, *, p]`` that also sums each
  example's output gradient over its positions (``[B, p]``, the per-example gradient of a bias) in the backward
  pass, while the gradient is still in cache (a pass over ``[B, T, p]`` at the step costs several times more).
* :class:`ReducedRecord`: layers whose per-example gradients are small (norm layers: ``[B, d]``) reduce the output
  gradient as soon as it arrives, ``reduce(grad, kept) -> {name: [B, ...]}`` (linear in ``grad``), and keep only
  that. ``kept`` (the layer's input) is held by the autograd graph, version-checked, not by the record: the output
  gradient and the input are freed during the backward pass, not at the step.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import torch


class Record(abc.ABC):
    """One tapped call of a layer; :class:`Tap` hands it the output gradient of each backward pass."""

    # Set when the tapped tensor is a reshape of the layer's output: gradients are reshaped to this on arrival.
    shape: torch.Size | None = None
    # The dimension of the tapped output that indexes the examples (1 for time-major records).
    batch_dim: ClassVar[int] = 0

    @property
    @abc.abstractmethod
    def has_grad(self) -> bool:
        """Whether a backward pass reached this call (records without are skipped at the step)."""

    @abc.abstractmethod
    def receive(self, grad: torch.Tensor, kept: tuple[torch.Tensor, ...]) -> None:
        """Add one backward pass's output gradient; ``kept``: the tensors :class:`Tap` kept in the graph."""


S = TypeVar("S")


@dataclasses.dataclass(eq=False)
class GradRecord(Record, Generic[S]):
    """The rule's ``saved`` object and the output gradient ``grad`` (summed over backward passes)."""

    saved: S
    grad: torch.Tensor | None = dataclasses.field(default=None, init=False)

    @property
    def has_grad(self) -> bool:
        return self.grad is not None

    @property
    def output_grad(self) -> torch.Tensor:
        """The output gradient (rules see only records that have one)."""
        if self.grad is None:
            raise RuntimeError("no output gradient was recorded for this call")
        return self.grad

    def receive(self, grad: torch.Tensor, kept: tuple[torch.Tensor, ...]) -> None:
        self.grad = grad if self.grad is None else self.grad + grad


@dataclasses.dataclass(eq=False)
class PositionSumRecord(GradRecord[S]):
    """A sequence call ``[batch, *, p]``: also ``position_sums``, each example's output gradient summed over its
    positions (``[batch, p]``), formed in the backward pass."""

    batch: int
    position_sums: torch.Tensor | None = dataclasses.field(default=None, init=False)

    def receive(self, grad: torch.Tensor, kept: tuple[torch.Tensor, ...]) -> None:
        self.grad = grad if self.grad is None else self.grad + grad
        s = grad.sum(tuple(range(1, grad.dim() - 1)))  # over the positions (also for an empty batch)
        self.position_sums = s if self.position_sums is None else self.position_sums + s


Reduce = Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]


@dataclasses.dataclass(eq=False)
class ReducedRecord(Record):
    """Per-example gradients ``reduce(output_grad, kept)`` formed in the backward pass (summed over passes: the
    sum of reductions is the reduction of the summed gradients, ``reduce`` being linear in them)."""

    reduce: Reduce
    reduced: dict[str, torch.Tensor] | None = dataclasses.field(default=None, init=False)

    @property
    def has_grad(self) -> bool:
        return self.reduced is not None

    @property
    def per_example(self) -> dict[str, torch.Tensor]:
        """``{name: [batch, ...]}`` (rules see only records that have them)."""
        if self.reduced is None:
            raise RuntimeError("no output gradient was recorded for this call")
        return self.reduced

    def receive(self, grad: torch.Tensor, kept: tuple[torch.Tensor, ...]) -> None:
        part = self.reduce(grad, kept[0])
        self.reduced = part if self.reduced is None else {k: self.reduced[k] + v for k, v in part.items()}


R_contra = TypeVar("R_contra", bound=Record, contravariant=True)


class TapFn(Protocol[R_contra]):
    """``tap(out, record, kept=None) -> out``: what a rule's forward passes its output through.

    Records the call with ``record`` (whose type is the call's mode) and returns ``out`` such that the backward
    pass hands ``record`` the output gradient. ``kept``: a tensor the graph keeps for a :class:`ReducedRecord`.
    """

    @property
    def batch(self) -> int:
        """Examples in the logical batch being recorded."""
        ...

    def __call__(self, out: torch.Tensor, record: R_contra, kept: torch.Tensor | None = None) -> torch.Tensor: ...

    def rebatch(self, source: torch.Tensor, batch: int) -> None:
        """This call's input ``source`` holds ``batch`` examples flattened (a bag layer with offsets); if the batch
        size was read from it (the model's first argument), the batch is ``batch`` examples (``self.batch``)."""
        ...


class Tap(torch.autograd.Function):
    """Identity on ``out`` that hands d loss / d out to ``record`` (:meth:`Record.receive`) during the backward pass.

    ``anchor`` is one trainable parameter of the layer: it makes the output require grad even when the layer's
    input does not (first layer), and it never receives a gradient (``None`` is returned for it).
    """

    @staticmethod
    def forward(ctx: Any, out: torch.Tensor, anchor: torch.Tensor, record: Record, kept: torch.Tensor | None = None):
        ctx.record = record
        if kept is not None:
            ctx.save_for_backward(kept)  # kept by the graph (version-checked), freed once the backward pass ran
        ctx.mark_dirty(out)  # returned as-is, so later in-place ops (ReLU(inplace=True)) stay legal
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        rec = ctx.record
        rec.receive(grad if rec.shape is None else grad.reshape(rec.shape), ctx.saved_tensors)
        return grad, None, None, None
