"""The book-keeping engine (default): clipped per-example gradient sums from the ordinary, single backward pass.

Book-Keeping (Bu et al., ICML 2023) on an unwrapped module:

* **Attach.** Every module that owns trainable parameters is either handled by a *layer rule*
  (:mod:`dpkit.grad_sample.layers`: Linear, Conv, Embedding, norm layers, MultiheadAttention, ...) or, if no
  rule applies, by the *torch.func fallback* for that module's whole subtree only. Only the instance ``forward``
  of those modules is replaced (types, attributes and methods are kept); two hooks on the root module mark its
  calls and read the batch size from the first tensor argument.
* **Forward / backward** (the user's, once): a rule module computes its output with detached parameters, saves
  its input activations and taps its output, so the single ``loss.backward()`` computes input gradients only
  and leaves each layer's output gradient in its record (no parameter gradient is formed by autograd).
* **Step** (:meth:`clipped_sum`): per layer, each example's squared gradient norm by the ghost (Gram-matrix)
  trick or by instantiating that layer's per-example gradient, whichever is cheaper for its shapes; the clip
  factors of the policy; then per parameter one weighted matmul ``(c * G)^T A`` (or ``index_add_`` /
  matrix-vector product) adds the clipped sum into the output buffer. No second backward pass. When some
  example's norm is NaN or inf (checked on the ``[B]`` norms), each layer's information is first restricted to the
  other examples (:meth:`~dpkit.grad_sample.layers.Prepared.select`): the offending rows leave the matmuls, since a
  zero clip factor would still give ``0 * NaN = NaN``.
* **Fallback** modules run their forward as ``vmap`` over examples (in physical chunks, RNG state saved, so
  dropout masks replay exactly) with gradients flowing to their inputs; at step time ``vmap(grad(...))`` gives
  their per-example gradients from the tapped output gradients. Tied parameters (one tensor used by several
  modules) and modules called several times per step are exact: contributions are summed per example (tied
  parameters are instantiated per example for that).

Requirements: layers with parameters see batch-first activations (checked: a layer whose input does not start
with the batch dimension raises an error naming ``grad_sample_engine='functorch'``; the attention and recurrent
rules take either layout; automatic selection skips this engine for stock transformer layers with
``batch_first=False``, whose Linear and norm layers see sequence-first activations; a model that is itself a stock
module reading sequence-first input is refused by every engine); parameters are used through the
modules that own them (using a child's parameter directly in a parent's forward is refused at the step, as any
gradient that bypasses the engine is). Memory: the layers' inputs (kept by non-private training too) and
output gradients until the step, plus the instantiated per-example gradients of layers where that is cheaper
than Gram matrices (at most ``p d`` < ``2 T^2`` values per example). Norm layers form their small per-example
gradients during the backward pass instead (:class:`~dpkit.grad_sample.layers.ReducedRecord`), so their inputs and
output gradients are freed there; sequence Linear layers with a bias sum each example's output gradient over
positions there too (:class:`~dpkit.grad_sample.layers.PositionSumRecord`, ``[B, p]``: the bias's per-example
gradient, taken while the gradient is in cache). (Reducing instantiated convolutions in the backward pass was
tried: it allocates the per-example gradients while the backward pass still holds the activations, which did not
lower the peak.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.utils.stateless import _reparametrize_module
from torch.utils._pytree import tree_flatten, tree_unflatten

from dpkit.grad_sample import engine as shared
from dpkit.grad_sample.clipping import ClippingPolicy
from dpkit.grad_sample.layers import AnyRule, GradRecord, Instantiated, Prepared, Record, Tap, rule_for
from dpkit.grad_sample.validation import sequence_first
from dpkit.grad_sample.vmap_calls import (
    RecordedCall,
    output_tensors,
    per_example_grads,
    replay_loss,
    rng_restored,
    run_example,
    vmap_in_chunks,
)

# Stock layers whose position-wise children (Linear, LayerNorm) see their activations in their own layout: with
# batch_first=False, sequence-first. (The attention and recurrent rules take either layout.)
_SEQ_FIRST_CHILDREN = (nn.Transformer, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)


def _tap(
    out: torch.Tensor, anchor: torch.Tensor, record: Record, inputs: Any = (), kept: torch.Tensor | None = None
) -> torch.Tensor:
    """A rule layer's output ``out`` through :class:`Tap`, which returns its input as-is (mark_dirty) and so needs
    a tensor that owns its storage. A view that is only a reshape of its whole base (F.linear / F.embedding on
    sequence inputs) is tapped at the base and reshaped back, with no copy, unless that base belongs to one of the
    layer's ``inputs`` (a pytree; it existed before the call); any other view is copied first."""
    base = out._base
    if base is None:
        return Tap.apply(out, anchor, record, kept)
    inputs = tree_flatten(inputs)[0]
    owned = {id(x) for x in inputs if isinstance(x, torch.Tensor)}
    owned |= {id(x._base) for x in inputs if isinstance(x, torch.Tensor) and x._base is not None}
    if (
        id(base) not in owned
        and out.is_contiguous()
        and base.is_contiguous()
        and out.numel() == base.numel()
        and out.storage_offset() == base.storage_offset()
        and out.dtype == base.dtype
    ):
        record.shape = out.shape  # the output gradient is stored with the output's shape
        return Tap.apply(base, anchor, record, kept).view(out.shape)
    return Tap.apply(out.clone(), anchor, record, kept)


