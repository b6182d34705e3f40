"""nn.EmbeddingBag: each bag (a row of 2-D input, or a segment of 1-D input delimited by ``offsets``, as in
PyTorch's text-classification tutorial) is one example. Several bags per example (a model reshaping ``[B, k, L]``
to ``[B * k, L]``) are refused by the engine's batch check: rows grouped by position could belong to different
examples (a transpose before the reshape), so the torch.func engine, which runs each example alone, takes them.

Example i's gradient puts ``w_j * g_b`` on row ``ids_j`` for each token j of its bags b (``mode="sum"``:
``w_j`` = ``per_sample_weights`` or 1; ``"mean"``: 1 / the bag's number of tokens; ``padding_idx`` tokens: 0), or
for ``"max"``, ``g_b[d]`` on row ``argmax_b[d]``, column d. Squared norms: with one bag per example,
``||g_i||^2 * sum_v W_iv^2`` (``W_iv``: example i's total weight on row v, found by sorting the (example, row)
keys: no [vocabulary x dim] tensor per example) or ``||g_i||^2`` for "max"; otherwise every (example, row) pair's
summed gradient row is formed (the rows an example touches, not the table). The clipped sum is one ``index_add_``
(``index_put_`` for "max"). When the bags come from the model's first argument (1-D tokens with offsets), the
engine's batch is the number of bags (:meth:`~dpkit.grad_sample.layers.records.TapFn.rebatch`).
``scale_grad_by_freq`` (the gradient depends on the whole batch's counts) falls back to torch.func.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from dpkit.grad_sample.layers.base import LayerRule, Prepared, register_layer_rule
from dpkit.grad_sample.layers.records import GradRecord, TapFn

_MODES = {"sum": 0, "mean": 1, "max": 2}


@dataclasses.dataclass(frozen=True)
class _Bags:
    """One call: tokens ``ids`` of bags ``bag`` with weights ``coef`` (sum / mean), or each bag's ``argmax``
    ``[n_bags, dim]`` (max; -1 for an empty bag), for ``n_bags`` bags."""

    ids: torch.Tensor
    bag: torch.Tensor
    coef: torch.Tensor | None
    argmax: torch.Tensor | None
    n_bags: int


BagRecord = GradRecord[_Bags]


def _keys_sum(keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct ``keys`` and the sums of ``values`` (rows) over each."""
    uniq, inverse = torch.unique(keys, return_inverse=True)
    sums = values.new_zeros((len(uniq), *values.shape[1:]))
    sums.index_add_(0, inverse, values)
    return uniq, sums


