"""Hugging Face models called the usual way (``model(input_ids=..., attention_mask=...)``) under the book-keeping
engine: a tiny BERT and a tiny GPT-2 classifier, randomly initialised from a config object (nothing is
downloaded). Position embeddings are called on a broadcast ``[1, T]`` index and GPT-2 uses transformers'
``Conv1D``: both have layer rules (tested alone first), so every parameter is handled by a rule, and the clipped
per-example gradients equal a micro-batch loop's."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tiny configs only: never reach the hub

import pytest
import torch
from conftest import loss_of, microbatch_clipped, trainable
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import dpkit.grad_sample.layers.embedding as embedding_rule
import dpkit.grad_sample.layers.matmul as matmul_rule
from dpkit.grad_sample import FlatClipping, create_engine, select_engine
from dpkit.grad_sample.layers import rule_for
from dpkit.privacy_engine import PrivacyEngine

try:
    import transformers
except ImportError:  # the test extra installs it
    transformers = None
else:
    transformers.logging.set_verbosity_error()
needs_transformers = pytest.mark.skipif(transformers is None, reason="transformers is not installed")

VOCAB, PAD, LABELS = 40, 0, 3


def tiny_bert(dropout: float = 0.0) -> nn.Module:
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        num_labels=LABELS,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        pad_token_id=PAD,
    )
    return transformers.BertForSequenceClassification(config)


def tiny_gpt2(dropout: float = 0.0) -> nn.Module:
    config = transformers.GPT2Config(
        vocab_size=VOCAB,
        n_embd=16,
        n_layer=2,
        n_head=2,
        n_positions=32,
        num_labels=LABELS,
        pad_token_id=PAD,
        bos_token_id=1,
        eos_token_id=1,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
    )
    return transformers.GPT2ForSequenceClassification(config)


MODELS = {"bert": tiny_bert, "gpt2": tiny_gpt2}


def clipped(model: nn.Module, inputs, c: float, reduction: str = "sum", call=None):
    """The book-keeping engine's clipped sum for ``loss_of(call(*inputs))`` (default: the model's own call)."""
    engine = create_engine("bookkeeping", model, trainable(model), loss_reduction=reduction)
    engine.attach()
    try:
        loss_of((call or model)(*inputs), reduction).backward()
        return engine.clipped_sum(FlatClipping(c))
    finally:
        engine.detach()


def assert_matches_microbatch(model: nn.Module, inputs, reduction: str = "sum", call=None):
    """Clipped sums (threshold: the median norm, so some examples are clipped and some not) and norms equal the
    micro-batch loop's (float64)."""
    reference_model = model if call is None else Logits(model)
    ref, norms = microbatch_clipped(reference_model, inputs, 1.0)
    c = float(norms.median())
    assert (norms > c).any() and (norms <= c).any(), "some examples clipped, some not"
    ref, _ = microbatch_clipped(reference_model, inputs, c)
    got = clipped(model, inputs, c, reduction, call)
    if reduction == "sum":
        torch.testing.assert_close(got.norms, norms, rtol=1e-5, atol=1e-9)
    for g, r in zip(got.grads, ref, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-9)


@pytest.fixture(params=["ghost", "instantiate"])
def norm_path(request, monkeypatch):
    """Force the Gram-matrix or the instantiation path of the Embedding and Linear-like rules."""
    ghost = request.param == "ghost"
    monkeypatch.setattr(matmul_rule, "use_ghost", lambda t, p, d: ghost)
    monkeypatch.setattr(embedding_rule, "use_ghost", lambda t, p, d: ghost)
    return request.param


# ---------------------------------------------------------------------------------------------- the layers alone
class PositionEmbedded(nn.Module):
    """Token embedding plus a position embedding called on a broadcast ``[1, T]`` index (or ``[B, T]``)."""

    def __init__(self, expand: bool = False):
        super().__init__()
        self.tokens, self.positions = nn.Embedding(VOCAB, 6), nn.Embedding(12, 6)
        self.head = nn.Linear(6, 2)
        self.expand = expand

    def forward(self, ids):
        pos = torch.arange(ids.shape[1]).unsqueeze(0)
        if self.expand:
            pos = pos.expand_as(ids)
        return self.head(torch.tanh(self.tokens(ids) + self.positions(pos)))


