"""nn.Linear on ``[B, d]`` or sequence input ``[B, *, d]`` (the positions are the T of the ghost trick)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dpkit.grad_sample.layers.base import LayerRule, check_batch, flatten_seq, register_layer_rule, total
from dpkit.grad_sample.layers.matmul import MatmulGrads
from dpkit.grad_sample.layers.records import GradRecord, PositionSumRecord, TapFn


def trained(p: torch.Tensor | None) -> bool:
    return p is not None and p.requires_grad


def detached(p: torch.Tensor | None) -> torch.Tensor | None:
    return None if p is None else p.detach()


def position_sums(record: GradRecord[Any]) -> torch.Tensor | None:
    """The record's per-example sums of its output gradient over positions, if the backward pass formed them."""
    return record.position_sums if isinstance(record, PositionSumRecord) else None


def matmul_grads(
    uses: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]],
    batch: int,
    weight: str | None,
    bias: str | None,
    what: str,
    weight_shape: torch.Size | None = None,
    transposed: bool = False,
) -> MatmulGrads:
    """One :class:`MatmulGrads` for calls ``(input [B, *, d], output gradient [B, *, p], position sums or None)`` of
    one weight (several calls: more positions of the same examples). ``what`` names the layer in errors."""
    for x, _, _ in uses:
        check_batch(x, batch, what)
    a = [flatten_seq(x, batch) for x, _, _ in uses]
    g = [flatten_seq(gr, batch).contiguous() for _, gr, _ in uses]  # used by two or three matmuls
    sums = [s for _, _, s in uses]
    return MatmulGrads(
        a[0] if len(a) == 1 else torch.cat(a, 1),
        g[0] if len(g) == 1 else torch.cat(g, 1),
        weight=weight,
        bias=bias,
        weight_shape=weight_shape,
        g_sum=total(sums),
        transposed=transposed,
    )


@register_layer_rule(nn.Linear)
class LinearRule(LayerRule[nn.Linear, GradRecord[torch.Tensor]]):
    """Saves the input; a sequence call of a Linear with a trained bias also sums its output gradient over
    positions in the backward pass (:class:`PositionSumRecord`)."""

    #: the weight is stored as ``[in, out]`` (``x @ W``) instead of ``[out, in]``
    transposed = False

    def forward(self, module: nn.Linear, tap: TapFn[GradRecord[torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, module.weight.detach(), detached(module.bias))
        return self.tap(tap, x, out, trained(module.bias))

    def tap(
        self, tap: TapFn[GradRecord[torch.Tensor]], x: torch.Tensor, out: torch.Tensor, bias_trained: bool
    ) -> torch.Tensor:
        """Record the call on input ``x`` whose output (computed with detached parameters) is ``out``."""
        batch = tap.batch
        if bias_trained and out.dim() > 2 and out.shape[0] == batch:
            return tap(out, PositionSumRecord(x.detach(), batch))
        return tap(out, GradRecord(x.detach()))

    def prepare(self, module: nn.Linear, records: Sequence[GradRecord[torch.Tensor]], batch: int) -> MatmulGrads:
        return matmul_grads(
            [(r.saved, r.output_grad, position_sums(r)) for r in records],
            batch,
            "weight" if trained(module.weight) else None,
            "bias" if trained(module.bias) else None,
            type(module).__name__,
            transposed=self.transposed,
        )
