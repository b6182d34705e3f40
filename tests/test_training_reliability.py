"""Reliability of private training: a non-finite example contributes exactly zero (both engines, every clipping
mode, ghost and instantiated paths, physical chunks), the wrapped optimizer refuses to step, the gradients of a
step are where the documentation says, and a refused checkpoint changes nothing."""

from __future__ import annotations

import math
import os
import warnings

import pytest
import torch
from conftest import ScaledTanh, loss_of, microbatch_clipped, parameters_of, unchanged
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import dpkit
import dpkit.grad_sample.layers.conv as conv_rule
import dpkit.grad_sample.layers.embedding as embedding_rule
import dpkit.grad_sample.layers.matmul as matmul_rule
from dpkit.checkpoint import CheckpointError
from dpkit.optimizer import NonFiniteGradientWarning

VOCAB, SEQ, D_IN, B = 11, 5, 4, 5


class Mixed(nn.Module):
    """Every kind of per-example information: Embedding, sequence Linear, LayerNorm (reduced in the backward
    pass), the torch.func fallback, Conv1d, and an output layer tied to the embedding."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 6)
        self.inp = nn.Linear(D_IN, 6)
        self.norm = nn.LayerNorm(6)
        self.raw = ScaledTanh(6)
        self.conv = nn.Conv1d(6, 6, 3, padding=1)
        self.out = nn.Linear(6, VOCAB, bias=False)
        self.out.weight = self.emb.weight

    def forward(self, ids, x):
        h = self.raw(self.norm(self.emb(ids) + self.inp(x)))
        h = torch.tanh(self.conv(h.transpose(1, 2))).transpose(1, 2)
        return self.out(h).mean(1)


def batch(n=B, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (n, SEQ), generator=g), torch.randn(n, SEQ, D_IN, generator=g, dtype=torch.float64)


def private(engine_name="bookkeeping", *, model=Mixed, clipping="flat", chunk=None, reduction="mean", lr=0.5):
    """A private (engine, model, optimizer): the model built by ``model()`` from seed 0, the engine seeded."""
    torch.manual_seed(0)
    model = model().double()
    engine = dpkit.PrivacyEngine(seed=3, grad_sample_engine=engine_name)
    ids, x = batch(20, seed=1)
    m, o, _ = engine.make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=lr),
        DataLoader(TensorDataset(ids, x), batch_size=4),
        noise_multiplier=0.3,
        max_grad_norm=0.5,
        clipping=clipping,
        max_physical_batch_size=chunk,
        loss_reduction=reduction,
    )
    assert engine.engine.name == engine_name
    return engine, m, o


def take_step(m, o, inputs, loss=None, reduction="mean"):
    """One step; returns (gradients applied, parameters after, warnings raised)."""
    o.zero_grad()
    (loss or (lambda out: loss_of(out, reduction)))(m(*inputs)).backward()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        o.step()
    grads = [p.grad.detach().clone() for p in m.parameters()]
    return (
        grads,
        [p.detach().clone() for p in m.parameters()],
        [w for w in caught if w.category is NonFiniteGradientWarning],
    )


def assert_same(a, b):
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12)


@pytest.fixture(params=["bookkeeping-ghost", "bookkeeping-instantiate", "functorch"])
def engine_path(request, monkeypatch):
    """The book-keeping engine with every layer's ghost (Gram) path or instantiation path forced, or torch.func."""
    name, _, mode = request.param.partition("-")
    if mode:
        ghost = mode == "ghost"
        for rule in (matmul_rule, embedding_rule, conv_rule):
            monkeypatch.setattr(rule, "use_ghost", lambda t, p, d, ghost=ghost: ghost)
    return name


