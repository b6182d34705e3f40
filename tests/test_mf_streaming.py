"""Streaming correlated noise: equals the materialized C^{-1} Z, resumes exactly, bounded memory, torch draws."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from dpkit.mechanisms.matrix_factorization import (
    ColumnNormalizedBanded,
    DenseStrategy,
    FixedEpoch,
    GaussianDraws,
    Identity,
    ToeplitzStrategy,
    optimize_banded_toeplitz,
    optimize_blt,
    optimize_dense,
    step_seed,
)

N, DIM, SEED = 24, 5, 1234


def _strategies():
    rng = np.random.default_rng(1)
    return {
        "identity": Identity(N),
        "sqrt": ToeplitzStrategy.square_root(N),
        "nu": ToeplitzStrategy.nu_dp_ftrl(N, 0.1),
        "banded-toeplitz": optimize_banded_toeplitz(N, 4),
        "banded": ColumnNormalizedBanded(rng.uniform(0.2, 1.0, (N, 3))),
        "blt": optimize_blt(N, FixedEpoch(4, 6), buffers=3),
        "dense": optimize_dense(N, FixedEpoch(2, 12)),
        "dense-random": DenseStrategy(np.tril(rng.normal(size=(N, N))) + 4 * np.eye(N)),
    }


STRATEGIES = _strategies()
MEMORY = {"identity": 0, "sqrt": 0, "nu": 0, "banded-toeplitz": 3, "banded": 2, "blt": 3, "dense": 0, "dense-random": 0}


def _materialized(strategy, stddev=1.0):
    draws = GaussianDraws(SEED, DIM)
    Z = np.stack([draws(t) for t in range(N)])
    return stddev * strategy.noising_matrix() @ Z


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_stream_equals_materialized(name):
    s = STRATEGIES[name]
    stream = s.noise_stream(DIM, SEED, stddev=0.7)
    rows = []
    for _ in range(N):
        rows.append(next(stream))
        assert len(stream._state) <= MEMORY[name]
    np.testing.assert_allclose(np.stack(rows), _materialized(s, 0.7), rtol=1e-9, atol=1e-10)
    assert stream.recurrence.memory == MEMORY[name]
    assert stream.memory_bytes == MEMORY[name] * DIM * 8


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize("cut", [0, 1, 5, N - 1, N])
def test_resumed_stream_equals_uninterrupted(name, cut):
    s = STRATEGIES[name]
    full = np.stack(list(s.noise_stream(DIM, SEED)))
    first = s.noise_stream(DIM, SEED)
    head = [next(first) for _ in range(cut)]
    saved = copy.deepcopy(first.state_dict())
    next(first, None)  # the saved state must not alias the live buffers
    resumed = s.noise_stream(DIM, seed=999)
    resumed.load_state_dict(saved)
    assert resumed.step == cut
    tail = list(resumed)
    np.testing.assert_array_equal(np.stack(head + tail), full)


def test_state_survives_npz_round_trip(tmp_path):
    s = STRATEGIES["blt"]
    stream = s.noise_stream(DIM, SEED)
    for _ in range(7):
        next(stream)
    state = stream.state_dict()
    np.savez(tmp_path / "s.npz", buffers=np.stack(state["buffers"]), step=state["step"])
    loaded = np.load(tmp_path / "s.npz")
    restored = dict(state, buffers=list(loaded["buffers"]), step=int(loaded["step"]))
    other = s.noise_stream(DIM, SEED)
    other.load_state_dict(restored)
    np.testing.assert_array_equal(next(other), next(stream))


def test_stream_refuses_to_run_past_n():
    stream = STRATEGIES["banded"].noise_stream(DIM, SEED)
    rows = list(stream)
    assert len(rows) == N
    with pytest.raises(StopIteration):
        next(stream)
    with pytest.raises(RuntimeError, match="built for n=24 steps"):
        stream.next_noise()


def test_bad_state_is_rejected_before_any_change():
    a = STRATEGIES["blt"].noise_stream(DIM, SEED)
    for _ in range(3):
        next(a)
    good = a.state_dict()
    b = STRATEGIES["blt"].noise_stream(DIM, SEED)
    next(b)
    before = b.state_dict()
    bad_states = [
        (STRATEGIES["banded"].noise_stream(DIM, SEED).state_dict(), "fingerprint"),
        (dict(good, dim=DIM + 1), "dim"),
        (dict(good, step=N + 1), "step"),
        (dict(good, step=-1), "step"),
        (dict(good, buffers=good["buffers"][:1]), "buffers"),
        (dict(good, buffers=[np.zeros(DIM + 1)] * 3), "buffers"),
        (dict(good, buffers=[np.full(DIM, np.nan)] * 3), "buffers"),
        (dict(good, stddev=0.0), "stddev"),
        (dict(good, format="other"), "format"),
    ]
    for state, word in bad_states:
        with pytest.raises((ValueError, TypeError), match=word):
            b.load_state_dict(state)
        after = b.state_dict()
        assert after["step"] == before["step"]
        for x, y in zip(after["buffers"], before["buffers"], strict=True):
            np.testing.assert_array_equal(x, y)


def test_draws_are_counter_based_and_independent():
    draws = GaussianDraws(SEED, 10_000)
    np.testing.assert_array_equal(draws(3), draws(3))
    a, b = draws(3), draws(4)
    assert abs(np.corrcoef(a, b)[0, 1]) < 5 / np.sqrt(10_000)
    assert abs(a.mean()) < 5 / np.sqrt(10_000) and abs(a.std() - 1) < 5 / np.sqrt(2 * 10_000)
    assert step_seed(SEED, 3) == step_seed(SEED, 3) != step_seed(SEED, 4)


@pytest.mark.parametrize("name", ["banded-toeplitz", "banded", "blt", "sqrt"])
def test_recurrence_runs_on_torch_tensors(name):
    torch = pytest.importorskip("torch")
    s = STRATEGIES[name]
    rec = s.noising_recurrence()

    def draw(t):
        gen = torch.Generator().manual_seed(step_seed(SEED, t))
        return torch.randn(DIM, generator=gen, dtype=torch.float64)

    state: list = []
    rows = [rec.step(state, t, draw) for t in range(N)]
    assert all(isinstance(r, torch.Tensor) for r in rows)
    Z = np.stack([draw(t).numpy() for t in range(N)])
    np.testing.assert_allclose(torch.stack(rows).numpy(), s.noising_matrix() @ Z, rtol=1e-9, atol=1e-10)


def test_noise_covariance_is_cinv_cinv_t():
    """Empirically (many coordinates), the stream's rows have covariance C^{-1} C^{-T} (5 sigma)."""
    s = optimize_banded_toeplitz(8, 3)
    d = 200_000
    rows = np.stack(list(s.noise_stream(d, SEED)))
    emp = rows @ rows.T / d
    inv = s.noising_matrix()
    cov = inv @ inv.T
    tol = 5 * np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / d)
    assert np.all(np.abs(emp - cov) <= tol)