class BagGrads(Prepared):
    """Per-example gradients of an EmbeddingBag's table from its calls (module docstring).

    Token entries (sum / mean): example ``ex``, row ``ids``, weight ``coef``, output gradient row ``g[bag]``; max
    entries: example ``max_ex`` of each bag, its ``argmax`` ``[n, dim]`` and gradient ``max_g`` ``[n, dim]``."""

    def __init__(self, batch: int, vocab: int, dim: int, tokens, maxes, bag_sq: torch.Tensor | None):
        self.batch, self.vocab, self.dim = batch, vocab, dim
        self.ex, self.ids, self.coef, self.g = tokens  # [N], [N], [N], [N, dim] (each token's bag gradient)
        self.max_ex, self.argmax, self.max_g = maxes  # [n], [n, dim], [n, dim]
        self.bag_sq = bag_sq  # [batch]: ||g_i||^2 when every example has exactly one bag (one call), else None
        self._ps: torch.Tensor | None = None

    def _entries(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys ``example * vocab + row`` and their summed gradient rows ``[U, dim]`` (token and max entries)."""
        keys = [self.ex * self.vocab + self.ids]
        rows = [self.g * self.coef.unsqueeze(1)]
        if len(self.max_ex):
            d = torch.arange(self.dim, device=self.argmax.device).expand_as(self.argmax)
            valid = self.argmax >= 0
            keys.append((self.max_ex.unsqueeze(1) * self.vocab + self.argmax)[valid])
            onehot = self.max_g.new_zeros(int(valid.sum()), self.dim)
            onehot.scatter_(1, d[valid].unsqueeze(1), self.max_g[valid].unsqueeze(1))
            rows.append(onehot)
        return _keys_sum(torch.cat(keys), torch.cat(rows))

    def sq_norms(self, name: str) -> torch.Tensor:
        dtype = self.g.dtype
        out = torch.zeros(self.batch, dtype=dtype, device=self.g.device)
        if self._ps is not None:
            return torch.linalg.vector_norm(self._ps.flatten(1), dim=1).square_()
        if self.bag_sq is not None:
            if len(self.ex):  # ||g_i||^2 sum_v W_iv^2
                keys, w = _keys_sum(self.ex * self.vocab + self.ids, self.coef)
                out.index_add_(0, keys // self.vocab, w * w).mul_(self.bag_sq)
            if len(self.max_ex):  # one row per column: ||g_i||^2 over the columns of a non-empty bag
                valid = (self.argmax >= 0).to(dtype)
                out.index_add_(0, self.max_ex, (self.max_g * self.max_g * valid).sum(1))
            return out
        keys, rows = self._entries()
        return out.index_add_(0, keys // self.vocab, torch.linalg.vector_norm(rows, dim=1).square())

    def per_sample(self, name: str) -> torch.Tensor:
        if self._ps is None:
            keys, rows = self._entries()
            ps = rows.new_zeros(self.batch * self.vocab, self.dim)
            ps.index_add_(0, keys, rows)
            self._ps = ps.view(self.batch, self.vocab, self.dim)
        return self._ps

    def accumulate(self, name: str, factors: torch.Tensor, out: torch.Tensor) -> None:
        factors = factors.to(self.g.dtype)
        if len(self.ex):
            out.index_add_(0, self.ids, self.g * (self.coef * factors[self.ex]).unsqueeze(1))
        if len(self.max_ex):
            valid = self.argmax >= 0
            d = torch.arange(self.dim, device=self.argmax.device).expand_as(self.argmax)
            values = (self.max_g * factors[self.max_ex].unsqueeze(1))[valid]
            out.index_put_((self.argmax[valid], d[valid]), values, accumulate=True)


@register_layer_rule(nn.EmbeddingBag)
class EmbeddingBagRule(LayerRule[nn.EmbeddingBag, BagRecord]):
    param_names = ("weight",)

    def unsupported(self, module: nn.EmbeddingBag) -> str | None:
        if module.scale_grad_by_freq:
            return "scale_grad_by_freq=True"
        return None

    def forward(
        self,
        module: nn.EmbeddingBag,
        tap: TapFn[BagRecord],
        input: torch.Tensor,
        offsets: torch.Tensor | None = None,
        per_sample_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        weight = module.weight.detach()
        ids, psw = input, per_sample_weights
        if input.dim() == 2:
            if offsets is not None:
                raise ValueError("if input is 2D, then offsets has to be None")
            offsets = torch.arange(0, input.numel(), input.size(1), dtype=input.dtype, device=input.device)
            ids = input.reshape(-1)
            psw = None if psw is None else psw.reshape(-1)
        elif input.dim() != 1 or offsets is None or offsets.dim() != 1:
            raise ValueError(
                "EmbeddingBag takes 2-D input, or 1-D input with 1-D offsets; got input of shape "
                f"{tuple(input.shape)} and offsets {None if offsets is None else tuple(offsets.shape)}"
            )
        if psw is not None and (module.mode != "sum" or psw.shape != ids.shape):
            raise ValueError(
                f"per_sample_weights (shape {tuple(psw.shape)}) must have the input's shape {tuple(ids.shape)} and "
                f"are only supported for mode='sum' (got mode={module.mode!r})"
            )
        if len(offsets) and int(offsets[0]) != 0:
            raise ValueError(f"offsets[0] must be 0, got {int(offsets[0])}")
        if module.max_norm is not None:
            with torch.no_grad():
                torch.embedding_renorm_(weight, ids, module.max_norm, module.norm_type)
        starts = offsets[:-1] if module.include_last_offset else offsets
        n_bags = len(starts)
        end = offsets[-1:] if module.include_last_offset else ids.new_tensor([len(ids)])
        bag = torch.repeat_interleave(torch.arange(n_bags, device=ids.device), torch.cat([starts[1:], end]) - starts)
        tokens = ids[: len(bag)]
        keep = torch.ones_like(tokens, dtype=weight.dtype)
        if module.padding_idx is not None:
            keep = (tokens != module.padding_idx).to(weight.dtype)
        coef, argmax = None, None
        if module.mode == "max":
            out, _, _, argmax = torch.embedding_bag(
                weight, ids, offsets, False, 2, module.sparse, psw, module.include_last_offset, module.padding_idx
            )
        else:
            if module.mode == "sum":
                coef = keep if psw is None else keep * psw[: len(bag)].to(weight.dtype)
            else:
                sizes = torch.zeros(n_bags, dtype=weight.dtype, device=ids.device).index_add_(0, bag, keep)
                coef = keep / sizes.clamp(min=1)[bag]
            # sum_j coef_j W[ids_j] per bag (differentiable in per_sample_weights, as the stock layer is); this is
            # also faster than the stock kernel's forward-only path that a detached table would take
            rows = weight.index_select(0, tokens) * coef.unsqueeze(1)
            out = rows.new_zeros(n_bags, weight.shape[1]).index_add(0, bag, rows)
            coef = coef.detach()
        if input.dim() == 1:
            tap.rebatch(input, n_bags)  # the model's first argument holds the bags: one example per bag
        saved = _Bags(tokens, bag, coef, argmax, n_bags)
        return tap(out, GradRecord(saved))

    def prepare(self, module: nn.EmbeddingBag, records: Sequence[BagRecord], batch: int) -> Prepared:
        tokens: list[tuple[torch.Tensor, ...]] = []
        maxes: list[tuple[torch.Tensor, ...]] = []
        for r in records:
            b = r.saved
            if b.n_bags % max(batch, 1):
                raise RuntimeError(
                    f"EmbeddingBag was called on {b.n_bags} bags, not a multiple of the batch ({batch} examples); "
                    "the book-keeping engine needs one bag per example"
                )
            per = max(b.n_bags // max(batch, 1), 1)
            g = r.output_grad.reshape(b.n_bags, module.embedding_dim)
            if b.argmax is None:
                tokens.append((b.bag // per, b.ids, b.coef, g.index_select(0, b.bag)))  # type: ignore[arg-type]
            else:
                maxes.append((torch.arange(b.n_bags, device=g.device) // per, b.argmax, g))
        w = module.weight
        empty_long = torch.zeros(0, dtype=torch.long, device=w.device)
        empty = w.new_zeros(0, module.embedding_dim).to(records[0].output_grad.dtype)

        def cat(parts, k, like):
            return torch.cat([p[k] for p in parts]) if parts else like

        tok = (
            cat(tokens, 0, empty_long),
            cat(tokens, 1, empty_long),
            cat(tokens, 2, empty[:, 0]),
            cat(tokens, 3, empty),
        )
        mx = (cat(maxes, 0, empty_long), cat(maxes, 1, empty_long.view(0, 1)), cat(maxes, 2, empty))
        one_bag = len(records) == 1 and records[0].saved.n_bags == batch
        bag_sq = (
            torch.linalg.vector_norm(records[0].output_grad.reshape(batch, -1), dim=1).square() if one_bag else None
        )
        return BagGrads(batch, module.num_embeddings, module.embedding_dim, tok, mx, bag_sq)
