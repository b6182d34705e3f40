"""DiceSGD (dpkit.error_feedback): the update rule against the math and a micro-batch reference, the noise scale,
the accounting, engines, physical batches, frozen and tied parameters, checkpoints and bad input."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from conftest import NORM_EPS, TanhNet, Tied, labelled_data, microbatch_grads, parameters_of, unchanged
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dpkit.accountants import BudgetExceededError, GaussianEvent, create_accountant, dpsgd_event
from dpkit.error_feedback import (
    DiceSGDOptimizer,
    dice_noise_inflation,
    dicesgd_worst_case_event,
)
from dpkit.privacy_engine import PrivacyEngine

N, D, K = 40, 5, 3
A = torch.tensor([0.0, 0.0, 0.0, 0.0, 10.0])  # the toy problem: f_i(x) = (x - a_i)^2 / 2


def data(n=N, seed=0):
    return labelled_data(n, D, K, seed)


Net = TanhNet


def private(model, *, engine="auto", seed=3, opt="sgd", batch_size=10, dataset=None, lr=0.1, **kwargs):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr) if opt == "sgd" else torch.optim.Adam(model.parameters())
    pe = PrivacyEngine(seed=seed, grad_sample_engine=engine)
    kwargs.setdefault("noise_multiplier", 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # noise 0 warns that the run is not private
        m, o, dl = pe.make_private(model, optimizer, DataLoader(dataset or data(), batch_size=batch_size), **kwargs)
    return pe, m, o, dl


def ce_step(m, o, x, y):
    o.zero_grad()
    nn.functional.cross_entropy(m(x), y).backward()
    o.step()


# ---------------------------------------------------------------------------------------------- the math
def toy_run(c2, steps=300, engine="auto"):
    """Full-batch DiceSGD (or clipped GD with c2=None) on the toy problem, C1 = 1, lr 0.1, no noise."""
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    ones, a = torch.ones(5, 1), A.unsqueeze(1)
    kwargs = {} if c2 is None else {"error_feedback_clip": c2}
    _, m, o, _ = private(
        model, engine=engine, batch_size=5, dataset=TensorDataset(ones, a), max_grad_norm=1.0, **kwargs
    )
    for _ in range(steps):
        o.zero_grad()
        (0.5 * (m(ones) - a).pow(2).sum(1)).mean().backward()
        o.step()
    return float(m.weight.detach()), o


def toy_reference(c2, steps):
    """The paper's update in plain Python floats: (x, e)."""

    def clip(u, c):
        return u * min(1.0, c / (abs(u) + NORM_EPS))

    x = e = 0.0
    for _ in range(steps):
        g = [x - a for a in A.tolist()]
        v = sum(clip(u, 1.0) for u in g) / 5 + clip(e, c2)
        x, e = x - 0.1 * v, e + sum(g) / 5 - v
    return x, e


@pytest.mark.parametrize("engine", ["functorch", "bookkeeping"])
def test_toy_clipped_gd_is_biased_and_dicesgd_removes_the_bias(engine):
    x_clipped, _ = toy_run(None, engine=engine)
    assert x_clipped == pytest.approx(0.25, abs=1e-4)  # fixed point of sum_i clip(x - a_i, 1) = 0
    for c2 in (1.0, 3.0):
        x, o = toy_run(c2, engine=engine)
        assert isinstance(o, DiceSGDOptimizer)
        assert x == pytest.approx(2.0, abs=1e-4)  # the true minimiser (the mean of a)
        assert float(o.error[0]) == pytest.approx(-0.6, abs=1e-4)
        ref_x, ref_e = toy_reference(c2, 300)
        assert x == pytest.approx(ref_x, abs=1e-5) and float(o.error[0]) == pytest.approx(ref_e, abs=1e-5)


def test_toy_feedback_clip_below_c1_stalls_and_diverges_so_it_is_refused():
    x, e = toy_reference(0.5, 2000)  # the rule with C2 = 0.5 < C1 = 1 (what make_private refuses)
    assert x == pytest.approx(0.875, abs=1e-4) and e < -2000
    x2, e2 = toy_reference(0.5, 4000)
    assert e2 == pytest.approx(2 * e, rel=0.01)  # e grows linearly without bound
    with pytest.raises(ValueError, match=r"error_feedback_clip must be >= max_grad_norm.*0\.5"):
        toy_run(0.5, steps=0)


