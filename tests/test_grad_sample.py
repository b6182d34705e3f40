"""Per-sample gradients of the functorch engine equal a micro-batch loop (one example at a time), Opacus."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from conftest import Tied, loss_of, microbatch_grads, trainable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call, grad, vmap

import dpkit.grad_sample as gs
from dpkit.grad_sample import FlatClipping, IncompatibleModuleError, PerLayerClipping, create_engine
from dpkit.module_fixer import ModuleFixedWarning, fix_module

ATOL, RTOL = 1e-5, 1e-4
SETTINGS = settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def engine_grads(model, params, inputs, reduction="sum", max_physical_batch_size=None):
    engine = create_engine(
        "functorch", model, params, loss_reduction=reduction, max_physical_batch_size=max_physical_batch_size
    )
    engine.attach()
    try:
        loss_of(model(*inputs), reduction).backward()
        for p in params:
            assert p.grad is None, "the engine must not let autograd write parameter gradients"
        return engine.per_sample_gradients()
    finally:
        engine.detach()


def assert_matches(model, inputs, reduction="sum", max_physical_batch_size=None):
    params = trainable(model)
    ref = microbatch_grads(model, inputs)
    got = engine_grads(model, params, inputs, reduction, max_physical_batch_size)
    assert len(got) == len(ref)
    for g, r in zip(got, ref, strict=True):
        assert g.shape == r.shape
        torch.testing.assert_close(g, r, atol=ATOL, rtol=RTOL)


batch_sizes = st.integers(min_value=1, max_value=5)
dims = st.integers(min_value=1, max_value=6)


@SETTINGS
@given(b=batch_sizes, d_in=dims, d_out=dims, seq=st.integers(0, 4), seed=st.integers(0, 2**16))
def test_linear_2d_and_3d(b, d_in, d_out, seq, seed):
    torch.manual_seed(seed)
    model = nn.Linear(d_in, d_out)
    shape = (b, d_in) if seq == 0 else (b, seq, d_in)
    assert_matches(model, (torch.randn(shape),))


@pytest.mark.parametrize("conv", [nn.Conv1d, nn.Conv2d])
@SETTINGS
@given(
    b=batch_sizes,
    c_in=dims,
    c_out=dims,
    k=st.integers(1, 3),
    length=st.integers(3, 8),
    seed=st.integers(0, 99),
)
def test_conv(conv, b, c_in, c_out, k, length, seed):
    """Conv1d on ``[b, c_in, length]``, Conv2d on ``[b, c_in, 5, length]``."""
    torch.manual_seed(seed)
    spatial = (length,) if conv is nn.Conv1d else (5, length)
    assert_matches(conv(c_in, c_out, k, padding=1), (torch.randn(b, c_in, *spatial),))


@SETTINGS
@given(b=batch_sizes, vocab=st.integers(2, 12), dim=dims, seq=st.integers(1, 5), seed=st.integers(0, 99))
def test_embedding(b, vocab, dim, seq, seed):
    torch.manual_seed(seed)
    model = nn.Embedding(vocab, dim)
    ids = torch.randint(0, vocab, (b, seq))
    assert_matches(model, (ids,))


@SETTINGS
@given(b=batch_sizes, seq=st.integers(1, 4), dim=st.integers(2, 6), seed=st.integers(0, 99))
def test_layer_norm(b, seq, dim, seed):
    torch.manual_seed(seed)
    model = nn.LayerNorm(dim)
    with torch.no_grad():
        model.weight.normal_()
        model.bias.normal_()
    assert_matches(model, (torch.randn(b, seq, dim),))


@SETTINGS
@given(b=batch_sizes, groups=st.integers(1, 3), per_group=st.integers(1, 3), seed=st.integers(0, 99))
def test_group_norm(b, groups, per_group, seed):
    torch.manual_seed(seed)
    model = nn.GroupNorm(groups, groups * per_group)
    with torch.no_grad():
        model.weight.normal_()
    assert_matches(model, (torch.randn(b, groups * per_group, 4),))


@SETTINGS
@given(
    b=batch_sizes,
    heads=st.integers(1, 2),
    head_dim=st.integers(1, 3),
    seq=st.integers(1, 4),
    seed=st.integers(0, 99),
)
def test_multihead_attention(b, heads, head_dim, seq, seed):
    torch.manual_seed(seed)
    d = heads * head_dim

    class SelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(d, heads, batch_first=True)

        def forward(self, x):
            return self.attn(x, x, x, need_weights=False)[0]

    assert_matches(SelfAttention(), (torch.randn(b, seq, d),))


def test_multihead_attention_module_directly():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(4, 2, batch_first=True)
    q, k, v = torch.randn(3, 2, 4), torch.randn(3, 5, 4), torch.randn(3, 5, 4)
    assert_matches(mha, (q, k, v))


@SETTINGS
@given(b=batch_sizes, seq=st.integers(1, 4), seed=st.integers(0, 99))
def test_transformer_encoder_layer(b, seq, seed):
    torch.manual_seed(seed)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
    assert_matches(layer, (torch.randn(b, seq, 8),))


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU, nn.RNN])
def test_recurrent_layers(cls):
    # Stock recurrent kernels have no vmap batching rule: the engine runs their registered vmappable forward.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), cls(3, 4, num_layers=2, batch_first=True, bidirectional=True))
    assert_matches(model, (torch.randn(4, 5, 3),))
    assert "forward" not in model[1].__dict__


class RawParam(nn.Module):
    """A custom module owning raw parameters (no nn.Linear inside)."""

    def __init__(self, d):
        super().__init__()
        self.scale = nn.Parameter(torch.randn(d))
        self.mix = nn.Parameter(torch.randn(d, d))
        self.register_buffer("offset", torch.randn(d))

    def forward(self, x):
        return torch.tanh(x * self.scale) @ self.mix + self.offset


@SETTINGS
@given(b=batch_sizes, d=dims, seed=st.integers(0, 99))
def test_custom_module_with_raw_parameters(b, d, seed):
    torch.manual_seed(seed)
    model = nn.Sequential(RawParam(d), nn.Linear(d, 2))
    assert_matches(model, (torch.randn(b, d),))


def test_frozen_parameters_are_skipped():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    model[0].weight.requires_grad_(False)
    params = trainable(model)
    assert len(params) == 3
    assert_matches(model, (torch.randn(4, 4),))


def test_tied_parameters_summed_per_sample():
    torch.manual_seed(0)
    model = Tied()
    assert len(trainable(model)) == 3  # the tied weight is one parameter
    assert_matches(model, (torch.randint(0, 7, (4, 3)),))


def test_empty_batch():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    got = engine_grads(model, trainable(model), (torch.randn(0, 3),))
    assert [tuple(g.shape) for g in got] == [(0, 4, 3), (0, 4), (0, 2, 4), (0, 2)]
    engine = create_engine("functorch", model, trainable(model))
    engine.attach()
    out = model(torch.randn(0, 3))
    loss_of(out, "sum").backward()
    cs = engine.clipped_sum(FlatClipping(1.0))
    assert cs.batch_size == 0 and all(float(g.abs().sum()) == 0 for g in cs.grads)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_mean_reduction_and_physical_chunks(reduction):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4, 2))
    assert_matches(model, (torch.randn(11, 2, 6),), reduction=reduction, max_physical_batch_size=4)


def test_dropout_masks_are_replayed_exactly():
    """With dropout, the per-example gradients belong to the forward the loss was computed on."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
    x = torch.randn(9, 6)
    params = trainable(model)
    state = torch.get_rng_state()
    engine = create_engine("functorch", model, params, loss_reduction="sum", max_physical_batch_size=4)
    engine.attach()
    out = model(x)
    loss_of(out, "sum").backward()
    per = engine.per_sample_gradients()
    after = torch.get_rng_state()
    engine.detach()
    assert torch.equal(torch.get_rng_state(), after), "the replay must leave the global RNG where it was"
    # Reference: the same vmapped forward (same chunks, same RNG), differentiated as a whole.
    torch.set_rng_state(state)
    names = [n for n, _ in model.named_parameters()]

    def total(p):
        outs = []
        for sl in (slice(0, 4), slice(4, 8), slice(8, 9)):
            f = lambda xi: functional_call(model, p, (xi.unsqueeze(0),)).squeeze(0)  # noqa: E731
            outs.append(vmap(f, randomness="different")(x[sl]))
        return loss_of(torch.cat(outs), "sum")

    ref = grad(total)({n: p.detach() for n, p in zip(names, params, strict=True)})
    for n, g in zip(names, per, strict=True):
        torch.testing.assert_close(g.sum(0), ref[n], atol=ATOL, rtol=RTOL)
    assert out.requires_grad and out.is_leaf


