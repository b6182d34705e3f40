"""Stock nn.RNN / nn.LSTM / nn.GRU on the book-keeping engine's fast path (their layer rule), and the torch.func
engines on them; fallback modules whose outputs keep the batch in another dimension (Opacus' DPLSTM)."""

from __future__ import annotations

import pytest
import torch
from layer_rule_checks import (  # noqa: F401  (norm_mode_fixture: a fixture)
    check_rule,
    loss_of,
    norm_mode_fixture,
    per_example,
    rule_units,
    trainable,
)
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from dpkit.grad_sample import create_engine

B, T, D_IN, H = 5, 6, 3, 4

RECURRENT = {
    "rnn_tanh": lambda **kw: nn.RNN(D_IN, H, **kw),
    "rnn_relu": lambda **kw: nn.RNN(D_IN, H, nonlinearity="relu", **kw),
    "lstm": lambda **kw: nn.LSTM(D_IN, H, **kw),
    "gru": lambda **kw: nn.GRU(D_IN, H, **kw),
}


class Net(nn.Module):
    """A recurrent layer fed batch-first input (transposed for batch_first=False), its outputs and final states
    into the loss; with ``init``, the initial states come from the input (per example)."""

    def __init__(self, rnn, init=False):
        super().__init__()
        self.rnn = rnn
        dirs = 2 if rnn.bidirectional else 1
        self.h_out = rnn.proj_size or rnn.hidden_size
        self.states = rnn.num_layers * dirs
        self.init = nn.Linear(D_IN, self.states * (self.h_out + rnn.hidden_size)) if init else None
        self.head = nn.Linear(dirs * self.h_out, 2)

    def initial(self, x):
        if self.init is None:
            return None
        s = torch.tanh(self.init(x[:, 0])).reshape(x.shape[0], self.states, -1).transpose(0, 1)
        h, c = s[..., : self.h_out].contiguous(), s[..., self.h_out :].contiguous()
        return (h, c) if isinstance(self.rnn, nn.LSTM) else h

    def forward(self, x):
        hx = self.initial(x)
        out, hidden = self.rnn(x if self.rnn.batch_first else x.transpose(0, 1), hx)
        if not self.rnn.batch_first:
            out = out.transpose(0, 1)
        h = hidden[0] if isinstance(hidden, tuple) else hidden
        parts = [self.head(out).flatten(1), h.transpose(0, 1).flatten(1)]
        if isinstance(hidden, tuple):
            parts.append(hidden[1].transpose(0, 1).flatten(1))
        return torch.cat(parts, 1)


def _randomized(rnn):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in rnn.parameters():
            p.uniform_(-0.8, 0.8)
    return rnn


@pytest.mark.parametrize("kind", list(RECURRENT))
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_single_layer(norm_mode, kind, batch_first, bias):
    model = Net(_randomized(RECURRENT[kind](batch_first=batch_first, bias=bias)))
    torch.manual_seed(1)
    check_rule(model, (torch.randn(B, T, D_IN),), fast_path=["rnn", "head"])


@pytest.mark.parametrize("kind", list(RECURRENT))
def test_two_layers_bidirectional_with_initial_states(norm_mode, kind):
    model = Net(_randomized(RECURRENT[kind](num_layers=2, bidirectional=True, batch_first=True)), init=True)
    torch.manual_seed(2)
    check_rule(model, (torch.randn(B, T, D_IN),), fast_path=["rnn", "init"])


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_with_projection(norm_mode, bidirectional):
    lstm = nn.LSTM(D_IN, 5, num_layers=2, proj_size=3, bidirectional=bidirectional)
    model = Net(_randomized(lstm), init=True)
    torch.manual_seed(3)
    check_rule(model, (torch.randn(B, T, D_IN),), fast_path=["rnn"])


def test_dropout_between_layers_in_eval_mode_and_frozen_weights():
    lstm = _randomized(nn.LSTM(D_IN, H, num_layers=2, dropout=0.5, batch_first=True))
    model = Net(lstm).eval()  # no dropout in eval mode: the references are deterministic
    lstm.weight_ih_l0.requires_grad_(False)
    lstm.bias_hh_l1.requires_grad_(False)
    torch.manual_seed(4)
    check_rule(model, (torch.randn(B, T, D_IN),), fast_path=["rnn"])


