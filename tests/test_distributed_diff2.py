"""DIFF2-GD: telescoping to GD, T = 1 is DP-GD, the noise bookkeeping, the accountant, and multi-process runs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dpkit.accountants import GaussianEvent, NonPrivateEvent, SelfComposedEvent, create_accountant
from dpkit.distributed import Diff2, Diff2Config, TorchCommunicator, module_loss, run_processes
from dpkit.distributed.accounting import calibrate_rounds, epsilon_of_rounds, zcdp_noise_multiplier, zcdp_rho
from dpkit.distributed.randomness import NOISE_STREAM, standard_normal


def squared_loss(params, inputs, targets):
    return 0.5 * (inputs @ params - targets) ** 2


def regression_nodes(sizes=(7, 11, 9), d=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    truth = torch.randn(d, generator=g, dtype=dtype)
    out = []
    for n in sizes:
        x = torch.randn(n, d, generator=g, dtype=dtype)
        out.append((x, x @ truth + 0.3 * torch.randn(n, generator=g, dtype=dtype)))
    return out


def global_gradient(loss_fn, params, datasets):
    p = params.detach().clone().requires_grad_(True)
    f = sum(loss_fn(p, x, y).mean() for x, y in datasets) / len(datasets)
    (g,) = torch.autograd.grad(f, p)
    return g


def test_without_noise_and_active_clipping_diff2_gd_is_gd():
    data = regression_nodes()
    smooth = max(float((x * x).sum(1).max()) for x, _ in data)  # per-sample L = ||a||^2 bounds the differences
    cfg = Diff2Config(12, 5, 0.05, gradient_clip=1e6, difference_clip=smooth, noise_multiplier=0.0)
    algo = Diff2(squared_loss, torch.zeros(5, dtype=torch.float64), data, cfg)
    x_gd = torch.zeros(5, dtype=torch.float64)
    for _ in range(cfg.rounds):
        grad = global_gradient(squared_loss, algo.params, data)
        info = algo.step()
        torch.testing.assert_close(algo.estimator, grad, rtol=0, atol=1e-12)  # v_r telescopes to grad f(x_{r-1})
        assert info.noise_variance == 0.0
        x_gd = x_gd - cfg.learning_rate * global_gradient(squared_loss, x_gd, data)
        torch.testing.assert_close(algo.params, x_gd, rtol=0, atol=1e-12)


def _mlp_problem(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.Softplus(), nn.Linear(6, 1)).double()
    loss_fn, params = module_loss(model, nn.MSELoss(reduction="none"))
    g = torch.Generator().manual_seed(seed + 1)
    data = []
    for n in (6, 9, 8):
        x = torch.randn(n, 4, generator=g, dtype=torch.float64)
        data.append((x, torch.sin(x.sum(1, keepdim=True))))
    return model, loss_fn, params, data


@pytest.mark.parametrize("trust", ["central", "local"])
def test_restart_every_round_is_dp_gd_against_a_per_sample_loop(trust):
    model, loss_fn, params, data = _mlp_problem()
    cfg = Diff2Config(4, 1, 0.1, gradient_clip=0.5, difference_clip=1.0, noise_multiplier=0.8, trust=trust)
    algo = Diff2(loss_fn, params, data, cfg, seed=7)
    algo.run()

    # DP-GD written out: per-sample autograd on the module, clip to C1, per-node mean, node noise, average.
    P, n_min = len(data), min(x.shape[0] for x, _ in data)
    names = [n for n, _ in model.named_parameters()]
    x = params.clone()
    for r in range(cfg.rounds):
        torch.nn.utils.vector_to_parameters(x, model.parameters())
        messages = []
        for p, (inputs, targets) in enumerate(data):
            total = torch.zeros_like(x)
            for i in range(inputs.shape[0]):
                model.zero_grad()
                nn.functional.mse_loss(model(inputs[i : i + 1]), targets[i : i + 1]).backward()
                g = torch.cat([dict(model.named_parameters())[n].grad.reshape(-1) for n in names])
                total += g * min(1.0, cfg.gradient_clip / float(g.norm()))
            n_p = inputs.shape[0]
            std = 0.8 * 2 * 0.5 / n_p if trust == "local" else 0.8 * 2 * 0.5 / (n_min * math.sqrt(P))
            messages.append(total / n_p + std * standard_normal(x.numel(), x.dtype, 7, NOISE_STREAM, p, r))
        x = x - cfg.learning_rate * sum(messages) / P
    torch.testing.assert_close(algo.params, x, rtol=1e-10, atol=1e-12)


def test_estimator_noise_variance_grows_inside_a_restart_period_and_resets():
    # Linear per-sample losses -a.x: gradients do not depend on x, so gradient differences are exactly 0 and
    # v_r - grad f is the accumulated noise; its per-coordinate variance must follow the bookkeeping.
    d, P = 20000, 4
    g = torch.Generator().manual_seed(3)
    data = [(torch.randn(n, d, generator=g, dtype=torch.float64), torch.zeros(n)) for n in (5, 6, 7, 8)]

    def linear_loss(params, inputs, targets):
        return -(inputs @ params)

    cfg = Diff2Config(8, 4, 1e-3, gradient_clip=1e3, difference_clip=50.0, noise_multiplier=2.0)
    algo = Diff2(linear_loss, torch.zeros(d, dtype=torch.float64), data, cfg, seed=11)
    grad = global_gradient(linear_loss, algo.params, data)
    tolerance = 5 * math.sqrt(2 / d)  # 5 sigma of a chi-square(d) / d
    infos = []
    for _ in range(cfg.rounds):
        info = algo.step()
        infos.append(info)
        empirical = float(((algo.estimator - grad) ** 2).mean())
        assert abs(empirical / info.estimator_noise_variance - 1) < tolerance
        s1 = 2.0 * 2 * 1e3 / (5 * math.sqrt(P))  # z 2 C1 / (n_min sqrt(P))
        expected = (s1 if info.restart else s1 * info.clip_radius / 1e3) ** 2 / P
        assert info.noise_variance == pytest.approx(expected, rel=1e-12)
        assert all(s == pytest.approx(math.sqrt(expected * P), rel=1e-12) for s in info.noise_std)
    assert [i.restart for i in infos] == [True, False, False, False] * 2
    for a, b in zip(infos, infos[1:], strict=False):
        if b.restart:
            assert b.estimator_noise_variance == b.noise_variance
        else:
            assert b.estimator_noise_variance == pytest.approx(a.estimator_noise_variance + b.noise_variance)
    with pytest.raises(RuntimeError, match="rounds have run"):
        algo.step()


@pytest.mark.parametrize(
    ("epsilon", "rounds", "z"), [(3, 100, 16.977), (3, 1000, 53.685), (5, 100, 10.545), (5, 1000, 33.347)]
)
def test_noise_multipliers(epsilon, rounds, z):
    assert zcdp_rho(3, 1e-5) == pytest.approx(0.17348, abs=1e-5)
    assert zcdp_rho(5, 1e-5) == pytest.approx(0.44962, abs=1e-5)
    assert zcdp_noise_multiplier(epsilon, 1e-5, rounds) == pytest.approx(z, abs=1e-3)
    # dpkit's RDP accountant (improved conversion) certifies the zCDP value, with a little to spare
    rdp = create_accountant("rdp", neighbouring_relation="replace_one")
    eps_rdp = rdp.epsilon_if(SelfComposedEvent(GaussianEvent(z), rounds), 1e-5)
    assert 0.8 * epsilon < eps_rdp <= epsilon
    z_rdp = calibrate_rounds(epsilon, 1e-5, rounds, accountant="rdp")
    z_pld = calibrate_rounds(epsilon, 1e-5, rounds)
    assert z_pld < z_rdp < z
    cfg = Diff2Config.from_budget(
        epsilon, 1e-5, rounds=rounds, learning_rate=0.1, gradient_clip=1.0, difference_clip=1.0
    )
    assert cfg.noise_multiplier == z_pld and cfg.restart_period == math.ceil(math.sqrt(rounds))
    assert cfg.privacy_event() == SelfComposedEvent(GaussianEvent(z_pld), rounds)
    assert 0.99 * epsilon < cfg.epsilon(1e-5) <= epsilon
    assert rdp.epsilon_if(cfg.privacy_event(), 1e-5) > epsilon  # RDP is looser than the PLD calibration


def test_pld_single_gaussian_equivalent_matches_the_composed_event():
    pld = create_accountant("pld", neighbouring_relation="replace_one")
    composed = pld.epsilon_if(SelfComposedEvent(GaussianEvent(3.0), 10), 1e-5)
    assert epsilon_of_rounds(3.0, 10, 1e-5) == pytest.approx(composed, rel=2e-3)
    assert Diff2Config(3, 1, 0.1, 1.0, 1.0, 0.0).privacy_event() == SelfComposedEvent(NonPrivateEvent(), 3)


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="trust"):
        Diff2Config(3, 1, 0.1, 1.0, 1.0, 1.0, trust="server")
    with pytest.raises(ValueError, match="restart_period"):
        Diff2Config(3, 0, 0.1, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="gradient_clip"):
        Diff2Config(3, 1, 0.1, math.inf, 1.0, 1.0)
    data = regression_nodes()
    with pytest.raises(ValueError, match="datasets"):
        Diff2(
            squared_loss,
            torch.zeros(5, dtype=torch.float64),
            [(data[0][0], data[0][1][:-1])],
            Diff2Config(3, 1, 0.1, 1.0, 1.0, 1.0),
        )


def test_a_resumed_run_equals_the_uninterrupted_one():
    _, loss_fn, params, data = _mlp_problem()
    cfg = Diff2Config(7, 3, 0.1, gradient_clip=0.5, difference_clip=2.0, noise_multiplier=1.0)
    full = Diff2(loss_fn, params, data, cfg, seed=2)
    full.run()
    first = Diff2(loss_fn, params, data, cfg, seed=2)
    for _ in range(4):
        first.step()
    state = first.state_dict()
    resumed = Diff2(loss_fn, params, data, cfg, seed=2)
    resumed.load_state_dict(state)
    resumed.run()
    torch.testing.assert_close(resumed.params, full.params, rtol=0, atol=0)
    with pytest.raises(ValueError, match="seed"):
        Diff2(loss_fn, params, data, cfg, seed=3).load_state_dict(state)
    bad = dict(state, params=torch.zeros(2))
    fresh = Diff2(loss_fn, params, data, cfg, seed=2)
    with pytest.raises(ValueError, match="params"):
        fresh.load_state_dict(bad)
    assert fresh.round == 0  # nothing was assigned


def test_split_among_agents_is_a_partition():
    from dpkit.distributed import split_among_agents

    x, y = torch.arange(10.0).unsqueeze(1), torch.arange(10.0)
    parts = split_among_agents(x, y, 3, seed=0)
    assert sorted(p[0].shape[0] for p in parts) == [3, 3, 4]
    assert sorted(torch.cat([p[1] for p in parts]).tolist()) == y.tolist()
    assert all(torch.equal(px[:, 0], py) for px, py in parts)
    with pytest.raises(ValueError, match="num_agents"):
        split_among_agents(x, y, 11, seed=0)


# ---------------------------------------------------------------------------------------- multi-process runs
TRUSTS = ("central", "local")


def _config(trust):
    return Diff2Config(5, 2, 0.1, gradient_clip=0.5, difference_clip=2.0, noise_multiplier=1.5, trust=trust)


def _diff2_worker(rank, world_size):
    _, loss_fn, params, data = _mlp_problem()
    out = {}
    for trust in TRUSTS:
        algo = Diff2(loss_fn, params, [data[rank]], _config(trust), comm=TorchCommunicator(), seed=5)
        infos = []
        algo.run(lambda a, info, infos=infos: infos.append(info))
        out[trust] = (algo.params, algo.evaluate(), infos)
    return out


@pytest.mark.slow
@pytest.mark.multiprocess
def test_three_processes_match_the_simulation():
    results = run_processes(_diff2_worker, 3, timeout=300)
    _, loss_fn, params, data = _mlp_problem()
    for trust in TRUSTS:
        sim = Diff2(loss_fn, params, data, _config(trust), seed=5)
        infos = []
        sim.run(lambda a, info, infos=infos: infos.append(info))
        for rank, result in enumerate(results):
            x, evaluation, rank_infos = result[trust]
            torch.testing.assert_close(x, sim.params, rtol=1e-9, atol=1e-12)
            assert evaluation == pytest.approx(sim.evaluate(), rel=1e-9)
            for a, b in zip(rank_infos, infos, strict=True):
                assert a.noise_std[0] == pytest.approx(b.noise_std[rank], rel=1e-9)
                assert a.estimator_noise_variance == pytest.approx(b.estimator_noise_variance, rel=1e-9)
