"""Layer rules for the book-keeping engine: how one layer type records, measures and sums per-example gradients.

A rule (one file per layer family, registered with :func:`register_layer_rule`) does three things:

* ``forward(module, tap, *args, **kwargs)``: computes the layer's output with *detached* parameters (so the
  ordinary backward pass never forms a parameter gradient, only input gradients) and passes it through
  ``tap(output, saved)``, which records what the rule needs later (``saved``: input activations or indices) and
  catches the gradient of the loss with respect to the output during the user's single backward pass
  (``position_sums=True``: also each example's gradient summed over positions, :attr:`Record.position_sums`).
* ``prepare(module, records, batch)`` returns a :class:`Prepared` holding, for the step, each example's squared
  gradient norm per parameter (ghost / Gram-matrix trick or instantiation, whichever is cheaper for the shapes)
  and able to add ``sum_i c_i * g_i`` into a buffer: one weighted matmul or matrix-vector product per parameter.

Every record's tensors have the batch dimension first (``batch`` examples).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn


@dataclasses.dataclass
class Record:
    """One call of a layer: what its rule saved in the forward and the output gradient from the backward."""

    saved: Any
    grad: torch.Tensor | None = None
    shape: torch.Size | None = None  # set when the tapped tensor is a reshape of the layer's output
    # Rules whose per-example gradients are small (norm layers: [B, d]) reduce the output gradient as soon as it
    # arrives (``reduce(grad, saved) -> {name: [B, ...]}``, linear in grad) and keep only that: the output gradient
    # and the input (then held by the graph, not by ``saved``) are dropped during the backward pass, not at the step.
    reduce: Callable[[torch.Tensor, Any], dict[str, torch.Tensor]] | None = None
    reduced: dict[str, torch.Tensor] | None = None
    # Sequence layers with a bias (``tap(..., position_sums=True)``): each example's output gradient summed over
    # its positions, ``[batch, p]``, formed in the backward pass while the gradient is still in cache (the bias's
    # per-example gradient; a pass over the [B, T, p] gradient at the step costs several times more).
    sum_batch: int | None = None
    position_sums: torch.Tensor | None = None

    @property
    def has_grad(self) -> bool:
        return self.grad is not None or self.reduced is not None


class Tap(torch.autograd.Function):
    """Identity on ``out`` that stores d loss / d out in ``record.grad`` during the backward pass.

    ``anchor`` is one trainable parameter of the layer: it makes the output require grad even when the layer's
    input does not (first layer), and it never receives a gradient (``None`` is returned for it).
    """

    @staticmethod
    def forward(ctx, out, anchor, record, saved=None):
        ctx.record = record
        if record.reduce is not None:
            ctx.save_for_backward(saved)  # kept by the graph (version-checked), freed once the reduction ran
        ctx.mark_dirty(out)  # returned as-is, so later in-place ops (ReLU(inplace=True)) stay legal
        return out

    @staticmethod
    def backward(ctx, grad):
        rec = ctx.record
        g = grad if rec.shape is None else grad.reshape(rec.shape)
        if rec.reduce is not None:  # sums of reductions = reduction of the summed gradients (linear)
            part = rec.reduce(g, ctx.saved_tensors[0])
            rec.reduced = part if rec.reduced is None else {k: rec.reduced[k] + v for k, v in part.items()}
        else:
            rec.grad = g if rec.grad is None else rec.grad + g
            if rec.sum_batch is not None:
                s = g.reshape(rec.sum_batch, -1, g.shape[-1]).sum(1)
                rec.position_sums = s if rec.position_sums is None else rec.position_sums + s
        return grad, None, None, None


TapFn = Callable[..., torch.Tensor]  # tap(output, saved, *, position_sums=False) -> output


class Prepared(abc.ABC):
    """One layer's per-example gradient information for one step (see the module docstring)."""

    @abc.abstractmethod
    def sq_norms(self, name: str) -> torch.Tensor:
        """``[batch]``: each example's squared gradient norm for parameter ``name``."""

    @abc.abstractmethod
    def per_sample(self, name: str) -> torch.Tensor:
        """``[batch, *param.shape]``: each example's gradient for parameter ``name`` (materialized)."""

    @abc.abstractmethod
    def accumulate(self, name: str, factors: torch.Tensor, out: torch.Tensor) -> None:
        """``out += sum_i factors[i] * g_i`` for parameter ``name`` (``out`` has the parameter's shape)."""


