"""Module calls run one example at a time under ``torch.func.vmap``, and replayed for per-example gradients.

Shared by the generic engine (:mod:`dpkit.grad_sample.functorch_engine`, the whole module) and the book-keeping
engine's fallback (:mod:`dpkit.grad_sample.bookkeeping_engine`, one module subtree):

* a recorded call (:class:`RecordedCall`) is its flattened ``(args, kwargs)`` with a per-leaf flag "has the batch
  dimension"; :func:`example_inputs` rebuilds the arguments of ONE example (:func:`run_example` runs the module on
  them), :func:`per_example_outputs` takes its outputs without their batch dimension (:func:`batch_dims`: where the
  module keeps it, first or not);
* :func:`vmap_in_chunks` runs the call over the examples in physical chunks and saves the global RNG state before
  each chunk, so that :func:`per_example_grads` can replay the chunk with the same random draws (dropout masks)
  when it forms ``vmap(grad(...))`` of :func:`replay_loss` at the step;
* :func:`call_vmappable` runs a module's forward with the *vmappable forwards* registered for stock modules whose
  kernels have no vmap batching rule (:func:`register_vmappable_forward`: recurrent layers) in place of theirs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import grad, vmap
from torch.nn.utils.stateless import _reparametrize_module
from torch.utils._pytree import tree_flatten, tree_unflatten

# Forwards computing what a stock module computes with ops torch.func can vmap: fn(module, *args, **kwargs).
VmappableForward = Callable[..., Any]
_VMAPPABLE: dict[type[nn.Module], VmappableForward] = {}


def register_vmappable_forward(module_type: type[nn.Module]) -> Callable[[VmappableForward], VmappableForward]:
    """Decorator: instances of ``module_type`` (and subclasses that keep its forward) run ``fn(module, *args,
    **kwargs)`` instead of their forward inside :func:`call_vmappable`."""

    def deco(fn: VmappableForward) -> VmappableForward:
        _VMAPPABLE[module_type] = fn
        return fn

    return deco


def _vmappable(module: nn.Module) -> VmappableForward | None:
    for cls in type(module).__mro__:
        fn = _VMAPPABLE.get(cls)
        if fn is not None:
            return fn if type(module).forward is getattr(cls, "forward", None) else None
    return None


def call_vmappable(module: nn.Module, forward: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """``forward(*args, **kwargs)`` (``module``'s forward) with the registered vmappable forwards in place of the
    forwards of ``module`` and of its submodules (those without an instance-level forward of their own)."""
    swapped = []
    for m in module.modules():
        fn = _vmappable(m)
        if fn is not None and m is not module and "forward" not in m.__dict__:
            m.__dict__["forward"] = functools.partial(fn, m)
            swapped.append(m)
    try:
        own = _vmappable(module)
        if own is not None and getattr(forward, "__func__", None) is type(module).forward:
            return own(module, *args, **kwargs)
        return forward(*args, **kwargs)
    finally:
        for m in swapped:
            del m.__dict__["forward"]


# The global CPU generator's state, and every CUDA device's when CUDA is in use.
RngState = tuple[torch.Tensor, list[torch.Tensor] | None]


def rng_state() -> RngState:
    """The global torch RNG state (CPU, and CUDA devices if CUDA is initialized)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def set_rng_state(state: RngState) -> None:
    """Restore a state taken by :func:`rng_state`."""
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


@contextlib.contextmanager
def rng_restored() -> Iterator[None]:
    """Inside, replays may reset the global RNG; on exit it is where it was on entry."""
    saved = rng_state()
    try:
        yield
    finally:
        set_rng_state(saved)


@dataclasses.dataclass
class RecordedCall:
    """One forward call of a module, kept for the per-example gradient pass."""

    leaves: list[Any]  # flattened (args, kwargs), tensors detached
    spec: Any
    batched: list[bool]  # per leaf: has the batch dimension
    batch_size: int
    rng_states: list[RngState] = dataclasses.field(default_factory=list)  # one per physical chunk
    batch_dims: list[int] = dataclasses.field(default_factory=list)  # per tensor output: where its batch is


def example_inputs(
    leaves: Sequence[Any], spec: Any, batched: Sequence[bool], xs: Sequence[torch.Tensor], one: bool = True
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` of a call for ONE example: each batched leaf replaced by the next of ``xs`` (one example,
    without the batch dimension) given a batch dimension of size 1; the other leaves as recorded. ``one=False``:
    ``xs`` are a few examples, batch dimension included."""
    leaves = list(leaves)
    it = iter(xs)
    for i, b in enumerate(batched):
        if b:
            leaves[i] = next(it).unsqueeze(0) if one else next(it)
    return tree_unflatten(leaves, spec)


def run_example(
    module: nn.Module,
    forward: Callable[..., Any],
    call: RecordedCall,
    params: dict[str, torch.Tensor] | None,
    xs: Sequence[torch.Tensor],
    one: bool = True,
) -> Any:
    """``module``'s ``forward`` (:func:`call_vmappable`) on ONE example of ``call`` (``one=False``: on the few
    examples ``xs``; see :func:`example_inputs`), with ``params`` in place of the module's parameters (None: its
    own)."""
    args, kwargs = example_inputs(call.leaves, call.spec, call.batched, xs, one)
    if params is None:
        return call_vmappable(module, forward, args, kwargs)
    with _reparametrize_module(module, params, tie_weights=True):
        return call_vmappable(module, forward, args, kwargs)


def output_tensors(out: Any) -> list[torch.Tensor]:
    """The tensor leaves of a module's output, in order."""
    return [o for o in tree_flatten(out)[0] if isinstance(o, torch.Tensor)]


def per_example_outputs(out: Any, batch_dims: Sequence[int]) -> list[torch.Tensor]:
    """The tensor outputs of ONE example's call without their (size-1) batch dimension."""
    return [o.squeeze(d) for o, d in zip(output_tensors(out), batch_dims, strict=True)]


def batch_dims(shapes: Sequence[torch.Size], probe: Callable[[], list[torch.Size]], where: str) -> list[int]:
    """Where each tensor output keeps the batch: ``shapes`` are its shapes for ONE example (batch of size 1).

    Most modules put the batch first, but not all (a recurrent layer's final state ``[layers, B, H]``): the batch
    dimension is the output's only dimension of size 1, and if there are several, the one that grows to 2 when the
    module runs on two examples (``probe()``: the output shapes of such a run)."""
    found: list[int | None] = []
    for j, s in enumerate(shapes):
        ones = [d for d, n in enumerate(s) if n == 1]
        if not ones:
            raise ValueError(
                f"output leaf {j} of {where} has shape {tuple(s)} for one example: it has no batch dimension (every "
                "tensor output must depend on the examples of the batch, one slice each)"
            )
        found.append(ones[0] if len(ones) == 1 else None)
    if all(d is not None for d in found):
        return found  # type: ignore[return-value]
    two = probe()
    dims = []
    for j, (s, d) in enumerate(zip(shapes, found, strict=True)):
        if d is None:
            grown = [
                k
                for k in range(len(s))
                if s[k] == 1 and two[j][k] == 2 and two[j][:k] + two[j][k + 1 :] == s[:k] + s[k + 1 :]
            ]
            if len(grown) != 1:
                raise ValueError(
                    f"output leaf {j} of {where} has shape {tuple(s)} for one example and {tuple(two[j])} for two: "
                    "its batch dimension cannot be told"
                )
            d = grown[0]
        dims.append(d)
    return dims


# ``run(xs, one)``: the module's output for ONE example (``one=True``, under vmap; ``xs`` without batch dimension)
# or for a few examples (``one=False``; ``xs`` with it).
ExampleRun = Callable[[Sequence[torch.Tensor], bool], Any]


def vmap_in_chunks(
    run: ExampleRun,
    xs_all: Sequence[torch.Tensor],
    chunks: Sequence[slice],
    rng_states: list[RngState],
    where: str,
) -> tuple[list[Any], Any, list[int]]:
    """Run a per-example forward ``run(xs, True)`` under vmap, chunk by chunk.

    Records each chunk's RNG state in ``rng_states`` (so the per-example gradient pass replays dropout exactly) and
    returns the output leaves (every tensor leaf concatenated over the chunks along its batch dimension, where the
    module puts it), the output tree spec and the tensor outputs' batch dimensions (:func:`batch_dims`; ``where``
    names the module in errors). A call that fails on one example raises a ``RuntimeError`` saying how the batch was
    split (an unbatched input, a 1-D tensor for a model expecting ``[B, d]``, fails here) and what cannot run under
    vmap (a ``ValueError``).
    """
    meta: dict[str, Any] = {}

    def f(*xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        meta["leaves"], meta["spec"] = tree_flatten(run(xs, True))
        return tuple(o for o in meta["leaves"] if isinstance(o, torch.Tensor))

    chunk_outs = []
    for sl in chunks:
        rng_states.append(rng_state())
        try:
            chunk_outs.append(vmap(f, randomness="different")(*[x[sl] for x in xs_all]))
        except RuntimeError as e:
            if isinstance(e, torch.OutOfMemoryError):
                raise
            shapes = ", ".join(str(tuple(x.shape)) for x in xs_all)
            message = (str(e).strip().splitlines() or [""])[0][:200]
            raise ValueError(
                f"{where} could not run one example at a time under torch.func.vmap ({message}): its tensor "
                f"arguments of shapes {shapes} were split along their first dimension into {xs_all[0].shape[0]} "
                "examples. Inputs must be batched [batch, ...] (one example: x.unsqueeze(0)); operations whose shapes "
                "depend on the data (pack_padded_sequence, nonzero, ...) cannot run this way, and the book-keeping "
                "engine (PrivacyEngine(grad_sample_engine='bookkeeping')) may handle the model"
            ) from e

    def probe() -> list[torch.Size]:
        two = [x[[0, 1]] if x.shape[0] > 1 else x[[0, 0]] for x in xs_all]
        with rng_restored(), torch.no_grad():
            return [o.shape for o in output_tensors(run(two, False))]

    dims = batch_dims([o.shape[1:] for o in chunk_outs[0]], probe, where)
    out_leaves = list(meta["leaves"])
    tensor_pos = [j for j, o in enumerate(out_leaves) if isinstance(o, torch.Tensor)]
    for n, (j, d) in enumerate(zip(tensor_pos, dims, strict=True)):
        parts = [c[n].squeeze(d + 1).movedim(0, d) for c in chunk_outs]  # vmap stacked the examples first
        out_leaves[j] = parts[0] if len(parts) == 1 else torch.cat(parts, d)
    return out_leaves, meta["spec"], dims


def replay_loss(
    run: Callable[[dict[str, torch.Tensor], tuple[torch.Tensor, ...]], Any], batch_dims: Sequence[int], used: list[int]
) -> Callable[..., torch.Tensor]:
    """``loss(params, output_grads, xs)`` for :func:`per_example_grads`: ``sum_k <out_k, g_k>`` over the tensor
    outputs ``used`` (those the loss reached, ``g_k`` their gradients) of ``run(params, xs)``, ONE example's call.
    Its gradient in ``params`` is the example's gradient of the loss (chain rule: the loss is a sum or mean of
    per-example terms)."""

    def loss(params, output_grads, xs):
        outs = per_example_outputs(run(params, xs), batch_dims)
        return sum((outs[k] * g).sum() for k, g in zip(used, output_grads, strict=True))

    return loss


def per_example_grads(
    loss: Callable[..., torch.Tensor],
    params: dict[str, torch.Tensor],
    output_grads: tuple[torch.Tensor, ...],
    xs: tuple[torch.Tensor, ...],
    state: RngState,
) -> dict[str, torch.Tensor]:
    """``{name: [b, *shape]}``: each example's gradient of ``loss(params, output_grads_i, xs_i)`` for one chunk of
    ``b`` examples, with the random draws the chunk's forward made (``state``, from :func:`vmap_in_chunks`)."""
    set_rng_state(state)
    with torch.no_grad():
        return vmap(grad(loss), in_dims=(None, 0, 0), randomness="different")(params, output_grads, xs)
