"""The recurrence of one layer and direction of nn.RNN (tanh / relu), nn.LSTM (``proj_size`` too) and nn.GRU,
time-major (``[T, B, *]``), given the input projections ``u_t = W_ih x_t + b_ih`` of every step, with an optional
mask of active steps (packed sequences: a finished sequence keeps its state and outputs zeros).

PyTorch's equations (gates in its row order; ``h`` the state, ``c`` the LSTM cell)::

    RNN   h' = act(u + W_hh h + b_hh)
    LSTM  i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of (u + W_hh h + b_hh)
          c' = f * c + i * g;  m = o * tanh(c');  h' = m (or W_hr m with proj_size)
    GRU   v = W_hh h + b_hh;  r, z = sigmoid(u_rz + v_rz);  n = tanh(u_n + r * v_n);  h' = (1 - z) * n + z * h

Two implementations of the same recurrence:

* :class:`Scan`, the book-keeping rule's: an autograd Function whose forward runs the recurrence without building a
  graph (one matmul and a few element-wise ops per step, into preallocated buffers) and whose backward runs the
  backward recurrence by hand. It returns the gradient of ``u`` (the gates' pre-activation gradients ``du``) and
  hands its :class:`ScanSink` the states before each step and the gradient of the hidden projection ``W_hh h + b_hh``
  (``du`` itself for RNN and LSTM; GRU's candidate rows are scaled by ``r``) and, with ``proj_size``, of ``W_hr m``:
  everything the per-example gradients of ``W_hh``, ``b_hh`` and ``W_hr`` need. For RNN and LSTM the caller folds
  ``b_hh`` into ``u``. Measured on a 2-core CPU (2-layer LSTM, hidden 128, 32 steps, batch 64, forward and
  backward on one thread): the recurrence unrolled with autograd ops took about 1.7 times the stock fused kernel,
  this one about 1.0 times. The per-step loops run on one thread (:func:`_one_thread`).
* :func:`reference_scan`: ordinary differentiable ops, which ``torch.func`` can ``vmap`` (stock recurrent kernels
  have no batching rule), used by the generic engine and the fallback.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


@dataclasses.dataclass(frozen=True)
class CellWeights:
    """One layer and direction's parameters (``w_ih`` / ``b_ih`` are used by :func:`reference_scan` only)."""

    w_ih: torch.Tensor
    w_hh: torch.Tensor
    b_ih: torch.Tensor | None
    b_hh: torch.Tensor | None
    w_hr: torch.Tensor | None


class ScanSink(Protocol):
    """Receives what :class:`Scan` knows of the hidden projections (time-major tensors, see the module docstring)."""

    def scanned(self, h_prev: torch.Tensor, m: torch.Tensor | None) -> None:
        """Forward: the state before each step ``[T, B, Hout]``, and LSTM's ``m`` ``[T, B, H]`` with proj_size."""

    def add_recurrent(self, dv: torch.Tensor | None, dhr: torch.Tensor | None) -> None:
        """Backward: d / d(W_hh h + b_hh) ``[T, B, G * H]`` (None: equal to du) and d / d(W_hr m) (proj_size)."""


@contextlib.contextmanager
def _one_thread():
    """The per-step ops are small (one [B, G * H] matmul and a few element-wise ops): run them on one thread;
    splitting each over threads costs a fork and join per op, which loses on a busy machine."""
    n = torch.get_num_threads()
    if n > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if n > 1:
            torch.set_num_threads(n)