# ---------------------------------------------------------------------------------------------- non-finite examples
@pytest.mark.parametrize("poison", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("clipping", ["flat", "per_layer"])
@pytest.mark.parametrize("chunk", [None, 2])
def test_a_non_finite_example_contributes_exactly_zero(engine_path, clipping, chunk, poison):
    ids, x = batch()
    bad = x.clone()
    bad[2, 1, 3] = poison
    keep = [0, 1, 3, 4]
    engine, m, o = private(engine_path, clipping=clipping, chunk=chunk)
    grads, params, warned = take_step(m, o, (ids, bad))
    assert all(torch.isfinite(p).all() for p in params), "one example must not poison the parameters"
    assert len(warned) == 1 and "1 of 5 examples of step 0" in str(warned[0].message)
    assert engine.nonfinite_examples == 1 and o.last_clipped.nonfinite == 1
    assert not math.isfinite(float(o.last_clipped.norms[2])), "the diagnostics keep the example's norm"
    # the step of the batch without that example (same seed: same noise)
    clean_engine, m2, o2 = private(engine_path, clipping=clipping, chunk=chunk)
    clean_grads, clean_params, clean_warned = take_step(m2, o2, (ids[keep], x[keep]))
    assert not clean_warned and clean_engine.nonfinite_examples == 0
    assert_same(grads, clean_grads)
    assert_same(params, clean_params)


@pytest.mark.parametrize("engine_name", ["bookkeeping", "functorch"])
def test_clipped_sum_equals_the_microbatch_loop_that_skips_non_finite_examples(engine_name):
    ids, x = batch()
    x[4, 0, 0] = math.nan
    torch.manual_seed(0)
    ref, norms = microbatch_clipped(Mixed().double(), (ids, x), 0.5)  # the model private() builds
    _, m, o = private(engine_name, reduction="sum")
    o.noise_multiplier = 0.0  # the clipped sum alone
    assert not math.isfinite(float(norms[4])) and all(math.isfinite(float(n)) for n in norms[:4])
    grads, _, warned = take_step(m, o, (ids, x), reduction="sum")
    assert len(warned) == 1
    assert_same(grads, [r / 4 for r in ref])  # divided by the expected batch size


class DividesByFirstFeature(nn.Module):
    """Produces inf / NaN inside the model for an example whose first feature is 0."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)) / x[:, :1])


@pytest.mark.parametrize("engine_name", ["bookkeeping", "functorch"])
def test_nan_produced_inside_the_model_for_one_example(engine_name):
    torch.manual_seed(5)
    x = torch.rand(6, 3, dtype=torch.float64) + 0.5
    x[3, 0] = 0.0
    xs = (x,)

    def ce(out):
        return nn.functional.cross_entropy(out, torch.zeros(len(out), dtype=torch.long))

    engine, m, o = private(engine_name, model=DividesByFirstFeature)
    grads, params, warned = take_step(m, o, xs, loss=ce)
    assert len(warned) == 1 and "1 of 6" in str(warned[0].message)
    _, m2, o2 = private(engine_name, model=DividesByFirstFeature)
    keep = [0, 1, 2, 4, 5]
    clean_grads, clean_params, _ = take_step(m2, o2, (x[keep],), loss=ce)
    assert_same(grads, clean_grads)
    assert_same(params, clean_params)


@pytest.mark.parametrize("engine_name", ["bookkeeping", "functorch"])
@pytest.mark.parametrize("poison", [math.nan, math.inf])
def test_a_non_finite_loss_for_the_whole_batch_gives_a_noise_only_step(engine_name, poison):
    ids, x = batch()
    engine, m, o = private(engine_name)
    grads, params, warned = take_step(m, o, (ids, x), loss=lambda out: loss_of(out) * poison)
    assert len(warned) == 1 and "5 of 5 examples" in str(warned[0].message)
    assert all(torch.isfinite(p).all() for p in params)
    _, m2, o2 = private(engine_name)
    empty_grads, empty_params, _ = take_step(m2, o2, (ids[:0], x[:0]))  # an empty batch: noise only
    assert_same(grads, empty_grads)
    assert_same(params, empty_params)


def test_the_warning_as_an_error_refuses_the_step_before_anything_changes():
    ids, x = batch()
    x[0, 0, 0] = math.nan
    engine, m, o = private()
    before = parameters_of(m)
    o.zero_grad()
    loss_of(m(ids, x)).backward()
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonFiniteGradientWarning)
        with pytest.raises(NonFiniteGradientWarning, match="1 of 5"):
            o.step()
    assert engine.steps == 0 and engine.nonfinite_examples == 0 and engine.get_epsilon(1e-5) == 0
    assert unchanged(m, before)
    assert all(p.grad is None for p in m.parameters())
    assert dpkit.NonFiniteGradientWarning is NonFiniteGradientWarning


def test_the_finite_step_is_unchanged_by_the_check():
    """The check only looks at the [B] norm vector: a finite step gives what it gave before (bit for bit equal
    to the step of the same batch through the generic engine up to rounding, no warning)."""
    ids, x = batch()
    _, m, o = private("bookkeeping")
    grads, _, warned = take_step(m, o, (ids, x))
    _, m2, o2 = private("functorch")
    ref, _, _ = take_step(m2, o2, (ids, x))
    assert not warned and o.last_clipped.nonfinite == 0
    assert_same(grads, ref)


# ---------------------------------------------------------------------------------------------- training mistakes
def small(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    engine = dpkit.PrivacyEngine(seed=7)
    g = torch.Generator().manual_seed(seed)
    data = TensorDataset(torch.randn(40, 5, generator=g), torch.randint(0, 3, (40,), generator=g))
    m, o, dl = engine.make_private(model, opt, DataLoader(data, batch_size=8), noise_multiplier=1.0, max_grad_norm=1.0)
    return engine, m, o, dl, opt


def backward(m, opt, x, y):
    """``opt.zero_grad()``, then the backward pass of the batch's cross-entropy."""
    opt.zero_grad()
    nn.functional.cross_entropy(m(x), y).backward()


def test_stepping_the_original_optimizer_is_refused():
    engine, m, o, dl, original = small()
    x, y = next(iter(dl))
    before = parameters_of(m)
    backward(m, original, x, y)
    with pytest.raises(RuntimeError, match=r"SGD was made private by make_private: call step\(\) on .*DPOptimizer"):
        original.step()
    assert unchanged(m, before)
    o.step()  # the DP optimizer steps the wrapped one
    assert engine.steps == 1 and not all(torch.equal(a, b) for a, b in zip(before, m.parameters(), strict=True))
    engine.detach()  # a detached engine gives the optimizer back
    backward(m, original, x, y)
    original.step()


@pytest.mark.parametrize("engine_name", ["bookkeeping", "functorch"])
def test_a_step_without_backward_is_refused(engine_name):
    _, m, o = private(engine_name)
    ids, x = batch()
    before = parameters_of(m)
    o.zero_grad()
    m(ids, x)  # forgot loss.backward()
    with pytest.raises(RuntimeError, match=r"after a forward pass on 5 examples that no backward pass reached"):
        o.step()
    assert o.steps_taken == 0
    assert unchanged(m, before)
    o.zero_grad()
    m(ids[:0], x[:0]).sum().backward()  # an empty batch is a valid (noise-only) step
    o.step()
    assert o.steps_taken == 1


def test_the_warning_names_the_line_that_stepped():
    _, m, o = private()
    ids, x = batch()
    x[1, 0, 0] = math.nan
    o.zero_grad()
    loss_of(m(ids, x)).backward()
    with pytest.warns(NonFiniteGradientWarning) as caught:
        o.step()
    assert caught[0].filename == __file__


def test_gradients_are_formed_at_the_step_and_exposed_after_it():
    engine, m, o, dl, _ = small()
    x, y = next(iter(dl))
    before = parameters_of(m)
    backward(m, o, x, y)
    assert all(p.grad is None for p in m.parameters()), "between backward and step there is no .grad"
    assert float(torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)) == 0.0  # hence this finds nothing
    o.step()
    grads = [p.grad for p in m.parameters()]
    # the gradient the wrapped SGD (lr = 1) applied: clipped, noised, averaged
    for b, p, g in zip(before, m.parameters(), grads, strict=True):
        torch.testing.assert_close(p.detach(), b - g)
    # views of the one buffer the step formed (no copy)
    assert len({g.untyped_storage().data_ptr() for g in grads}) == 1
    o.zero_grad()
    assert all(p.grad is None for p in m.parameters())


