"""Correlated-noise training: make_private(noise=strategy), MFOptimizer and the participation loaders.

Against DP-SGD (noise 0), against the math (the injected noise's covariance over seeds is
sigma^2 clip^2 sens^2 C^{-1} C^{-T} / B^2), against the materialized C^{-1} Z, resume, accounting and bad input.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dpkit.accountants import BudgetExceededError, GaussianEvent, calibrate_noise, calibrate_noise_multiplier
from dpkit.mechanisms import matrix_factorization as mf
from dpkit.mf_data import CyclicBatchSampler
from dpkit.mf_optimizer import CorrelatedNoise, MFOptimizer
from dpkit.noise import GaussianNoise
from dpkit.privacy_engine import PrivacyEngine

N, D = 24, 4  # 24 examples, batch 6: b = 4 steps per epoch


def dataset(n=N, zero=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, D, generator=g)
    y = x @ torch.arange(1.0, D + 1) + 0.1 * torch.randn(n, generator=g)
    if zero:
        x, y = torch.zeros_like(x), torch.zeros_like(y)
    return TensorDataset(x, y)


def blt(n, buffers):
    """A BLT with c_0 = 1 >= c_1 >= ... >= 0 (so its sensitivity has the exact Toeplitz formula)."""
    decay = [0.9, 0.6, 0.3][:buffers]
    scale = [0.2, 0.15, 0.1][:buffers]
    return mf.BufferedToeplitz(np.array(decay), np.array(scale), n)


def strategies(n):
    return {
        "identity": mf.Identity(n),
        "sqrt": mf.ToeplitzStrategy.square_root(n),
        "banded": mf.ColumnNormalizedBanded.default(n, 3),
        "blt": blt(n, 2),
        "dense": mf.optimize_dense(n, mf.FixedEpoch(n // 4, 4)),
    }


def make(
    noise,
    *,
    seed=3,
    batch=6,
    n_data=N,
    zero=False,
    dtype=torch.float32,
    bias=True,
    engine_seed=11,
    grad_sample_engine="auto",
    momentum=0.9,
    out=1,
    **kwargs,
):
    torch.manual_seed(seed)
    model = nn.Linear(D, out, bias=bias).to(dtype)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=momentum)
    engine = PrivacyEngine(seed=engine_seed, grad_sample_engine=grad_sample_engine)
    ds = dataset(n_data, zero)
    ds = TensorDataset(*(t.to(dtype) for t in ds.tensors))
    kwargs.setdefault("max_grad_norm", 1.0)
    if "target_epsilon" not in kwargs:
        kwargs.setdefault("noise_multiplier", 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # noise_multiplier=0 warns
        m, o, dl = engine.make_private(model, opt, DataLoader(ds, batch_size=batch), noise=noise, **kwargs)
    return engine, m, o, dl


def train(model, opt, loader, steps, record=None):
    done = 0
    while done < steps:
        for x, y in loader:
            opt.zero_grad()
            nn.functional.mse_loss(model(x).mean(1), y).backward()
            opt.step()
            if record is not None:
                record.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).clone())
            done += 1
            if done == steps:
                break


def flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


# --------------------------------------------------------------------------- against DP-SGD
@pytest.mark.parametrize("name", ["blt", "dense"])
def test_without_noise_the_updates_are_dp_sgds(name):
    """noise_multiplier=0: the MF optimizer applies exactly DP-SGD's clipped mean (same batches, same divisor)."""
    strategy = strategies(16)[name]
    engine, m, o, loader = make(strategy, noise_multiplier=0.0)
    torch.manual_seed(3)
    m2 = nn.Linear(D, 1)
    o2 = torch.optim.SGD(m2.parameters(), lr=0.05, momentum=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m2, o2, _ = PrivacyEngine(seed=11).make_private(
            m2,
            o2,
            DataLoader(dataset(), batch_size=6),
            noise_multiplier=0.0,
            max_grad_norm=1.0,
            poisson_sampling=False,
        )
    assert isinstance(o, MFOptimizer) and not isinstance(o2, MFOptimizer)
    steps = 0
    for _ in range(4):
        for x, y in loader:
            for model, opt in ((m, o), (m2, o2)):
                opt.zero_grad()
                nn.functional.mse_loss(model(x).squeeze(1), y).backward()
                opt.step()
            steps += 1
    assert steps == 16
    assert torch.equal(flat(m), flat(m2))


# --------------------------------------------------------------------------- against the math
@pytest.mark.parametrize("name", ["sqrt", "banded", "blt", "dense"])
def test_noise_covariance_over_seeds_matches_the_strategy(name):
    """Zero data: the applied gradient is the noise / B; over seeds and coordinates (i.i.d.), its covariance across
    steps is (sigma clip sens(C) / B)^2 C^{-1} C^{-T}. Each entry within 5 standard errors:
    Var(S_ij) = (Sigma_ii Sigma_jj + Sigma_ij^2) / samples for Gaussian vectors."""
    n, sigma, clip, seeds, out = 8, 1.3, 0.7, 8, 500
    strategy = strategies(n)[name]
    rows = []
    for s in range(seeds):
        engine, m, o, loader = make(
            strategy,
            zero=True,
            batch=6,
            n_data=N,
            engine_seed=100 + s,
            noise_multiplier=sigma,
            max_grad_norm=clip,
            momentum=0.0,
            bias=False,
            out=out,
        )
        rec: list[torch.Tensor] = []
        train(m, o, loader, n, rec)
        rows.append(torch.stack(rec).double().numpy())  # (n, d)
    # widen: many independent coordinates per seed
    Y = np.concatenate(rows, axis=1)  # (n, seeds * d)
    assert Y.shape[1] == seeds * D * out
    sens = strategy.sensitivity(mf.FixedEpoch(n // 4, 4)).value
    inv = strategy.noising_matrix()
    expected = (sigma * clip * sens / 6.0) ** 2 * inv @ inv.T
    samples = Y.shape[1]
    emp = Y @ Y.T / samples
    se = np.sqrt((np.outer(np.diag(expected), np.diag(expected)) + expected**2) / samples)
    z = np.abs(emp - expected) / se
    assert z.max() < 5, (name, z.max())


def _stream_draws(seed, n, d, dtype):
    noise = GaussianNoise(seed)
    return np.stack([noise.fill_(torch.empty(d, dtype=dtype), 1.0, t).double().numpy() for t in range(n)])


@pytest.mark.parametrize("name", ["identity", "sqrt", "banded", "blt", "dense"])
def test_streamed_noise_equals_the_materialized_product(name):
    """Row t of the applied noise equals (sigma clip sens / B) (C^{-1} Z)[t] with Z the step draws, computed as a
    full matrix product (float64 model: to rounding)."""
    n = 12
    strategy = strategies(n)[name]
    engine, m, o, loader = make(
        strategy, zero=True, dtype=torch.float64, noise_multiplier=0.9, momentum=0.0, bias=False
    )
    rec: list[torch.Tensor] = []
    train(m, o, loader, n, rec)
    got = torch.stack(rec).numpy()
    Z = _stream_draws(11, n, D, torch.float64)
    sens = strategy.sensitivity(mf.FixedEpoch(n // 4, 4)).value
    want = 0.9 * 1.0 * sens / 6.0 * (strategy.noising_matrix() @ Z)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_memory_is_the_strategys_not_n_by_params():
    """The optimizer keeps at most noise_memory (BLT: buffers; banded: bands - 1) model-sized vectors."""
    for strategy, most in ((blt(12, 3), 3), (mf.ColumnNormalizedBanded.default(12, 3), 2), (mf.Identity(12), 0)):
        _, m, o, loader = make(strategy)
        sizes = []
        for x, y in loader:
            o.zero_grad()
            nn.functional.mse_loss(m(x).squeeze(1), y).backward()
            o.step()
            sizes.append(len(o._state))
        assert max(sizes) == most


# --------------------------------------------------------------------------- participation loaders
def _participation(loader, steps):
    seen: dict[int, list[int]] = {}
    t = 0
    while t < steps:
        for _ in loader:
            for i in loader.drawn_indices:
                seen.setdefault(i, []).append(t)
            t += 1
    return seen


def _indices_per_step(loader, steps):
    sampler = loader.batch_sampler
    return [sampler.draw(t) for t in range(steps)]


def test_fixed_epoch_loader_visits_each_example_every_b_steps():
    engine, m, o, loader = make(strategies(16)["blt"])
    batches = _indices_per_step(loader, 16)
    assert sorted(i for b in batches[:4] for i in b) == list(range(N))  # one epoch covers the data once
    for t in range(4, 16):
        assert batches[t] == batches[t - 4]
    assert len(loader) == 4


def test_groups_do_not_move_when_an_example_is_removed():
    """Each example's group is its own seeded draw: the examples of a dataset with one example fewer keep their steps
    (add/remove neighbours differ in that example's steps only)."""
    big = CyclicBatchSampler(1000, 10, 40, seed=5)
    small = CyclicBatchSampler(999, 10, 40, seed=5)
    for g in range(10):
        assert small.members(g).tolist() == [i for i in big.members(g).tolist() if i < 999]
    sizes = [big.members(g).numel() for g in range(10)]
    assert sum(sizes) == 1000 and min(sizes) > 50  # about 100 each (Binomial(1000, 0.1): sd 9.5)


def test_cyclic_poisson_loader_samples_group_t_mod_bands():
    strategy = mf.ColumnNormalizedBanded.default(16, 4)
    engine, m, o, loader = make(CorrelatedNoise(strategy, cyclic_poisson=True), batch=3)
    sampler = loader.batch_sampler
    assert sampler.sample_rate == pytest.approx(3 * 4 / N)
    groups = [set(sampler.members(g).tolist()) for g in range(4)]
    assert sorted(i for g in groups for i in g) == list(range(N))
    for t in range(16):
        assert set(sampler.draw(t)) <= groups[t % 4]


# --------------------------------------------------------------------------- accounting
def test_calibration_and_budget_use_the_whole_runs_event():
    strategy = strategies(16)["blt"]
    engine, m, o, loader = make(strategy, target_epsilon=2.0, target_delta=1e-5, epochs=4)
    sigma = calibrate_noise(lambda s: GaussianEvent(s), 2.0, 1e-5, "pld")
    assert engine.noise_multiplier == pytest.approx(sigma, rel=1e-12)
    train(m, o, loader, 1)
    eps_one = engine.get_epsilon(1e-5)
    assert 1.9 < eps_one <= 2.0  # the whole run is charged at its first step
    train(m, o, loader, 15)
    assert engine.get_epsilon(1e-5) == eps_one
    with pytest.raises(RuntimeError, match="n=16 steps"):
        o.step()


def test_amplified_banded_run_is_calibrated_as_dp_sgd_over_n_over_bands_steps():
    strategy = mf.ColumnNormalizedBanded.default(16, 4)
    engine, m, o, loader = make(
        CorrelatedNoise(strategy, cyclic_poisson=True), batch=3, target_epsilon=2.0, target_delta=1e-5, epochs=16 / 8
    )
    q = 3 * 4 / N
    assert engine.noise_multiplier == pytest.approx(calibrate_noise_multiplier(2.0, 1e-5, q, 4), rel=1e-9)
    train(m, o, loader, 16)
    assert engine.get_epsilon(1e-5) <= 2.0


def test_budget_refuses_the_run_before_the_first_step():
    strategy = strategies(16)["blt"]
    engine, m, o, loader = make(strategy, target_epsilon=2.0, target_delta=1e-5, epochs=4)
    engine.budget.spend(GaussianEvent(3.0))  # something else spent part of the budget
    before = flat(m).clone()
    x, y = next(iter(loader))
    o.zero_grad()
    nn.functional.mse_loss(m(x).squeeze(1), y).backward()
    with pytest.raises(BudgetExceededError):
        o.step()
    assert torch.equal(flat(m), before) and engine.steps == 0 and o._stream_t == 0


# --------------------------------------------------------------------------- engines, resume
def test_bookkeeping_and_functorch_engines_agree():
    strategy = strategies(16)["blt"]
    results = []
    for name in ("bookkeeping", "functorch"):
        engine, m, o, loader = make(strategy, grad_sample_engine=name)
        assert engine.engine.name == name
        train(m, o, loader, 16)
        results.append(flat(m))
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["blt", "banded", "dense"])
@pytest.mark.parametrize("cut", [1, 6])
def test_resume_is_bit_exact(tmp_path, name, cut):
    strategy = strategies(16)[name]
    engine, m, o, loader = make(strategy)
    train(m, o, loader, 16)
    full = flat(m).clone()

    engine, m, o, loader = make(strategy)
    train(m, o, loader, cut)
    engine.save_checkpoint(tmp_path / "ck.pt", model=m, optimizer=o)
    engine2, m2, o2, loader2 = make(strategy, seed=9)  # another init: everything comes from the checkpoint
    engine2.load_checkpoint(tmp_path / "ck.pt", model=m2, optimizer=o2)
    assert engine2.steps == cut and o2._stream_t == cut
    train(m2, o2, loader2, 16 - cut)
    assert torch.equal(flat(m2), full)


def test_checkpoint_of_another_strategy_is_refused_and_changes_nothing(tmp_path):
    engine, m, o, loader = make(strategies(16)["blt"])
    train(m, o, loader, 3)
    engine.save_checkpoint(tmp_path / "ck.pt", model=m, optimizer=o)
    state = o.state_dict()
    _, m2, o2, _ = make(blt(16, 3))
    before = flat(m2).clone()
    with pytest.raises(ValueError, match="fingerprint|correlated_noise"):
        o2.load_state_dict(state)
    assert o2._stream_t == 0 and torch.equal(flat(m2), before)
    with pytest.raises(ValueError, match="correlated_noise"):
        o.load_state_dict({k: v for k, v in state.items() if k != "correlated_noise"})


def test_a_stream_out_of_step_with_the_optimizer_is_refused():
    engine, m, o, loader = make(strategies(16)["blt"])
    train(m, o, loader, 2)
    engine.load_state_dict({**engine.state_dict(), "steps": 5})  # the optimizer's noise state was not restored
    x, y = next(iter(loader))
    o.zero_grad()
    nn.functional.mse_loss(m(x).squeeze(1), y).backward()
    with pytest.raises(RuntimeError, match="noise stream is at step 2"):
        o.step()


# --------------------------------------------------------------------------- bad input
def _refused(noise, match, **kwargs):
    torch.manual_seed(0)
    model = nn.Linear(D, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    engine = PrivacyEngine(**kwargs.pop("engine_kwargs", {"seed": 1}))
    if "target_epsilon" not in kwargs:
        kwargs.setdefault("noise_multiplier", 1.0)
    with pytest.raises((ValueError, TypeError), match=match):
        engine.make_private(
            model,
            opt,
            DataLoader(dataset(), batch_size=kwargs.pop("batch", 6)),
            noise=noise,
            max_grad_norm=1.0,
            **kwargs,
        )
    # nothing changed: the plain optimizer still steps, the engine can still make the model private
    assert engine.optimizer is None and engine.engine is None
    model(torch.zeros(2, D)).sum().backward()
    opt.step()


@pytest.mark.parametrize(
    ("noise", "kwargs", "match"),
    [
        (mf.Identity(18), {}, r"noise.strategy.n=18 must be k x b"),  # b = 4 does not divide 18
        (mf.Identity(16), {"target_epsilon": 1.0, "target_delta": 1e-5, "epochs": 3}, r"epochs=3.0 x 4 steps .*n=16"),
        (CorrelatedNoise(mf.Identity(16), mf.FixedEpoch(4, 5)), {}, r"participation.steps_per_epoch=5"),
        (CorrelatedNoise(mf.Identity(16), mf.FixedEpoch(2, 4)), {}, r"epochs x steps_per_epoch.*!= n=16"),
        (CorrelatedNoise(mf.Identity(16), mf.MinSeparation(4, 2)), {}, r"max_participations=2"),
        (CorrelatedNoise(mf.Identity(16), mf.MinSeparation(3)), {}, r"min_sep=3"),
        (CorrelatedNoise(mf.Identity(16), mf.SingleParticipation()), {}, r"single participation"),
        (CorrelatedNoise(mf.ToeplitzStrategy.square_root(16), cyclic_poisson=True), {}, r"must be banded"),
        (CorrelatedNoise(mf.ColumnNormalizedBanded.default(16, 8), cyclic_poisson=True), {}, r"batch_size=6"),
        (mf.Identity(16), {"engine_kwargs": {"secure_rng": True}}, r"secure_rng"),
        ("blt", {}, r"noise must be None, a Strategy"),
    ],
)
def test_bad_input_is_refused_before_anything_changes(noise, kwargs, match):
    _refused(noise, match, **kwargs)


def test_correlated_noise_checks_its_fields():
    with pytest.raises(TypeError, match="noise.strategy"):
        CorrelatedNoise("blt")
    with pytest.raises(ValueError, match="noise.participation must be None with cyclic_poisson"):
        CorrelatedNoise(mf.Identity(4), mf.FixedEpoch(1, 4), cyclic_poisson=True)


def test_min_separation_and_single_participation_schemas_train():
    for noise, steps in (
        (CorrelatedNoise(blt(10, 2), mf.MinSeparation(4)), 10),
        (CorrelatedNoise(mf.ToeplitzStrategy.square_root(4), mf.SingleParticipation()), 4),
    ):
        engine, m, o, loader = make(noise)
        train(m, o, loader, steps)
        assert engine.steps == steps and math.isfinite(float(flat(m).sum()))


@pytest.mark.parametrize(
    "variant", [{"error_feedback_clip": 2.0}, {"max_grad_norm": "adaptive"}], ids=["dicesgd", "adaptive"]
)
def test_correlated_noise_with_a_dp_sgd_variant_is_refused_before_any_change(variant):
    strategy = strategies(12)["blt"]
    torch.manual_seed(0)
    model = nn.Linear(D, 1)
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    engine = PrivacyEngine(seed=1)
    kwargs = {"max_grad_norm": 1.0, **variant}
    with pytest.raises(ValueError, match="noise \\(correlated noise\\) is used with DP-SGD's fixed clipping only"):
        engine.make_private(
            model, opt, DataLoader(dataset(), batch_size=6), noise=strategy, noise_multiplier=1.0, **kwargs
        )
    assert engine.optimizer is None and all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
