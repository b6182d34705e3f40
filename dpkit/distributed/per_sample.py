"""Per-sample gradients of a loss written on a flat parameter vector, clipped and summed per agent (torch.func).

A distributed algorithm sees the model as ``loss_fn(params, inputs, targets) -> per-sample losses`` with ``params``
a flat vector ``[d]``; :func:`module_loss` builds one from an ``nn.Module`` and an elementwise loss. Per-sample
gradients come from ``torch.func.vmap(torch.func.grad(...))``, in chunks of ``chunk_size`` samples so memory stays
at ``chunk_size x d`` values whatever the dataset size.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

__all__ = ["LossFn", "module_loss", "per_sample_gradients", "clip_rows", "clipped_segment_sums"]

#: ``loss_fn(params [d], inputs [b, ...], targets [b, ...]) -> losses [b]`` (one loss per sample).
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def module_loss(
    module: nn.Module, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> tuple[LossFn, torch.Tensor]:
    """``(loss_fn, params)``: ``module`` as a function of its flattened parameters, and their current values.

    ``loss(outputs, targets)`` must be elementwise (e.g. ``nn.MSELoss(reduction="none")``); values beyond the batch
    dimension are averaged, giving one loss per sample. Buffers are held fixed; the module itself is not changed.
    """
    names = [n for n, _ in module.named_parameters()]
    shapes = [p.shape for _, p in module.named_parameters()]
    sizes = [p.numel() for _, p in module.named_parameters()]
    buffers = dict(module.named_buffers())
    flat = torch.cat([p.detach().reshape(-1) for _, p in module.named_parameters()]).clone()

    def loss_fn(params: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        tensors = {n: t.view(s) for n, t, s in zip(names, params.split(sizes), shapes, strict=True)}
        out = loss(functional_call(module, (tensors, buffers), (inputs,)), targets)
        return out.reshape(out.shape[0], -1).mean(dim=1) if out.dim() > 1 else out

    return loss_fn, flat


def per_sample_gradients(loss_fn: LossFn, params: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor):
    """``[b, d]``: the gradient of each sample's loss at ``params``."""

    def one(p, x, y):
        return loss_fn(p, x.unsqueeze(0), y.unsqueeze(0)).sum()

    return vmap(grad(one), in_dims=(None, 0, 0))(params, inputs, targets)


def clip_rows(rows: torch.Tensor, clip: float | torch.Tensor) -> torch.Tensor:
    """Each row (last dimension) scaled to L2 norm at most ``clip``: ``g * min(1, clip / ||g||)`` (clip 0 gives 0)."""
    norms = torch.linalg.vector_norm(rows, dim=-1, keepdim=True)
    if not torch.is_tensor(clip):
        clip = torch.tensor(float(clip), dtype=rows.dtype, device=rows.device)
    clip = clip.to(rows.dtype).reshape(*clip.shape, *([1] * (rows.dim() - clip.dim())))
    factor = torch.clamp(clip / norms.clamp_min(torch.finfo(rows.dtype).tiny), max=1.0)
    return rows * factor


def clipped_segment_sums(
    rows_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    segments: torch.Tensor,
    num_segments: int,
    clip: float,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """``[num_segments, d]``: for each segment, the sum of its samples' rows clipped to norm ``clip``.

    ``rows_of(inputs_chunk, targets_chunk) -> [b, d]`` computes one row per sample (a gradient or a gradient
    difference); ``segments[i]`` is the segment (agent) of sample ``i``. Samples are added in their order.
    """
    out = None
    for start in range(0, inputs.shape[0], chunk_size):
        stop = start + chunk_size
        rows = clip_rows(rows_of(inputs[start:stop], targets[start:stop]), clip)
        if out is None:
            out = torch.zeros((num_segments, rows.shape[1]), dtype=rows.dtype, device=rows.device)
        out.index_add_(0, segments[start:stop], rows)
    if out is None:
        raise ValueError("inputs must hold at least one sample")
    return out
