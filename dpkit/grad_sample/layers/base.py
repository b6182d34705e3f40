"""Layer rules for the book-keeping engine: how one layer type records, measures and sums per-example gradients.

A rule (one file per layer family, registered with :func:`register_layer_rule`) does two things:

* ``forward(module, tap, *args, **kwargs)``: computes the layer's output with *detached* parameters (so the
  ordinary backward pass never forms a parameter gradient, only input gradients) and passes it through
  ``tap(output, record)`` (:class:`~dpkit.grad_sample.layers.records.TapFn`), which keeps the record and hands
  it the gradient of the loss with respect to the output during the user's single backward pass. The record's
  type is the call's mode (:mod:`dpkit.grad_sample.layers.records`): the output gradient with what the rule saved
  (input activations or indices), also its sums over positions, or per-example gradients reduced in the backward.
* ``prepare(module, records, batch)`` returns a :class:`Prepared` holding, for the step, each example's squared
  gradient norm per parameter (ghost / Gram-matrix trick or instantiation, whichever is cheaper for the shapes)
  and able to add ``sum_i c_i * g_i`` into a buffer: one weighted matmul or matrix-vector product per parameter.

A rule is ``LayerRule[ModuleType, RecordType]``: ``prepare`` receives the records its ``forward`` made (those a
backward pass reached). Every record's tensors have the batch dimension first (``batch`` examples).

A rule handles its module's own parameters; a rule with ``subtree = True`` (MultiheadAttention, whose forward reads
``out_proj.weight`` without calling ``out_proj``) handles the parameters of the module's children too, by their
dotted names. :class:`ByName` and :class:`RowBlocks` compose the :class:`Prepared` of several records.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Generic, TypeVar

import torch
from torch import nn

from dpkit.grad_sample.layers.records import Record, TapFn


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

    def select(self, keep: torch.Tensor) -> Prepared:
        """The same information for the examples where ``keep`` (bool ``[batch]``) is True only.

        The engine calls it only on a step where some example's gradient norm is not finite: those examples'
        rows are removed before the sums (a zero clip factor would not remove them, 0 * NaN = NaN). This
        default materializes the kept examples' gradients (:meth:`per_sample`); a rule whose tensors have the
        batch dimension first overrides it by indexing them.
        """
        return Instantiated(_SelectedRows(self, keep))


class _SelectedRows(dict):
    """``{name: per_sample(name)[keep]}`` of a :class:`Prepared`, formed on first use of each name."""

    def __init__(self, prepared: Prepared, keep: torch.Tensor):
        super().__init__()
        self.prepared, self.keep = prepared, keep

    def __missing__(self, name: str) -> torch.Tensor:
        value = self[name] = self.prepared.per_sample(name)[self.keep]
        return value


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


class ByName(Prepared):
    """A layer whose parameters are handled by different :class:`Prepared` (one per matmul-like use, say)."""

    def __init__(self, parts: Mapping[str, Prepared]):
        self.parts = dict(parts)

    def sq_norms(self, name: str) -> torch.Tensor:
        return self.parts[name].sq_norms(name)

    def per_sample(self, name: str) -> torch.Tensor:
        return self.parts[name].per_sample(name)

    def accumulate(self, name: str, factors: torch.Tensor, out: torch.Tensor) -> None:
        self.parts[name].accumulate(name, factors, out)


class RowBlocks(Prepared):
    """A parameter of shape ``shape`` whose rows (first dimension) are blocks of ``sizes[j]`` rows, block j being
    parameter ``parts[j] = (prepared, name)`` of its own (None: no gradient reached that block), e.g. the q / k / v
    rows of an attention in-projection computed by separate matmuls. Squared norms add over the blocks."""

    def __init__(
        self, parts: Sequence[tuple[Prepared, str] | None], sizes: Sequence[int], shape: torch.Size, batch: int
    ):
        self.parts, self.sizes, self.shape, self.batch = list(parts), list(sizes), shape, batch

    def sq_norms(self, name: str) -> torch.Tensor:
        norms = [prep.sq_norms(n) for prep, n in (p for p in self.parts if p is not None)]
        return sum(norms[1:], norms[0]) if norms else torch.zeros(self.batch)

    def per_sample(self, name: str) -> torch.Tensor:
        known = [None if p is None else p[0].per_sample(p[1]) for p in self.parts]
        like = next((k for k in known if k is not None), None)
        rest = tuple(self.shape[1:])
        if like is None:
            return torch.zeros(self.batch, *self.shape)
        blocks = [
            like.new_zeros(self.batch, n, *rest) if k is None else k.reshape(self.batch, n, *rest)
            for k, n in zip(known, self.sizes, strict=True)
        ]
        return torch.cat(blocks, 1)

    def accumulate(self, name: str, factors: torch.Tensor, out: torch.Tensor) -> None:
        for part, block in zip(self.parts, out.split(self.sizes), strict=True):  # row blocks: contiguous views
            if part is not None:
                part[0].accumulate(part[1], factors, block)


M = TypeVar("M", bound=nn.Module)
R = TypeVar("R", bound=Record)


class LayerRule(abc.ABC, Generic[M, R]):
    """Per-example gradient rule for modules of type ``M`` whose calls it records as ``R`` (module docstring)."""

    #: the module's own parameters this rule handles (see :meth:`parameter_names`)
    param_names: tuple[str, ...] = ("weight", "bias")
    #: True: the rule handles the parameters of the module's children too (dotted names); their forwards are
    #: not called by the module's forward
    subtree: bool = False

    def parameter_names(self, module: M) -> Collection[str]:
        """Names of the parameters this rule handles for ``module`` (``param_names`` unless overridden)."""
        return self.param_names

    def unsupported(self, module: M) -> str | None:
        """Why this rule cannot handle ``module``'s configuration (it then falls back to torch.func)."""
        return None

    @abc.abstractmethod
    def forward(self, module: M, tap: TapFn[R], /, *args: Any, **kwargs: Any) -> Any:
        """The module's output, computed with detached parameters and tapped (see the module docstring)."""

    @abc.abstractmethod
    def prepare(self, module: M, records: Sequence[R], batch: int) -> Prepared:
        """Per-example norms and clipped sums of this layer's recorded calls (all reached by a backward pass)."""


