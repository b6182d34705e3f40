"""PrivacyEngine / DPOptimizer: clipping, noise, scaling, accounting, chunks, budget, resume (bad input: in
tests/test_training_bad_input.py)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from conftest import microbatch_clipped
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dpkit.accountants import BudgetExceededError, create_accountant, dpsgd_event
from dpkit.grad_sample import IncompatibleModuleError
from dpkit.optimizer import DPOptimizer
from dpkit.privacy_engine import PrivacyEngine

N, D, K = 60, 5, 3


def data(n=N, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, D, generator=g), torch.randint(0, K, (n,), generator=g))


class Net(nn.Module):
    def __init__(self, dropout=0.0):
        super().__init__()
        self.fc1 = nn.Linear(D, 8)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(8, K)

    def forward(self, x):
        return self.fc2(self.drop(torch.relu(self.fc1(x))))

    def describe(self) -> str:  # a user method that must survive make_private
        return "net"


def setup(seed=0, batch_size=10, opt="sgd", dropout=0.0, engine_kwargs=None, **kwargs):
    torch.manual_seed(seed)
    model = Net(dropout)
    optimizer = (
        torch.optim.SGD(model.parameters(), lr=0.1) if opt == "sgd" else torch.optim.Adam(model.parameters(), lr=0.01)
    )
    engine = PrivacyEngine(**(engine_kwargs or {"seed": 11}))
    kwargs.setdefault("max_grad_norm", 1.0)
    if "target_epsilon" not in kwargs:
        kwargs.setdefault("noise_multiplier", 1.0)
    m, o, dl = engine.make_private(model, optimizer, DataLoader(data(), batch_size=batch_size), **kwargs)
    return engine, m, o, dl


def step(model, optimizer, x, y, reduction="mean"):
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x), y, reduction=reduction).backward()
    optimizer.step()


def test_make_private_returns_the_same_module_and_three_values():
    engine, m, o, dl = setup()
    assert type(m) is Net and m.describe() == "net" and isinstance(m.fc1, nn.Linear)
    assert isinstance(o, DPOptimizer) and isinstance(o, torch.optim.Optimizer)
    assert isinstance(dl, DataLoader)
    assert engine.sample_rate == pytest.approx(10 / N)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_noise_zero_equals_clipped_microbatch_loop(reduction):
    with pytest.warns(UserWarning, match="NOT private"):
        engine, m, o, _ = setup(noise_multiplier=0.0, max_grad_norm=0.3, loss_reduction=reduction)
    x, y = data().tensors
    x, y = x[:13], y[:13]
    # Reference gradients before the step (the engine is bypassed in no-engine mode by detaching it).
    engine.detach()
    ref, ref_norms = microbatch_clipped(
        m, (x,), 0.3, loss=lambda out, i: nn.functional.cross_entropy(out, y[i : i + 1])
    )
    engine.engine.attach()
    o.zero_grad()
    nn.functional.cross_entropy(m(x), y, reduction=reduction).backward()
    o.pre_step()
    for p, r in zip(m.parameters(), ref, strict=True):
        torch.testing.assert_close(p.grad, r / 10, atol=1e-6, rtol=1e-4)  # divided by q * N = 10
    torch.testing.assert_close(o.last_clipped.norms, ref_norms, atol=1e-5, rtol=1e-4)
    assert (ref_norms > 0.3).all(), "every example is clipped in this test"
    assert engine.get_epsilon(1e-5) == math.inf


def test_physical_chunks_give_the_same_update():
    x, y = data().tensors
    grads = []
    for chunk in (None, 4):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, m, o, _ = setup(noise_multiplier=0.0, max_grad_norm=0.5, max_physical_batch_size=chunk)
        o.zero_grad()
        nn.functional.cross_entropy(m(x[:23]), y[:23]).backward()
        o.pre_step()
        grads.append([p.grad.clone() for p in m.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-5)


def test_noise_has_std_sigma_times_c():
    sigma, c = 1.7, 0.4
    torch.manual_seed(0)
    model = nn.Linear(100, 200)  # 20,200 coordinates
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    ds = TensorDataset(torch.randn(40, 100))
    engine = PrivacyEngine(seed=5)
    m, o, _ = engine.make_private(
        model,
        opt,
        DataLoader(ds, batch_size=8),
        noise_multiplier=sigma,
        max_grad_norm=c,
        loss_reduction="sum",
    )
    o.zero_grad()
    m(torch.randn(0, 100)).sum().backward()  # an empty batch: the update is pure noise
    o.step()
    noise = torch.cat([p.grad.flatten() for p in m.parameters()]) * 8  # undo the 1 / (q N) normalization
    n = noise.numel()
    s = noise.std().item()
    assert abs(s - sigma * c) < 5 * sigma * c / math.sqrt(2 * n)
    assert abs(noise.mean().item()) < 5 * sigma * c / math.sqrt(n)
    assert engine.steps == 1


def test_seeded_noise_is_independent_blocks_whatever_the_thread_count():
    from dpkit.noise import BLOCK, GaussianNoise, block_seeds

    n = 2 * BLOCK + 123  # three blocks, the last one partial
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = GaussianNoise(seed=3).fill_(torch.empty(n), 2.0, step=7)
        torch.set_num_threads(3)
        three = GaussianNoise(seed=3).fill_(torch.empty(n), 2.0, step=7)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, three)
    seeds = block_seeds(3, 7, 3)
    assert len(set(seeds)) == 3
    for j, s in enumerate(seeds):  # block j is normal_ from its own seed: blocks never repeat each other
        ref = torch.empty(min(BLOCK, n - j * BLOCK)).normal_(0.0, 2.0, generator=torch.Generator().manual_seed(s))
        assert torch.equal(one[j * BLOCK : (j + 1) * BLOCK], ref)
    other_step = GaussianNoise(seed=3).fill_(torch.empty(n), 2.0, step=8)
    assert not torch.equal(one[:BLOCK], other_step[:BLOCK])
    # draw() (parameters of several dtypes) gives the same values as fill_ on the concatenation
    parts = GaussianNoise(seed=3).draw([torch.empty(BLOCK, 2), torch.empty(123, dtype=torch.float64)], 2.0, step=7)
    assert torch.equal(torch.cat([parts[0].flatten(), parts[1].float()]), one)


@pytest.mark.parametrize("accountant", ["pld", "rdp"])
def test_ledger_epsilon_equals_accountant(accountant):
    sigma, steps = 1.1, 7
    engine, m, o, dl = setup(engine_kwargs={"accountant": accountant, "seed": 1}, noise_multiplier=sigma)
    it = iter(dl)
    for _ in range(steps):
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(dl)
            x, y = next(it)
        step(m, o, x, y)
    q = 10 / N
    expected = create_accountant(accountant).compose(dpsgd_event(sigma, q, steps)).get_epsilon(1e-5)
    assert engine.get_epsilon(1e-5) == pytest.approx(expected, rel=1e-9)
    assert engine.steps == steps


def test_budget_refusal_leaves_parameters_unchanged():
    engine, m, o, dl = setup(target_epsilon=2.0, target_delta=1e-5, epochs=1, engine_kwargs={"accountant": "rdp"})
    assert engine.noise_multiplier > 0
    x, y = data().tensors
    taken = 0
    with pytest.raises(BudgetExceededError):
        for _ in range(1000):
            before = [p.detach().clone() for p in m.parameters()]
            step(m, o, x[:10], y[:10])
            taken += 1
    for p, b in zip(m.parameters(), before, strict=True):
        assert torch.equal(p.detach(), b)
    assert taken == engine.steps and taken >= len(dl)  # calibrated for one epoch of len(dl) steps
    assert engine.get_epsilon(1e-5) <= 2.0


def run(dl, m, o, total_steps, start=0):
    done = start
    while done < total_steps:
        for x, y in dl:
            step(m, o, x, y)
            done += 1
            if done == total_steps:
                return done
    return done


@pytest.mark.parametrize("interrupt_at", [3, 6])
def test_bit_exact_resume(tmp_path, interrupt_at):
    total = 11  # steps_per_epoch = 6: resumes mid-epoch and at an epoch boundary
    kwargs = dict(opt="adam", dropout=0.3, noise_multiplier=0.8, max_physical_batch_size=4)
    engine, m, o, dl = setup(**kwargs)
    assert len(dl) == 6
    run(dl, m, o, total)
    full = [p.detach().clone() for p in m.parameters()]
    eps_full = engine.get_epsilon(1e-5)

    engine, m, o, dl = setup(**kwargs)
    run(dl, m, o, interrupt_at)
    engine.save_checkpoint(tmp_path / "ck.pt", model=m, optimizer=o, extra={"epoch": 0})
    torch.manual_seed(999)  # the resumed process starts from an unrelated global RNG state

    engine2, m2, o2, dl2 = setup(seed=5, **kwargs)  # different init: everything comes from the checkpoint
    assert engine2.load_checkpoint(tmp_path / "ck.pt", model=m2, optimizer=o2) == {"epoch": 0}
    assert engine2.steps == interrupt_at
    run(dl2, m2, o2, total, start=interrupt_at)  # continue the interrupted epoch, then further epochs
    for a, b in zip(full, m2.parameters(), strict=True):
        assert torch.equal(a, b.detach())
    assert engine2.get_epsilon(1e-5) == eps_full


def test_checkpoint_of_a_different_run_is_refused(tmp_path):
    engine, m, o, _ = setup(noise_multiplier=0.8)
    engine.save_checkpoint(tmp_path / "ck.pt", model=m, optimizer=o)
    engine2, m2, o2, _ = setup(noise_multiplier=0.9)
    with pytest.raises(ValueError, match="noise_multiplier=0.8"):
        engine2.load_checkpoint(tmp_path / "ck.pt", model=m2, optimizer=o2)


def test_secure_rng_and_lr_scheduler():
    engine, m, o, dl = setup(engine_kwargs={"secure_rng": True})
    sched = torch.optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.5)
    x, y = next(iter(dl))
    step(m, o, x, y)
    sched.step()
    assert o.param_groups[0]["lr"] == pytest.approx(0.05)
    assert engine.noise.secure and engine.seed is None


def test_gradients_outside_the_engine_are_refused():
    _, m, o, _ = setup()
    x, y = data().tensors
    o.zero_grad()
    nn.functional.cross_entropy(m.fc2(torch.relu(m.fc1(x[:4]))), y[:4]).backward()  # bypasses model(...)
    with pytest.raises(RuntimeError, match="'fc1.weight' received a gradient outside"):
        o.step()


def test_eval_and_no_grad_calls_are_ordinary():
    _, m, o, _ = setup()
    with torch.no_grad():
        out = m(torch.randn(3, D))
    assert not out.requires_grad
    assert o.engine.batch_size is None


def test_batchnorm_model_is_refused_with_the_path():
    model = nn.Sequential(nn.Linear(D, 4), nn.BatchNorm1d(4), nn.Linear(4, K))
    with pytest.raises(IncompatibleModuleError, match=r"1 \(BatchNorm1d\).*fix_module"):
        PrivacyEngine(seed=0).make_private(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            DataLoader(data(), batch_size=10),
            noise_multiplier=1.0,
            max_grad_norm=1.0,
        )
    assert "forward" not in model.__dict__


def test_per_layer_clipping_trains():
    engine, m, o, dl = setup(clipping="per_layer", max_grad_norm=[0.5, 0.5, 0.5, 0.5])
    x, y = next(iter(dl))
    step(m, o, x, y)
    assert o.clipping.sensitivity == pytest.approx(1.0)
    assert all(p.grad is not None for p in m.parameters())