def test_broadcast_position_index(norm_path):
    torch.manual_seed(0)
    model = PositionEmbedded().double()
    ids = batch(7, 5)[0]
    assert_matches_microbatch(model, (ids,))
    explicit = PositionEmbedded(expand=True).double()
    explicit.load_state_dict(model.state_dict())
    a, b = clipped(model, (ids,), 0.3), clipped(explicit, (ids,), 0.3)
    for x, y in zip(a.grads, b.grads, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)


def test_broadcast_position_index_on_empty_and_single_batches():
    model = PositionEmbedded().double()
    assert clipped(model, (batch(1, 5)[0],), 1.0).batch_size == 1
    empty = clipped(model, (torch.zeros(0, 5, dtype=torch.long),), 1.0)
    assert empty.batch_size == 0 and all(float(g.abs().sum()) == 0 for g in empty.grads)


@needs_transformers
@pytest.mark.parametrize("shape", [(6, 5), (6, 4, 5)], ids=["vectors", "sequences"])
@pytest.mark.parametrize("frozen_bias", [False, True])
def test_transformers_conv1d(norm_path, shape, frozen_bias):
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    model = nn.Sequential(Conv1D(7, 5), nn.Tanh(), Conv1D(3, 7)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    model[0].bias.requires_grad_(not frozen_bias)
    assert rule_for(model[0]) is not None
    assert_matches_microbatch(model, (torch.randn(*shape, dtype=torch.float64),))


def batch(n: int, t: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and an attention mask with right padding (every example keeps at least two tokens)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, VOCAB, (n, t), generator=g)
    lengths = torch.randint(2, t + 1, (n,), generator=g)
    mask = (torch.arange(t) < lengths.unsqueeze(1)).long()
    return ids.masked_fill(mask == 0, PAD), mask


class Logits(nn.Module):
    """The micro-batch reference calls the model the same way (keywords), one example at a time."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, ids, mask):
        return self.model(input_ids=ids, attention_mask=mask).logits


@pytest.fixture(params=sorted(MODELS))
def hf_model(request) -> nn.Module:
    torch.manual_seed(0)
    return MODELS[request.param]().double().train()


@needs_transformers
def test_every_parameter_has_a_layer_rule(hf_model):
    assert select_engine(hf_model) == "bookkeeping"
    with_params = [m for m in hf_model.modules() if any(True for _ in m.parameters(recurse=False))]
    assert with_params and all(rule_for(m) is not None for m in with_params)


@needs_transformers
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_clipped_gradients_equal_the_microbatch_loop(hf_model, reduction):
    """Called with keywords and a padding mask; some examples clipped, some not."""
    assert_matches_microbatch(hf_model, batch(6, 9), reduction, call=Logits(hf_model))


@needs_transformers
def test_implicit_and_explicit_position_ids_agree(hf_model):
    ids, mask = batch(4, 7, seed=1)
    grads = []
    for explicit in (False, True):
        engine = create_engine("bookkeeping", hf_model, trainable(hf_model))
        engine.attach()
        kwargs = {"position_ids": torch.arange(7).expand(4, 7)} if explicit else {}
        try:
            loss_of(hf_model(input_ids=ids, attention_mask=mask, **kwargs).logits).backward()
            grads.append(engine.per_sample_gradients())
        finally:
            engine.detach()
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@needs_transformers
@pytest.mark.parametrize("name", sorted(MODELS))
def test_trains_with_a_mask_under_make_private(name):
    torch.manual_seed(1)
    model = MODELS[name](dropout=0.1)
    ids, mask = batch(64, 10, seed=2)
    labels = torch.randint(0, LABELS, (64,), generator=torch.Generator().manual_seed(3))
    before = [p.detach().clone() for p in model.parameters()]
    engine = PrivacyEngine(seed=4)
    model, optimizer, loader = engine.make_private(
        model,
        torch.optim.Adam(model.parameters(), lr=1e-2),
        DataLoader(TensorDataset(ids, mask, labels), batch_size=16),
        noise_multiplier=0.5,
        max_grad_norm=1.0,
        max_physical_batch_size=8,
    )
    assert engine.engine.name == "bookkeeping"
    for step, (x, m, y) in enumerate(loader):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(input_ids=x, attention_mask=m).logits, y)
        assert torch.isfinite(loss)
        loss.backward()
        optimizer.step()
        if step == 2:
            break
    assert engine.steps == 3
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, p.detach()) for a, p in zip(before, model.parameters(), strict=True))