# ---------------------------------------------------------------------------------------------- checkpoints
def snapshot(engine, m, o):
    sampler = engine.data_loader.batch_sampler
    return {
        "steps": engine.steps,
        "eps": engine.get_epsilon(1e-5),
        "params": [p.detach().clone() for p in m.parameters()],
        "opt": repr(o.state_dict()),
        "rng": torch.get_rng_state(),
        "noise": engine.noise.seed,
        "sampler": (sampler.seed, sampler.position),
    }


def assert_unchanged(a, b):
    assert a["steps"] == b["steps"] and a["eps"] == b["eps"] and a["opt"] == b["opt"]
    assert a["noise"] == b["noise"] and a["sampler"] == b["sampler"] and torch.equal(a["rng"], b["rng"])
    assert all(torch.equal(x, y) for x, y in zip(a["params"], b["params"], strict=True))


def trained(steps=3, seed=0):
    engine, m, o, dl, _ = small(seed)
    for _, (x, y) in zip(range(steps), dl, strict=False):
        backward(m, o, x, y)
        o.step()
    return engine, m, o


def test_a_checkpoint_for_a_model_of_another_shape_changes_nothing(tmp_path):
    engine, m, o = trained()
    engine.save_checkpoint(tmp_path / "ck.pt", model=m, optimizer=o)
    torch.manual_seed(1)
    wide = nn.Sequential(nn.Linear(5, 9), nn.ReLU(), nn.Linear(9, 3))
    engine2 = dpkit.PrivacyEngine(seed=7)
    data = TensorDataset(torch.randn(40, 5), torch.randint(0, 3, (40,)))
    m2, o2, _ = engine2.make_private(
        wide,
        torch.optim.SGD(wide.parameters(), lr=1.0),
        DataLoader(data, batch_size=8),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
    )
    before = snapshot(engine2, m2, o2)
    with pytest.raises(CheckpointError, match=r"ck.pt: model state '0.weight' has shape \(8, 5\), the model's"):
        engine2.load_checkpoint(tmp_path / "ck.pt", model=m2, optimizer=o2)
    assert_unchanged(before, snapshot(engine2, m2, o2))


