"""The book-keeping engine: its clipped per-example gradient sums equal the generic torch.func engine's and a
micro-batch loop's, for every supported layer (ghost and instantiation paths), the fallback, tied and frozen
parameters, empty batches; engine selection; full training steps; noise."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from conftest import ScaledTanh, Tied, loss_of, microbatch_clipped, microbatch_grads, trainable
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import dpkit.grad_sample.layers.conv as conv_rule
import dpkit.grad_sample.layers.embedding as embedding_rule
import dpkit.grad_sample.layers.matmul as matmul_rule
from dpkit.grad_sample import BookkeepingEngine, FlatClipping, PerLayerClipping, create_engine, select_engine
from dpkit.grad_sample.layers import GradRecord, PositionSumRecord, ReducedRecord
from dpkit.privacy_engine import PrivacyEngine

RTOL, ATOL = 1e-5, 1e-9  # float64 models: the engines agree far beyond this


def engine_clipped(name, model, inputs, policy, reduction="sum", chunk=None):
    params = trainable(model)
    engine = create_engine(name, model, params, loss_reduction=reduction, max_physical_batch_size=chunk)
    engine.attach()
    try:
        loss_of(model(*inputs), reduction).backward()
        assert all(p.grad is None for p in params), "autograd must not write parameter gradients"
        return engine.clipped_sum(policy)
    finally:
        engine.detach()
        assert not any("forward" in m.__dict__ for m in model.modules()), "detach restores every forward"


@pytest.fixture(params=["auto", "ghost", "instantiate"])
def norm_mode(request, monkeypatch):
    """Force the ghost (Gram) or the instantiation path of Linear / Conv / Embedding, or let the rule choose."""
    if request.param != "auto":
        ghost = request.param == "ghost"
        monkeypatch.setattr(matmul_rule, "use_ghost", lambda t, p, d: ghost)
        monkeypatch.setattr(embedding_rule, "use_ghost", lambda t, p, d: ghost)
        monkeypatch.setattr(conv_rule, "use_ghost", lambda t, p, d: ghost)
    return request.param


def check(model, inputs, reduction="sum", chunk=None, microbatch_ref=True):
    """bookkeeping == functorch == micro-batch loop, with a threshold that clips about half the examples."""
    model = model.double()
    inputs = tuple(x.double() if x.is_floating_point() else x for x in inputs)
    ref_total, ref_norms = microbatch_clipped(model, inputs, 1.0)
    c = float(ref_norms.median()) if len(ref_norms) else 1.0
    if len(ref_norms) > 1:
        assert (ref_norms > c).any() and (ref_norms <= c).any(), "some examples clipped, some not"
    ref_total, _ = microbatch_clipped(model, inputs, c)
    bk = engine_clipped("bookkeeping", model, inputs, FlatClipping(c), reduction, chunk)
    fn = engine_clipped("functorch", model, inputs, FlatClipping(c), reduction, chunk)
    for got, gen, ref in zip(bk.grads, fn.grads, ref_total, strict=True):
        torch.testing.assert_close(got, gen, rtol=RTOL, atol=ATOL)
        if microbatch_ref:
            torch.testing.assert_close(got, ref, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(bk.norms, fn.norms, rtol=RTOL, atol=ATOL)
    if reduction == "sum":
        torch.testing.assert_close(bk.norms, ref_norms, rtol=RTOL, atol=ATOL)
    assert bk.batch_size == fn.batch_size == len(ref_norms)


def randomize(model):
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    return model


# ---------------------------------------------------------------------------------------------- layers
@pytest.mark.parametrize("shape", [(6, 5), (6, 4, 5), (5, 2, 3, 5)])
def test_linear(norm_mode, shape):
    torch.manual_seed(0)
    check(nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)), (torch.randn(shape),))


def test_linear_without_bias_and_inplace_activation(norm_mode):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 6, bias=False), nn.ReLU(inplace=True), nn.Linear(6, 2))
    check(model, (torch.randn(7, 3, 4),))


class SeqAndPooled(nn.Module):
    """One Linear called on a sequence [B, T, d] and on its mean over positions [B, d] in one forward."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        h = torch.tanh(self.fc(x))
        return self.fc(h.mean(1)) + h.sum(1)