class Instantiated(Prepared):
    """Per-example gradients materialized (small parameters, or cheaper than the Gram matrices)."""

    def __init__(self, per_sample: dict[str, torch.Tensor]):
        self._ps = per_sample

    def sq_norms(self, name: str) -> torch.Tensor:
        return torch.linalg.vector_norm(self._ps[name].flatten(1), dim=1).square_()

    def per_sample(self, name: str) -> torch.Tensor:
        return self._ps[name]

    def accumulate(self, name: str, factors: torch.Tensor, out: torch.Tensor) -> None:
        g = self._ps[name]
        out.view(-1).addmv_(g.reshape(g.shape[0], -1).t(), factors.to(g.dtype))


class LayerRule(abc.ABC):
    """Per-example gradient rule for one layer type (see the module docstring)."""

    #: the module's own parameters this rule handles
    param_names: tuple[str, ...] = ("weight", "bias")

    def unsupported(self, module: nn.Module) -> str | None:
        """Why this rule cannot handle ``module``'s configuration (it then falls back to torch.func)."""
        return None

    @abc.abstractmethod
    def forward(self, module: nn.Module, tap: TapFn, *args, **kwargs) -> Any:
        """The module's output, computed with detached parameters and tapped (see the module docstring)."""

    @abc.abstractmethod
    def prepare(self, module: nn.Module, records: Sequence[Record], batch: int) -> Prepared:
        """Per-example norms and clipped sums of this layer's recorded calls (all with output gradients)."""

    def reducer(
        self, module: nn.Module, batch: int, saved: Any, out: torch.Tensor
    ) -> tuple[Callable[[torch.Tensor, torch.Tensor], dict], torch.Tensor] | None:
        """Optional eager reduction of one call (see :attr:`Record.reduce`): ``(reduce, tensor)``, where the
        graph keeps ``tensor`` for ``reduce(output_grad, tensor)``; None: the call is recorded for the step."""
        return None


_RULES: dict[type[nn.Module], LayerRule] = {}


def register_layer_rule(module_type: type[nn.Module]):
    """Class decorator: instances of ``module_type`` (and subclasses that keep its forward) use this rule."""

    def deco(cls: type[LayerRule]) -> type[LayerRule]:
        if module_type in _RULES:
            raise ValueError(f"a layer rule for {module_type.__name__} is already registered")
        _RULES[module_type] = cls()
        return cls

    return deco


def registered_layer_types() -> list[type[nn.Module]]:
    return list(_RULES)


def rule_for(module: nn.Module) -> LayerRule | None:
    """The rule that handles ``module`` exactly, or None (the engine then uses the torch.func fallback)."""
    for cls in type(module).__mro__:
        rule = _RULES.get(cls)
        if rule is None:
            continue
        if type(module).forward is not cls.forward:
            return None  # a subclass with its own forward: the rule would not compute what it computes
        own = {n for n, _ in module.named_parameters(recurse=False)}
        if not own <= set(rule.param_names) or rule.unsupported(module) is not None:
            return None
        if any(True for _ in module.children()):
            return None
        return rule
    return None


def flatten_seq(t: torch.Tensor, batch: int) -> torch.Tensor:
    """``[batch, *, d]`` -> ``[batch, T, d]`` (T = product of the middle dimensions, 1 for 2-D input)."""
    return t.reshape(batch, -1, t.shape[-1])


def check_batch(t: torch.Tensor, batch: int, what: str) -> None:
    if t.dim() == 0 or t.shape[0] != batch:
        raise RuntimeError(
            f"{what} was called on a tensor of shape {tuple(t.shape)} whose first dimension is not the batch "
            f"({batch} examples); the book-keeping engine needs batch-first activations in every layer with "
            "parameters. Use PrivacyEngine(grad_sample_engine='functorch') for this model"
        )
