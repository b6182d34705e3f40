"""Module calls run one example at a time under ``torch.func.vmap``, and replayed for per-example gradients.

Shared by the generic engine (:mod:`dpkit.grad_sample.functorch_engine`, the whole module) and the book-keeping
engine's fallback (:mod:`dpkit.grad_sample.bookkeeping_engine`, one module subtree):

* a recorded call is its flattened ``(args, kwargs)`` with a per-leaf flag "has the batch dimension";
  :func:`example_inputs` rebuilds the arguments of ONE example, :func:`example_outputs` flattens its outputs;
* :func:`vmap_in_chunks` runs the call over the examples in physical chunks and saves the global RNG state before
  each chunk, so that :func:`per_example_grads` can replay the chunk with the same random draws (dropout masks)
  when it forms ``vmap(grad(...))`` at the step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.func import grad, vmap
from torch.utils._pytree import tree_flatten, tree_unflatten

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


def example_inputs(
    leaves: Sequence[Any], spec: Any, batched: Sequence[bool], xs: Sequence[torch.Tensor]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` of a call for ONE example: each batched leaf replaced by the next of ``xs`` (one example,
    without the batch dimension) given a batch dimension of size 1; the other leaves as recorded."""
    leaves = list(leaves)
    it = iter(xs)
    for i, b in enumerate(batched):
        if b:
            leaves[i] = next(it).unsqueeze(0)
    return tree_unflatten(leaves, spec)


def example_outputs(out: Any, where: str) -> tuple[list[torch.Tensor], list[Any], Any]:
    """Flatten a module's output for ONE example (batch dimension of size 1 first) into its per-example tensors.

    Returns (tensors without the batch dimension, all output leaves, the tree spec); ``where`` names the module in
    the error raised when a tensor output does not have the batch dimension first.
    """
    out_leaves, out_spec = tree_flatten(out)
    tensors = []
    for j, o in enumerate(out_leaves):
        if isinstance(o, torch.Tensor):
            if o.dim() == 0 or o.shape[0] != 1:
                raise ValueError(
                    f"output leaf {j} of {where} has shape {tuple(o.shape)} for one example; every tensor output "
                    "must have the batch dimension first"
                )
            tensors.append(o.squeeze(0))
    return tensors, out_leaves, out_spec


ExampleRun = Callable[[Sequence[torch.Tensor]], tuple[list[torch.Tensor], list[Any], Any]]


def vmap_in_chunks(
    run: ExampleRun,
    xs_all: Sequence[torch.Tensor],
    chunks: Sequence[slice],
    rng_states: list[RngState],
    where: str = "the module",
) -> tuple[list[Any], Any]:
    """Run a per-example forward ``run(xs) -> (tensors, leaves, spec)`` under vmap, chunk by chunk.

    Records each chunk's RNG state in ``rng_states`` (so the per-example gradient pass replays dropout exactly) and
    returns the output leaves, every tensor leaf concatenated over the chunks, with the output tree spec. A call
    that fails on one example (``where`` names the module) raises a ``ValueError`` saying how the batch was split
    (an unbatched input, a 1-D tensor for a model expecting ``[B, d]``, fails here).
    """
    meta: dict[str, Any] = {}

    def f(*xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        t, ol, os_ = run(xs)
        meta["leaves"], meta["spec"] = ol, os_
        return tuple(t)

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
                f"{where} failed on one example ({message}): its tensor arguments of shapes {shapes} were split "
                f"along their first dimension into {xs_all[0].shape[0]} examples; inputs must be batched "
                "[batch, ...] (one example: x.unsqueeze(0))"
            ) from e
    out_leaves = list(meta["leaves"])
    tensor_pos = [j for j, o in enumerate(out_leaves) if isinstance(o, torch.Tensor)]
    for n, j in enumerate(tensor_pos):
        parts = [c[n] for c in chunk_outs]
        out_leaves[j] = parts[0] if len(parts) == 1 else torch.cat(parts)
    return out_leaves, meta["spec"]


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