def _where(keep: torch.Tensor | None, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    return new if keep is None else torch.where(keep, new, old)


# ------------------------------------------------------------------------------------------ forward (no graph)
# Each writes the states into ``hs`` ([T + 1, B, Hout]; slot t + r holds the state before step t and slot
# t + 1 - r the state after it, r = 1 for the reverse direction) and LSTM's cells into ``cs`` likewise, and
# returns the other buffers its backward needs.
Buffers = dict[str, torch.Tensor | None]


def _gates(t: torch.Tensor, n: int) -> list[list[torch.Tensor]]:
    """``t`` ``[T, B, n * H]`` as n lists over the steps of its gate blocks ``[B, H]`` (views): the loops below
    index Python lists instead of slicing tensors at every step."""
    return [list(g.unbind(0)) for g in t.view(*t.shape[:2], n, -1).unbind(2)]


def _rnn_forward(mode, u, hs, cs, w, mask, steps, r) -> Buffers:
    act = torch.tanh_ if mode == "RNN_TANH" else torch.relu_
    w_t = w.w_hh.t()
    us, hl = u.unbind(0), hs.unbind(0)
    keep = None if mask is None else mask.unbind(0)
    for t in steps:
        p, n = t + r, t + 1 - r
        act(torch.addmm(us[t], hl[p], w_t, out=hl[n]))
        if keep is not None:
            torch.where(keep[t], hl[n], hl[p], out=hl[n])
    return {}


def _lstm_forward(mode, u, hs, cs, w, mask, steps, r) -> Buffers:
    steps_n, batch, gates = u.shape
    h = gates // 4
    acts = u.new_empty(steps_n, batch, gates)  # i, f, g, o after their activations
    tcs = u.new_empty(steps_n, batch, h)  # tanh(c')
    ms = None if w.w_hr is None else u.new_empty(steps_n, batch, h)
    w_t = w.w_hh.t()
    hr_t = None if w.w_hr is None else w.w_hr.t()
    z = u.new_empty(batch, gates)
    z_g = z[:, 2 * h : 3 * h]
    us, hl, cl, al, tl = u.unbind(0), hs.unbind(0), cs.unbind(0), acts.unbind(0), tcs.unbind(0)
    il, fl, gl, ol = _gates(acts, 4)
    ml = None if ms is None else ms.unbind(0)
    keep = None if mask is None else mask.unbind(0)
    for t in steps:
        p, n = t + r, t + 1 - r
        torch.addmm(us[t], hl[p], w_t, out=z)
        torch.sigmoid(z, out=al[t])
        torch.tanh(z_g, out=gl[t])
        torch.mul(fl[t], cl[p], out=cl[n]).addcmul_(il[t], gl[t])
        torch.tanh(cl[n], out=tl[t])
        if ml is None or hr_t is None:
            torch.mul(ol[t], tl[t], out=hl[n])
        else:
            torch.mm(torch.mul(ol[t], tl[t], out=ml[t]), hr_t, out=hl[n])
        if keep is not None:
            torch.where(keep[t], hl[n], hl[p], out=hl[n])
            torch.where(keep[t], cl[n], cl[p], out=cl[n])
    return {"acts": acts, "tcs": tcs, "ms": ms}


def _gru_forward(mode, u, hs, cs, w, mask, steps, r) -> Buffers:
    steps_n, batch, gates = u.shape
    h = gates // 3
    acts = u.new_empty(steps_n, batch, gates)  # r, z, n after their activations
    vn = u.new_empty(steps_n, batch, h)  # W_hn h + b_hn
    w_t = w.w_hh.t()
    v = u.new_empty(batch, gates)
    v_rz, v_n = v[:, : 2 * h], v[:, 2 * h :]
    us, hl, vl = u.unbind(0), hs.unbind(0), vn.unbind(0)
    u_rz = [x[:, : 2 * h] for x in us]
    u_n = [x[:, 2 * h :] for x in us]
    a_rz = [x[:, : 2 * h] for x in acts.unbind(0)]
    rl, zl, nl = _gates(acts, 3)
    keep = None if mask is None else mask.unbind(0)
    for t in steps:
        p, n = t + r, t + 1 - r
        if w.b_hh is None:
            torch.mm(hl[p], w_t, out=v)
        else:
            torch.addmm(w.b_hh, hl[p], w_t, out=v)
        torch.add(u_rz[t], v_rz, out=a_rz[t]).sigmoid_()
        vl[t].copy_(v_n)
        torch.addcmul(u_n[t], rl[t], v_n, out=nl[t]).tanh_()
        torch.sub(hl[p], nl[t], out=hl[n]).mul_(zl[t]).add_(nl[t])
        if keep is not None:
            torch.where(keep[t], hl[n], hl[p], out=hl[n])
    return {"acts": acts, "vn": vn}


# ------------------------------------------------------------------------------------------ backward by hand
# Each walks the steps backwards from the gradients of the outputs ``d_out`` ([T, B, Hout], zero at inactive
# steps) and of the final state(s), and returns (du, dv or None, dhr or None, dh0, dc0 or None).


def _rnn_backward(mode, d_out, dh, dc, hs, cs, buf, w, mask, steps, r):
    states = hs[: len(hs) - 1] if r else hs[1:]  # the state after each step
    deriv = 1 - states * states if mode == "RNN_TANH" else (states > 0).to(states.dtype)
    du = torch.empty_like(deriv)
    dl, outs, dul = deriv.unbind(0), d_out.unbind(0), du.unbind(0)
    keep = None if mask is None else mask.unbind(0)
    for t in reversed(steps):
        g = dh + outs[t]
        dz = torch.mul(g, dl[t], out=dul[t])
        if keep is None:
            dh = torch.mm(dz, w.w_hh)
        else:
            dz.mul_(keep[t])
            dh = torch.where(keep[t], torch.mm(dz, w.w_hh), g)
    return du, None, None, dh, None


def _lstm_backward(mode, d_out, dh, dc, hs, cs, buf, w, mask, steps, r):
    acts, tcs, ms = buf["acts"], buf["tcs"], buf["ms"]
    h = acts.shape[2] // 4
    deriv = acts * (1 - acts)  # sigmoid' for i, f, o ...
    g_act = acts[..., 2 * h : 3 * h]
    deriv[..., 2 * h : 3 * h] = 1 - g_act * g_act  # ... tanh' for g
    oq = acts[..., 3 * h :] * (1 - tcs * tcs)  # d c' / d m
    du = torch.empty_like(acts)
    dhr = None if ms is None else torch.empty_like(d_out)
    il, fl, gl, _ = _gates(acts, 4)
    dil, dfl, dgl, dol = _gates(du, 4)
    dul, derl, outs, oql, tl, cl = (x.unbind(0) for x in (du, deriv, d_out, oq, tcs, cs))
    hrl = None if dhr is None else dhr.unbind(0)
    w_hr = w.w_hr
    keep = None if mask is None else mask.unbind(0)
    for t in reversed(steps):
        g = dh + outs[t]
        dm = g if hrl is None or w_hr is None else torch.mm(hrl[t].copy_(g), w_hr)
        torch.mul(dm, tl[t], out=dol[t])
        dct = torch.addcmul(dc, dm, oql[t])
        torch.mul(dct, gl[t], out=dil[t])
        torch.mul(dct, cl[t + r], out=dfl[t])
        torch.mul(dct, il[t], out=dgl[t])
        dz = dul[t].mul_(derl[t])
        if keep is None:
            dc = dct * fl[t]
            dh = torch.mm(dz, w.w_hh)
        else:
            dz.mul_(keep[t])
            dc = torch.where(keep[t], dct * fl[t], dc)
            dh = torch.where(keep[t], torch.mm(dz, w.w_hh), g)
    return du, None, dhr, dh, dc


def _gru_backward(mode, d_out, dh, dc, hs, cs, buf, w, mask, steps, r):
    acts, vn = buf["acts"], buf["vn"]
    h = acts.shape[2] // 3
    rg, zg, ng = acts[..., :h], acts[..., h : 2 * h], acts[..., 2 * h :]
    h_prev = hs[1:] if r else hs[: len(hs) - 1]
    q_n = (1 - zg) * (1 - ng * ng)  # d n_pre / d h'
    q_z = (h_prev - ng) * zg * (1 - zg)  # d z_pre / d h'
    q_r = vn * rg * (1 - rg)  # d r_pre / d n_pre
    du = torch.empty_like(acts)
    dv = torch.empty_like(acts)
    dul, dvl, outs, qnl, qzl, qrl = (x.unbind(0) for x in (du, dv, d_out, q_n, q_z, q_r))
    dur, duz, dun = _gates(du, 3)
    dv_rz = [x[:, : 2 * h] for x in dvl]
    du_rz = [x[:, : 2 * h] for x in dul]
    _, _, dvn = _gates(dv, 3)
    rl, zl, _ = _gates(acts, 3)
    keep = None if mask is None else mask.unbind(0)
    for t in reversed(steps):
        g = dh + outs[t]
        torch.mul(g, qnl[t], out=dun[t])
        torch.mul(g, qzl[t], out=duz[t])
        torch.mul(dun[t], qrl[t], out=dur[t])
        if keep is not None:
            dul[t].mul_(keep[t])
        dv_rz[t].copy_(du_rz[t])
        torch.mul(dun[t], rl[t], out=dvn[t])
        new = torch.addmm(g * zl[t], dvl[t], w.w_hh)
        dh = new if keep is None else torch.where(keep[t], new, g)
    return du, dv, None, dh, None


_FORWARD: dict[str, Callable[..., Buffers]] = {
    "RNN_TANH": _rnn_forward,
    "RNN_RELU": _rnn_forward,
    "LSTM": _lstm_forward,
    "GRU": _gru_forward,
}
_BACKWARD: dict[str, Callable[..., Any]] = {
    "RNN_TANH": _rnn_backward,
    "RNN_RELU": _rnn_backward,
    "LSTM": _lstm_backward,
    "GRU": _gru_backward,
}


class Scan(torch.autograd.Function):
    """``Scan.apply(u, h0, c0, mode, weights, mask, reverse, sink) -> (out, h_n, c_n)`` (module docstring).

    ``u``: ``[T, B, G * H]`` input projections (with ``b_hh`` folded in for RNN and LSTM); ``h0`` ``[B, Hout]``;
    ``c0`` ``[B, H]`` (LSTM; else ignored, and ``c_n`` is empty); ``mask``: ``[T, B, 1]`` bool or None;
    ``reverse``: run from the last step to the first. ``out``: ``[T, B, Hout]`` (zero at inactive steps).
    """

    @staticmethod
    def forward(ctx, u, h0, c0, mode, w, mask, reverse, sink):
        steps_n, batch, _ = u.shape
        r = int(reverse)
        steps = range(steps_n - 1, -1, -1) if reverse else range(steps_n)
        hs = u.new_empty(steps_n + 1, batch, h0.shape[1])
        hs[steps_n * r].copy_(h0)
        cs = None
        if mode == "LSTM":
            cs = u.new_empty(steps_n + 1, batch, c0.shape[1])
            cs[steps_n * r].copy_(c0)
        with torch.no_grad(), _one_thread():
            buf = _FORWARD[mode](mode, u, hs, cs, w, mask, steps, r)
        sink.scanned(hs[1:] if r else hs[:steps_n], buf.get("ms"))
        states = hs[:steps_n] if r else hs[1:]
        out = states.clone() if mask is None else states * mask  # not a view of a saved buffer
        final = steps_n * (1 - r)
        h_n = hs[final].clone()
        c_n = cs[final].clone() if cs is not None else u.new_empty(0)
        names = [k for k, v in buf.items() if v is not None]
        ctx.names, ctx.mode, ctx.w, ctx.steps, ctx.r, ctx.sink = names, mode, w, steps, r, sink
        ctx.has_mask = mask is not None
        ctx.save_for_backward(hs, cs, mask, *(buf[k] for k in names))
        if cs is None:
            ctx.mark_non_differentiable(c_n)
        return out, h_n, c_n

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_hn, d_cn):
        hs, cs, mask, *rest = ctx.saved_tensors
        buf = dict(zip(ctx.names, rest, strict=True))
        buf.setdefault("ms", None)
        if mask is not None:
            d_out = d_out * mask
        dc = None if cs is None else d_cn
        with _one_thread():
            du, dv, dhr, dh0, dc0 = _BACKWARD[ctx.mode](
                ctx.mode, d_out, d_hn, dc, hs, cs, buf, ctx.w, mask, ctx.steps, ctx.r
            )
        ctx.sink.add_recurrent(dv, dhr)
        return du, dh0, dc0, None, None, None, None, None


