"""nn.Linear on ``[B, d]`` or sequence input ``[B, *, d]`` (the positions are the T of the ghost trick)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dpkit.grad_sample.layers.base import LayerRule, check_batch, flatten_seq, register_layer_rule
from dpkit.grad_sample.layers.matmul import MatmulGrads
from dpkit.grad_sample.layers.records import GradRecord, PositionSumRecord, TapFn


def trained(p: torch.Tensor | None) -> bool:
    return p is not None and p.requires_grad


def detached(p: torch.Tensor | None) -> torch.Tensor | None:
    return None if p is None else p.detach()


def _position_sums(records: Sequence[GradRecord[torch.Tensor]]) -> torch.Tensor | None:
    """``sum_t G[:, t]`` over all calls if every call formed its sums in the backward pass, else None."""
    total: torch.Tensor | None = None
    for r in records:
        if not isinstance(r, PositionSumRecord) or r.position_sums is None:
            return None
        total = r.position_sums if total is None else total + r.position_sums
    return total


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
        for r in records:
            check_batch(r.saved, batch, f"{type(module).__name__}")
        a = [flatten_seq(r.saved, batch) for r in records]
        g = [flatten_seq(r.output_grad, batch).contiguous() for r in records]  # used by two or three matmuls
        return MatmulGrads(
            a[0] if len(a) == 1 else torch.cat(a, 1),  # several calls: more positions of the same examples
            g[0] if len(g) == 1 else torch.cat(g, 1),
            weight="weight" if trained(module.weight) else None,
            bias="bias" if trained(module.bias) else None,
            g_sum=_position_sums(records),
            transposed=self.transposed,
        )