class _Unit:
    """A module whose trainable parameters one mechanism (a rule or the fallback) handles."""

    def __init__(self, engine: BookkeepingEngine, path: str, module: nn.Module, names: list[tuple[str, int]]):
        self.engine, self.path, self.module = engine, path, module
        self.names = names  # (name inside the module, index in engine.params)
        self.anchor = engine.params[names[0][1]]
        self.orig_forward: Any = None
        self._prev_forward: Any = None

    def install(self) -> None:
        self.orig_forward = self.module.forward
        engine = self.engine

        def forward(*args, **kwargs):
            if not engine.recording:
                return self.orig_forward(*args, **kwargs)
            return self.record(*args, **kwargs)

        self._prev_forward = shared.replace_forward(self.module, forward)

    def uninstall(self) -> None:
        shared.restore_forward(self.module, self._prev_forward)

    def record(self, *args, **kwargs):
        raise NotImplementedError

    def clear(self) -> None:
        raise NotImplementedError

    def prepare(self, batch: int) -> Prepared | None:
        raise NotImplementedError


class _CallTap:
    """The ``tap`` one call of a rule module passes its output through (:class:`~dpkit.grad_sample.layers.TapFn`)."""

    __slots__ = ("unit", "batch", "inputs")

    def __init__(self, unit: _RuleUnit, batch: int, inputs: Any):
        self.unit, self.batch, self.inputs = unit, batch, inputs

    def __call__(self, out: torch.Tensor, record: Record, kept: torch.Tensor | None = None) -> torch.Tensor:
        d = record.batch_dim
        if out.dim() < 2 or out.shape[d] != self.batch:
            u = self.unit
            where = "[batch, ...]" if d == 0 else "[T, batch, ...] (time-major)"
            raise ValueError(
                f"module {u.path or '<root>'} ({type(u.module).__name__}) returned shape {tuple(out.shape)}, not "
                f"{where} with batch = {self.batch} (the first dimension of the model's first tensor "
                "argument): inputs must be batched (one example: x.unsqueeze(0)), and every layer with "
                "parameters must see batch-first activations (else use PrivacyEngine(grad_sample_engine='functorch'))"
            )
        self.unit.records.append(record)
        return _tap(out, self.unit.anchor, record, self.inputs, kept)

    def rebatch(self, source: torch.Tensor, batch: int) -> None:
        self.batch = self.unit.engine.rebatch(source, batch)


class _RuleUnit(_Unit):
    def __init__(self, engine, path, module, names, rule: AnyRule):
        super().__init__(engine, path, module, names)
        self.rule = rule
        self.records: list[Record] = []

    def record(self, *args, **kwargs):
        tap = _CallTap(self, self.engine.current_batch, (args, kwargs))
        return self.rule.forward(self.module, tap, *args, **kwargs)

    def clear(self) -> None:
        self.records.clear()

    def prepare(self, batch: int) -> Prepared | None:
        recs = [r for r in self.records if r.has_grad]
        if not recs:
            return None
        try:
            return self.rule.prepare(self.module, recs, batch)
        except RuntimeError as e:
            raise RuntimeError(f"module {self.path or '<root>'}: {e}") from e