def test_clipping_bounds_every_per_sample_norm():
    torch.manual_seed(0)
    grads = [torch.randn(20, 3, 4) * 5, torch.randn(20, 3)]
    sq = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads], 1)
    flat = FlatClipping(0.7)
    f = flat.factors(sq)
    clipped = [g * f[:, i].view(-1, *[1] * (g.dim() - 1)) for i, g in enumerate(grads)]
    norms = torch.stack([c.flatten(1).pow(2).sum(1) for c in clipped], 1).sum(1).sqrt()
    assert (norms <= 0.7).all()
    small = FlatClipping(1e3).factors(sq)
    assert torch.equal(small, torch.ones_like(small))
    per = PerLayerClipping([0.3, 0.2], 2)
    f = per.factors(sq)
    for i, c in enumerate([0.3, 0.2]):
        assert ((grads[i] * f[:, i].view(-1, *[1] * (grads[i].dim() - 1))).flatten(1).norm(dim=1) <= c).all()
    assert per.sensitivity == pytest.approx((0.3**2 + 0.2**2) ** 0.5)
    assert PerLayerClipping(1.0, 4).sensitivity == pytest.approx(1.0)


def test_batchnorm_error_names_the_path_and_fix_module_repairs():
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Sequential(nn.BatchNorm2d(8), nn.ReLU()))
    engine = create_engine("functorch", model, trainable(model))
    with pytest.raises(IncompatibleModuleError, match=r"1\.0 \(BatchNorm2d\).*dpkit\.fix_module"):
        engine.attach()
    with pytest.warns(ModuleFixedWarning):
        fixed = fix_module(model)
    assert fixed is model and isinstance(model[1][0], nn.GroupNorm) and model[1][0].num_channels == 8
    assert gs.incompatible_modules(model) == []
    inorm = nn.Sequential(nn.InstanceNorm1d(4, track_running_stats=True))
    assert gs.incompatible_modules(inorm)
    with pytest.warns(ModuleFixedWarning):
        assert not gs.incompatible_modules(fix_module(inorm))