AnyRule = LayerRule[Any, Any]

_RULES: dict[type[nn.Module] | str, AnyRule] = {}

RuleT = TypeVar("RuleT", bound=type[AnyRule])


def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_layer_rule(module_type: type[nn.Module] | str) -> Callable[[RuleT], RuleT]:
    """Class decorator: instances of ``module_type`` (and subclasses that keep its forward) use this rule.

    ``module_type`` may be the full name of a class of an optional package (``"transformers.pytorch_utils.Conv1D"``):
    the rule then applies to that class without dpkit importing the package.
    """

    def deco(cls: RuleT) -> RuleT:
        if module_type in _RULES:
            name = module_type if isinstance(module_type, str) else module_type.__name__
            raise ValueError(f"a layer rule for {name} is already registered")
        _RULES[module_type] = cls()
        return cls

    return deco


def registered_layer_types() -> list[type[nn.Module] | str]:
    """The layer types with a rule (a class, or the full name of a class of an optional package)."""
    return list(_RULES)


def rule_for(module: nn.Module) -> AnyRule | None:
    """The rule that handles ``module`` exactly, or None (the engine then uses the torch.func fallback)."""
    for cls in type(module).__mro__:
        rule = _RULES.get(cls) or _RULES.get(_type_name(cls))
        if rule is None or not issubclass(cls, nn.Module):
            continue
        if type(module).forward is not cls.forward:
            return None  # a subclass with its own forward: the rule would not compute what it computes
        own = {n for n, _ in module.named_parameters(recurse=rule.subtree)}
        if not own <= set(rule.parameter_names(module)) or rule.unsupported(module) is not None:
            return None
        if not rule.subtree and any(True for _ in module.children()):
            return None
        return rule
    return None


def total(parts: Sequence[torch.Tensor | None]) -> torch.Tensor | None:
    """The sum of ``parts``, or None if any is None (e.g. per-call sums formed in the backward pass)."""
    found = [p for p in parts if p is not None]
    if not found or len(found) < len(parts):
        return None
    out = found[0]
    for p in found[1:]:
        out = out + p
    return out


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