def test_reduces_to_sgd_when_nothing_is_clipped_and_there_is_no_noise():
    torch.manual_seed(0)
    model, ref = Net(), Net()
    ref.load_state_dict(model.state_dict())
    _, m, o, _ = private(model, max_grad_norm=1e4, error_feedback_clip=1e4)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    x, y = data().tensors
    for t in range(5):
        xb, yb = x[10 * t : 10 * t + 10], y[10 * t : 10 * t + 10]
        ce_step(m, o, xb, yb)
        ce_step(ref, ref_opt, xb, yb)
        assert all(float(e.abs().max()) == 0.0 for e in o.error)
    for a, b in zip(m.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_step_zero_is_a_dpsgd_step_with_the_inflated_noise():
    x, y = data().tensors
    grads = []
    for kwargs in (
        {"noise_multiplier": 0.7, "error_feedback_clip": 2.0},
        {"noise_multiplier": 0.7 * dice_noise_inflation(0.5, 2.0)},  # DP-SGD with the inflated noise
        {"noise_multiplier": 0.7, "error_feedback_clip": 2.0, "error_feedback_noise_inflation": lambda c1, c2: 1.0},
        {"noise_multiplier": 0.7},
    ):
        torch.manual_seed(0)
        _, m, o, _ = private(Net(), max_grad_norm=0.5, **kwargs)
        o.zero_grad()
        nn.functional.cross_entropy(m(x[:10]), y[:10]).backward()
        o.pre_step()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    assert torch.equal(grads[0], grads[1])
    assert torch.equal(grads[2], grads[3])
    assert not torch.equal(grads[0], grads[3])


# ---------------------------------------------------------------------------------------------- micro-batch reference
def dice_reference(model, batches, b, c1, c2, opt):
    """DiceSGD by hand: per-example gradients one at a time, clipped and summed in Python; ``opt`` steps on v.
    ``batches``: (inputs, per-example loss); ``b``: the expected batch size."""
    params = [p for p in model.parameters() if p.requires_grad]
    e = [torch.zeros_like(p) for p in params]
    for inputs, loss in batches:
        per = microbatch_grads(model, inputs, loss)
        n = inputs[0].shape[0]
        norms = torch.sqrt(sum(g.reshape(n, -1).pow(2).sum(1) for g in per))
        f = (c1 / (norms + NORM_EPS)).clamp(max=1.0)
        e_norm = float(torch.sqrt(sum(t.pow(2).sum() for t in e)))
        keep = min(1.0, c2 / (e_norm + NORM_EPS))
        for p, g, ei in zip(params, per, e, strict=True):
            gclip = torch.tensordot(f, g, dims=1) / b
            v = gclip + keep * ei
            ei.add_(g.sum(0) / b - v)
            p.grad = v.clone()
        opt.step()
    return e


@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("engine", ["functorch", "bookkeeping"])
def test_frozen_and_tied_parameters_match_a_microbatch_loop(engine, opt):
    torch.manual_seed(1)
    model, ref = Tied(), Tied()
    model.hidden.bias.requires_grad_(False)
    ref.load_state_dict(model.state_dict())
    ref.hidden.bias.requires_grad_(False)
    ids = torch.randint(0, 7, (24, 3))
    target = torch.randn(24, 3, 7)
    ds = TensorDataset(ids, target)

    c1, c2 = 0.3, 0.6
    pe, m, o, _ = private(
        model, engine=engine, opt=opt, batch_size=8, dataset=ds, max_grad_norm=c1, error_feedback_clip=c2
    )
    assert pe.engine.name == engine
    ref_params = [p for p in ref.parameters() if p.requires_grad]
    ref_opt = torch.optim.SGD(ref_params, lr=0.1) if opt == "sgd" else torch.optim.Adam(ref_params)
    batches = [(ids[:8], target[:8]), (ids[8:13], target[8:13]), (ids[13:24], target[13:24])]
    for xb, tb in batches:
        o.zero_grad()
        ((m(xb) - tb).pow(2).sum((1, 2)) / 2).mean().backward()
        o.step()
    ref_batches = [((xb,), lambda out, i, tb=tb: (out - tb[i : i + 1]).pow(2).sum() / 2) for xb, tb in batches]
    ref_e = dice_reference(ref, ref_batches, 8, c1, c2, ref_opt)
    for a, b in zip(m.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=2e-6, rtol=1e-5)
    for a, b in zip(o.error, ref_e, strict=True):
        torch.testing.assert_close(a, b, atol=2e-6, rtol=1e-5)
    assert len(o.error) == len(ref_params)  # the frozen bias has no error state


def test_bookkeeping_equals_functorch_and_physical_batches_change_nothing():
    x, y = data().tensors
    runs = []
    for engine, chunk in (("functorch", None), ("functorch", 3), ("bookkeeping", None), ("bookkeeping", 4)):
        torch.manual_seed(0)
        _, m, o, _ = private(
            Net(),
            engine=engine,
            max_grad_norm=0.2,
            error_feedback_clip=0.5,
            noise_multiplier=0.6,
            max_physical_batch_size=chunk,
        )
        for t in range(4):
            ce_step(m, o, x[10 * t : 10 * t + 10], y[10 * t : 10 * t + 10])
        runs.append(([p.detach().clone() for p in m.parameters()], [e.clone() for e in o.error]))
    for params, errors in runs[1:]:
        for a, b in zip(params + errors, runs[0][0] + runs[0][1], strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert o.error_norm() > 0.0


# ---------------------------------------------------------------------------------------------- noise and privacy
def test_noise_std_on_the_averaged_gradient_is_inflated_and_the_events_are_dpsgds():
    z, c1, c2, b = 1.3, 0.4, 1.0, 8
    torch.manual_seed(0)
    model = nn.Linear(100, 200)  # 20,200 coordinates
    pe = PrivacyEngine(seed=5, accountant="rdp")
    m, o, _ = pe.make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=0.0),
        DataLoader(TensorDataset(torch.randn(40, 100)), batch_size=b),
        noise_multiplier=z,
        max_grad_norm=c1,
        error_feedback_clip=c2,
    )
    o.zero_grad()
    m(torch.randn(0, 100)).sum().backward()  # an empty batch (and e = 0): the update is pure noise
    o.step()
    noise = torch.cat([p.grad.flatten() for p in m.parameters()])
    n, expected = noise.numel(), z * c1 * math.sqrt(1 + 2 * c2 / c1) / b
    assert abs(noise.std().item() - expected) < 5 * expected / math.sqrt(2 * n)
    assert abs(noise.mean().item()) < 5 * expected / math.sqrt(n)
    ref = create_accountant("rdp").compose(dpsgd_event(z, b / 40, 1)).get_epsilon(1e-5)
    assert pe.get_epsilon(1e-5) == pytest.approx(ref, rel=1e-12)


