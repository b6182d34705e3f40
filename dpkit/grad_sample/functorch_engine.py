"""The generic engine: exact per-example gradients for any module, with ``torch.func`` (vmap + grad).

How one step works (the module is not wrapped; only its instance ``forward`` is replaced while attached):

* **Forward** (grad mode on): the module runs under ``torch.no_grad()`` as ``vmap`` over the examples, each
  seen as a batch of one, in physical chunks of at most ``max_physical_batch_size``; the global RNG state
  before each chunk is saved (dropout masks can be replayed exactly). The returned outputs are fresh leaf
  tensors that require grad, so the user's ``loss.backward()`` only computes d loss / d output (cheap).
* **At optimizer step** (:meth:`clipped_sum`), per chunk: ``vmap(grad(<f(theta, x_i), dL/dout_i>))`` gives
  each example's gradient exactly (chain rule: the loss is a sum or mean of per-example terms), with the same
  random draws as the forward; norms, clip factors and the clipped sum follow and the chunk's per-example
  gradients are freed. Memory is bounded by ``max_physical_batch_size`` x (number of trainable parameters).

Exact for every module with parameters whose examples do not interact: custom modules owning raw
``nn.Parameter``s, frozen parameters (skipped: only the optimizer's parameters are differentiated), tied
parameters (one tensor, per-example contributions summed), attention, LSTM, ... Requirements: every tensor
input and output of the module has the batch dimension first; a tensor argument is treated as per-example iff
its first dimension equals the batch size of the first tensor argument (others, e.g. masks, are shared).
Gradients do not flow back to the module's inputs.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from dpkit.grad_sample import engine as shared
from dpkit.grad_sample.clipping import ClippingPolicy
from dpkit.grad_sample.vmap_calls import (
    RecordedCall,
    per_example_grads,
    replay_loss,
    rng_restored,
    run_example,
    vmap_in_chunks,
)


@dataclasses.dataclass
class _Call(RecordedCall):
    """One forward call of the module recorded for the step."""

    outputs: list[torch.Tensor | None] = dataclasses.field(default_factory=list)  # leaves the loss was built on

    def output_grads(self) -> list[torch.Tensor | None]:
        return [None if o is None else o.grad for o in self.outputs]

    def has_grad(self) -> bool:
        return any(g is not None for g in self.output_grads())


@shared.register_engine("functorch")
class FunctorchEngine(shared.GradSampleEngine):
    """Generic exact engine (see the module docstring)."""

    auto_priority = 100  # always exact; slower than the book-keeping engine where that one applies

    def __init__(self, module: nn.Module, params: Sequence[nn.Parameter], **kwargs):
        super().__init__(module, params, **kwargs)
        self._calls: list[_Call] = []
        self._inside = False
        self._prev_forward: Any = None
        self._orig_forward: Callable[..., Any] = module.forward  # the module's forward as of attach()

    # ------------------------------------------------------------------ attach / detach
    def attach(self) -> None:
        if self.attached:
            return
        self._check_attachable()
        self._orig_forward = self.module.forward
        self._prev_forward = shared.replace_forward(self.module, self._forward)
        self._mark_attached(True)

    def detach(self) -> None:
        if not self.attached:
            return
        shared.restore_forward(self.module, self._prev_forward)
        self._mark_attached(False)
        self.clear()

    def clear(self) -> None:
        self._calls.clear()

    @property
    def batch_size(self) -> int | None:
        calls = [c for c in self._calls if c.has_grad()]
        return calls[0].batch_size if calls else None

    # ------------------------------------------------------------------ forward
    def _run(self, call: _Call, params: dict[str, torch.Tensor] | None, xs, one: bool = True) -> Any:
        """Run the module on one example (a batch of one; ``one=False``: on the few examples ``xs``)."""
        self._inside = True
        try:
            return run_example(self.module, self._orig_forward, call, params, xs, one)
        finally:
            self._inside = False

    def _forward(self, *args, **kwargs):
        if self._inside or not torch.is_grad_enabled():
            return self._orig_forward(*args, **kwargs)
        leaves, spec = tree_flatten((args, kwargs))
        batch = self.model_tensors(leaves)[0].shape[0]
        batched = [isinstance(x, torch.Tensor) and x.dim() > 0 and x.shape[0] == batch for x in leaves]
        leaves = [x.detach() if isinstance(x, torch.Tensor) else x for x in leaves]
        call = _Call(leaves, spec, batched, batch)
        if batch == 0:
            a, k = tree_unflatten(leaves, spec)
            with torch.no_grad():
                out = self._orig_forward(*a, **k)
            out_leaves, out_spec = tree_flatten(out)
            tensor_pos = [j for j, o in enumerate(out_leaves) if isinstance(o, torch.Tensor)]
            call.batch_dims = [0] * len(tensor_pos)
        else:
            xs_all = [x for x, b in zip(leaves, batched, strict=True) if b]
            with torch.no_grad():
                out_leaves, out_spec, call.batch_dims = vmap_in_chunks(
                    lambda xs, one: self._run(call, None, xs, one),
                    xs_all,
                    self.chunks(batch),
                    call.rng_states,
                    f"{type(self.module).__name__}.forward",
                )
            tensor_pos = [j for j, o in enumerate(out_leaves) if isinstance(o, torch.Tensor)]
        outputs: list[torch.Tensor | None] = []
        for j in tensor_pos:
            o = out_leaves[j].detach()
            if o.is_floating_point() or o.is_complex():
                o.requires_grad_(True)
                outputs.append(o)
            else:
                outputs.append(None)
            out_leaves[j] = o
        call.outputs = outputs
        self._calls.append(call)
        return tree_unflatten(out_leaves, out_spec)

    # ------------------------------------------------------------------ per-example gradients
    def _calls_for_step(self) -> list[_Call]:
        calls = [c for c in self._calls if c.has_grad()]
        shared.step_batch_size(c.batch_size for c in calls)
        return calls

    def _chunk_grads(self, calls: list[_Call], index: int, sl: slice) -> list[torch.Tensor]:
        """Per-example gradients of the examples in chunk ``index`` (slice ``sl``), summed over the calls."""
        train = {n: p.detach() for n, p in zip(self.param_names, self.params, strict=True)}
        total: list[torch.Tensor] | None = None
        for call in calls:
            gs_all = call.output_grads()
            used = [k for k, g in enumerate(gs_all) if g is not None]
            gs = tuple(g.movedim(call.batch_dims[k], 0)[sl] for k, g in enumerate(gs_all) if g is not None)
            xs = tuple(x[sl] for x, b in zip(call.leaves, call.batched, strict=True) if b)
            loss = replay_loss(functools.partial(self._run, call), call.batch_dims, used)
            per = per_example_grads(loss, train, gs, xs, call.rng_states[index])
            grads = [per[n] for n in self.param_names]
            if self.loss_reduction == "mean":
                grads = [g * call.batch_size for g in grads]
            total = grads if total is None else [a + b for a, b in zip(total, grads, strict=True)]
        assert total is not None
        return total

    def _chunks_of_step(self, calls: list[_Call]):
        """Yield (slice, per-example gradients) per physical chunk; the global RNG state is restored after."""
        if not calls:
            return
        with rng_restored():
            for index, sl in enumerate(self.chunks(calls[0].batch_size)):
                yield sl, self._chunk_grads(calls, index, sl)

    def per_sample_gradients(self) -> list[torch.Tensor]:
        calls = self._calls_for_step()
        parts = [grads for _, grads in self._chunks_of_step(calls)]
        if not parts:
            return [p.new_zeros((0, *p.shape)) for p in self.params]
        return [torch.cat([part[i] for part in parts]) for i in range(len(self.params))]

    def clipped_sum(
        self, policy: ClippingPolicy, out: torch.Tensor | None = None, weight: float = 1.0, residual: bool = False
    ) -> shared.ClippedSum:
        calls = self._calls_for_step()
        self.check_step_batch(calls[0].batch_size if calls else None)
        unreached = max((c.batch_size for c in self._calls), default=0)
        if not calls and unreached:
            raise shared.no_backward_error(unreached)
        flat, sums = shared.flat_views(self.params, out)
        rest = shared.flat_views(self.params, None)[1] if residual else None  # what clipping removed
        norms = []
        nonfinite = 0
        for _, grads in self._chunks_of_step(calls):
            sq = torch.stack([g.reshape(g.shape[0], -1).pow(2).sum(1) for g in grads], dim=1)
            total = sq.sum(1)
            norms.append(total.sqrt())
            clip = policy.factors(sq)
            factors = clip * weight if weight != 1.0 else clip
            keep = shared.finite_rows(total)
            if keep is not None:  # examples with a NaN / inf gradient: removed before the sum
                nonfinite += len(keep) - int(keep.sum())
                grads, factors, clip = [g[keep] for g in grads], factors[keep], clip[keep]
            for i, g in enumerate(grads):
                sums[i].add_(torch.tensordot(factors[:, i].to(g.dtype), g, dims=1))
                if rest is not None:
                    rest[i].add_(torch.tensordot(((1.0 - clip[:, i]) * weight).to(g.dtype), g, dims=1))
        batch = calls[0].batch_size if calls else 0
        return shared.ClippedSum(sums, batch, torch.cat(norms) if norms else torch.zeros(0), flat, nonfinite, rest)