def test_linear_bias_sums_from_the_backward_pass(norm_mode):
    # Sequence calls of a Linear with a bias sum each example's output gradient over positions in the backward
    # pass (PositionSumRecord.position_sums); a step mixing such a call with a 2-D call uses the gradients themselves.
    torch.manual_seed(2)
    check(nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)), (torch.randn(6, 4, 5),))
    check(SeqAndPooled(), (torch.randn(6, 3, 4),))
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3, bias=False))
    engine = create_engine("bookkeeping", model, trainable(model))
    engine.attach()
    try:
        loss_of(model(torch.randn(6, 4, 5))).backward()
        (first_rec,), (last_rec,) = (u.records for u in engine.units)
        assert isinstance(first_rec, PositionSumRecord)
        assert first_rec.position_sums is not None and first_rec.position_sums.shape == (6, 7)
        torch.testing.assert_close(first_rec.position_sums, first_rec.output_grad.sum(1))
        assert type(last_rec) is GradRecord  # no bias: nothing to sum
    finally:
        engine.detach()


@pytest.mark.parametrize(
    "conv",
    [
        lambda: nn.Conv1d(3, 4, 3, padding=1),
        lambda: nn.Conv1d(2, 4, 3, stride=2, dilation=2, padding=2),
        lambda: nn.Conv1d(4, 4, 3, groups=2, padding="same"),
        lambda: nn.Conv2d(3, 5, 3, padding=1),
        lambda: nn.Conv2d(3, 4, (2, 3), stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
        lambda: nn.Conv2d(4, 6, 3, groups=2, bias=False),
        lambda: nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"),
        lambda: nn.Conv2d(3, 4, 3, padding="same", padding_mode="circular"),
    ],
)
def test_conv(norm_mode, conv):
    torch.manual_seed(2)
    layer = conv()
    spatial = (9,) if isinstance(layer, nn.Conv1d) else (6, 7)
    x = torch.randn(6, layer.in_channels, *spatial)
    check(_conv_net(layer, x), (x,))


def _conv_net(layer, x):
    with torch.no_grad():
        n = layer(x).flatten(1).shape[1]
    return nn.Sequential(layer, nn.Tanh(), nn.Flatten(), nn.Linear(n, 3))


class ConvTwice(nn.Module):
    """One Conv2d applied to two inputs of different sizes (one call instantiated eagerly, one by Gram matrices)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        small = torch.tanh(self.conv(x[:, :, :3, :3])).mean((2, 3))  # 9 positions
        large = torch.tanh(self.conv(x)).mean((2, 3))  # 36 positions
        return self.head(torch.cat([small, large], 1))


def test_conv_called_twice_with_eager_and_deferred_calls(monkeypatch):
    monkeypatch.setattr(conv_rule, "use_ghost", lambda t, p, d: t > 20)
    torch.manual_seed(15)
    check(ConvTwice(), (torch.randn(5, 2, 6, 6),))


class Tokens(nn.Module):
    """Token + position embeddings (expanded, non-contiguous position ids), a padding index, a head."""

    def __init__(self, vocab=11, dim=6, seq=5):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim, padding_idx=0)
        self.pos = nn.Embedding(seq, dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, ids):
        pos = torch.arange(ids.shape[1]).unsqueeze(0).expand_as(ids)  # a stride-0 view
        return self.head(torch.tanh(self.tok(ids) + self.pos(pos))).mean(1)


def test_embedding_with_non_contiguous_ids_and_padding(norm_mode):
    torch.manual_seed(3)
    model = Tokens()
    ids = torch.randint(0, 11, (5, 8)).t()[:, :5]  # non-contiguous index tensor [8, 5], with repeats
    ids[0, 1] = 0  # padding index
    check(randomize(model), (ids,))


@pytest.mark.parametrize(
    "norm, shape",
    [
        (lambda: nn.LayerNorm(6), (5, 6)),
        (lambda: nn.LayerNorm((3, 6)), (5, 2, 3, 6)),
        (lambda: nn.LayerNorm(6, bias=False), (5, 4, 6)),
        (lambda: nn.GroupNorm(2, 6), (5, 6, 4)),
        (lambda: nn.GroupNorm(3, 6), (5, 6, 3, 2)),
        (lambda: nn.RMSNorm(6), (5, 4, 6)),
    ],
)
def test_norm_layers(norm, shape):
    torch.manual_seed(4)
    layer = randomize(norm())
    model = nn.Sequential(nn.Linear(shape[-1], shape[-1]), layer, nn.Tanh(), nn.Flatten(), nn.LazyLinear(2))
    x = torch.randn(shape)
    model(x)  # materialize the lazy layer
    check(model, (x,))


def test_norm_layers_reduce_in_the_backward_pass_and_support_retained_graphs():
    # Norm layers form their per-example gradients in the backward pass (nothing [B, T, d] is kept for the step);
    # two backward passes through a retained graph add up like one pass of the summed loss.
    torch.manual_seed(13)
    model = randomize(nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Tanh(), nn.Linear(6, 2))).double()
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    results = []
    for name, twice in (("bookkeeping", True), ("functorch", False)):
        engine = create_engine(name, model, trainable(model), loss_reduction="sum")
        engine.attach()
        try:
            loss = loss_of(model(x), "sum")
            if twice:
                loss.backward(retain_graph=True)
                loss.backward()
                # The norm layer's calls hold their per-example gradients only (no input, no output gradient).
                records = [r for u in engine.units if isinstance(u.module, nn.LayerNorm) for r in u.records]
                assert records and all(isinstance(r, ReducedRecord) and r.per_example for r in records)
            else:
                (2 * loss).backward()
            results.append(engine.clipped_sum(FlatClipping(0.5)))
        finally:
            engine.detach()
    for got, ref in zip(results[0].grads, results[1].grads, strict=True):
        torch.testing.assert_close(got, ref, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(results[0].norms, results[1].norms, rtol=RTOL, atol=ATOL)


def test_inplace_change_of_a_norm_layer_input_after_the_layer_is_caught():
    torch.manual_seed(14)

    class Inplace(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.ln, self.out = nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2)

        def forward(self, x):
            h = self.fc(x)
            y = self.ln(h)
            h.mul_(2.0)  # the norm layer's input changes after the call: its gradient would be wrong
            return self.out(y + h)

    model = Inplace()
    engine = create_engine("bookkeeping", model, trainable(model))
    engine.attach()
    try:
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            loss_of(model(torch.randn(3, 4)), "sum").backward()
    finally:
        engine.detach()


class SelfAttention(nn.Module):
    def __init__(self, d=6, heads=2):
        super().__init__()
        self.inp = nn.Linear(4, d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.out = nn.Linear(d, 2)

    def forward(self, x):
        h = self.inp(x)
        return self.out(self.attn(h, h, h, need_weights=False)[0].mean(1))


def test_multihead_attention_through_its_rule(norm_mode):
    torch.manual_seed(5)
    model = SelfAttention()
    check(model, (torch.randn(5, 3, 4),))
    engine = create_engine("bookkeeping", model, trainable(model))
    kinds = {u.path: type(u).__name__ for u in engine._plan()}
    assert kinds == {"inp": "_RuleUnit", "attn": "_RuleUnit", "out": "_RuleUnit"}


def test_transformer_encoder_layer():
    torch.manual_seed(6)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
    model = nn.Sequential(layer, nn.Flatten(), nn.Linear(4 * 8, 2))
    check(model, (torch.randn(5, 4, 8),))


class RawParam(nn.Module):
    """A custom module owning raw parameters and a child Linear: the fallback handles the whole subtree."""

    def __init__(self, d):
        super().__init__()
        self.scale = nn.Parameter(torch.randn(d))
        self.inner = nn.Linear(d, d)

    def forward(self, x):
        return self.inner(torch.tanh(x * self.scale))


@pytest.mark.parametrize("reduction, chunk", [("sum", None), ("mean", 2)])
def test_mixed_model_with_fallback(reduction, chunk):
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(3, 4), RawParam(4), nn.LayerNorm(4), nn.Linear(4, 2))
    check(randomize(model), (torch.randn(5, 3),), reduction=reduction, chunk=chunk)


class ViewOfInput(nn.Module):
    """A fallback module returning a reshape view of its own input next to a parametrized output."""

    def __init__(self, d):
        super().__init__()
        self.scale = nn.Parameter(torch.randn(d))

    def forward(self, x):
        return x.reshape(x.shape[0], -1), x * self.scale


class UsesViewOfInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.mid, self.fc2 = nn.Linear(3, 4), ViewOfInput(4), nn.Linear(8, 2)

    def forward(self, x):
        h = torch.tanh(self.fc1(x))
        flat, scaled = self.mid(h)
        return self.fc2(torch.cat([flat, scaled], 1))


def test_fallback_output_that_is_a_view_of_its_input():
    # The output tap must not mark the layer's input (a tensor the graph already saved) as modified.
    torch.manual_seed(12)
    check(UsesViewOfInput(), (torch.randn(5, 3),))


@pytest.mark.parametrize("shape", [(5, 4), (5, 3, 4)])
def test_fallback_module_whose_output_its_backward_needs(shape):
    torch.manual_seed(16)
    check(nn.Sequential(nn.Linear(4, 4), ScaledTanh(4), nn.Linear(4, 2)), (torch.randn(shape),))


def test_frozen_parameters():
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    model[0].weight.requires_grad_(False)
    model[2].bias.requires_grad_(False)
    assert len(trainable(model)) == 2
    check(model, (torch.randn(6, 4),))


def test_tied_and_reused_parameters(norm_mode):
    torch.manual_seed(9)
    model = Tied()
    assert len(trainable(model)) == 3
    check(model, (torch.randint(0, 7, (5, 3)),))


def test_empty_batch():
    torch.manual_seed(10)
    model = nn.Sequential(nn.Linear(3, 4), RawParam(4), nn.Linear(4, 2))
    engine = create_engine("bookkeeping", model, trainable(model))
    engine.attach()
    loss_of(model(torch.randn(0, 3))).backward()
    cs = engine.clipped_sum(FlatClipping(1.0))
    assert cs.batch_size == 0 and all(float(g.abs().sum()) == 0 for g in cs.grads)
    assert [tuple(g.shape) for g in engine.per_sample_gradients()][:2] == [(0, 4, 3), (0, 4)]
    engine.detach()


@pytest.mark.parametrize("engine_name", ["bookkeeping", "functorch"])
def test_empty_batch_of_sequences(engine_name):
    # Layers that reduce in the backward pass (norms, sequence Linear with a bias) on an empty Poisson batch.
    torch.manual_seed(17)
    model = nn.Sequential(nn.Linear(3, 6), nn.LayerNorm(6), nn.Linear(6, 4), nn.RMSNorm(4))
    engine = create_engine(engine_name, model, trainable(model))
    engine.attach()
    loss_of(model(torch.randn(0, 5, 3))).backward()
    cs = engine.clipped_sum(FlatClipping(1.0))
    engine.detach()
    assert cs.batch_size == 0 and all(float(g.abs().sum()) == 0 for g in cs.grads)


def test_per_layer_clipping_and_per_sample_gradients():
    torch.manual_seed(11)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x = torch.randn(6, 2, 4, dtype=torch.float64)
    per = microbatch_grads(model, (x,))
    policy = PerLayerClipping([0.3, 0.2, 0.5, 0.1], 4)
    bk = engine_clipped("bookkeeping", model, (x,), policy)
    fn = engine_clipped("functorch", model, (x,), policy)
    for got, gen in zip(bk.grads, fn.grads, strict=True):
        torch.testing.assert_close(got, gen, rtol=RTOL, atol=ATOL)
    engine = create_engine("bookkeeping", model, trainable(model), loss_reduction="mean")
    engine.attach()
    loss_of(model(x), "mean").backward()
    for got, ref in zip(engine.per_sample_gradients(), per, strict=True):
        torch.testing.assert_close(got, ref, rtol=RTOL, atol=ATOL)
    engine.detach()


@pytest.mark.parametrize("layer", [lambda: nn.Linear(3, 2), lambda: nn.LayerNorm(3)], ids=["linear", "layernorm"])
def test_layer_inputs_must_be_batch_first(layer):
    class SeqFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = layer()

        def forward(self, x):
            return self.fc(x.transpose(0, 1)).transpose(0, 1)

    model = SeqFirst()
    engine = create_engine("bookkeeping", model, trainable(model))
    engine.attach()
    # refused at the layer's call (before the backward pass or the step)
    with pytest.raises(
        ValueError,
        match=r"module fc \(\w+\) returned shape \(5, 4, \d\), not \[batch, ...\] with batch = 4.*"
        r"grad_sample_engine='functorch'",
    ):
        model(torch.randn(4, 5, 3))
    engine.detach()


# ---------------------------------------------------------------------------------------------- selection
def test_auto_selection_and_forcing():
    assert select_engine(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))) == "bookkeeping"
    assert select_engine(SelfAttention()) == "bookkeeping"
    seq_first = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16), 1, enable_nested_tensor=False)
    assert BookkeepingEngine.unsupported_reason(seq_first) is not None
    assert select_engine(seq_first) == "functorch"
    assert select_engine(RawParam(3)) == "functorch"  # everything would be the fallback anyway
    x, y = torch.randn(20, 3), torch.randint(0, 2, (20,))
    for forced, expected in (("auto", "bookkeeping"), ("functorch", "functorch"), ("bookkeeping", "bookkeeping")):
        model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        engine = PrivacyEngine(seed=0, grad_sample_engine=forced)
        engine.make_private(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            DataLoader(TensorDataset(x, y), batch_size=5),
            noise_multiplier=1.0,
            max_grad_norm=1.0,
        )
        assert engine.engine.name == expected and type(model) is nn.Sequential


# ---------------------------------------------------------------------------------------------- training
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.conv = nn.Conv1d(8, 8, 3, padding=1)
        self.norm = nn.GroupNorm(2, 8)
        self.fc = nn.Linear(8, 3)

    def forward(self, ids):
        h = self.norm(torch.relu(self.conv(self.emb(ids).transpose(1, 2))))
        return self.fc(h.mean(2))


def train(engine_name, steps=4, noise=0.0, chunk=None):
    torch.manual_seed(12)
    model = Net()
    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.randint(0, 20, (60, 6), generator=g), torch.randint(0, 3, (60,), generator=g))
    engine = PrivacyEngine(seed=3, grad_sample_engine=engine_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m, o, dl = engine.make_private(
            model,
            torch.optim.Adam(model.parameters(), lr=0.05),
            DataLoader(ds, batch_size=12),
            noise_multiplier=noise,
            max_grad_norm=0.5,
            max_physical_batch_size=chunk,
        )
    done = 0
    for x, y in dl:
        o.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        o.step()
        done += 1
        if done == steps:
            break
    return [p.detach().clone() for p in m.parameters()], engine


def test_training_steps_match_the_generic_engine():
    bk, engine = train("bookkeeping")
    fn, _ = train("functorch", chunk=5)
    assert engine.engine.name == "bookkeeping" and engine.steps == 4
    for a, b in zip(bk, fn, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    noisy, _ = train("bookkeeping", noise=1.0)
    assert any(not torch.allclose(a, b) for a, b in zip(bk, noisy, strict=True))


def test_noise_has_std_sigma_times_c():
    sigma, c = 1.3, 0.7
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(100, 150), nn.ReLU(), nn.Linear(150, 50))  # 22,700 coordinates
    engine = PrivacyEngine(seed=8)
    m, o, _ = engine.make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=0.0),
        DataLoader(TensorDataset(torch.randn(40, 100)), batch_size=8),
        noise_multiplier=sigma,
        max_grad_norm=c,
        loss_reduction="sum",
    )
    assert engine.engine.name == "bookkeeping"
    o.zero_grad()
    m(torch.randn(0, 100)).sum().backward()  # empty batch: the update is pure noise
    o.step()
    noise = torch.cat([p.grad.flatten() for p in m.parameters()]) * 8
    n = noise.numel()
    assert abs(noise.std().item() - sigma * c) < 5 * sigma * c / math.sqrt(2 * n)
    assert abs(noise.mean().item()) < 5 * sigma * c / math.sqrt(n)
    # the gradients are views of one flat buffer, and consecutive steps draw different noise
    first = noise.clone()
    o.zero_grad()
    m(torch.randn(0, 100)).sum().backward()
    o.step()
    assert not torch.equal(first, torch.cat([p.grad.flatten() for p in m.parameters()]) * 8)