@dataclasses.dataclass
class _Call(RecordedCall):
    # per tensor output: its gradient's record (None: not differentiable)
    records: list[GradRecord[None] | None] = dataclasses.field(default_factory=list)


class _FallbackUnit(_Unit):
    """Generic torch.func per-example gradients for one module subtree (see the module docstring)."""

    def __init__(self, engine, path, module, names):
        super().__init__(engine, path, module, names)
        self.calls: list[_Call] = []

    def _detached(self) -> dict[str, torch.Tensor]:
        return {n: p.detach() for n, p in self.module.named_parameters()}

    def _run(self, call: _Call, params: dict[str, torch.Tensor], xs, one: bool = True) -> Any:
        with self.engine.passthrough():
            return run_example(self.module, self.orig_forward, call, params, xs, one)

    def record(self, *args, **kwargs):
        batch = self.engine.current_batch
        leaves, spec = tree_flatten((args, kwargs))
        batched = [isinstance(x, torch.Tensor) and x.dim() > 0 and x.shape[0] == batch for x in leaves]
        if not any(batched):
            raise RuntimeError(
                f"module {self.path or '<root>'} ({type(self.module).__name__}) was called without a tensor argument "
                f"whose first dimension is the batch ({batch} examples); the book-keeping engine needs batch-first "
                "inputs. Use PrivacyEngine(grad_sample_engine='functorch') for this model"
            )
        call = _Call([x.detach() if isinstance(x, torch.Tensor) else x for x in leaves], spec, batched, batch)
        params = self._detached()
        if batch == 0:
            a, k = tree_unflatten(leaves, spec)
            with self.engine.passthrough(), _reparametrize_module(self.module, params, tie_weights=True):
                out = self.orig_forward(*a, **k)
            out_leaves, out_spec = tree_flatten(out)
            call.batch_dims = [0] * len(output_tensors(out))
        else:
            xs_all = [x for x, b in zip(leaves, batched, strict=True) if b]  # not detached: input grads flow
            out_leaves, out_spec, call.batch_dims = vmap_in_chunks(
                lambda xs, one: self._run(call, params, xs, one),
                xs_all,
                self.engine.chunks(batch),
                call.rng_states,
                f"module {self.path or '<root>'} ({type(self.module).__name__})",
            )
        for j, o in enumerate(out_leaves):
            if not isinstance(o, torch.Tensor):
                continue
            if o.is_floating_point() or o.is_complex():
                rec = GradRecord(None)
                call.records.append(rec)
                # A copy: the module's last operation may have saved its output for its backward (tanh, sigmoid,
                # exp, ...), which the tap's mark_dirty would invalidate (and vmap returns views of it).
                out_leaves[j] = Tap.apply(o.clone(), self.anchor, rec)
            else:
                call.records.append(None)
        self.calls.append(call)
        return tree_unflatten(out_leaves, out_spec)

    def clear(self) -> None:
        self.calls.clear()

    def _call_grads(self, call: _Call) -> dict[str, torch.Tensor] | None:
        received = [(k, r) for k, r in enumerate(call.records) if r is not None and r.has_grad]
        if not received:
            return None
        if call.batch_size == 0:
            return {n: p.new_zeros((0, *p.shape)) for n, p in self._train().items()}
        base = self._detached()
        train = self._train()
        xs_all = [x for x, b in zip(call.leaves, call.batched, strict=True) if b]
        used = [k for k, _ in received]
        loss = replay_loss(lambda p, xs: self._run(call, {**base, **p}, xs), call.batch_dims, used)
        grads = [r.output_grad.movedim(call.batch_dims[k], 0) for k, r in received]
        parts = []
        for index, sl in enumerate(self.engine.chunks(call.batch_size)):
            gs = tuple(g[sl] for g in grads)
            xs = tuple(x[sl] for x in xs_all)
            parts.append(per_example_grads(loss, train, gs, xs, call.rng_states[index]))
        return {n: torch.cat([p[n] for p in parts]) if len(parts) > 1 else parts[0][n] for n in train}

    def _train(self) -> dict[str, torch.Tensor]:
        return {n: self.engine.params[i].detach() for n, i in self.names}

    def prepare(self, batch: int) -> Prepared | None:
        total: dict[str, torch.Tensor] | None = None
        with rng_restored():
            for call in self.calls:
                if call.batch_size != batch:
                    continue
                g = self._call_grads(call)
                if g is not None:
                    total = g if total is None else {n: total[n] + g[n] for n in g}
        return None if total is None else Instantiated(total)


