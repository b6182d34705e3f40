"""Data-parallel DP-SGD (dpkit.distributed.data_parallel): the distributed sampler and noise shards, a DDP model on
one in-process rank, and (``multiprocess``) 2- and 3-process runs against the single-process run."""

from __future__ import annotations

import math
import tempfile
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset

from dpkit.accountants import BudgetExceededError
from dpkit.data import DistributedPoissonBatchSampler, PoissonBatchSampler, poisson_data_loader
from dpkit.distributed import run_processes
from dpkit.distributed.data_parallel import DataParallelDPOptimizer
from dpkit.noise import BLOCK, GaussianNoise
from dpkit.optimizer import NonFiniteGradientWarning
from dpkit.privacy_engine import PrivacyEngine

N, D, K = 90, 5, 3
TIMEOUT = 240  # seconds for a whole multi-process run (a rank that hangs fails the test, it does not block it)


# ------------------------------------------------------------------------------------------------- sampler, noise
@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 7])
def test_shards_partition_every_global_batch(world_size):
    n, q = 53, 0.3
    whole = PoissonBatchSampler(n, q, 5, seed=3)
    shards = [DistributedPoissonBatchSampler(n, q, 5, seed=3, rank=r, world_size=world_size) for r in range(world_size)]
    owned = [range(s.start, s.stop) for s in shards]
    assert [i for o in owned for i in o] == list(range(n))  # contiguous ranges covering the dataset once
    assert max(map(len, owned)) - min(map(len, owned)) <= 1
    for step in range(8):
        parts = [s.draw(step) for s in shards]
        assert sorted(i for p in parts for i in p) == whole.draw(step)  # each example exactly once
        for part, o in zip(parts, owned, strict=True):
            assert all(i in o for i in part)
    assert shards[1 % world_size].state_dict() == whole.state_dict()  # the global sampler's state


def test_sharded_loader_yields_this_ranks_part():
    ds = TensorDataset(torch.arange(40.0))
    full = [x.tolist() for (x,) in poisson_data_loader(DataLoader(ds, batch_size=10), seed=2)]
    parts = [
        [x.tolist() for (x,) in poisson_data_loader(DataLoader(ds, batch_size=10), seed=2, shard=(r, 3))]
        for r in range(3)
    ]
    for step, batch in enumerate(full):
        assert sorted(v for p in parts for v in p[step]) == batch


@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
def test_noise_shards_add_up_to_the_unsharded_noise(world_size):
    n = 3 * BLOCK + 123
    noise = GaussianNoise(9)
    full = noise.fill_(torch.empty(n), 0.7, 4)
    shards = [noise.fill_(torch.empty(n), 0.7, 4, shard=(r, world_size)) for r in range(world_size)]
    for r, s in enumerate(shards):
        for j in range(4):  # the blocks of rank r are drawn, the others are zero
            block = s[j * BLOCK : (j + 1) * BLOCK]
            assert torch.equal(block, full[j * BLOCK : (j + 1) * BLOCK]) if j % world_size == r else not block.any()
    assert torch.equal(torch.stack(shards).sum(0), full)  # one non-zero term per coordinate: exact
    like = [torch.empty(BLOCK + 5, dtype=torch.float64), torch.empty(2, BLOCK)]
    drawn = [noise.draw(like, 0.7, 4, shard=(r, world_size)) for r in range(world_size)]
    for k, whole in enumerate(noise.draw(like, 0.7, 4)):
        assert torch.equal(sum(d[k] for d in drawn), whole)