def corrupt_files(tmp_path, good):
    data = good.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.pt").write_bytes(b"\x80\x04not a checkpoint at all" * 10)
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    torch.save({"format": "something/1"}, tmp_path / "format.pt")
    torch.save({"format": "dpkit-checkpoint/1", "model": {}}, tmp_path / "keys.pt")
    full = torch.load(good, weights_only=True)
    torch.save({**full, "dpkit": "{not json"}, tmp_path / "json.pt")
    torch.save({**full, "torch_rng": torch.zeros(3)}, tmp_path / "rng.pt")
    opt = full["optimizer"]
    torch.save({**full, "optimizer": {**opt, "param_groups": opt["param_groups"] * 2}}, tmp_path / "groups.pt")
    state = __import__("json").loads(full["dpkit"])
    state["sampler"]["position"] = -1
    torch.save({**full, "dpkit": __import__("json").dumps(state)}, tmp_path / "sampler.pt")
    return {
        "truncated.pt": "not a readable checkpoint",
        "garbage.pt": "not a readable checkpoint",
        "empty.pt": "not a readable checkpoint",
        "list.pt": "not a dpkit checkpoint",
        "format.pt": "not a dpkit checkpoint",
        "keys.pt": "lacks optimizer, torch_rng, dpkit, extra",
        "json.pt": "not valid JSON",
        "rng.pt": "torch_rng must be a torch.uint8 tensor",
        "groups.pt": "parameter groups of sizes",
        "sampler.pt": r"engine state sampler.position must be a whole number >= 0, got -1",
    }


def test_damaged_checkpoints_give_one_line_naming_the_file_and_change_nothing(tmp_path):
    engine, m, o = trained()
    good = tmp_path / "good.pt"
    engine.save_checkpoint(good, model=m, optimizer=o)
    engine2, m2, o2 = trained(steps=1, seed=1)
    before = snapshot(engine2, m2, o2)
    for name, what in corrupt_files(tmp_path, good).items():
        with pytest.raises(CheckpointError, match=what) as info:
            engine2.load_checkpoint(tmp_path / name, model=m2, optimizer=o2)
        message = str(info.value)
        assert "\n" not in message and str(tmp_path / name) in message, message
        error = info.value
        assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__), "no raw traceback"
        assert_unchanged(before, snapshot(engine2, m2, o2))
    with pytest.raises(FileNotFoundError, match="missing.pt does not exist"):
        engine2.load_checkpoint(tmp_path / "missing.pt", model=m2, optimizer=o2)
    engine2.load_checkpoint(good, model=m2, optimizer=o2)  # the good one still loads
    assert engine2.steps == 3


def test_save_and_load_take_the_same_path_and_never_leave_a_partial_file(tmp_path):
    engine, m, o = trained()
    for path in (str(tmp_path / "a.pt"), tmp_path / "b.pt", tmp_path / "no_suffix"):
        engine.save_checkpoint(path, model=m, optimizer=o, extra={"epoch": 2, "losses": [0.5, 0.25]})
        engine2, m2, o2 = trained(steps=1, seed=1)
        assert engine2.load_checkpoint(path, model=m2, optimizer=o2) == {"epoch": 2, "losses": [0.5, 0.25]}
        assert engine2.steps == 3
    assert sorted(os.listdir(tmp_path)) == ["a.pt", "b.pt", "no_suffix"]
    with pytest.raises(TypeError, match=r"extra\['fn'\] must hold only None, bools"):
        engine.save_checkpoint(tmp_path / "c.pt", model=m, optimizer=o, extra={"fn": print})
    assert not (tmp_path / "c.pt").exists()