# ------------------------------------------------------------------------------------------ differentiable
def reference_scan(
    mode: str,
    x: torch.Tensor,
    h0: torch.Tensor,
    c0: torch.Tensor | None,
    w: CellWeights,
    mask: torch.Tensor | None,
    reverse: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The recurrence on layer input ``x`` ``[T, B, in]`` with ordinary ops: ``(out [T, B, Hout], h_n, c_n)``."""
    u = F.linear(x, w.w_ih, w.b_ih)
    steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
    h, c = h0, c0
    outs: list[torch.Tensor] = [h0] * x.shape[0]
    for t in steps:
        keep = None if mask is None else mask[t]
        v = F.linear(h, w.w_hh, w.b_hh)
        if mode == "GRU":
            ur, uz, un = u[t].chunk(3, 1)
            vr, vz, vn = v.chunk(3, 1)
            rg, zg = torch.sigmoid(ur + vr), torch.sigmoid(uz + vz)
            cand = torch.tanh(un + rg * vn)
            new = cand + zg * (h - cand)
        elif mode == "LSTM":
            assert c is not None
            i, f, g, o = (u[t] + v).chunk(4, 1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            new = torch.sigmoid(o) * torch.tanh(c_new)
            if w.w_hr is not None:
                new = F.linear(new, w.w_hr)
            c = _where(keep, c_new, c)
        else:
            z = u[t] + v
            new = torch.tanh(z) if mode == "RNN_TANH" else torch.relu(z)
        h = _where(keep, new, h)
        outs[t] = h if keep is None else h * keep
    return torch.stack(outs), h, c
