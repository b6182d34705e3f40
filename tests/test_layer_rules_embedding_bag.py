"""nn.EmbeddingBag's layer rule: 1-D tokens with offsets (PyTorch's text-classification tutorial: the bags are the
examples) and 2-D input, modes sum / mean / max, per_sample_weights, padding_idx, include_last_offset, several bags
per example and several calls."""

from __future__ import annotations

import pytest
import torch
from layer_rule_checks import check_rule, engine_sums, loss_of, per_example, rule_units, trainable
from torch import nn

from dpkit.grad_sample import FlatClipping, create_engine, select_engine

V, D, B = 12, 5, 5


class TextClassifier(nn.Module):
    """The model of PyTorch's text-classification tutorial: ``forward(text, offsets)``, the bags of one batch
    concatenated in ``text``."""

    def __init__(self, mode="mean", padding_idx=None, include_last_offset=False):
        super().__init__()
        self.embedding = nn.EmbeddingBag(
            V, D, mode=mode, padding_idx=padding_idx, include_last_offset=include_last_offset
        )
        self.fc = nn.Linear(D, 3)
        with torch.no_grad():
            self.embedding.weight.normal_(0, 1)

    def forward(self, text, offsets, per_sample_weights=None):
        return self.fc(torch.tanh(self.embedding(text, offsets, per_sample_weights=per_sample_weights)))


def _bags(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(0, V, (sum(lengths),), generator=g)
    text[:3] = 4  # a repeated token inside the first bag
    offsets = torch.tensor([0, *torch.tensor(lengths).cumsum(0)[:-1].tolist()])
    return text, offsets


def _example(text, offsets, include_last=False, weights=None):
    ends = [*offsets[1:].tolist(), len(text)]

    def example(i):
        sl = slice(int(offsets[i]), ends[i])
        offs = torch.tensor([0, sl.stop - sl.start]) if include_last else torch.tensor([0])
        return (text[sl], offs) if weights is None else (text[sl], offs, weights[sl])

    return example


LENGTHS = [4, 1, 6, 3, 2]


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_text_classification_tutorial(mode):
    torch.manual_seed(1)
    model = TextClassifier(mode)
    text, offsets = _bags(LENGTHS)
    assert select_engine(model) == "bookkeeping"
    # the torch.func engines would split the tokens, not the bags
    check_rule(
        model, (text, offsets), example=_example(text, offsets), batch=B, functorch=False, fast_path=["embedding"]
    )


def test_per_sample_weights_padding_and_last_offset():
    torch.manual_seed(2)
    text, offsets = _bags(LENGTHS, seed=1)
    text[5] = 0  # padding
    weights = torch.rand(len(text)) + 0.5
    model = TextClassifier("sum", padding_idx=0)
    example = _example(text, offsets, weights=weights)
    check_rule(model, (text, offsets, weights), example=example, batch=B, functorch=False)
    model = TextClassifier("mean", padding_idx=0, include_last_offset=True)
    last = torch.cat([offsets, torch.tensor([len(text)])])
    check_rule(model, (text, last), example=_example(text, offsets, include_last=True), batch=B, functorch=False)


class Bags2d(nn.Module):
    """2-D input: one bag per row, or ``per`` consecutive rows per example."""

    def __init__(self, mode, per=1, padding_idx=None):
        super().__init__()
        self.bag = nn.EmbeddingBag(V, D, mode=mode, padding_idx=padding_idx)
        self.per = per
        self.head = nn.Linear(D * per, 2)
        with torch.no_grad():
            self.bag.weight.normal_(0, 1)

    def forward(self, ids):
        out = self.bag(ids.reshape(-1, ids.shape[-1]))  # [B * per, D]
        return self.head(torch.tanh(out).reshape(ids.shape[0], -1))


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_2d_input(mode):
    torch.manual_seed(3)
    ids = torch.randint(0, V, (B, 4))
    ids[0, :2] = 7
    check_rule(Bags2d(mode, padding_idx=2 if mode != "max" else None), (ids,), fast_path=["bag"])


@pytest.mark.parametrize("mode", ["sum", "max"])
def test_several_bags_per_example_are_refused_by_the_bookkeeping_engine(mode):
    """Rows of a layer's output are examples only if there is one per example: a model that reshapes [B, 3, 4] to
    [B * 3, 4] could as well interleave the examples (transpose, then reshape), and grouping rows by position would
    then mix examples under one clip. The book-keeping engine refuses; the torch.func engine runs each example alone
    and is exact."""
    torch.manual_seed(4)
    ids = torch.randint(0, V, (B, 3, 4))
    ids[1, :, 0] = 5  # the same row in several bags of one example
    model = Bags2d(mode, per=3).double()
    with pytest.raises(ValueError, match=r"returned shape \(15, 5\), not \[batch, \.\.\.\] with batch = 5"):
        engine_sums("bookkeeping", model, (ids,), [FlatClipping(1.0)])
    grads = per_example(model, lambda i: (ids[i : i + 1],), B)
    (got,), _ = engine_sums("functorch", model, (ids,), [FlatClipping(1e9)])
    norms = torch.stack([torch.sqrt(sum(t.pow(2).sum() for t in g)) for g in grads])
    torch.testing.assert_close(got.norms, norms)


class ScoredBags(nn.Module):
    """per_sample_weights computed by the model (an Embedding of the same tokens): gradients flow through them."""

    def __init__(self):
        super().__init__()
        self.bag = nn.EmbeddingBag(V, D, mode="sum")
        self.score = nn.Embedding(V, 1)
        self.head = nn.Linear(D, 2)

    def forward(self, ids):
        weights = torch.sigmoid(self.score(ids)).squeeze(-1)
        return self.head(torch.tanh(self.bag(ids, per_sample_weights=weights)))


def test_per_sample_weights_that_require_grad():
    torch.manual_seed(7)
    check_rule(ScoredBags(), (torch.randint(0, V, (B, 4)),), fast_path=["bag", "score"])


class TwoCalls(nn.Module):
    """One table used by a "sum" call and a "max"-like second call (functional) in one forward."""

    def __init__(self):
        super().__init__()
        self.bag = nn.EmbeddingBag(V, D, mode="sum")
        self.head = nn.Linear(D, 2)
        with torch.no_grad():
            self.bag.weight.normal_(0, 1)

    def forward(self, ids):
        return self.head(torch.tanh(self.bag(ids) * self.bag(ids.flip(1)[:, :2])))


def test_module_called_twice():
    torch.manual_seed(5)
    ids = torch.randint(0, V, (B, 4))
    check_rule(TwoCalls(), (ids,), fast_path=["bag"])


@pytest.mark.parametrize("mode", ["sum", "max"])
def test_per_sample_gradients_and_batch_size(mode):
    torch.manual_seed(6)
    model = TextClassifier(mode).double()
    text, offsets = _bags(LENGTHS, seed=2)
    ref = per_example(model, _example(text, offsets), B)
    engine = create_engine("bookkeeping", model, trainable(model), loss_reduction="sum")
    engine.attach()
    try:
        loss_of(model(text, offsets)).backward()
        assert engine.batch_size == B  # the bags, not the tokens of the first argument
        got = engine.per_sample_gradients()
    finally:
        engine.detach()
    for g, r in zip(got, zip(*ref, strict=True), strict=True):
        torch.testing.assert_close(g, torch.stack(r), rtol=1e-5, atol=1e-9)
    assert rule_units(model) == {"embedding": "_RuleUnit", "fc": "_RuleUnit"}