def test_secure_noise_shards_draw_their_blocks_only():
    n = 2 * BLOCK + 10
    parts = [GaussianNoise(secure=True).fill_(torch.empty(n), 2.0, 0, shard=(r, 2)) for r in range(2)]
    mine = [torch.cat([p[:BLOCK], p[2 * BLOCK :]]) for p in parts[:1]] + [parts[1][BLOCK : 2 * BLOCK]]
    assert not parts[0][BLOCK : 2 * BLOCK].any() and not parts[1][:BLOCK].any() and not parts[1][2 * BLOCK :].any()
    for values in mine:
        s = values.std().item()
        assert abs(s - 2.0) < 5 * 2.0 / math.sqrt(2 * values.numel())


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: GaussianNoise(1).fill_(torch.empty(4), 1.0, 0, shard=(2, 2)), r"shard rank must be .* \[0, 1\]"),
        (lambda: GaussianNoise(1).fill_(torch.empty(4), 1.0, 0, shard=(0, 0)), r"shard world_size must be .* >= 1"),
        (lambda: DistributedPoissonBatchSampler(9, 0.5, 2, rank=-1, world_size=2), r"rank must be .* \[0, 1\], got -1"),
        (lambda: DistributedPoissonBatchSampler(9, 0.5, 2, rank=0, world_size=0), r"world_size must be .* >= 1"),
    ],
)
def test_bad_shards_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------------------------------------- training runs
def dataset(n=N, nan_at=None, d=D, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    if nan_at is not None:
        x[nan_at, 0] = float("nan")
    return TensorDataset(x, torch.randint(0, K, (n,), generator=g))


def small_model(d=D, dropout=0.0):
    return nn.Sequential(nn.Linear(d, 8), nn.ReLU(), nn.Dropout(dropout), nn.Linear(8, K))


def forever(loader):
    while True:
        yield from loader


def train(
    distributed,
    *,
    steps,
    sigma=1.3,
    data=None,
    model=None,
    opt="sgd",
    batch_size=20,
    engine="auto",
    save=None,
    load=None,
    extra_steps=0,
    **make_private,
):
    """Train ``steps`` steps (then save to ``save`` and train ``extra_steps`` more; or first load ``load``)."""
    torch.manual_seed(0)
    model = small_model() if model is None else model()
    wrapped = DistributedDataParallel(model) if distributed else model
    optimizer = (
        torch.optim.SGD(model.parameters(), lr=0.5) if opt == "sgd" else torch.optim.Adam(model.parameters(), lr=0.05)
    )
    pe = PrivacyEngine("rdp", seed=7, grad_sample_engine=engine)  # RDP: quick to set up in every process
    make_private.setdefault("max_grad_norm", 0.5)
    if "target_epsilon" not in make_private:
        make_private["noise_multiplier"] = sigma
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # noise_multiplier=0 is not private
        m, o, dl = pe.make_private(
            wrapped, optimizer, DataLoader(data or dataset(), batch_size=batch_size), **make_private
        )
    if load is not None:
        torch.manual_seed(123)  # the resumed run gets every random state from the checkpoint
        pe.load_checkpoint(load, model=m, optimizer=o)
    batches, sizes = forever(dl), []

    def run(count):
        for _ in range(count):
            x, y = next(batches)
            o.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            o.step()
            sizes.append(o.last_clipped.batch_size)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NonFiniteGradientWarning)
        run(steps)
        if save is not None:
            pe.save_checkpoint(save, model=m, optimizer=o)
            run(extra_steps)
    return {
        "params": [p.detach().clone() for p in model.parameters()],
        "epsilon": pe.get_epsilon(1e-5),
        "global_batch_sizes": sizes,
        "nonfinite": pe.nonfinite_examples,
        "warnings": sum(issubclass(w.category, NonFiniteGradientWarning) for w in caught),
        "optimizer": type(o).__name__,
        "steps": pe.steps,
    }


def assert_same_params(a, b, exact=False):
    for x, y in zip(a, b, strict=True):
        if exact:
            assert torch.equal(x, y)
        else:
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


@pytest.fixture
def one_rank_group():
    """A gloo process group of one rank in this process."""
    folder = tempfile.mkdtemp(prefix="dpkit-test-dp-")
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=0, world_size=1)
    try:
        yield folder
    finally:
        dist.destroy_process_group()


def test_ddp_on_one_rank_is_the_single_process_run(one_rank_group, tmp_path):
    plain = train(False, steps=8)
    ddp = train(True, steps=8)
    assert ddp["optimizer"] == DataParallelDPOptimizer.__name__
    assert_same_params(plain["params"], ddp["params"], exact=True)
    assert ddp["epsilon"] == plain["epsilon"] and ddp["global_batch_sizes"] == plain["global_batch_sizes"]
    # a DDP checkpoint holds the inner module's state: it resumes in a process without DDP
    train(True, steps=4, save=tmp_path / "ck.pt")
    resumed = train(False, steps=4, load=tmp_path / "ck.pt")
    assert_same_params(resumed["params"], plain["params"], exact=True)


def test_ddp_gradient_sync_is_off_while_attached(one_rank_group):
    model = small_model()
    wrapped = DistributedDataParallel(model)
    pe = PrivacyEngine(seed=1)
    loader = DataLoader(dataset(), batch_size=10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="poisson_sampling must be True for a DistributedDataParallel model"):
        pe.make_private(wrapped, opt, loader, noise_multiplier=1.0, max_grad_norm=1.0, poisson_sampling=False)
    assert wrapped.require_backward_grad_sync
    m, o, _ = pe.make_private(wrapped, opt, loader, noise_multiplier=1.0, max_grad_norm=1.0)
    assert m is wrapped and not wrapped.require_backward_grad_sync
    assert "world_size=1" in repr(o)
    pe.detach()
    assert wrapped.require_backward_grad_sync