class Packed(nn.Module):
    """Variable-length sequences (padded input and lengths) packed for the recurrent layer, unpacked after."""

    def __init__(self, rnn, enforce_sorted=False):
        super().__init__()
        self.rnn, self.enforce_sorted = rnn, enforce_sorted
        self.head = nn.Linear(rnn.hidden_size * (2 if rnn.bidirectional else 1), 2)

    def forward(self, x, lengths):
        x = x if self.rnn.batch_first else x.transpose(0, 1)
        packed = pack_padded_sequence(x, lengths, self.rnn.batch_first, enforce_sorted=self.enforce_sorted)
        out, hidden = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
        h = hidden[0] if isinstance(hidden, tuple) else hidden
        return torch.cat([self.head(out).flatten(1), h.transpose(0, 1).flatten(1)], 1)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("batch_first", [True, False])
def test_packed_sequences(norm_mode, kind, batch_first):
    model = Packed(_randomized(RECURRENT[kind](num_layers=2, bidirectional=True, batch_first=batch_first)))
    torch.manual_seed(5)
    x, lengths = torch.randn(B, T, D_IN), torch.tensor([3, 6, 1, 4, 6])
    example = lambda i: (x[i : i + 1, : int(lengths[i])], lengths[i : i + 1])  # noqa: E731
    # the torch.func engines cannot pack per example (pack_padded_sequence needs concrete lengths)
    check_rule(model, (x, lengths), example=example, batch=B, functorch=False, fast_path=["rnn"])


def test_packed_sequences_sorted():
    model = Packed(_randomized(nn.LSTM(D_IN, H, batch_first=True)), enforce_sorted=True)
    torch.manual_seed(6)
    x, lengths = torch.randn(B, T, D_IN), torch.tensor([6, 5, 3, 3, 1])
    example = lambda i: (x[i : i + 1, : int(lengths[i])], lengths[i : i + 1])  # noqa: E731
    check_rule(model, (x, lengths), example=example, batch=B, functorch=False)


class Twice(nn.Module):
    """One LSTM run over two sequences of different lengths in one forward."""

    def __init__(self):
        super().__init__()
        self.rnn = _randomized(nn.LSTM(D_IN, H, batch_first=True))

    def forward(self, x):
        a = self.rnn(x)[0][:, -1]
        b = self.rnn(torch.tanh(x[:, :3].flip(1)))[0][:, -1]
        return a * b + a


def test_module_called_twice(norm_mode):
    torch.manual_seed(7)
    check_rule(Twice(), (torch.randn(B, T, D_IN),), fast_path=["rnn"])


@pytest.mark.parametrize("kind", list(RECURRENT))
def test_rule_forward_equals_stock_forward(kind):
    rnn = _randomized(RECURRENT[kind](num_layers=2, bidirectional=True, batch_first=True))
    torch.manual_seed(8)
    x, lengths = torch.randn(B, T, D_IN), torch.tensor([3, 6, 1, 4, 6])
    for model, inputs in ((Packed(rnn), (x, lengths)), (Net(rnn, init=True), (x,))):
        expected = model(*inputs)
        engine = create_engine("bookkeeping", model, trainable(model))
        engine.attach()
        try:
            got = model(*inputs)
            assert engine.recording is False and len(engine.units[0].records) == 4  # 2 layers x 2 directions
        finally:
            engine.detach()
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_per_sample_gradients():
    model = Net(_randomized(nn.GRU(D_IN, H, num_layers=2, batch_first=True)), init=True).double()
    torch.manual_seed(9)
    x = torch.randn(B, T, D_IN, dtype=torch.float64)
    ref = per_example(model, lambda i: (x[i : i + 1],), B)
    engine = create_engine("bookkeeping", model, trainable(model), loss_reduction="sum")
    engine.attach()
    try:
        loss_of(model(x)).backward()
        got = engine.per_sample_gradients()
    finally:
        engine.detach()
    for g, r in zip(got, zip(*ref, strict=True), strict=True):
        torch.testing.assert_close(g, torch.stack(r), rtol=1e-5, atol=1e-9)


class Misfed(nn.Module):
    """Calls its recurrent layer on one sequence (unbatched) or on a part of the batch."""

    def __init__(self, unbatched):
        super().__init__()
        self.rnn, self.unbatched = nn.GRU(D_IN, H), unbatched

    def forward(self, x):
        out = self.rnn(x[0])[0] if self.unbatched else self.rnn(x[:2].transpose(0, 1))[0][-1]
        return out.sum(0, keepdim=True).expand(x.shape[0], -1)


@pytest.mark.parametrize("unbatched, message", [(True, "unbatched input"), (False, "batch of 2 sequences, but")])
def test_recurrent_layer_not_fed_the_batch(unbatched, message):
    model = Misfed(unbatched)
    engine = create_engine("bookkeeping", model, trainable(model))
    engine.attach()
    try:
        with pytest.raises(RuntimeError, match=message):
            model(torch.randn(B, T, D_IN))
    finally:
        engine.detach()


