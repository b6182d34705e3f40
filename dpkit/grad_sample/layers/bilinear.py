"""nn.Bilinear ``y_t = x1_t^T W x2_t + b`` on ``[B, d1]`` / ``[B, d2]`` or sequence inputs ``[B, *, d]``.

It is a linear layer of the outer product ``a_t = x1_t (x) x2_t`` (``d = d1 * d2`` inputs), so example i's weight
gradient is ``sum_t g_t (x) x1_t (x) x2_t`` and the rule is :class:`~dpkit.grad_sample.layers.matmul.MatmulGrads`'s
without forming ``a``: the Gram matrix of the outer products is the product of the two inputs' Gram matrices
(``<a_t, a_s> = <x1_t, x1_s> <x2_t, x2_s>``; for one position, ``||g||^2 ||x1||^2 ||x2||^2``), instantiation is
one einsum, and the clipped sum is one matmul with the outer products of the positions (the choice between Gram
matrices and instantiation is :func:`~dpkit.grad_sample.layers.matmul.use_ghost`'s, with ``d = d1 * d2``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dpkit.grad_sample.layers import matmul
from dpkit.grad_sample.layers.base import LayerRule, Prepared, check_batch, flatten_seq, register_layer_rule, total
from dpkit.grad_sample.layers.linear import detached, position_sums, trained
from dpkit.grad_sample.layers.records import GradRecord, PositionSumRecord, TapFn

BilinearRecord = GradRecord[tuple[torch.Tensor, torch.Tensor]]


class BilinearGrads(Prepared):
    """``x1``: ``[B, T, d1]``, ``x2``: ``[B, T, d2]``, ``g``: ``[B, T, p]``; ``g_sum``: ``sum_t g_t`` if formed."""

    def __init__(self, x1, x2, g, *, weight: str | None, bias: str | None, g_sum: torch.Tensor | None):
        self.x1, self.x2, self.g = x1, x2, g
        self.weight, self.bias = weight, bias
        self.batch, self.t, self.d1 = x1.shape
        self.d2, self.p = x2.shape[2], g.shape[2]
        self.ghost = matmul.use_ghost(self.t, self.p, self.d1 * self.d2)
        self._gsum = g_sum
        self._ps: torch.Tensor | None = None

    def _bias_sum(self) -> torch.Tensor:
        if self._gsum is None:
            self._gsum = self.g.sum(1)
        return self._gsum

    def _instantiated(self) -> torch.Tensor:
        if self._ps is None:
            self._ps = torch.einsum("btp,bti,btj->bpij", self.g, self.x1, self.x2)
        return self._ps

    def sq_norms(self, name: str) -> torch.Tensor:
        if name == self.bias:
            return torch.linalg.vector_norm(self._bias_sum(), dim=1).square()
        if not self.ghost:
            return torch.linalg.vector_norm(self._instantiated().flatten(1), dim=1).square()
        if self.t == 1:
            return (
                torch.linalg.vector_norm(self.g[:, 0], dim=1).square()
                * torch.linalg.vector_norm(self.x1[:, 0], dim=1).square()
                * torch.linalg.vector_norm(self.x2[:, 0], dim=1).square()
            )
        gram = torch.bmm(self.x1, self.x1.transpose(1, 2)).mul_(torch.bmm(self.x2, self.x2.transpose(1, 2)))
        return torch.linalg.vecdot(gram.flatten(1), torch.bmm(self.g, self.g.transpose(1, 2)).flatten(1))

    def per_sample(self, name: str) -> torch.Tensor:
        return self._bias_sum() if name == self.bias else self._instantiated()

    def accumulate(self, name: str, factors: torch.Tensor, out: torch.Tensor) -> None:
        factors = factors.to(self.g.dtype)
        if name == self.bias:
            out.addmv_(self._bias_sum().t(), factors)
        elif self._ps is not None:
            out.view(-1).addmv_(self._ps.reshape(self.batch, -1).t(), factors)
        else:  # (c * G)^T (x1 (x) x2) over all positions
            cg = (self.g * factors.view(-1, 1, 1)).reshape(-1, self.p)
            outer = (self.x1.unsqueeze(3) * self.x2.unsqueeze(2)).reshape(-1, self.d1 * self.d2)
            out.view(self.p, -1).addmm_(cg.t(), outer)


@register_layer_rule(nn.Bilinear)
class BilinearRule(LayerRule[nn.Bilinear, BilinearRecord]):
    def forward(self, module: nn.Bilinear, tap: TapFn[BilinearRecord], x1: torch.Tensor, x2: torch.Tensor):
        out = F.bilinear(x1, x2, module.weight.detach(), detached(module.bias))
        saved = (x1.detach(), x2.detach())
        if trained(module.bias) and out.dim() > 2 and out.shape[0] == tap.batch:
            return tap(out, PositionSumRecord(saved, tap.batch))
        return tap(out, GradRecord(saved))

    def prepare(self, module: nn.Bilinear, records: Sequence[BilinearRecord], batch: int) -> BilinearGrads:
        for r in records:
            check_batch(r.saved[0], batch, "Bilinear")

        def cat(ts: list[torch.Tensor]) -> torch.Tensor:
            ts = [flatten_seq(t, batch) for t in ts]
            return ts[0] if len(ts) == 1 else torch.cat(ts, 1)

        return BilinearGrads(
            cat([r.saved[0] for r in records]),
            cat([r.saved[1] for r in records]),
            cat([r.output_grad for r in records]),
            weight="weight" if trained(module.weight) else None,
            bias="bias" if trained(module.bias) else None,
            g_sum=total([position_sums(r) for r in records]),
        )
