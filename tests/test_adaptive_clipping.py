"""Adaptive clipping (dpkit.adaptive_clipping): the norm converges to the target quantile, the noise split and its
accounting, calibration, Opacus' AdaClipDPOptimizer, engines, checkpoints and bad input."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from conftest import TanhNet, labelled_data, parameters_of, unchanged
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dpkit.accountants import create_accountant, dpsgd_event
from dpkit.adaptive_clipping import AdaptiveClipping, AdaptiveClippingOptimizer, gradient_noise_multiplier
from dpkit.privacy_engine import PrivacyEngine

N, D, K = 60, 5, 3


def data(n=N, seed=0):
    return labelled_data(n, D, K, seed)


Net = TanhNet


def private(model, dataset, *, batch_size, engine="auto", seed=3, lr=0.1, opt="sgd", accountant="pld", **kwargs):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr) if opt == "sgd" else torch.optim.Adam(model.parameters())
    pe = PrivacyEngine(accountant, seed=seed, grad_sample_engine=engine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m, o, dl = pe.make_private(model, optimizer, DataLoader(dataset, batch_size=batch_size), **kwargs)
    return pe, m, o, dl


def norm_model():
    """Per-example loss w * x_i at w = 0 (learning rate 0): example i's gradient norm is |x_i|."""
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    return model


def linear_step(m, o, x):
    o.zero_grad()
    m(x).mean().backward()
    o.step()


@pytest.mark.parametrize("quantile", [0.3, 0.5, 0.9])
def test_norm_converges_to_the_target_quantile_of_a_known_distribution(quantile):
    # |g_i| ~ Exponential(1): the gamma-quantile is -log(1 - gamma). B = 1000, sigma_b = B / 20: the count noise
    # moves the estimated fraction by 0.05 (one std) per step.
    g = torch.Generator().manual_seed(1)
    x = torch.empty(4000, 1).exponential_(1.0, generator=g)
    adaptive = AdaptiveClipping(target_quantile=quantile, learning_rate=0.2, initial_norm=0.1)
    _, m, o, _ = private(
        norm_model(), TensorDataset(x), batch_size=1000, lr=0.0, noise_multiplier=1.0, max_grad_norm=adaptive
    )
    norms = []
    for _ in range(120):  # Poisson batches of rate 1/4 drawn here (the loader's per-example indexing is slow)
        linear_step(m, o, x[torch.rand(len(x), generator=g) < 0.25])
        norms.append(o.max_grad_norm)
    tail = torch.tensor(norms[60:])  # after the first ~30 steps of the climb from 0.1
    true_fraction = float((x.squeeze(1) <= tail.unsqueeze(1)).double().mean())
    assert true_fraction == pytest.approx(quantile, abs=0.03)
    assert float(tail.log().mean()) == pytest.approx(math.log(-math.log(1 - quantile)), abs=0.1)


def test_events_are_the_combined_gaussian_and_the_noises_are_split():
    sigma, sigma_b, c0, b = 1.2, 4.0, 0.5, 40
    x = torch.randn(400, 100)
    model = nn.Linear(100, 200)  # 20,200 coordinates
    pe, m, o, _ = private(
        model,
        TensorDataset(x),
        batch_size=b,
        lr=0.0,
        accountant="rdp",
        noise_multiplier=sigma,
        max_grad_norm=AdaptiveClipping(initial_norm=c0, count_noise=sigma_b),
    )
    assert isinstance(o, AdaptiveClippingOptimizer)
    sigma_grad = o.gradient_noise_multiplier
    assert sigma_grad**-2 + (2 * sigma_b) ** -2 == pytest.approx(sigma**-2, rel=1e-12)  # the paper's Theorem 1
    o.zero_grad()
    m(torch.randn(0, 100)).sum().backward()  # an empty batch: the update is pure gradient noise
    o.step()
    noise = torch.cat([p.grad.flatten() for p in m.parameters()])
    expected = sigma_grad * c0 / b
    assert abs(noise.std().item() - expected) < 5 * expected / math.sqrt(2 * noise.numel())
    steps = 300
    fractions = [o.unclipped_fraction]
    for _ in range(steps - 1):  # empty batches: the estimated fraction is 1/2 + N(0, sigma_b^2) / B
        o.zero_grad()
        m(torch.randn(0, 100)).sum().backward()
        o.step()
        fractions.append(o.unclipped_fraction)
    z = (torch.tensor(fractions, dtype=torch.float64) - 0.5) * b / sigma_b
    assert abs(float(z.std()) - 1.0) < 5 / math.sqrt(2 * steps) and abs(float(z.mean())) < 5 / math.sqrt(steps)
    expected_eps = create_accountant("rdp").compose(dpsgd_event(sigma, b / 400, steps)).get_epsilon(1e-5)
    assert pe.get_epsilon(1e-5) == pytest.approx(expected_eps, rel=1e-12)


def test_calibration_to_a_target_epsilon_charges_the_combined_multiplier():
    kwargs = dict(target_epsilon=2.0, target_delta=1e-5, epochs=2, batch_size=20)
    ds = TensorDataset(*data(400).tensors)
    torch.manual_seed(0)
    pe, m, o, dl = private(Net(), ds, max_grad_norm=AdaptiveClipping(count_noise=5.0), **kwargs)
    torch.manual_seed(0)
    plain, *_ = private(Net(), ds, max_grad_norm=1.0, **kwargs)
    assert pe.noise_multiplier == plain.noise_multiplier  # the same mechanism is charged ...
    assert o.gradient_noise_multiplier > pe.noise_multiplier  # ... so the gradients get more noise
    for _ in range(2):
        for x, y in dl:
            o.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            o.step()
    assert pe.get_epsilon(1e-5) <= 2.0