def test_calibrated_run_respects_the_budget_and_a_refused_step_leaves_the_error_state():
    pe, m, o, _ = private(
        Net(),
        max_grad_norm=0.1,
        error_feedback_clip=0.1,
        noise_multiplier=None,
        target_epsilon=3.0,
        target_delta=1e-5,
        epochs=1,
    )
    x, y = data().tensors
    with pytest.raises(BudgetExceededError):
        for _ in range(1000):
            before, error = parameters_of(m), [e.clone() for e in o.error]
            ce_step(m, o, x[:10], y[:10])
    assert unchanged(m, before)
    assert all(torch.equal(a, b) for a, b in zip(error, o.error, strict=True))
    assert pe.get_epsilon(1e-5) <= 3.0


def test_worst_case_event_is_the_verifiable_gaussian_bound():
    z, c1, c2, b = 1.0, 1.0, 1.0, 100
    event = dicesgd_worst_case_event(z, c1, c2, b, steps=10)
    assert event.event == GaussianEvent(z * c1 * math.sqrt(3.0) / (c1 + 2 * b * c2)) and event.count == 10
    claimed = create_accountant("rdp").compose(dpsgd_event(z, b / 10_000, 10)).get_epsilon(1e-5)
    assert create_accountant("rdp").compose(event).get_epsilon(1e-5) > 100 * claimed


