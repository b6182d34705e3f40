"""nn.MultiheadAttention: its parameters are linear maps over positions (the q / k / v in-projections and
``out_proj``) plus ``bias_k`` / ``bias_v`` (one extra key / value position), so each is a
:class:`~dpkit.grad_sample.layers.matmul.MatmulGrads` of its input activations and output gradients.

The rule computes what ``F.multi_head_attention_forward`` computes, in the batch-first layout whatever
``batch_first`` is (sequence-first inputs are transposed, and so is the output): the projections with detached
weights (one matmul for self-attention, as stock attention does, two when key is value, else three), tapped;
``bias_k`` / ``bias_v`` appended as a tapped position; ``add_zero_attn``; attention masks (2-D or
``[batch * heads, L, S]``, bool or float), ``key_padding_mask``, ``is_causal``, dropout; scaled dot-product
attention, or the explicit softmax when the weights are returned (``need_weights``, averaged over heads or not).
Packed ``in_proj_weight`` and separate ``q_proj_weight`` / ``k_proj_weight`` / ``v_proj_weight`` (``kdim`` /
``vdim``) are both handled; the packed weight's per-example gradient is the stack of its three row blocks
(:class:`~dpkit.grad_sample.layers.base.RowBlocks`). ``out_proj``'s parameters belong to this rule (stock
attention reads them without calling ``out_proj``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dpkit.grad_sample.layers.base import (
    ByName,
    Instantiated,
    LayerRule,
    Prepared,
    RowBlocks,
    check_batch,
    register_layer_rule,
)
from dpkit.grad_sample.layers.linear import detached, matmul_grads, position_sums, trained
from dpkit.grad_sample.layers.records import GradRecord, PositionSumRecord, TapFn


@dataclasses.dataclass(frozen=True)
class _Use:
    """What one tapped matmul of an attention call computed: rows ``blocks`` (in units of ``embed_dim``; 0, 1, 2 =
    q, k, v) of the in-projection, ``"out"`` (out_proj) or ``"bias_k"`` / ``"bias_v"``, from input ``x``."""

    part: str | tuple[int, int]
    x: torch.Tensor | None


AttentionRecord = GradRecord[_Use]

_BLOCK_WEIGHTS = ("q_proj_weight", "k_proj_weight", "v_proj_weight")


@register_layer_rule(nn.MultiheadAttention)
class MultiheadAttentionRule(LayerRule[nn.MultiheadAttention, AttentionRecord]):
    subtree = True
    param_names = (
        "in_proj_weight",
        "in_proj_bias",
        *_BLOCK_WEIGHTS,
        "bias_k",
        "bias_v",
        "out_proj.weight",
        "out_proj.bias",
    )

    def unsupported(self, module: nn.MultiheadAttention) -> str | None:
        out = module.out_proj
        if not isinstance(out, nn.Linear) or any(True for _ in out.children()):
            return "out_proj is not a plain nn.Linear"
        return None

    # ------------------------------------------------------------------ forward
    def _project(
        self, module: nn.MultiheadAttention, tap: TapFn[AttentionRecord], x: torch.Tensor, blocks: tuple[int, int]
    ) -> list[torch.Tensor]:
        """Rows ``blocks`` of the in-projection applied to ``x`` ``[B, T, d]`` (one tapped matmul), split per block."""
        e = module.embed_dim
        if module._qkv_same_embed_dim:
            weight = module.in_proj_weight.detach()[blocks[0] * e : blocks[1] * e]
        else:
            assert blocks[1] - blocks[0] == 1  # separate weights: one block per matmul
            weight = getattr(module, _BLOCK_WEIGHTS[blocks[0]]).detach()
        bias = detached(module.in_proj_bias)
        if bias is not None:
            bias = bias[blocks[0] * e : blocks[1] * e]
        out = F.linear(x, weight, bias)
        record: AttentionRecord = (
            PositionSumRecord(_Use(blocks, x.detach()), tap.batch)
            if trained(module.in_proj_bias)
            else GradRecord(_Use(blocks, x.detach()))
        )
        return list(tap(out, record).split(e, dim=-1))

    def _bias_position(
        self, module: nn.MultiheadAttention, tap: TapFn[AttentionRecord], name: str, batch: int
    ) -> torch.Tensor:
        """``bias_k`` / ``bias_v`` repeated over the batch as one more position ``[B, 1, E]``, tapped."""
        param = getattr(module, name)
        rep = param.detach().reshape(1, 1, -1).expand(batch, 1, module.embed_dim).clone()
        return tap(rep, GradRecord(_Use(name, None)))

    def forward(
        self,
        module: nn.MultiheadAttention,
        tap: TapFn[AttentionRecord],
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if query.dim() != 3:
            raise RuntimeError(
                "MultiheadAttention was called on unbatched input (a 2-D query); the book-keeping engine needs "
                "batched inputs. Use PrivacyEngine(grad_sample_engine='functorch') for this model"
            )
        key_is_value, query_is_key = key is value, query is key
        if not module.batch_first:  # to batch-first (views; the identities above decide the projections)
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        batch, tgt, e = query.shape
        check_batch(query, tap.batch, "MultiheadAttention")
        heads, head_dim = module.num_heads, module.head_dim

        if query_is_key and key_is_value and module._qkv_same_embed_dim:
            q, k, v = self._project(module, tap, query, (0, 3))
        elif key_is_value and module._qkv_same_embed_dim:
            (q,) = self._project(module, tap, query, (0, 1))
            k, v = self._project(module, tap, key, (1, 3))
        else:
            (q,) = self._project(module, tap, query, (0, 1))
            (k,) = self._project(module, tap, key, (1, 2))
            (v,) = self._project(module, tap, value, (2, 3))

        key_padding_mask = F._canonical_mask(
            mask=key_padding_mask,
            mask_name="key_padding_mask",
            other_type=F._none_or_dtype(attn_mask),
            other_name="attn_mask",
            target_type=q.dtype,
        )
        if is_causal and attn_mask is None:
            raise RuntimeError(
                "Need attn_mask if specifying the is_causal hint. You may use the Transformer module method "
                "`generate_square_subsequent_mask` to create this mask."
            )
        if is_causal and key_padding_mask is None and not need_weights:
            attn_mask = None  # scaled_dot_product_attention applies the causal mask itself
        else:
            attn_mask = F._canonical_mask(
                mask=attn_mask,
                mask_name="attn_mask",
                other_type=None,
                other_name="",
                target_type=q.dtype,
                check_other=False,
            )
            if key_padding_mask is not None:
                is_causal = False
        if attn_mask is not None:  # [L, S] or [B * heads, L, S] -> broadcastable to [B, heads, L, S]
            expected = (tgt, key.shape[1]) if attn_mask.dim() == 2 else (batch * heads, tgt, key.shape[1])
            if attn_mask.dim() not in (2, 3) or attn_mask.shape != expected:
                raise RuntimeError(f"attn_mask has shape {tuple(attn_mask.shape)}, but should be {expected}")
            attn_mask = attn_mask.reshape(batch, heads, *attn_mask.shape[1:]) if attn_mask.dim() == 3 else attn_mask

        if module.bias_k is not None and module.bias_v is not None:
            k = torch.cat([k, self._bias_position(module, tap, "bias_k", batch)], 1)
            v = torch.cat([v, self._bias_position(module, tap, "bias_v", batch)], 1)
            attn_mask = None if attn_mask is None else F.pad(attn_mask, (0, 1))
            key_padding_mask = None if key_padding_mask is None else F.pad(key_padding_mask, (0, 1))
        q = q.reshape(batch, tgt, heads, head_dim).transpose(1, 2)
        k = k.reshape(batch, -1, heads, head_dim).transpose(1, 2)
        v = v.reshape(batch, -1, heads, head_dim).transpose(1, 2)
        if module.add_zero_attn:
            zeros = k.new_zeros(batch, heads, 1, head_dim)
            k, v = torch.cat([k, zeros], 2), torch.cat([v, zeros], 2)
            attn_mask = None if attn_mask is None else F.pad(attn_mask, (0, 1))
            key_padding_mask = None if key_padding_mask is None else F.pad(key_padding_mask, (0, 1))
        src = k.shape[2]
        if key_padding_mask is not None:
            pad = key_padding_mask.reshape(batch, 1, 1, src)
            attn_mask = pad if attn_mask is None else attn_mask + pad
        dropout_p = module.dropout if module.training else 0.0

        if need_weights:
            scores = torch.matmul(q * math.sqrt(1.0 / head_dim), k.transpose(-2, -1))
            if attn_mask is not None:
                scores = scores + attn_mask
            weights = torch.softmax(scores, dim=-1)
            if dropout_p > 0.0:
                weights = F.dropout(weights, p=dropout_p)
            attn = torch.matmul(weights, v)
        else:
            attn = F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal)
            weights = None
        attn = attn.transpose(1, 2).reshape(batch, tgt, e)

        out_proj = module.out_proj
        out = F.linear(attn, out_proj.weight.detach(), detached(out_proj.bias))
        use = _Use("out", attn.detach())
        out = tap(out, PositionSumRecord(use, batch) if trained(out_proj.bias) else GradRecord(use))
        if not module.batch_first:
            out = out.transpose(0, 1)
        if weights is not None and average_attn_weights:
            weights = weights.mean(dim=1)
        return out, weights

    # ------------------------------------------------------------------ step
    def prepare(self, module: nn.MultiheadAttention, records: Sequence[AttentionRecord], batch: int) -> Prepared:
        e = module.embed_dim
        parts: dict[str, Prepared] = {}
        out_proj = module.out_proj
        outs = [(r.saved.x, r.output_grad, position_sums(r)) for r in records if r.saved.part == "out"]
        if outs:
            prep = matmul_grads(
                outs,  # type: ignore[arg-type]
                batch,
                "out_proj.weight" if trained(out_proj.weight) else None,
                "out_proj.bias" if trained(out_proj.bias) else None,
                "MultiheadAttention",
            )
            parts["out_proj.weight"] = parts["out_proj.bias"] = prep
        for name in ("bias_k", "bias_v"):
            found = [r.output_grad for r in records if r.saved.part == name]
            if found and trained(getattr(module, name)):
                parts[name] = Instantiated({name: sum(found[1:], found[0]).reshape(batch, 1, 1, e)})
        projections = [r for r in records if isinstance(r.saved.part, tuple)]
        if projections:
            parts.update(self._in_projection(module, projections, batch))
        return ByName(parts)

    def _in_projection(
        self, module: nn.MultiheadAttention, records: Sequence[AttentionRecord], batch: int
    ) -> dict[str, Prepared]:
        """The q / k / v rows: one MatmulGrads for the whole packed weight if every call projected all three rows
        at once (self-attention), else one per block (positions of all calls concatenated) stacked by RowBlocks."""
        e = module.embed_dim
        bias = "in_proj_bias" if trained(module.in_proj_bias) else None
        packed = module._qkv_same_embed_dim
        weights = ["in_proj_weight"] * 3 if packed else list(_BLOCK_WEIGHTS)
        if packed and all(r.saved.part == (0, 3) for r in records):
            weight = "in_proj_weight" if trained(module.in_proj_weight) else None
            uses = [(r.saved.x, r.output_grad, position_sums(r)) for r in records]
            prep = matmul_grads(uses, batch, weight, bias, "MultiheadAttention")  # type: ignore[arg-type]
            return {"in_proj_weight": prep, "in_proj_bias": prep}
        blocks: list[Prepared | None] = []
        for j in range(3):
            uses = []
            for r in records:
                assert isinstance(r.saved.part, tuple)
                lo, hi = r.saved.part
                if lo <= j < hi:
                    cols = slice((j - lo) * e, (j - lo + 1) * e)
                    sums = position_sums(r)
                    uses.append((r.saved.x, r.output_grad[..., cols], None if sums is None else sums[:, cols]))
            weight = weights[j] if trained(getattr(module, weights[j])) else None
            blocks.append(matmul_grads(uses, batch, weight, bias, "MultiheadAttention") if uses else None)  # type: ignore[arg-type]
        parts: dict[str, Prepared] = {}
        if packed:
            parts["in_proj_weight"] = RowBlocks(
                [None if b is None else (b, "in_proj_weight") for b in blocks],
                [e] * 3,
                module.in_proj_weight.shape,
                batch,
            )
        else:
            parts.update({w: b for w, b in zip(_BLOCK_WEIGHTS, blocks, strict=True) if b is not None})
        if bias is not None:
            parts["in_proj_bias"] = RowBlocks(
                [None if b is None else (b, "in_proj_bias") for b in blocks], [e] * 3, module.in_proj_bias.shape, batch
            )
        return parts
