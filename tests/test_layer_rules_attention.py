"""nn.MultiheadAttention's layer rule (both layouts, packed and separate projections, biases, bias_k / bias_v,
add_zero_attn, masks, need_weights) and stock transformer layers on the book-keeping engine's fast path."""

from __future__ import annotations

import pytest
import torch
from layer_rule_checks import check_rule, loss_of, norm_mode_fixture, per_example, rule_units, trainable  # noqa: F401
from torch import nn

from dpkit.grad_sample import BookkeepingEngine, IncompatibleModuleError, check_module, create_engine, select_engine

E, HEADS, L, S, B = 6, 2, 4, 5, 5


class Attention(nn.Module):
    """``mha`` called as self-attention on ``x`` or as cross-attention on ``memory`` (``kv``: "same" = key is
    value, "split" = key and value differ), sequence-first when the module says so; the output, and the weights
    when returned, feed the loss."""

    def __init__(self, mha, kv="self", need_weights=False, attn_mask=None, is_causal=False, average=True):
        super().__init__()
        self.inp = nn.Linear(3, E)
        self.mha = mha
        self.kv, self.need_weights, self.is_causal, self.average = kv, need_weights, is_causal, average
        self.register_buffer("attn_mask", attn_mask)

    def forward(self, x, memory=None, key_padding_mask=None, mask3=None):
        q = torch.tanh(self.inp(x))
        if self.kv == "self":
            k = v = q
        elif self.kv == "same":
            k = v = memory
        else:
            k, v = memory, memory.flip(1) * 0.5
        if not self.mha.batch_first:
            q, k, v = (t.transpose(0, 1) for t in (q, k, v))
            if self.kv != "split":
                k = v = k if self.kv == "same" else q
                q = q if self.kv == "same" else k
        mask = self.attn_mask if mask3 is None else mask3.reshape(-1, *mask3.shape[2:])
        out, weights = self.mha(
            q, k, v, key_padding_mask=key_padding_mask, need_weights=self.need_weights, attn_mask=mask,
            average_attn_weights=self.average, is_causal=self.is_causal,
        )  # fmt: skip
        if not self.mha.batch_first:
            out = out.transpose(0, 1)
        parts = [out.flatten(1)] + ([] if weights is None else [weights.flatten(1)])
        return torch.cat(parts, 1)


def _mha(batch_first=True, **kw):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(E, HEADS, batch_first=batch_first, **kw)
    with torch.no_grad():
        for p in mha.parameters():
            p.normal_(0, 0.5)
    return mha


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_self_attention(norm_mode, batch_first, bias):
    torch.manual_seed(1)
    model = Attention(_mha(batch_first, bias=bias))
    check_rule(model, (torch.randn(B, L, 3),), fast_path=["mha", "inp"])


@pytest.mark.parametrize("need_weights, average", [(True, True), (True, False), (False, True)])
def test_need_weights_and_masks(need_weights, average):
    torch.manual_seed(2)
    float_mask = torch.randn(L, L) * 0.3
    model = Attention(_mha(), need_weights=need_weights, attn_mask=float_mask, average=average)
    padding = torch.zeros(B, L, dtype=torch.bool)
    padding[1, -1] = padding[3, 0] = True
    check_rule(model, (torch.randn(B, L, 3), None, padding), fast_path=["mha"])


def test_causal_mask_and_per_head_masks():
    torch.manual_seed(3)
    causal = nn.Transformer.generate_square_subsequent_mask(L)
    check_rule(Attention(_mha(), attn_mask=causal, is_causal=True), (torch.randn(B, L, 3),), fast_path=["mha"])
    bool_mask = torch.rand(B, HEADS, L, L) > 0.7
    bool_mask[..., 0] = False  # every query sees at least one key
    check_rule(Attention(_mha(), need_weights=True), (torch.randn(B, L, 3), None, None, bool_mask))


@pytest.mark.parametrize("batch_first", [True, False])
def test_bias_kv_and_zero_attention(norm_mode, batch_first):
    torch.manual_seed(4)
    mha = _mha(batch_first, add_bias_kv=True, add_zero_attn=True)
    padding = torch.zeros(B, L, dtype=torch.bool)
    padding[0, 1] = True
    model = Attention(mha, need_weights=True, attn_mask=torch.randn(L, L) * 0.2)
    check_rule(model, (torch.randn(B, L, 3), None, padding), fast_path=["mha"])


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("kv", ["same", "split"])
def test_cross_attention_packed_projection(norm_mode, batch_first, kv):
    torch.manual_seed(5)
    model = Attention(_mha(batch_first), kv=kv)
    check_rule(model, (torch.randn(B, L, 3), torch.randn(B, S, E)), fast_path=["mha"])


@pytest.mark.parametrize("kv", ["same", "split"])
def test_separate_projections_kdim_vdim(norm_mode, kv):
    torch.manual_seed(6)
    mha = _mha(kdim=4, vdim=4, add_bias_kv=True)
    assert not mha._qkv_same_embed_dim
    model = Attention(mha, kv=kv, need_weights=True)
    check_rule(model, (torch.randn(B, L, 3), torch.randn(B, S, 4)), fast_path=["mha"])


