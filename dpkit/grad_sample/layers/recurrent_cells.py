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
  ``b_hh`` into ``u``. (Unrolling the recurrence with autograd ops instead costs about 1.7x the stock fused LSTM on
  this kind of CPU; this one about the same as it.)
* :func:`reference_scan`: ordinary differentiable ops, which ``torch.func`` can ``vmap`` (stock recurrent kernels
  have no batching rule), used by the generic engine and the fallback.
"""

from __future__ import annotations

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


def _where(keep: torch.Tensor | None, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    return new if keep is None else torch.where(keep, new, old)


# ------------------------------------------------------------------------------------------ forward (no graph)
# Each writes the states into ``hs`` ([T + 1, B, Hout]; slot t + r holds the state before step t and slot
# t + 1 - r the state after it, r = 1 for the reverse direction) and LSTM's cells into ``cs`` likewise, and
# returns the other buffers its backward needs.
Buffers = dict[str, torch.Tensor | None]


def _rnn_forward(mode, u, hs, cs, w, mask, steps, r) -> Buffers:
    act = torch.tanh_ if mode == "RNN_TANH" else torch.relu_
    w_t = w.w_hh.t()
    for t in steps:
        p, n = t + r, t + 1 - r
        act(torch.addmm(u[t], hs[p], w_t, out=hs[n]))
        if mask is not None:
            torch.where(mask[t], hs[n], hs[p], out=hs[n])
    return {}


def _lstm_forward(mode, u, hs, cs, w, mask, steps, r) -> Buffers:
    steps_n, batch, gates = u.shape
    h = gates // 4
    g_rows = slice(2 * h, 3 * h)
    acts = u.new_empty(steps_n, batch, gates)  # i, f, g, o after their activations
    tcs = u.new_empty(steps_n, batch, h)  # tanh(c')
    ms = None if w.w_hr is None else u.new_empty(steps_n, batch, h)
    w_t = w.w_hh.t()
    hr_t = None if w.w_hr is None else w.w_hr.t()
    for t in steps:
        p, n = t + r, t + 1 - r
        a = acts[t]
        z = torch.addmm(u[t], hs[p], w_t)
        torch.sigmoid(z, out=a)
        torch.tanh(z[:, g_rows], out=a[:, g_rows])
        c = torch.mul(a[:, h : 2 * h], cs[p], out=cs[n]).addcmul_(a[:, :h], a[:, g_rows])
        tc = torch.tanh(c, out=tcs[t])
        if ms is None:
            torch.mul(a[:, 3 * h :], tc, out=hs[n])
        else:
            torch.mm(torch.mul(a[:, 3 * h :], tc, out=ms[t]), hr_t, out=hs[n])
        if mask is not None:
            torch.where(mask[t], hs[n], hs[p], out=hs[n])
            torch.where(mask[t], cs[n], cs[p], out=cs[n])
    return {"acts": acts, "tcs": tcs, "ms": ms}


def _gru_forward(mode, u, hs, cs, w, mask, steps, r) -> Buffers:
    steps_n, batch, gates = u.shape
    h = gates // 3
    acts = u.new_empty(steps_n, batch, gates)  # r, z, n after their activations
    vn = u.new_empty(steps_n, batch, h)  # W_hn h + b_hn
    w_t = w.w_hh.t()
    for t in steps:
        p, n = t + r, t + 1 - r
        v = torch.mm(hs[p], w_t) if w.b_hh is None else torch.addmm(w.b_hh, hs[p], w_t)
        a = acts[t]
        torch.add(u[t, :, : 2 * h], v[:, : 2 * h], out=a[:, : 2 * h]).sigmoid_()
        vn[t].copy_(v[:, 2 * h :])
        cand = torch.addcmul(u[t, :, 2 * h :], a[:, :h], v[:, 2 * h :], out=a[:, 2 * h :]).tanh_()
        torch.sub(hs[p], cand, out=hs[n]).mul_(a[:, h : 2 * h]).add_(cand)
        if mask is not None:
            torch.where(mask[t], hs[n], hs[p], out=hs[n])
    return {"acts": acts, "vn": vn}


# ------------------------------------------------------------------------------------------ backward by hand
# Each walks the steps backwards from the gradients of the outputs ``d_out`` ([T, B, Hout], zero at inactive
# steps) and of the final state(s), and returns (du, dv or None, dhr or None, dh0, dc0 or None).


def _rnn_backward(mode, d_out, dh, dc, hs, cs, buf, w, mask, steps, r):
    states = hs[: len(hs) - 1] if r else hs[1:]  # the state after each step
    deriv = 1 - states * states if mode == "RNN_TANH" else (states > 0).to(states.dtype)
    du = torch.empty_like(deriv)
    for t in reversed(steps):
        g = dh + d_out[t]
        dz = torch.mul(g, deriv[t], out=du[t])
        if mask is None:
            dh = torch.mm(dz, w.w_hh)
        else:
            dz.mul_(mask[t])
            dh = torch.where(mask[t], torch.mm(dz, w.w_hh), g)
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
    for t in reversed(steps):
        p = t + r
        a, dz = acts[t], du[t]
        g = dh + d_out[t]
        if dhr is None:
            dm = g
        else:
            dm = torch.mm(dhr[t].copy_(g), w.w_hr)
        torch.mul(dm, tcs[t], out=dz[:, 3 * h :])
        dct = torch.addcmul(dc, dm, oq[t])
        torch.mul(dct, a[:, 2 * h : 3 * h], out=dz[:, :h])
        torch.mul(dct, cs[p], out=dz[:, h : 2 * h])
        torch.mul(dct, a[:, :h], out=dz[:, 2 * h : 3 * h])
        dz.mul_(deriv[t])
        if mask is None:
            dc = dct * a[:, h : 2 * h]
            dh = torch.mm(dz, w.w_hh)
        else:
            dz.mul_(mask[t])
            dc = torch.where(mask[t], dct * a[:, h : 2 * h], dc)
            dh = torch.where(mask[t], torch.mm(dz, w.w_hh), g)
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
    for t in reversed(steps):
        g = dh + d_out[t]
        dut, dvt = du[t], dv[t]
        dnp = torch.mul(g, q_n[t], out=dut[:, 2 * h :])
        torch.mul(g, q_z[t], out=dut[:, h : 2 * h])
        torch.mul(dnp, q_r[t], out=dut[:, :h])
        if mask is not None:
            dut.mul_(mask[t])
        dvt[:, : 2 * h].copy_(dut[:, : 2 * h])
        torch.mul(dut[:, 2 * h :], rg[t], out=dvt[:, 2 * h :])
        new = torch.addmm(g * zg[t], dvt, w.w_hh)
        dh = new if mask is None else torch.where(mask[t], new, g)
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
        with torch.no_grad():
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