# ---------------------------------------------------------------------------------------------- fallback outputs
class StateSecond(nn.Module):
    """A custom recurrent module (raw parameters: the torch.func fallback) returning its final state as
    ``[layers, B, H]`` like stock recurrent layers: batch in dimension 1, and for one layer two dimensions of size
    1 per example."""

    def __init__(self, layers):
        super().__init__()
        self.w = nn.Parameter(torch.randn(layers, D_IN, H) * 0.5)

    def forward(self, x):
        h = torch.tanh(torch.einsum("btd,ldh->lbh", x, self.w))
        return h.sum(0), h


class UsesState(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.cell = StateSecond(layers)
        self.head = nn.Linear(H, 2)

    def forward(self, x):
        out, h = self.cell(x)
        assert h.shape[1] == x.shape[0], h.shape
        return self.head(out + h[-1]).flatten(1)


@pytest.mark.parametrize("layers", [1, 2])
def test_fallback_outputs_with_the_batch_in_another_dimension(layers):
    torch.manual_seed(10)
    model = UsesState(layers)
    assert rule_units(model)["cell"] == "_FallbackUnit"
    check_rule(model, (torch.randn(B, T, D_IN),))


@pytest.mark.anchors
def test_opacus_dplstm_through_the_fallback():
    layers = pytest.importorskip("opacus.layers")

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = layers.DPLSTM(D_IN, H, batch_first=True)
            self.head = nn.Linear(H, 2)

        def forward(self, x):
            out, (h, c) = self.rnn(x)
            assert h.shape == (1, x.shape[0], H)
            return self.head(out[:, -1] + h[-1] * c[-1])

    torch.manual_seed(11)
    model = Classifier()
    assert rule_units(model)["rnn"] == "_FallbackUnit"
    check_rule(model, (torch.randn(B, T, D_IN),))


def test_training_step_matches_the_generic_engine():
    import warnings

    from torch.utils.data import DataLoader, TensorDataset

    from dpkit.privacy_engine import PrivacyEngine

    def train(engine_name):
        torch.manual_seed(12)
        model = Net(nn.LSTM(D_IN, H, num_layers=2, batch_first=True))
        data = TensorDataset(torch.randn(20, T, D_IN), torch.randint(0, 2, (20,)))
        engine = PrivacyEngine(seed=0, grad_sample_engine=engine_name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m, opt, dl = engine.make_private(
                model, torch.optim.SGD(model.parameters(), lr=0.5), DataLoader(data, batch_size=5),
                noise_multiplier=0.0, max_grad_norm=0.3, poisson_sampling=False,
            )  # fmt: skip
        for x, y in dl:
            opt.zero_grad()
            nn.functional.cross_entropy(m(x)[:, :2], y).backward()
            opt.step()
        return engine.engine.name, [p.detach().clone() for p in m.parameters()]

    (bk_name, bk), (fn_name, fn) = train("auto"), train("functorch")
    assert (bk_name, fn_name) == ("bookkeeping", "functorch")
    for a, b in zip(bk, fn, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_the_generic_engine_says_why_it_cannot_take_packed_sequences():
    model = Packed(nn.LSTM(D_IN, H, batch_first=True))
    engine = create_engine("functorch", model, trainable(model))
    engine.attach()
    try:
        with pytest.raises(ValueError, match="one example at a time under torch.func.vmap.*pack_padded_sequence"):
            model(torch.randn(B, T, D_IN), torch.tensor([3, 6, 1, 4, 6]))
    finally:
        engine.detach()


class CellLoop(nn.Module):
    """A recurrent cell stepped over time in the model's own loop (each step one more call of the cell)."""

    def __init__(self, cell):
        super().__init__()
        self.cell = cell
        self.head = nn.Linear(H, 2)

    def forward(self, x):
        state = None
        outs = []
        for t in range(x.shape[1]):
            state = self.cell(x[:, t], state)
            outs.append(state[0] if isinstance(state, tuple) else state)
        return self.head(torch.stack(outs, 1)).flatten(1)


@pytest.mark.parametrize(
    "cell",
    [
        lambda: nn.RNNCell(D_IN, H),
        lambda: nn.RNNCell(D_IN, H, nonlinearity="relu", bias=False),
        lambda: nn.LSTMCell(D_IN, H),
        lambda: nn.GRUCell(D_IN, H),
    ],
)
def test_cells(norm_mode, cell):
    torch.manual_seed(13)
    check_rule(CellLoop(_randomized(cell())), (torch.randn(B, T, D_IN),), fast_path=["cell", "head"])