class TwoCalls(nn.Module):
    """One attention module used for self-attention and then cross-attention in one forward: the packed
    in-projection's rows come from different calls (RowBlocks)."""

    def __init__(self):
        super().__init__()
        self.mha = _mha()
        self.inp = nn.Linear(3, E)

    def forward(self, x, memory):
        h = torch.tanh(self.inp(x))
        a = self.mha(h, h, h, need_weights=False)[0]
        return self.mha(a, memory, memory, need_weights=False)[0] + a


def test_module_called_twice(norm_mode):
    torch.manual_seed(7)
    check_rule(TwoCalls(), (torch.randn(B, L, 3), torch.randn(B, S, E)), fast_path=["mha"])


def test_frozen_in_projection():
    torch.manual_seed(8)
    model = Attention(_mha())
    model.mha.in_proj_weight.requires_grad_(False)
    model.mha.in_proj_bias.requires_grad_(False)
    check_rule(model, (torch.randn(B, L, 3),), fast_path=["mha"])
    model.mha.in_proj_weight.requires_grad_(True)
    model.mha.out_proj.weight.requires_grad_(False)
    check_rule(model, (torch.randn(B, L, 3),), fast_path=["mha"])


class Encoder(nn.Module):
    def __init__(self, layers=2, norm_first=False):
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            E, HEADS, dim_feedforward=8, dropout=0.0, batch_first=True, norm_first=norm_first
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(E, 2)

    def forward(self, x, key_padding_mask=None):
        return self.head(self.encoder(x, src_key_padding_mask=key_padding_mask).mean(1))


@pytest.mark.parametrize("norm_first", [False, True])
def test_stock_transformer_encoder_on_the_fast_path(norm_first):
    torch.manual_seed(9)
    model = Encoder(norm_first=norm_first)
    assert select_engine(model) == "bookkeeping"
    units = rule_units(model)
    assert set(units.values()) == {"_RuleUnit"}, units
    padding = torch.zeros(B, L, dtype=torch.bool)
    padding[2, -2:] = True
    check_rule(model, (torch.randn(B, L, E), padding))


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.TransformerDecoderLayer(E, HEADS, dim_feedforward=8, dropout=0.0, batch_first=True)

    def forward(self, tgt, memory):
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1], dtype=tgt.dtype)
        return self.layer(tgt, memory, tgt_mask=mask, tgt_is_causal=True)


def test_stock_transformer_decoder_layer():
    torch.manual_seed(10)
    model = Decoder()
    assert set(rule_units(model).values()) == {"_RuleUnit"}
    check_rule(model, (torch.randn(B, L, E), torch.randn(B, S, E)))


def test_selection_reads_the_layout_where_stock_modules_keep_it():
    first = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(E, HEADS, 8, batch_first=True), 1, enable_nested_tensor=False
    )
    assert BookkeepingEngine.unsupported_reason(first) is None
    seq = nn.TransformerEncoder(nn.TransformerEncoderLayer(E, HEADS, 8), 1, enable_nested_tensor=False)
    reason = BookkeepingEngine.unsupported_reason(seq)
    assert reason is not None and "layers.0" in reason and "batch_first=False" in reason
    # sequence-first attention inside a batch-first model is handled (the rule transposes); a model that reads
    # sequence-first input itself is refused by every engine (they read the batch from its first dimension)
    assert BookkeepingEngine.unsupported_reason(Attention(_mha(batch_first=False))) is None
    for model in (_mha(batch_first=False), seq, nn.LSTM(3, 4)):
        with pytest.raises(IncompatibleModuleError, match=r"<root> .*sequence-first input"):
            check_module(model)
    check_module(_mha(batch_first=True))
    check_module(first)


def test_per_sample_gradients_of_stacked_blocks():
    # The packed in-projection's per-example gradients, stacked from the blocks of two different calls.
    torch.manual_seed(11)
    model = TwoCalls().double()
    x, memory = torch.randn(B, L, 3, dtype=torch.float64), torch.randn(B, S, E, dtype=torch.float64)
    ref = per_example(model, lambda i: (x[i : i + 1], memory[i : i + 1]), B)
    engine = create_engine("bookkeeping", model, trainable(model), loss_reduction="sum")
    engine.attach()
    try:
        loss_of(model(x, memory)).backward()
        got = engine.per_sample_gradients()
    finally:
        engine.detach()
    for g, r in zip(got, zip(*ref, strict=True), strict=True):
        torch.testing.assert_close(g, torch.stack(r), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize(
    "kw, kv, need_weights",
    [
        ({}, "self", True),
        ({"batch_first": False, "add_bias_kv": True}, "same", True),
        ({"kdim": 4, "vdim": 4, "add_zero_attn": True}, "split", False),
    ],
)
def test_rule_forward_equals_stock_forward(kw, kv, need_weights):
    torch.manual_seed(12)
    mask = torch.randn(L, L if kv == "self" else S) * 0.2
    model = Attention(_mha(**kw), kv=kv, need_weights=need_weights, attn_mask=mask)
    x, memory = torch.randn(B, L, 3), torch.randn(B, S, kw.get("kdim", E))
    expected = model(x, memory)
    engine = create_engine("bookkeeping", model, trainable(model))
    engine.attach()
    try:
        got = model(x, memory)
    finally:
        engine.detach()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