@pytest.mark.anchors
def test_norm_trajectory_equals_opacus_adaclip_without_noise():
    opacus_optimizers = pytest.importorskip("opacus.optimizers")
    from opacus import GradSampleModule

    g = torch.Generator().manual_seed(2)
    x = torch.empty(50, 1).exponential_(1.0, generator=g)
    settings = dict(target_quantile=0.7, learning_rate=0.3, initial_norm=0.2, count_noise=1e-9)
    # tiny noise on both sides (Opacus refuses noise 0 for the count): a deterministic run of the update rule
    _, m, o, _ = private(
        norm_model(),
        TensorDataset(x),
        batch_size=50,
        lr=0.0,
        noise_multiplier=1e-10,
        max_grad_norm=AdaptiveClipping(**settings),
    )
    ref_model = GradSampleModule(norm_model())
    ref = opacus_optimizers.AdaClipDPOptimizer(
        torch.optim.SGD(ref_model.parameters(), lr=0.0),
        noise_multiplier=1e-10,
        target_unclipped_quantile=0.7,
        clipbound_learning_rate=0.3,
        max_clipbound=1e12,
        min_clipbound=1e-12,
        unclipped_num_std=1e-9,
        max_grad_norm=0.2,
        expected_batch_size=50,
    )
    mine, theirs = [], []
    for _ in range(25):
        linear_step(m, o, x)  # the full data set: the batch size is the expected one
        linear_step(ref_model, ref, x)
        mine.append(o.max_grad_norm)
        theirs.append(float(ref.max_grad_norm))
    assert mine == pytest.approx(theirs, rel=1e-6)
    assert max(mine) / min(mine) > 2  # the norm moved


def test_bookkeeping_equals_functorch_and_checkpoints_resume_identically(tmp_path):
    ds = TensorDataset(*data().tensors)
    adaptive = AdaptiveClipping(initial_norm=0.05, count_noise=1.0)

    def run(engine, steps, chunk=None, save=None, resume=None):
        torch.manual_seed(0)
        pe, m, o, dl = private(
            Net(),
            ds,
            batch_size=10,
            engine=engine,
            opt="adam",
            noise_multiplier=0.8,
            max_grad_norm=adaptive,
            max_physical_batch_size=chunk,
        )
        done = 0
        if resume is not None:
            pe.load_checkpoint(resume, model=m, optimizer=o)
            done = pe.steps
        norms = []
        while done < steps:
            for x, y in dl:
                o.zero_grad()
                nn.functional.cross_entropy(m(x), y).backward()
                o.step()
                norms.append(o.max_grad_norm)
                done += 1
                if done == save:
                    pe.save_checkpoint(tmp_path / "ck.pt", model=m, optimizer=o)
                if done == steps:
                    break
        return parameters_of(m), norms, pe.get_epsilon(1e-5)

    ref = run("functorch", 8, save=5)
    book = run("bookkeeping", 8, chunk=3)
    assert book[1] == pytest.approx(ref[1], rel=1e-6)
    for a, b in zip(book[0], ref[0], strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    resumed = run("functorch", 8, resume=tmp_path / "ck.pt")
    assert resumed[1] == ref[1][5:] and resumed[2] == ref[2]
    assert all(torch.equal(a, b) for a, b in zip(resumed[0], ref[0], strict=True))
    assert len(set(ref[1])) > 1


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: AdaptiveClipping(target_quantile=0.0), "target_quantile"),
        (lambda: AdaptiveClipping(target_quantile=1.0), "target_quantile"),
        (lambda: AdaptiveClipping(target_quantile=float("nan")), "target_quantile"),
        (lambda: AdaptiveClipping(learning_rate=0.0), "learning_rate"),
        (lambda: AdaptiveClipping(learning_rate=float("inf")), "learning_rate"),
        (lambda: AdaptiveClipping(initial_norm=-1.0), "initial_norm"),
        (lambda: AdaptiveClipping(count_noise=-1.0), "count_noise"),
        (lambda: AdaptiveClipping(count_noise=float("nan")), "count_noise"),
    ],
)
def test_bad_settings_are_refused(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_grad_norm": "adaptiv"}, "max_grad_norm must be .* got 'adaptiv'"),
        ({"max_grad_norm": "adaptive", "clipping": "per_layer"}, "needs clipping='flat'"),
        ({"max_grad_norm": AdaptiveClipping(count_noise=0.4)}, r"count_noise must be > noise_multiplier / 2 = 0\.5"),
        ({"max_grad_norm": "adaptive"}, "count_noise must be >"),  # B / 20 = 0.5 is too little for sigma = 1
    ],
)
def test_bad_input_is_refused_before_any_state_change(kwargs, match):
    torch.manual_seed(0)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = parameters_of(model)
    pe = PrivacyEngine(seed=1)
    with pytest.raises(ValueError, match=match):
        pe.make_private(model, optimizer, DataLoader(data(), batch_size=10), noise_multiplier=1.0, **kwargs)
    assert unchanged(model, before) and pe.optimizer is None and not model.fc1._forward_hooks
    pe.make_private(model, optimizer, DataLoader(data(), batch_size=10), noise_multiplier=1.0, max_grad_norm=1.0)


def test_gradient_noise_multiplier_closed_form():
    assert gradient_noise_multiplier(0.0, 0.0) == 0.0
    assert gradient_noise_multiplier(1.0, 10.0) == pytest.approx((1 - 1 / 400) ** -0.5, rel=1e-15)
    with pytest.raises(ValueError, match="count_noise"):
        gradient_noise_multiplier(1.0, 0.5)
