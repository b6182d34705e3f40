"""nn.RNN (tanh / relu), nn.LSTM (``proj_size`` too) and nn.GRU: any number of layers, bidirectional,
``batch_first`` either way, with or without biases, initial states, packed sequences, dropout between layers; and
their cells (nn.RNNCell, LSTMCell, GRUCell: at the end of the file).

Their weights are linear maps applied at every time step, so each is a
:class:`~dpkit.grad_sample.layers.matmul.MatmulGrads` over the steps (T positions): ``W_ih`` of the layer's inputs
and of the gradients of the input projections ``u_t = W_ih x_t + b_ih``; ``W_hh`` of the states before each step
and of the gradients of ``W_hh h + b_hh``; ``W_hr`` (LSTM ``proj_size``) of ``m_t`` and of the gradients of the
projected state. The rule runs each layer and direction as one matmul for ``u`` (tapped; it gives ``d u``) and a
:class:`~dpkit.grad_sample.layers.recurrent_cells.Scan` over the steps, whose hand-written backward delivers the
rest (:mod:`.recurrent_cells`); ``b_ih`` and ``b_hh`` get the per-example sums over steps. Packed sequences run
padded, with finished sequences masked (their state kept, their outputs zero, their gradients zero), and are packed
again with the input's order. The torch.func engines run the same recurrence with ordinary differentiable ops
(:func:`~dpkit.grad_sample.layers.recurrent_cells.reference_scan`; stock recurrent kernels have no vmap batching
rule); they cannot split packed sequences by example.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from dpkit.grad_sample.layers.base import ByName, LayerRule, Prepared, register_layer_rule
from dpkit.grad_sample.layers.linear import detached, matmul_grads, trained
from dpkit.grad_sample.layers.matmul import MatmulGrads
from dpkit.grad_sample.layers.records import GradRecord, Record, TapFn
from dpkit.grad_sample.layers.recurrent_cells import GATES, CellWeights, Scan, reference_scan
from dpkit.grad_sample.vmap_calls import register_vmappable_forward


@dataclasses.dataclass(eq=False)
class ScanRecord(Record):
    """One layer and direction of one call, time-major: its input ``x`` ``[T, B, in]``; from the scan, the states
    before each step ``h_prev`` and LSTM's ``m`` (proj_size); the gradients ``du`` (the tap on ``u``), ``dv`` (None:
    equal to ``du``) and ``dhr``, summed over backward passes, and the per-example sums over steps of ``du`` and
    ``dv`` (the biases' per-example gradients), formed in the backward pass."""

    batch_dim: ClassVar[int] = 1
    layer: int
    direction: int
    x: torch.Tensor
    h_prev: torch.Tensor | None = None
    m: torch.Tensor | None = None
    du: torch.Tensor | None = None
    dv: torch.Tensor | None = None
    dhr: torch.Tensor | None = None
    du_sum: torch.Tensor | None = None
    dv_sum: torch.Tensor | None = None

    @property
    def has_grad(self) -> bool:
        return self.du is not None

    def scanned(self, h_prev: torch.Tensor, m: torch.Tensor | None) -> None:
        self.h_prev, self.m = h_prev, m

    def add_recurrent(self, dv: torch.Tensor | None, dhr: torch.Tensor | None) -> None:
        if dv is not None:
            self.dv = dv if self.dv is None else self.dv + dv
            s = dv.sum(0)
            self.dv_sum = s if self.dv_sum is None else self.dv_sum + s
        if dhr is not None:
            self.dhr = dhr if self.dhr is None else self.dhr + dhr

    def receive(self, grad: torch.Tensor, kept: tuple[torch.Tensor, ...]) -> None:
        self.du = grad if self.du is None else self.du + grad
        s = grad.sum(0)
        self.du_sum = s if self.du_sum is None else self.du_sum + s


# A layer and direction: (layer, direction, layer input [T, B, in], h0, c0, mask) -> (out [T, B, Hout], h_n, c_n).
LayerRun = Callable[
    [int, int, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None],
    tuple[torch.Tensor, torch.Tensor, torch.Tensor | None],
]


def _suffix(layer: int, direction: int) -> str:
    return f"_l{layer}" + ("_reverse" if direction else "")


def cell_weights(module: nn.RNNBase, layer: int, direction: int, detach: bool) -> CellWeights:
    sfx = _suffix(layer, direction)

    def get(name: str) -> torch.Tensor | None:
        p = getattr(module, name + sfx, None)
        return None if p is None else (p.detach() if detach else p)

    w_ih, w_hh = get("weight_ih"), get("weight_hh")
    assert w_ih is not None and w_hh is not None
    return CellWeights(w_ih, w_hh, get("bias_ih"), get("bias_hh"), get("weight_hr") if module.proj_size else None)


def run_recurrent(module: nn.RNNBase, input: Any, hx: Any, run_layer: LayerRun, batch: int | None = None) -> Any:
    """The module's forward with each layer and direction computed by ``run_layer`` (see :data:`LayerRun`):
    unpacks / transposes the input to time-major, splits the initial states, applies dropout between layers and
    returns what the stock module returns. ``batch``: the examples expected (checked)."""
    name = type(module).__name__
    packed = isinstance(input, PackedSequence)
    mask = None
    if packed:
        x, lengths = pad_packed_sequence(input)  # [T, B, in], the original order of the examples
        steps = torch.arange(x.shape[0]).unsqueeze(1)
        mask = (steps < lengths.unsqueeze(0)).unsqueeze(2).to(x.device)  # [T, B, 1]
    else:
        if input.dim() != 3:
            raise RuntimeError(
                f"{name} was called on unbatched input (a {input.dim()}-D tensor); per-example gradients need a "
                "batch dimension"
            )
        x = input.transpose(0, 1) if module.batch_first else input
    b = x.shape[1]
    if batch is not None and b != batch:
        raise RuntimeError(
            f"{name} was called on a batch of {b} sequences, but the batch has {batch} examples; the book-keeping "
            "engine needs the batch dimension of the model's input in every layer with parameters. Use "
            "PrivacyEngine(grad_sample_engine='functorch') for this model"
        )
    dirs = 2 if module.bidirectional else 1
    h_out = module.proj_size or module.hidden_size
    lstm = module.mode == "LSTM"
    h0, c0 = (hx if hx is not None else (None, None)) if lstm else (hx, None)
    if h0 is None:
        h0 = x.new_zeros(module.num_layers * dirs, b, h_out)
    if lstm and c0 is None:
        c0 = x.new_zeros(module.num_layers * dirs, b, module.hidden_size)
    for state, size in ((h0, h_out), (c0, module.hidden_size)):
        if state is not None and tuple(state.shape) != (module.num_layers * dirs, b, size):
            raise RuntimeError(
                f"{name}: expected initial state of shape {(module.num_layers * dirs, b, size)}, got "
                f"{tuple(state.shape)}"
            )
    h_n, c_n = [], []
    layer_in = x
    for layer in range(module.num_layers):
        outs = []
        for d in range(dirs):
            k = layer * dirs + d
            out, h, c = run_layer(layer, d, layer_in, h0[k], None if c0 is None else c0[k], mask)
            outs.append(out)
            h_n.append(h)
            c_n.append(c)
        layer_in = outs[0] if dirs == 1 else torch.cat(outs, 2)
        if module.dropout and module.training and layer < module.num_layers - 1:
            layer_in = F.dropout(layer_in, module.dropout, True)
    hidden: Any = torch.stack(h_n)
    if lstm:
        hidden = (hidden, torch.stack(c_n))  # type: ignore[arg-type]
    if packed:
        order = input.sorted_indices
        out_sorted, keep = (layer_in, mask) if order is None else (layer_in[:, order], mask[:, order])  # type: ignore[index]
        data = out_sorted[keep.expand_as(out_sorted)].reshape(-1, layer_in.shape[2])  # type: ignore[union-attr]
        return PackedSequence(data, input.batch_sizes, input.sorted_indices, input.unsorted_indices), hidden
    return (layer_in.transpose(0, 1) if module.batch_first else layer_in), hidden


def reference_forward(module: nn.RNNBase, input: Any, hx: Any = None) -> Any:
    """The module's forward with ordinary differentiable ops (for torch.func)."""

    def run_layer(layer, d, x, h0, c0, mask):
        return reference_scan(module.mode, x, h0, c0, cell_weights(module, layer, d, False), mask, d == 1)

    return run_recurrent(module, input, hx, run_layer)


class RecurrentRule(LayerRule[nn.RNNBase, ScanRecord]):
    def parameter_names(self, module: nn.RNNBase) -> Collection[str]:
        return module._flat_weights_names

    def unsupported(self, module: nn.RNNBase) -> str | None:
        if module.mode not in GATES:
            return f"mode {module.mode!r}"
        return None

    def forward(self, module: nn.RNNBase, tap: TapFn[ScanRecord], input: Any, hx: Any = None) -> Any:
        mode = module.mode

        def run_layer(layer, d, x, h0, c0, mask):
            w = cell_weights(module, layer, d, True)
            bias = w.b_ih
            if mode != "GRU" and w.b_hh is not None:  # RNN and LSTM add b_hh to the same pre-activations
                bias = w.b_hh if bias is None else bias + w.b_hh
            record = ScanRecord(layer, d, x.detach())
            u = tap(F.linear(x, w.w_ih, bias), record)
            out, h_n, c_n = Scan.apply(u, h0, c0, mode, w, mask, d == 1, record)
            return out, h_n, (c_n if mode == "LSTM" else None)

        return run_recurrent(module, input, hx, run_layer, tap.batch)

    def prepare(self, module: nn.RNNBase, records: Sequence[ScanRecord], batch: int) -> Prepared:
        """Per layer and direction, time-major MatmulGrads (calls concatenated over steps); for RNN and LSTM the
        hidden weights' output gradients are the input projections' (one Gram matrix for both)."""
        groups: dict[tuple[int, int], list[ScanRecord]] = {}
        for r in records:
            if r.x.shape[1] != batch:
                raise RuntimeError(f"{type(module).__name__} recorded a call on {r.x.shape[1]} examples, not {batch}")
            groups.setdefault((r.layer, r.direction), []).append(r)
        parts: dict[str, Prepared] = {}

        def named(name: str) -> str | None:
            return name if trained(getattr(module, name, None)) else None

        def cat(ts: list[Any]) -> Any:
            return ts[0] if len(ts) == 1 else torch.cat(ts, 0)

        def total(ts: list[Any]) -> Any:
            return sum(ts[1:], ts[0])

        for (layer, d), recs in groups.items():
            sfx = _suffix(layer, d)
            du = cat([r.du for r in recs])
            ih = MatmulGrads(
                cat([r.x for r in recs]),
                du,
                weight=named("weight_ih" + sfx),
                bias=named("bias_ih" + sfx),
                g_sum=total([r.du_sum for r in recs]),
                time_major=True,
            )
            shared = all(r.dv is None for r in recs)
            hh = MatmulGrads(
                cat([r.h_prev for r in recs]),
                du if shared else cat([r.dv for r in recs]),
                weight=named("weight_hh" + sfx),
                bias=named("bias_hh" + sfx),
                g_sum=total([r.du_sum if shared else r.dv_sum for r in recs]),
                time_major=True,
                same_g_as=ih if shared else None,
            )
            parts["weight_ih" + sfx] = parts["bias_ih" + sfx] = ih
            parts["weight_hh" + sfx] = parts["bias_hh" + sfx] = hh
            if module.proj_size:
                parts["weight_hr" + sfx] = MatmulGrads(
                    cat([r.m for r in recs]),
                    cat([r.dhr for r in recs]),
                    weight=named("weight_hr" + sfx),
                    bias=None,
                    time_major=True,
                )
        return ByName(parts)


for _layer in (nn.RNN, nn.LSTM, nn.GRU):  # each defines its own forward
    register_layer_rule(_layer)(type(f"{_layer.__name__}Rule", (RecurrentRule,), {}))
    register_vmappable_forward(_layer)(reference_forward)


# ---------------------------------------------------------------------------------------------- cells
# One step (nn.RNNCell / LSTMCell / GRUCell, called in the user's loop over time): its two projections
# ``u = W_ih x + b_ih`` and ``v = W_hh h + b_hh`` are tapped matmuls (each call one more position of each), the
# gates ordinary differentiable ops.
CellRecord = GradRecord[tuple[str, torch.Tensor]]


def _cell_state(module: nn.RNNCellBase, input: torch.Tensor, hx: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    if input.dim() != 2:
        raise RuntimeError(
            f"{type(module).__name__} was called on unbatched input; per-example gradients need a batch dimension"
        )
    zeros = input.new_zeros(input.shape[0], module.hidden_size)
    if isinstance(module, nn.LSTMCell):
        return hx if hx is not None else (zeros, zeros)
    return (zeros if hx is None else hx), None


def _cell_step(module: nn.RNNCellBase, u: torch.Tensor, v: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None):
    """The cell's output from its projections ``u = W_ih x + b_ih`` and ``v = W_hh h + b_hh``."""
    if isinstance(module, nn.LSTMCell):
        assert c is not None
        i, f, g, o = (u + v).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    if isinstance(module, nn.GRUCell):
        ur, uz, un = u.chunk(3, 1)
        vr, vz, vn = v.chunk(3, 1)
        r, z = torch.sigmoid(ur + vr), torch.sigmoid(uz + vz)
        n = torch.tanh(un + r * vn)
        return n + z * (h - n)
    return torch.tanh(u + v) if module.nonlinearity == "tanh" else torch.relu(u + v)


def reference_cell(module: nn.RNNCellBase, input: torch.Tensor, hx: Any = None) -> Any:
    """The cell's forward with ordinary differentiable ops (for torch.func)."""
    h, c = _cell_state(module, input, hx)
    u = F.linear(input, module.weight_ih, module.bias_ih)
    return _cell_step(module, u, F.linear(h, module.weight_hh, module.bias_hh), h, c)


class CellRule(LayerRule[nn.RNNCellBase, CellRecord]):
    param_names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")

    def forward(self, module: nn.RNNCellBase, tap: TapFn[CellRecord], input: torch.Tensor, hx: Any = None) -> Any:
        h, c = _cell_state(module, input, hx)
        u = tap(
            F.linear(input, module.weight_ih.detach(), detached(module.bias_ih)), GradRecord(("ih", input.detach()))
        )
        v = tap(F.linear(h, module.weight_hh.detach(), detached(module.bias_hh)), GradRecord(("hh", h.detach())))
        return _cell_step(module, u, v, h, c)

    def prepare(self, module: nn.RNNCellBase, records: Sequence[CellRecord], batch: int) -> Prepared:
        parts: dict[str, Prepared] = {}
        for which in ("ih", "hh"):
            uses = [(r.saved[1], r.output_grad, None) for r in records if r.saved[0] == which]
            if uses:
                weight, bias = ("weight_" + which, "bias_" + which)
                prep = matmul_grads(
                    uses,
                    batch,
                    weight if trained(getattr(module, weight)) else None,
                    bias if trained(getattr(module, bias, None)) else None,
                    type(module).__name__,
                )
                parts[weight] = parts[bias] = prep
        return ByName(parts)


for _cell in (nn.RNNCell, nn.LSTMCell, nn.GRUCell):
    register_layer_rule(_cell)(type(f"{_cell.__name__}Rule", (CellRule,), {}))
    register_vmappable_forward(_cell)(reference_cell)
