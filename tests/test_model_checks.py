"""The batch checks of private training: every step the engine must clip over exactly the examples the Poisson
loader drew (sequence-first models, a batch split by hand, other data), a model argument that is a view of the
loader's batch with the examples moved off dimension 0 is refused when the model is called (even when T == B), and
the book-keeping engine refuses models that reshape or transpose the batch internally. Refusals change nothing."""

from __future__ import annotations

import pytest
import torch
from conftest import parameters_of, unchanged
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dpkit.data import DrawnBatch, PoissonBatchSampler, PoissonDataLoader
from dpkit.grad_sample.validation import BatchDimensionError, IncompatibleModuleError
from dpkit.privacy_engine import PrivacyEngine

N, BATCH, SEED, D = 40, 8, 7, 16


def first_draw_size() -> int:
    """How many examples the private loader of ``PrivacyEngine(seed=SEED)`` draws for its first batch."""
    return len(PoissonBatchSampler(N, BATCH / N, N // BATCH, seed=SEED).draw(0))


def private(model: nn.Module, data: torch.Tensor, engine_name: str = "auto", collate_fn=None, chunk=None):
    engine = PrivacyEngine(seed=SEED, grad_sample_engine=engine_name)
    targets = torch.zeros(len(data))
    loader = DataLoader(TensorDataset(data, targets), batch_size=BATCH, collate_fn=collate_fn)
    model, optimizer, loader = engine.make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        loader,
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        max_physical_batch_size=chunk,
    )
    return engine, model, optimizer, loader


def assert_refused_step(engine, model, optimizer, before, match):
    with pytest.raises(BatchDimensionError, match=match):
        optimizer.step()
    assert unchanged(model, before) and engine.steps == 0
    assert engine.get_epsilon(1e-5) == 0.0


# ---------------------------------------------------------------------------------------------- sequence-first
@pytest.mark.parametrize("engine_name", ["auto", "bookkeeping", "functorch"])
def test_sequence_first_model_on_time_major_input_is_refused_at_the_step(engine_name):
    """A model that reads [T, B, d] (here position-wise layers, which no module check can flag): the engine would
    clip T positions, not B examples. The input is a copy (not a view of the loader's batch), so the step's size
    check speaks."""
    torch.manual_seed(0)
    t = N + 3  # longer than any batch the loader can draw
    model = nn.Sequential(nn.Linear(D, D), nn.Tanh(), nn.Linear(D, D))
    engine, model, optimizer, loader = private(model, torch.randn(N, t, D), engine_name)
    before = parameters_of(model)
    x, _ = next(iter(loader))
    out = model(x.transpose(0, 1).contiguous())  # [T, B, d]
    out.square().mean().backward()
    assert_refused_step(engine, model, optimizer, before, rf"clip {t} rows.* drew {len(x)} examples.*batch_first=True")


@pytest.mark.parametrize("engine_name", ["auto", "bookkeeping", "functorch"])
def test_stock_sequence_first_modules_are_refused_before_training(engine_name):
    model = nn.TransformerEncoderLayer(D, 4, 32, dropout=0.0)  # batch_first=False
    with pytest.raises(IncompatibleModuleError, match="sequence-first input"):
        private(model, torch.randn(N, 5, D), engine_name)


@pytest.mark.parametrize("engine_name", ["auto", "bookkeeping", "functorch"])
def test_transposed_view_of_the_batch_is_refused_even_when_t_equals_b(engine_name):
    """T == B: shapes cannot tell positions from examples, but the model's argument is the loader's batch with
    its examples moved to dimension 1, which is refused when the model is called."""
    torch.manual_seed(0)
    n = first_draw_size()
    model = nn.Sequential(nn.Linear(D, D), nn.Tanh(), nn.Linear(D, D))
    engine, model, optimizer, loader = private(model, torch.randn(N, n, D), engine_name)
    x, _ = next(iter(loader))
    assert x.shape[:2] == (n, n)
    with pytest.raises(BatchDimensionError, match=r"view of the batch the loader yielded.*batch_first=True"):
        model(x.transpose(0, 1))
    model(x[:, :3]).sum().backward()  # a slice along the positions keeps the examples first


def test_batch_first_model_trains():
    torch.manual_seed(0)
    model = nn.TransformerEncoderLayer(D, 4, 32, dropout=0.0, batch_first=True)
    engine, model, optimizer, loader = private(model, torch.randn(N, 5, D), chunk=3)
    for x, _ in loader:
        optimizer.zero_grad()
        model(x).square().mean().backward()
        optimizer.step()
    assert engine.steps == len(loader)


# ---------------------------------------------------------------------------------------------- mixing examples
class TimeMajorInside(nn.Module):
    """Transposes batch and time before a Linear (and back)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(D, D)

    def forward(self, x):
        return self.fc(x.transpose(0, 1)).transpose(0, 1)


class FlattenedPositions(nn.Module):
    """Reshapes [B, T, d] to [B * T, d] before a Linear."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(D, 2)

    def forward(self, x):
        return self.fc(x.reshape(-1, x.shape[-1])).reshape(x.shape[0], -1)


class SumsOverBatch(nn.Module):
    """Sums the examples before a Linear, whose one output row is broadcast to every example."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(D, 2)

    def forward(self, x):
        return x[:, :2] * self.fc(x.sum(0, keepdim=True))


@pytest.mark.parametrize(
    ("model_cls", "shape", "match"),
    [
        (TimeMajorInside, (N, 5, D), r"module fc \(Linear\) returned shape \(5, \d+, 16\)"),
        (FlattenedPositions, (N, 5, D), r"module fc \(Linear\) returned shape \(\d+, 2\)"),
        (SumsOverBatch, (N, D), r"module fc \(Linear\) returned shape \(1, 2\)"),
    ],
    ids=["transpose", "reshape", "sum"],
)
def test_bookkeeping_refuses_models_that_move_the_batch_internally(model_cls, shape, match):
    torch.manual_seed(0)
    engine, model, optimizer, loader = private(model_cls(), torch.randn(*shape), "bookkeeping")
    x, _ = next(batch for batch in loader if len(batch[0]) not in (0, 1, 5))
    with pytest.raises(ValueError, match=match + r".*batch-first"):
        model(x)


# ---------------------------------------------------------------------------------------------- the loader's batch
def test_a_batch_split_by_hand_is_refused():
    """Two calls on halves of the batch, one step: each half would be clipped as if its rows were the examples
    of the step (the engine's own chunks, max_physical_batch_size, are the way to bound memory)."""
    torch.manual_seed(0)
    engine, model, optimizer, loader = private(nn.Linear(D, 2), torch.randn(N, D))
    x, _ = next(batch for batch in loader if len(batch[0]) >= 2 and len(batch[0]) % 2 == 0)
    before = parameters_of(model)
    half = len(x) // 2
    (model(x[:half]).sum() + model(x[half:]).sum()).backward()
    assert_refused_step(engine, model, optimizer, before, rf"clip {half} rows.* drew {len(x)} examples")


def test_other_data_than_the_drawn_batch_is_refused():
    torch.manual_seed(0)
    engine, model, optimizer, loader = private(nn.Linear(D, 2), torch.randn(N, D))
    x, _ = next(iter(loader))
    before = parameters_of(model)
    model(torch.randn(len(x) + 1, D)).sum().backward()
    assert_refused_step(engine, model, optimizer, before, "on a part of it or on other data")


def test_empty_batches_chunks_and_steps_without_forward_pass():
    torch.manual_seed(0)
    engine = PrivacyEngine(seed=1)
    model = nn.Linear(D, 2)
    model, optimizer, loader = engine.make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        DataLoader(TensorDataset(torch.randn(N, D)), batch_size=1),  # q = 1/40: most batches are empty
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        max_physical_batch_size=1,
    )
    sizes = []
    for (x,) in loader:
        optimizer.zero_grad()
        model(x).sum().backward()
        optimizer.step()
        sizes.append(len(x))
    assert 0 in sizes and engine.steps == len(sizes)
    optimizer.step()  # nothing recorded: a noise-only step is always allowed


@pytest.mark.parametrize("num_workers", [0, 2])
def test_the_loader_knows_each_drawn_size(num_workers):
    engine = PrivacyEngine(seed=SEED)
    model = nn.Linear(D, 2)
    _, _, loader = engine.make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        DataLoader(TensorDataset(torch.randn(N, D)), batch_size=BATCH, num_workers=num_workers),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
    )
    assert isinstance(loader, PoissonDataLoader) and loader.drawn_batch is None
    for (x,) in loader:  # the workers prefetch: sizes are matched to batches in order
        drawn = loader.drawn_batch
        assert isinstance(drawn, DrawnBatch) and drawn.size == len(x) and drawn.tensors[0] is x


def test_sequence_first_collate_may_be_transposed_back():
    """A collate function that puts the examples along dimension 1 ([T, B, d]): the model may be called on the
    batch transposed back to [B, T, d] (examples first), not on the batch itself nor on a copy of it."""
    torch.manual_seed(0)

    def time_major(items):
        return torch.stack([x for x, _ in items], 1), torch.stack([y for _, y in items])

    engine, model, optimizer, loader = private(nn.Linear(D, 2), torch.randn(N, N + 3, D), collate_fn=time_major)
    x, _ = next(batch for batch in loader if len(batch[1]) > 1)
    model(x.transpose(0, 1)).sum().backward()  # examples first again
    optimizer.step()
    assert engine.steps == 1
    optimizer.zero_grad()
    before = parameters_of(model)
    with pytest.raises(BatchDimensionError, match=r"examples along dimension 1"):
        model(x)  # the batch itself: refused when the model is called
    model(x.clone()).sum().backward()  # a copy: refused at the step
    with pytest.raises(BatchDimensionError, match=rf"clip {N + 3} rows"):
        optimizer.step()
    assert unchanged(model, before) and engine.steps == 1
