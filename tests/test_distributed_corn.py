"""CorN-DSGD: graphs, the covariance programs (reference optima, ordering, certification), the noise, the runs."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch

from dpkit.accountants import GaussianEvent, SelfComposedEvent
from dpkit.distributed import (
    CornConfig,
    CornDSGD,
    CorrelatedNoise,
    SimulatedCommunicator,
    TorchCommunicator,
    calibrate_rounds,
    certify,
    corn_noise,
    make_topology,
    metropolis_hastings,
    noise_variances,
    privacy_bound,
    run_processes,
    solve_covariance,
    torus,
    zcdp_privacy_bound,
)
from dpkit.distributed.covariance import max_inverse_diagonal
from dpkit.distributed.randomness import SAMPLER_STREAM, generator

pytestmark = pytest.mark.skipif(importlib.util.find_spec("cvxpy") is None, reason="needs dpkit[corn]")


def mh(name, n, **kw):
    return metropolis_hastings(make_topology(name, n, **kw))


# ------------------------------------------------------------------------------------------------ graphs
@pytest.mark.parametrize(("name", "n", "degrees"), [("ring", 8, {2}), ("torus", 16, {4}), ("complete", 5, {4})])
def test_topologies_and_metropolis_hastings_weights(name, n, degrees):
    a = make_topology(name, n)
    assert set(a.sum(axis=1).tolist()) == degrees
    w = metropolis_hastings(a)
    np.testing.assert_allclose(w, w.T)
    np.testing.assert_allclose(w.sum(axis=0), 1.0)
    assert (w >= 0).all() and ((w > 0) == (a | np.eye(n, dtype=bool))).all()


def test_small_torus_merges_repeated_neighbours_and_erdos_renyi_is_connected():
    assert torus(2, 3).sum(axis=1).tolist() == [3] * 6  # up and down are the same agent
    for seed in range(5):
        a = make_topology("erdos_renyi", 12, edge_probability=0.2, seed=seed)
        reach = np.linalg.matrix_power(np.eye(12) + a, 11)
        assert (reach > 0).all()
    with pytest.raises(ValueError, match="topology must be one of"):
        make_topology("star", 5)
    with pytest.raises(ValueError, match="num_agents"):
        make_topology("ring", 1)


# ------------------------------------------------------------------------------------------------ programs
@pytest.mark.parametrize(
    ("name", "n", "kw", "ldp", "decor", "corn"),
    [
        ("ring", 8, {}, 8 / 3, 1.98936, 1.88725),
        ("erdos_renyi", 20, {"edge_probability": 0.5, "seed": 0}, 2.67410, 2.39738, 1.69811),
    ],
)
def test_reference_optima(name, n, kw, ldp, decor, corn):
    w = mh(name, n, **kw)
    got = {m: solve_covariance(w, 1.0, m).objective for m in ("ldp", "decor", "corn")}
    assert got["ldp"] == pytest.approx(ldp, abs=5e-6)  # the table gives 5 decimals
    assert got["decor"] == pytest.approx(decor, rel=2e-5)
    assert got["corn"] == pytest.approx(corn, rel=2e-5)


def test_complete_graph_reaches_the_central_level_only_approximately():
    # W = 11^T / n: the infimum 1/n of DECOR and CorN is not attained, so a certified answer lies just above it.
    w = mh("complete", 8)
    assert solve_covariance(w, 1.0, "ldp").objective == pytest.approx(1.0, rel=1e-9)
    for m in ("decor", "corn"):
        value = solve_covariance(w, 1.0, m).objective
        assert 0.125 * (1 - 1e-9) <= value <= 0.1255


@pytest.mark.parametrize(("p", "seed"), [(0.3, 1), (0.3, 2), (0.6, 3)])
def test_corn_beats_decor_beats_ldp_on_random_graphs(p, seed):
    w = mh("erdos_renyi", 10, edge_probability=p, seed=seed)
    bound = 0.37
    ldp, decor, corn = (solve_covariance(w, bound, m) for m in ("ldp", "decor", "corn"))
    assert corn.objective <= decor.objective * (1 + 1e-6)
    assert decor.objective <= ldp.objective * (1 + 1e-6)
    assert ldp.objective == pytest.approx(np.trace(w @ w.T) / bound, rel=1e-9)
    for c in (ldp, decor, corn):  # the bound holds for the covariance the agents realise, recomputed here
        sigma = c.private_variance * np.eye(10) + c.factor @ c.factor.T
        np.testing.assert_allclose(sigma, c.covariance)
        assert np.diag(np.linalg.inv(sigma)).max() <= bound * (1 + 1e-9)
        assert c.inverse_diagonal <= bound


def test_certify_repairs_a_tiny_violation_and_refuses_a_large_one():
    w = mh("ring", 6)
    repaired = certify("test", 1.0 / (1 + 1e-6), np.zeros((6, 0)), 1.0, w)  # e_i^T Sigma^-1 e_i = 1 + 1e-6
    assert repaired.repair_scale == pytest.approx(1 + 1e-6, rel=1e-9)
    assert repaired.inverse_diagonal <= 1.0
    assert repaired.private_variance >= 1.0
    with pytest.raises(ValueError, match="violates the privacy bound"):
        certify("test", 0.99, np.zeros((6, 0)), 1.0, w)
    with pytest.raises(ValueError, match="could not be certified|violates"):
        certify("test", 0.0, np.ones((6, 1)), 1.0, w)  # singular: no finite e_i^T Sigma^-1 e_i
    assert max_inverse_diagonal(np.diag([2.0, 4.0])) == pytest.approx(0.5, rel=1e-12)


def test_privacy_bound_and_the_runs_noise_multiplier():
    # The papers' zCDP bound at epsilon = 10, delta = 1e-5, T = 5000, C = 0.1; LDP variance 1 / B.
    b_zcdp = zcdp_privacy_bound(10, 1e-5, 5000, 0.1)
    assert b_zcdp == pytest.approx(0.015504, abs=1e-6)
    assert 1 / b_zcdp == pytest.approx(64.50, abs=0.01)
    b = privacy_bound(10, 1e-5, 5000, 0.1)
    assert b > b_zcdp  # dpkit's accountant needs less noise for the same guarantee
    assert b == pytest.approx(1 / (2 * 0.1 * calibrate_rounds(10, 1e-5, 5000)) ** 2, rel=1e-12)


# ------------------------------------------------------------------------------------------------ the noise
@pytest.mark.parametrize("mechanism", ["decor", "corn"])
def test_empirical_covariance_of_the_generated_noise_matches_sigma(mechanism):
    n, d, rounds = 8, 4000, 25
    cov = solve_covariance(mh("ring", n), 0.5, mechanism)
    comm = SimulatedCommunicator(n)
    noise = CorrelatedNoise(cov, comm, seed=3)
    samples = torch.cat([noise.draw(t, d, torch.float64) for t in range(rounds)], dim=1).numpy()  # [n, N]
    N = samples.shape[1]
    sigma = cov.covariance
    empirical = samples @ samples.T / N
    std = np.sqrt((np.outer(np.diag(sigma), np.diag(sigma)) + sigma**2) / N)  # std of each empirical entry
    assert (np.abs(empirical - sigma) <= 5 * std).all()
    assert np.abs(samples.mean(axis=1)).max() <= 5 * np.sqrt(np.diag(sigma).max() / N)
    if mechanism == "decor":  # one component per edge, shared by its two endpoints
        assert sorted(len(g) for g in cov.groups()) == [2] * n


def test_noise_variances_for_the_command_line():
    out = noise_variances("ring", 8, 10.0)
    assert set(out) == {"ldp", "decor", "corn", "seconds"}
    b = privacy_bound(10.0, 1e-5, 5000, 0.1)
    assert out["ldp"] == pytest.approx(8 / 3 / b, rel=1e-9)
    assert out["decor"] == pytest.approx(1.98936 / b, rel=2e-5)
    assert out["corn"] == pytest.approx(1.88725 / b, rel=2e-5)
    assert out["seconds"] > 0


# ------------------------------------------------------------------------------------------------ the algorithm
def squared_loss(params, inputs, targets):
    return 0.5 * (inputs @ params - targets) ** 2


def agent_data(n_agents=4, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    truth = torch.randn(d, generator=g, dtype=torch.float64)
    data = []
    for a in range(n_agents):
        x = torch.randn(10 + a, d, generator=g, dtype=torch.float64)
        data.append((x, x @ truth + 0.1 * torch.randn(10 + a, generator=g, dtype=torch.float64)))
    return data


def _setup(mechanism="corn", n=4, solve=True):
    w = mh("ring", n)
    cfg = CornConfig(rounds=3, learning_rate=0.05, clip_norm=1.0, batch_size=4)
    return w, cfg, corn_noise(w, 8.0, 1e-5, cfg, mechanism) if solve else None


def test_one_round_against_a_per_agent_loop():
    w, cfg, cov = _setup()
    data = agent_data()
    algo = CornDSGD(squared_loss, torch.zeros(3, dtype=torch.float64), data, w, cov, cfg, seed=9)
    algo.step()
    expected_noise = CorrelatedNoise(cov, SimulatedCommunicator(4), seed=9).draw(0, 3, torch.float64)
    half = []
    for a, (x, y) in enumerate(data):
        idx = torch.randperm(x.shape[0], generator=generator(9, SAMPLER_STREAM, a, 0))[: cfg.batch_size]
        total = torch.zeros(3, dtype=torch.float64)
        for i in idx.tolist():
            g = (x[i] @ torch.zeros(3, dtype=torch.float64) - y[i]) * x[i]
            total += g * min(1.0, cfg.clip_norm / float(g.norm()))
        half.append(-cfg.learning_rate * (total + expected_noise[a]) / cfg.batch_size)
    expected = torch.from_numpy(w) @ torch.stack(half)
    torch.testing.assert_close(algo.params, expected, rtol=1e-12, atol=1e-14)


def test_run_guarantee_is_computed_from_the_certified_covariance():
    w, cfg, cov = _setup()
    algo = CornDSGD(squared_loss, torch.zeros(3, dtype=torch.float64), agent_data(), w, cov, cfg, seed=1)
    z = algo.noise_multiplier
    assert z >= calibrate_rounds(8.0, 1e-5, cfg.rounds) * (1 - 1e-9)
    assert algo.privacy_event() == SelfComposedEvent(GaussianEvent(z), cfg.rounds)
    assert algo.epsilon(1e-5) <= 8.0
    algo.run()
    loss, consensus = algo.evaluate()
    assert math.isfinite(loss) and consensus >= 0
    with pytest.raises(RuntimeError, match="rounds have run"):
        algo.step()
    with pytest.raises(ValueError, match="batch_size"):
        CornDSGD(squared_loss, torch.zeros(3), [(torch.zeros(2, 3), torch.zeros(2))] * 4, w, cov, cfg)


def test_a_resumed_run_equals_the_uninterrupted_one():
    w, cfg, cov = _setup()
    data = agent_data()
    x0 = torch.zeros(3, dtype=torch.float64)
    full = CornDSGD(squared_loss, x0, data, w, cov, cfg, seed=6)
    full.run()
    first = CornDSGD(squared_loss, x0, data, w, cov, cfg, seed=6)
    first.step()
    resumed = CornDSGD(squared_loss, x0, data, w, cov, cfg, seed=6)
    resumed.load_state_dict(first.state_dict())
    resumed.run()
    torch.testing.assert_close(resumed.params, full.params, rtol=0, atol=0)
    with pytest.raises(ValueError, match="round"):
        resumed.load_state_dict(dict(first.state_dict(), round=99))


# ------------------------------------------------------------------------------------------------ multi-process
def _corn_worker(rank, world_size):
    w, cfg, cov = _setup(solve=rank == 0)  # agent 0 solves; CornDSGD broadcasts its covariance
    data = agent_data()
    out = {}
    for mode in ("p2p", "all_gather"):
        comm = TorchCommunicator(gossip_mode=mode)
        algo = CornDSGD(
            squared_loss,
            torch.zeros(3, dtype=torch.float64),
            [data[rank]],
            w,
            cov if rank == 0 else None,
            cfg,
            comm=comm,
            seed=4,
        )
        algo.run()
        out[mode] = (algo.params, algo.sampler.shared_seeds, algo.evaluate())
    return out


@pytest.mark.slow
@pytest.mark.multiprocess
def test_four_processes_gossip_like_the_simulation():
    results = run_processes(_corn_worker, 4, timeout=300)
    w, cfg, cov = _setup()
    sim = CornDSGD(squared_loss, torch.zeros(3, dtype=torch.float64), agent_data(), w, cov, cfg, seed=4)
    sim.run()
    for rank, result in enumerate(results):
        for mode in ("p2p", "all_gather"):
            params, seeds, evaluation = result[mode]
            torch.testing.assert_close(params[0], sim.params[rank], rtol=1e-10, atol=1e-12)
            assert all(seeds[k] == sim.sampler.shared_seeds[k] for k in seeds)
            assert set(seeds) == {k for k, g in enumerate(cov.groups()) if rank in g}
            assert evaluation == pytest.approx(sim.evaluate(), rel=1e-10)