# ---------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_resumes_identically(tmp_path):
    def run(steps, resume=None, save=None):
        torch.manual_seed(0)
        pe, m, o, dl = private(
            Net(),
            opt="adam",
            max_grad_norm=0.3,
            error_feedback_clip=0.9,
            noise_multiplier=0.5,
            max_physical_batch_size=4,
        )
        done = 0
        if resume is not None:
            pe.load_checkpoint(resume, model=m, optimizer=o)
            done = pe.steps
        while done < steps:
            for x, y in dl:
                ce_step(m, o, x, y)
                done += 1
                if done == save:
                    pe.save_checkpoint(tmp_path / "ck.pt", model=m, optimizer=o.original_optimizer)
                if done == steps:
                    break
        return parameters_of(m), [e.clone() for e in o.error]

    full = run(7, save=3)
    resumed = run(7, resume=tmp_path / "ck.pt")
    for a, b in zip(full[0] + full[1], resumed[0] + resumed[1], strict=True):
        assert torch.equal(a, b)
    assert any(float(e.abs().max()) > 0 for e in full[1])


def test_damaged_error_state_is_refused_before_anything_changes(tmp_path):
    torch.manual_seed(0)
    pe, m, o, _ = private(Net(), max_grad_norm=0.3, error_feedback_clip=0.9)
    x, y = data().tensors
    ce_step(m, o, x[:10], y[:10])
    state = o.state_dict()
    state["error_feedback"][0] = torch.full_like(state["error_feedback"][0], float("nan"))
    error = [e.clone() for e in o.error]
    with pytest.raises(ValueError, match="error_feedback.*NaN"):
        o.load_state_dict(state)
    del state["error_feedback"]
    with pytest.raises(ValueError, match="lacks 'error_feedback'"):
        o.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(error, o.error, strict=True))


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"error_feedback_clip": 0.0}, "error_feedback_clip"),
        ({"error_feedback_clip": -1.0}, "error_feedback_clip"),
        ({"error_feedback_clip": float("nan")}, "error_feedback_clip"),
        ({"error_feedback_clip": float("inf")}, "error_feedback_clip"),
        ({"error_feedback_clip": True}, "error_feedback_clip"),
        ({"error_feedback_clip": "1"}, "error_feedback_clip"),
        ({"error_feedback_clip": 0.5}, r"error_feedback_clip must be >= max_grad_norm"),
        ({"error_feedback_clip": 2.0, "error_feedback_noise_inflation": 2.0}, "error_feedback_noise_inflation"),
        (
            {"error_feedback_clip": 2.0, "error_feedback_noise_inflation": lambda c1, c2: 0.5},
            r"error_feedback_noise_inflation\(1, 2\) must be in \[1, inf\)",
        ),
        ({"error_feedback_noise_inflation": dice_noise_inflation}, "only used with error_feedback_clip"),
        ({"error_feedback_clip": 2.0, "max_grad_norm": "adaptive"}, "needs a fixed max_grad_norm"),
    ],
)
def test_bad_input_is_refused_before_any_state_change(kwargs, match):
    torch.manual_seed(0)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before, groups = parameters_of(model), optimizer.state_dict()
    pe = PrivacyEngine(seed=1)
    kwargs = {"max_grad_norm": 1.0, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        pe.make_private(model, optimizer, DataLoader(data(), batch_size=10), noise_multiplier=1.0, **kwargs)
    assert unchanged(model, before) and optimizer.state_dict() == groups
    assert pe.optimizer is None and not model._forward_hooks and not model.fc1._forward_hooks
    pe.make_private(model, optimizer, DataLoader(data(), batch_size=10), noise_multiplier=1.0, max_grad_norm=1.0)