def test_module_keeps_its_type_and_is_restored_on_detach():
    model = Tied()
    engine = create_engine("functorch", model, trainable(model))
    engine.attach()
    assert type(model) is Tied and isinstance(model.emb, nn.Embedding)
    with pytest.raises(RuntimeError, match="already attached"):
        create_engine("functorch", model, trainable(model)).attach()
    with torch.no_grad():  # no recording without grad mode (evaluation, generation)
        model(torch.randint(0, 7, (2, 3)))
    assert engine.batch_size is None
    engine.detach()
    assert "forward" not in model.__dict__


def test_bad_engine_arguments():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="grad_sample_engine must be one of"):
        create_engine("nope", model, trainable(model))
    with pytest.raises(ValueError, match="loss_reduction must be one of"):
        create_engine("functorch", model, trainable(model), loss_reduction="max")
    with pytest.raises(ValueError, match="max_physical_batch_size must be a whole number >= 1, got 0"):
        create_engine("functorch", model, trainable(model), max_physical_batch_size=0)
    with pytest.raises(ValueError, match="not parameters of the module"):
        create_engine("functorch", model, [nn.Parameter(torch.zeros(3))])


@pytest.mark.anchors
@pytest.mark.parametrize("kind", ["linear", "conv2d"])
def test_equals_opacus_per_sample_gradients(kind):
    opacus = pytest.importorskip("opacus")
    torch.manual_seed(0)
    if kind == "linear":
        model = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3))
        x = torch.randn(7, 5)
    else:
        model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 3 * 3, 3))
        x = torch.randn(7, 2, 5, 5)
    ref_model = copy.deepcopy(model)
    gsm = opacus.GradSampleModule(ref_model, loss_reduction="sum")
    loss_of(gsm(x), "sum").backward()
    ref = [p.grad_sample for p in ref_model.parameters()]
    got = engine_grads(model, trainable(model), (x,))
    for g, r in zip(got, ref, strict=True):
        torch.testing.assert_close(g, r, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize(
    "bn, shape",
    [
        (nn.BatchNorm1d(8), (5, 8)),
        (nn.BatchNorm1d(32), (5, 32)),
        (nn.BatchNorm1d(6, affine=False), (5, 6, 7)),
        (nn.BatchNorm2d(16), (5, 16, 3, 3)),
        (nn.BatchNorm3d(4), (5, 4, 2, 2, 2)),
    ],
)
def test_fix_module_normalizes_each_example_for_every_batchnorm_and_input_rank(bn, shape):
    """The replacement depends on one example only, and is not constant: over [B, C] features BatchNorm1d
    becomes GroupNorm(1, C) (GroupNorm(C, C) would output its bias whatever the input)."""
    torch.manual_seed(0)
    with pytest.warns(ModuleFixedWarning, match=rf"<root>: {type(bn).__name__}\(\d+\) -> GroupNorm\("):
        fixed = fix_module(bn)
    assert isinstance(fixed, nn.GroupNorm) and gs.incompatible_modules(fixed) == []
    x = torch.randn(shape) * 3 + 1
    out = fixed(x)
    torch.testing.assert_close(fixed(x[:1]), out[:1])  # per example
    per_example = out.reshape(shape[0], -1)
    assert bool((per_example.std(dim=1) > 0.5).all())  # normalized, not constant
    torch.testing.assert_close(per_example.mean(dim=1), torch.zeros(shape[0]), atol=1e-5, rtol=0)


def test_fix_module_reports_each_replacement_by_path():
    model = nn.Sequential(
        nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Sequential(nn.InstanceNorm1d(8, track_running_stats=True))
    )
    with pytest.warns(ModuleFixedWarning) as record:
        assert fix_module(model) is model
    message = str(record[0].message)
    assert "replaced 2 layer(s)" in message and "1: BatchNorm1d(8) -> GroupNorm(1, 8)" in message
    assert "2.0: InstanceNorm1d(8) -> InstanceNorm1d(8, track_running_stats=False)" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fix_module(model)  # nothing left to replace: no warning