@shared.register_engine("bookkeeping")
class BookkeepingEngine(shared.GradSampleEngine):
    """Single-backward book-keeping engine with per-module torch.func fallback (see the module docstring)."""

    auto_priority = 0

    def __init__(self, module: nn.Module, params: Sequence[nn.Parameter], **kwargs):
        super().__init__(module, params, **kwargs)
        self.units: list[_Unit] = []
        self._handles: list[Any] = []
        self._batches: list[int] = []
        self._sources: list[torch.Tensor] = []  # per root call: the tensor its batch size was read from
        self._depth = 0
        self._stack: list[bool] = []
        self._passthrough = 0

    @classmethod
    def unsupported_reason(cls, module: nn.Module) -> str | None:
        for path, m in module.named_modules():
            if isinstance(m, _SEQ_FIRST_CHILDREN) and sequence_first(m):
                return f"{path or '<root>'} ({type(m).__name__}) has batch_first=False (sequence-first activations)"
        if any(p.requires_grad for p in module.parameters(recurse=False)) and rule_for(module) is None:
            return "the root module owns parameters without a layer rule (everything would use the fallback)"
        return None

    # ------------------------------------------------------------------ plan / attach / detach
    def _plan(self) -> list[_Unit]:
        index = {id(p): i for i, p in enumerate(self.params)}
        units: list[_Unit] = []
        seen: set[int] = set()

        def visit(path: str, m: nn.Module) -> None:
            if id(m) in seen:
                return
            seen.add(id(m))
            if not any(id(p) in index for p in m.parameters()):
                return
            own = [(n, index[id(p)]) for n, p in m.named_parameters(recurse=False) if id(p) in index]
            sub = [(n, index[id(p)]) for n, p in m.named_parameters() if id(p) in index]
            rule = rule_for(m)
            if rule is not None:  # a leaf module, or a rule that handles the module's whole subtree
                units.append(_RuleUnit(self, path, m, sub, rule))
                return
            if own:
                units.append(_FallbackUnit(self, path, m, sub))
                return
            for name, child in m.named_children():
                visit(f"{path}.{name}" if path else name, child)

        visit("", self.module)
        return units

    def attach(self) -> None:
        if self.attached:
            return
        self._check_attachable()
        self.units = self._plan()
        for u in self.units:
            u.install()
        self._handles = [
            self.module.register_forward_pre_hook(self._enter, with_kwargs=True),
            self.module.register_forward_hook(self._leave, always_call=True),
        ]
        self._mark_attached(True)

    def detach(self) -> None:
        if not self.attached:
            return
        for u in reversed(self.units):
            u.uninstall()
        for h in self._handles:
            h.remove()
        self._handles = []
        self._mark_attached(False)
        self.clear()
        self.units = []

    def clear(self) -> None:
        for u in self.units:
            u.clear()
        self._batches.clear()
        self._sources.clear()

    # ------------------------------------------------------------------ recording state
    @property
    def recording(self) -> bool:
        return self._depth > 0 and self._passthrough == 0 and torch.is_grad_enabled()

    @property
    def current_batch(self) -> int:
        return self._batches[-1]

    class _Passthrough:
        def __init__(self, engine):
            self.engine = engine

        def __enter__(self):
            self.engine._passthrough += 1

        def __exit__(self, *exc):
            self.engine._passthrough -= 1

    def passthrough(self) -> BookkeepingEngine._Passthrough:
        """Inside: the modules run their ordinary forward (fallback forward / replay)."""
        return self._Passthrough(self)

    def _enter(self, module, args, kwargs):
        if not torch.is_grad_enabled() or self._passthrough:
            self._stack.append(False)
            return
        if self._depth == 0:
            try:
                tensors = self.model_tensors(tree_flatten((args, kwargs))[0])
            except BaseException:
                self._stack.append(False)  # the forward hook (always_call) pops it
                raise
            self._batches.append(tensors[0].shape[0])
            self._sources.append(tensors[0])
        self._depth += 1
        self._stack.append(True)

    def _leave(self, module, args, output):
        if self._stack and self._stack.pop():
            self._depth -= 1

    def rebatch(self, source: torch.Tensor, batch: int) -> int:
        """A layer found that ``source`` holds the examples flattened (an EmbeddingBag's 1-D input with offsets):
        if the current root call's batch size was read from it, the call has ``batch`` examples instead. Returns
        the current batch size."""
        if self._sources and source is self._sources[-1]:
            self._batches[-1] = batch
        return self._batches[-1]

    @property
    def batch_size(self) -> int | None:
        return self._batches[0] if self._batches else None

    # ------------------------------------------------------------------ step
    def _step_batch(self) -> int:
        size = shared.step_batch_size(self._batches)
        return 0 if size is None else size

    def _contributions(self, batch: int) -> dict[int, list[tuple[Prepared, str]]]:
        contrib: dict[int, list[tuple[Prepared, str]]] = {}
        for u in self.units:
            prep = u.prepare(batch)
            if prep is None:
                continue
            for name, i in u.names:
                contrib.setdefault(i, []).append((prep, name))
        return contrib

    def _scale(self, batch: int) -> float:
        return float(batch) if self.loss_reduction == "mean" else 1.0

    def per_sample_gradients(self) -> list[torch.Tensor]:
        batch = self._step_batch()
        contrib = self._contributions(batch) if batch else {}
        out = []
        for i, p in enumerate(self.params):
            parts = [prep.per_sample(name) for prep, name in contrib.get(i, [])]
            g = sum(parts[1:], parts[0]) if parts else p.new_zeros((batch, *p.shape))
            out.append(g.reshape(batch, *p.shape) * self._scale(batch))
        return out

    def clipped_sum(
        self, policy: ClippingPolicy, out: torch.Tensor | None = None, weight: float = 1.0, residual: bool = False
    ) -> shared.ClippedSum:
        batch = self._step_batch()
        self.check_step_batch(batch if self._batches else None)
        flat, sums = shared.flat_views(self.params, out)
        rest = shared.flat_views(self.params, None)[1] if residual else None  # what clipping removed
        if batch == 0:
            return shared.ClippedSum(sums, 0, torch.zeros(0), flat, residual=rest)
        contrib = self._contributions(batch)
        if not contrib:
            raise shared.no_backward_error(batch)
        dtype, device = self.params[0].dtype, self.params[0].device
        cols, tied = [], {}
        for i in range(len(self.params)):
            parts = contrib.get(i, [])
            if not parts:
                cols.append(torch.zeros(batch, dtype=dtype, device=device))
            elif len(parts) == 1:
                prep, name = parts[0]
                cols.append(prep.sq_norms(name).to(dtype))
            else:  # tied parameter / shared module: sum the contributions per example first
                g = sum(
                    (prep.per_sample(name).reshape(batch, -1) for prep, name in parts[1:]),
                    parts[0][0].per_sample(parts[0][1]).reshape(batch, -1),
                )
                tied[i] = g
                cols.append((g * g).sum(1).to(dtype))
        scale = self._scale(batch)
        sq = torch.stack(cols, 1)
        if scale != 1.0:
            sq = sq * (scale * scale)
        total = sq.sum(1)
        keep = shared.finite_rows(total)
        clip = policy.factors(sq)
        # (per-example weights [b, L], their sums): the clipped sum, and with ``residual`` what clipping removed
        weighted = [(clip * (scale * weight), sums)]
        if rest is not None:
            weighted.append(((1.0 - clip) * (scale * weight), rest))
        selected: dict[int, Prepared] = {}  # each layer's information restricted to the kept examples
        if keep is not None:  # examples with a NaN / inf gradient: their rows are removed before the sums
            weighted = [(f[keep], target) for f, target in weighted]
            tied = {i: g[keep] for i, g in tied.items()}
        for i, parts in contrib.items():
            if keep is not None and not len(weighted[0][0]):
                break  # every example was left out: nothing to add
            if i in tied:
                for f, target in weighted:
                    target[i].view(-1).addmv_(tied[i].t(), f[:, i].contiguous().to(tied[i].dtype))
                continue
            prep, name = parts[0]
            if keep is not None:
                if id(prep) not in selected:
                    selected[id(prep)] = prep.select(keep)
                prep = selected[id(prep)]
            for f, target in weighted:
                prep.accumulate(name, f[:, i].contiguous(), target[i])
        nonfinite = 0 if keep is None else batch - int(keep.sum())
        return shared.ClippedSum(sums, batch, total.sqrt(), flat, nonfinite, rest)