# ------------------------------------------------------------------------------------------------- several processes
def _equality_worker(rank, world_size, folder):
    out = {}
    for sigma in (0.0, 1.3):
        out[sigma] = train(True, steps=9, sigma=sigma)
    out["functorch"] = train(True, steps=5, engine="functorch")
    # the NaN example (index 80) belongs to the last rank's range
    out["nan"] = train(True, steps=9, data=dataset(nan_at=80))
    out["adam"] = train(True, steps=4, opt="adam", model=lambda: small_model(dropout=0.3))
    # checkpoint after 4 steps, 4 more; then resume from it in fresh objects and run the same 4 steps
    path = Path(folder) / "ck.pt"
    kwargs = dict(opt="adam", model=lambda: small_model(dropout=0.3))
    out["uninterrupted"] = train(True, steps=4, save=path, extra_steps=4, **kwargs)
    out["resumed"] = train(True, steps=4, load=path, **kwargs)
    return out


@pytest.mark.multiprocess
@pytest.mark.parametrize("world_size", [2, 3])
def test_several_processes_train_as_one(world_size, tmp_path):
    results = run_processes(_equality_worker, world_size, (str(tmp_path),), timeout=TIMEOUT)
    for sigma in (0.0, 1.3):  # seeded noise: the same noise too, drawn block by block on the ranks
        single = train(False, steps=9, sigma=sigma)
        for res in results:
            assert_same_params(res[sigma]["params"], single["params"])
            assert res[sigma]["global_batch_sizes"] == single["global_batch_sizes"]
            assert res[sigma]["epsilon"] == single["epsilon"]  # the same events: identical epsilon
    assert math.isinf(results[0][0.0]["epsilon"]) and math.isfinite(results[0][1.3]["epsilon"])
    for key, kwargs in [
        ("functorch", dict(steps=5, engine="functorch")),
        ("nan", dict(steps=9, data=dataset(nan_at=80))),
    ]:
        single = train(False, **kwargs)
        for res in results:
            assert_same_params(res[key]["params"], single["params"])
            assert res[key]["nonfinite"] == single["nonfinite"]
    assert results[0]["nan"]["nonfinite"] >= 1  # counted on every rank, warned on every rank
    assert all(r["nan"]["nonfinite"] == results[0]["nan"]["nonfinite"] and r["nan"]["warnings"] for r in results)
    for res in results:  # resumed from the checkpoint of rank 0: bit-identical on every rank
        assert_same_params(res["resumed"]["params"], res["uninterrupted"]["params"], exact=True)
        assert res["resumed"]["epsilon"] == res["uninterrupted"]["epsilon"] and res["resumed"]["steps"] == 8
        assert_same_params(res["adam"]["params"], results[0]["adam"]["params"], exact=True)  # ranks agree


def _noise_worker(rank, world_size):
    """One step of a 160k-parameter model with and without noise on the same batch: the noise of the update."""
    model = lambda: nn.Linear(400, 401)  # noqa: E731  3 noise blocks
    data = TensorDataset(torch.randn(64, 400, generator=torch.Generator().manual_seed(1)), torch.zeros(64))
    runs = []
    for sigma in (0.0, 2.0):
        torch.manual_seed(0)
        lin = model()
        pe = PrivacyEngine(seed=3)
        m, o, dl = pe.make_private(
            DistributedDataParallel(lin),
            torch.optim.SGD(lin.parameters(), lr=1.0),
            DataLoader(data, batch_size=16),
            noise_multiplier=sigma,
            max_grad_norm=1.0,
        )
        x, _ = next(iter(dl))
        o.zero_grad()
        m(x).pow(2).mean().backward()
        o.step()
        runs.append(torch.cat([p.detach().flatten() for p in lin.parameters()]))
    return (runs[0] - runs[1]) * 16  # lr 1: the noise of the sum, sigma C per coordinate


