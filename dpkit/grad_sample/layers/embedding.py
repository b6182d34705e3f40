"""nn.Embedding: example i's gradient puts ``g_t`` on row ``ids_t`` for each of its positions t.

Squared norm: ``sum_{t,s} [ids_t == ids_s] <g_t, g_s>`` (a masked Gram matrix, O(T^2) per example) or
instantiation (``[B, V, dim]``) when the table is small (``2 T^2 > V dim``). The clipped sum is one
``index_add_`` of the scaled output gradients. Index tensors of any layout (expanded position ids included)
and ``padding_idx`` (its row gets no gradient) are handled; ``scale_grad_by_freq`` (the gradient depends on the
whole batch's counts) falls back to torch.func.

A *broadcast index* (first dimension 1 in a batch of B != 1 examples, e.g. Hugging Face's position ids
``[1, T]``, whose ``[1, T, dim]`` output is added to ``[B, T, dim]`` activations) is the same index for every
example: example i's gradient puts *its own* output gradients ``g_{i,t}`` on rows ``ids_t``. The call is
computed on the index expanded to ``[B, T]`` (no copy) and returns ``[B, T, dim]`` (what the broadcast would
have formed), so each example's output gradient reaches the record. A 1-D index ``[T]`` whose output broadcasts
as ``[T, dim]`` cannot be told from one index per example when ``T == B``: give position ids as ``[1, T]`` or
``[B, T]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dpkit.grad_sample.layers.base import LayerRule, Prepared, check_batch, register_layer_rule
from dpkit.grad_sample.layers.matmul import use_ghost
from dpkit.grad_sample.layers.records import GradRecord, TapFn


class EmbeddingGrads(Prepared):
    def __init__(self, ids: torch.Tensor, g: torch.Tensor, num_embeddings: int):
        self.ids, self.g, self.vocab = ids, g, num_embeddings  # [B, T], [B, T, dim]
        self.batch, self.t, self.dim = g.shape
        self.ghost = use_ghost(self.t, self.vocab, self.dim)
        self._ps: torch.Tensor | None = None

    def _instantiated(self) -> torch.Tensor:
        if self._ps is None:
            rows = (self.ids + torch.arange(self.batch, device=self.ids.device).unsqueeze(1) * self.vocab).reshape(-1)
            ps = self.g.new_zeros(self.batch * self.vocab, self.dim)
            ps.index_add_(0, rows, self.g.reshape(-1, self.dim))
            self._ps = ps.view(self.batch, self.vocab, self.dim)
        return self._ps

    def select(self, keep: torch.Tensor) -> EmbeddingGrads:
        kept = EmbeddingGrads(self.ids[keep], self.g[keep], self.vocab)
        kept._ps = None if self._ps is None else self._ps[keep]
        return kept

    def sq_norms(self, name: str) -> torch.Tensor:
        if not self.ghost:
            return torch.linalg.vector_norm(self._instantiated(), dim=(1, 2)).square_()
        same = (self.ids.unsqueeze(2) == self.ids.unsqueeze(1)).to(self.g.dtype)
        gram = torch.bmm(self.g, self.g.transpose(1, 2))
        return torch.linalg.vecdot(gram.view(self.batch, -1), same.view(self.batch, -1))

    def per_sample(self, name: str) -> torch.Tensor:
        return self._instantiated()

    def accumulate(self, name: str, factors: torch.Tensor, out: torch.Tensor) -> None:
        factors = factors.to(self.g.dtype)
        if self._ps is not None:
            out.view(-1).addmv_(self._ps.reshape(self.batch, -1).t(), factors)
            return
        out.index_add_(0, self.ids.reshape(-1), (self.g * factors.view(-1, 1, 1)).reshape(-1, self.dim))


@register_layer_rule(nn.Embedding)
class EmbeddingRule(LayerRule[nn.Embedding, GradRecord[torch.Tensor]]):
    param_names = ("weight",)

    def unsupported(self, module: nn.Embedding) -> str | None:
        if module.scale_grad_by_freq:
            return "scale_grad_by_freq=True"
        return None

    def forward(self, module: nn.Embedding, tap: TapFn[GradRecord[torch.Tensor]], ids: torch.Tensor) -> torch.Tensor:
        if ids.dim() > 1 and ids.shape[0] == 1 and tap.batch != 1:  # broadcast index (module docstring)
            ids = ids.expand(tap.batch, *ids.shape[1:])
        out = F.embedding(
            ids, module.weight.detach(), module.padding_idx, module.max_norm, module.norm_type, False, module.sparse
        )
        return tap(out, GradRecord(ids))

    def prepare(self, module: nn.Embedding, records: Sequence[GradRecord[torch.Tensor]], batch: int) -> EmbeddingGrads:
        ids, grads = [], []
        for r in records:
            check_batch(r.saved, batch, "Embedding")
            i = r.saved.reshape(batch, -1)
            g = r.output_grad.reshape(batch, -1, module.embedding_dim)
            if module.padding_idx is not None:
                g = g * (i != module.padding_idx).unsqueeze(2).to(g.dtype)
            ids.append(i)
            grads.append(g)
        i = ids[0] if len(ids) == 1 else torch.cat(ids, 1)
        g = grads[0] if len(grads) == 1 else torch.cat(grads, 1)
        return EmbeddingGrads(i, g, module.num_embeddings)
