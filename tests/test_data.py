"""Poisson sampling: Binomial batch sizes, empty batches, resumable positions, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from dpkit.data import PoissonBatchSampler, poisson_data_loader


def test_batch_sizes_follow_binomial_chi_square():
    n, q, steps = 300, 0.05, 4000
    sampler = PoissonBatchSampler(n, q, steps, seed=1234)
    sizes = np.array([len(b) for b in sampler])
    assert len(sizes) == steps
    ks = np.arange(n + 1)
    expected = stats.binom.pmf(ks, n, q) * steps
    observed = np.bincount(sizes, minlength=n + 1).astype(float)
    # Merge bins so every expected count is >= 5 (tails into the edge bins).
    acc_e, acc_o, bins_e, bins_o = 0.0, 0.0, [], []
    for e, o in zip(expected, observed, strict=True):
        acc_e += e
        acc_o += o
        if acc_e >= 5:
            bins_e.append(acc_e)
            bins_o.append(acc_o)
            acc_e = acc_o = 0.0
    bins_e[-1] += acc_e
    bins_o[-1] += acc_o
    chi2, p = stats.chisquare(bins_o, bins_e)
    assert p > 1e-3, (chi2, p)
    assert abs(sizes.mean() - n * q) < 5 * np.sqrt(n * q * (1 - q) / steps)


def test_each_example_included_with_probability_q():
    n, q, steps = 50, 0.2, 2000
    sampler = PoissonBatchSampler(n, q, steps, seed=7)
    counts = np.zeros(n)
    for b in sampler:
        assert len(set(b)) == len(b) and all(0 <= i < n for i in b)
        counts[b] += 1
    tol = 5 * np.sqrt(q * (1 - q) * steps)
    assert np.all(np.abs(counts - q * steps) < tol)


def test_seeded_reproducible_and_resumable():
    a = PoissonBatchSampler(100, 0.1, 10, seed=3)
    first = list(a) + list(a)  # two epochs
    b = PoissonBatchSampler(100, 0.1, 10, seed=3)
    b.load_state_dict({"seed": 3, "position": 13, "secure": False})
    rest = list(b) + list(b)  # the rest of epoch 2 then epoch 3
    assert rest[:7] == first[13:]
    assert len(rest) == 17
    assert PoissonBatchSampler(100, 0.1, 10, seed=4).draw(0) != a.draw(0)
    secure = PoissonBatchSampler(100, 0.5, 2, secure=True)
    assert secure.seed is None and len(list(secure)) == 2


def test_loader_yields_empty_batches_with_the_right_shape():
    ds = TensorDataset(torch.randn(5, 3, 2), torch.arange(5))
    loader = poisson_data_loader(DataLoader(ds, batch_size=1), sample_rate=1e-9, seed=0)
    x, y = next(iter(loader))
    assert x.shape == (0, 3, 2) and y.shape == (0,) and y.dtype == torch.int64
    loader = poisson_data_loader(DataLoader(ds, batch_size=2), seed=0)
    assert loader.batch_sampler.sample_rate == pytest.approx(0.4)
    assert len(loader) == 2  # round(1 / q) batches per pass


class Stream(IterableDataset):
    def __iter__(self):
        yield from range(3)


def test_errors_are_clear():
    with pytest.raises(TypeError, match="IterableDataset"):
        poisson_data_loader(DataLoader(Stream(), batch_size=2))
    with pytest.raises(TypeError, match="must be a torch.utils.data.DataLoader"):
        poisson_data_loader([1, 2, 3])
    with pytest.raises(ValueError, match="must not be empty"):
        poisson_data_loader(DataLoader(TensorDataset(torch.zeros(0, 2)), batch_size=2))
    with pytest.raises(ValueError, match=r"sample_rate must be in \(0, 1\], got 1.5"):
        PoissonBatchSampler(10, 1.5, 3)
    with pytest.raises(ValueError, match="num_samples must be a whole number >= 1, got 0"):
        PoissonBatchSampler(0, 0.5, 3)