@pytest.mark.multiprocess
def test_noise_is_added_once_with_the_single_process_variance():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = run_processes(_noise_worker, 2, timeout=TIMEOUT)
    noise = results[0]
    assert torch.equal(noise, results[1])
    sigma_c = 2.0
    for j in range(3):  # blocks drawn by rank 0, 1, 0: each has variance (sigma C)^2, not 0 and not doubled
        block = noise[j * BLOCK : (j + 1) * BLOCK]
        assert abs(block.std().item() - sigma_c) < 5 * sigma_c / math.sqrt(2 * block.numel()) + 1e-4
    single = GaussianNoise(3).fill_(torch.empty(noise.numel()), sigma_c, 0)
    torch.testing.assert_close(noise, single, rtol=0, atol=2e-3)  # the very noise of the single-process run


def _agreement_worker(rank, world_size):
    """Situations where one rank differs: every rank must raise the same kind of error (none may hang)."""
    out = {}

    def attempt(name, fn):
        try:
            fn()
            out[name] = None
        except Exception as e:  # reported to the test
            out[name] = (type(e).__name__, str(e))

    attempt("seed", lambda: PrivacyEngine(seed=rank).make_private(*_parts(), noise_multiplier=1.0, max_grad_norm=1.0))
    attempt(
        "clip", lambda: PrivacyEngine(seed=1).make_private(*_parts(), noise_multiplier=1.0, max_grad_norm=1.0 + rank)
    )
    # one rank steps without a backward pass
    pe = PrivacyEngine(seed=1)
    m, o, dl = pe.make_private(*_parts(), noise_multiplier=1.0, max_grad_norm=1.0)
    x, y = next(iter(dl))
    before = [p.detach().clone() for p in o.params]

    def no_backward():
        o.zero_grad()
        loss = nn.functional.cross_entropy(m(x), y)
        if rank == 0:
            loss.backward()
        o.step()

    attempt("backward", no_backward)
    out["unchanged"] = all(torch.equal(a, p) for a, p in zip(before, o.params, strict=True)) and pe.steps == 0
    # a budget that only this rank's ledger would exceed (ledgers normally agree: this forces a disagreement)
    pe = PrivacyEngine("rdp", seed=1)
    m, o, dl = pe.make_private(*_parts(), target_epsilon=2.0, target_delta=1e-5, epochs=1, max_grad_norm=1.0)
    if rank == world_size - 1:
        pe.budget.target_epsilon = 1e-9

    def budget_step():
        o.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        o.step()

    attempt("budget", budget_step)
    out["budget_steps"] = pe.steps
    # the real budget: every rank refuses the same step
    pe = PrivacyEngine("rdp", seed=1)
    m, o, dl = pe.make_private(*_parts(), target_epsilon=1.0, target_delta=1e-5, epochs=1, max_grad_norm=1.0)
    batches = forever(dl)

    def until_refused():
        for _ in range(1000):
            bx, by = next(batches)
            o.zero_grad()
            nn.functional.cross_entropy(m(bx), by).backward()
            o.step()

    attempt("exhausted", until_refused)
    out["exhausted_steps"] = pe.steps
    return out


def _parts():
    model = small_model()
    return DistributedDataParallel(model), torch.optim.SGD(model.parameters(), lr=0.1), DataLoader(dataset(), 20)


@pytest.mark.multiprocess
def test_a_rank_that_differs_raises_on_every_rank():
    results = run_processes(_agreement_worker, 2, timeout=TIMEOUT)
    for rank, out in enumerate(results):
        assert out["seed"][0] == "ValueError" and "seeds differ between ranks" in out["seed"][1]
        assert out["clip"][0] == "ValueError" and "rank 1 has sensitivity=2.0 but rank 0 has" in out["clip"][1]
        kind, text = out["backward"]
        assert kind == "RuntimeError" and ("no backward pass reached" in text)
        assert rank == 1 or "failed on rank 1" in text
        assert out["unchanged"]
        assert out["budget"][0] == BudgetExceededError.__name__ and out["budget_steps"] == 0
        assert out["exhausted"][0] == BudgetExceededError.__name__
    assert results[0]["exhausted_steps"] == results[1]["exhausted_steps"] > 0


@pytest.mark.multiprocess
def test_train_demo_on_two_processes_is_the_one_process_run():
    from dpkit.cli.train_demo import train_once
    from dpkit.datasets import load_digits

    data = load_digits(seed=0)
    one, two = (train_once(3.0, epochs=1, data=data, accountant="rdp", nproc=n) for n in (1, 2))
    assert two["epsilon_spent"] == one["epsilon_spent"] and two["steps"] == one["steps"]
    # the parameters agree to float summation order (tested above); after 11 steps the logits of a few test images
    # are near-ties, so a handful of predictions may flip
    assert abs(two["test_accuracy"] - one["test_accuracy"]) <= 0.02
