"""nn.Linear on ``[B, d]`` or sequence input ``[B, *, d]`` (the positions are the T of the ghost trick)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dpkit.grad_sample.layers.base import LayerRule, Record, TapFn, check_batch, flatten_seq, register_layer_rule
from dpkit.grad_sample.layers.matmul import MatmulGrads


def trained(p: torch.Tensor | None) -> bool:
    return p is not None and p.requires_grad


def detached(p: torch.Tensor | None) -> torch.Tensor | None:
    return None if p is None else p.detach()


@register_layer_rule(nn.Linear)
class LinearRule(LayerRule):
    def forward(self, module: nn.Linear, tap: TapFn, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, module.weight.detach(), detached(module.bias))
        return tap(out, x.detach(), position_sums=trained(module.bias))

    def prepare(self, module: nn.Linear, records: Sequence[Record], batch: int) -> MatmulGrads:
        for r in records:
            check_batch(r.saved, batch, f"{type(module).__name__}")
        a = [flatten_seq(r.saved, batch) for r in records]
        g = [flatten_seq(r.grad, batch).contiguous() for r in records]  # used by two or three matmuls
        a = a[0] if len(a) == 1 else torch.cat(a, 1)  # several calls: more positions of the same examples
        g = g[0] if len(g) == 1 else torch.cat(g, 1)
        sums = [r.position_sums for r in records]
        return MatmulGrads(
            a,
            g,
            weight="weight" if trained(module.weight) else None,
            bias="bias" if trained(module.bias) else None,
            g_sum=None if any(s is None for s in sums) else sum(sums[1:], sums[0]),
        )
