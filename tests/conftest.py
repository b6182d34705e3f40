"""Shared test configuration: markers, the hypothesis profile, and references shared by several test modules.

The micro-batch reference (:func:`microbatch_grads`, :func:`microbatch_clipped`: one example at a time through
ordinary autograd, clipped and summed in a Python loop) is what the per-sample gradient engines and the private
step are compared against; test modules import it with ``from conftest import ...``.

Markers (select with ``-m``, e.g. ``pytest -m "not slow"`` for a quick run):

* ``slow``: a test that takes more than a few seconds on a 2-core CPU.
* ``anchors``: a test that runs a reference implementation dpkit is cross-checked against (Opacus, dp_accounting,
  multi-freq-ldpy, pure-LDP, ...); it is skipped where that package is not installed.
* ``multiprocess``: a test that starts several processes (torch.distributed on gloo).

Hypothesis runs derandomized (the same examples on every run, as every other test uses fixed seeds); set
``HYPOTHESIS_PROFILE=explore`` to search with fresh random examples and more of them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

# OpenMP threads that spin while they wait make small tensor operations tens of times slower on a shared machine
# (measured: a 64 x 10 private step at 61 ms instead of 6 ms); OpenMP reads this when torch is first imported (below),
# and notebook kernels inherit it. `make test` sets it too.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings
from torch import nn

settings.register_profile(
    "ci", derandomize=True, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("explore", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

MARKERS = {
    "slow": "takes more than a few seconds on a 2-core CPU",
    "anchors": "cross-checks against a reference implementation (skipped where it is not installed)",
    "multiprocess": "starts several processes (torch.distributed on gloo)",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


# ---------------------------------------------------------------------------------------------- micro-batch reference
NORM_EPS = 1e-6  # the clip factor is min(1, c / (norm + NORM_EPS)), as in dpkit.grad_sample.clipping


def first_output(out):
    return out[0] if isinstance(out, tuple) else out


def loss_of(out, reduction: str = "sum") -> torch.Tensor:
    """A nonlinear per-example loss, summed or averaged over the batch (the models' first output)."""
    out = first_output(out)
    flat = out.flatten(1) if out.dim() > 1 else out.unsqueeze(1)
    per = (flat.sin() * (1 + flat) ** 2).sum(1)
    return per.sum() if reduction == "sum" else per.mean()


def trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


# loss(output of the model on example i alone, i) -> that example's loss
ExampleLoss = Callable[[object, int], torch.Tensor]


def microbatch_grads(model: nn.Module, inputs: Sequence[torch.Tensor], loss: ExampleLoss | None = None):
    """Each example's gradient, one example at a time through ordinary autograd: for every trainable parameter a
    tensor ``[batch, *param.shape]`` (zero for a parameter the example does not reach)."""
    params = trainable(model)
    loss = loss or (lambda out, i: loss_of(out))
    per: list[list[torch.Tensor]] = [[] for _ in params]
    for i in range(inputs[0].shape[0]):
        g = torch.autograd.grad(
            loss(model(*[x[i : i + 1] for x in inputs]), i), params, allow_unused=True, materialize_grads=True
        )
        for k, t in enumerate(g):
            per[k].append(t.detach())
    return [torch.stack(g) if g else p.new_zeros((0, *p.shape)) for g, p in zip(per, params, strict=True)]


def microbatch_clipped(model: nn.Module, inputs: Sequence[torch.Tensor], c: float, loss: ExampleLoss | None = None):
    """``(sums, norms)``: the sum over examples of each example's gradient clipped to norm ``c`` (flat clipping),
    and the norms before clipping. An example whose gradient norm is not finite is left out of the sums, as dpkit's
    engines do."""
    per = microbatch_grads(model, inputs, loss)
    total = [torch.zeros(g.shape[1:], dtype=g.dtype) for g in per]
    norms = []
    for i in range(inputs[0].shape[0]):
        norm = torch.sqrt(sum(g[i].pow(2).sum() for g in per))
        norms.append(norm)
        if not math.isfinite(float(norm)):
            continue
        f = min(1.0, c / (float(norm) + NORM_EPS))
        for t, g in zip(total, per, strict=True):
            t.add_(g[i] * f)
    return total, torch.stack(norms) if norms else torch.zeros(0)


class ScaledTanh(nn.Module):
    """``tanh(x * scale)`` with a raw parameter: the book-keeping engine's torch.func fallback, whose last operation
    saves its output for its backward pass."""

    def __init__(self, d: int):
        super().__init__()
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, d))

    def forward(self, x):
        return torch.tanh(x * self.scale)


def parameters_of(model: nn.Module) -> list[torch.Tensor]:
    """Copies of the model's parameters (to check later that a refused call changed none)."""
    return [p.detach().clone() for p in model.parameters()]


def unchanged(model: nn.Module, before: list[torch.Tensor]) -> bool:
    return all(torch.equal(a, p.detach()) for a, p in zip(before, model.parameters(), strict=True))


class Tied(nn.Module):
    """Embedding tied to the output layer, and a layer used twice per forward."""

    def __init__(self, vocab=7, dim=4):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.hidden = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, vocab, bias=False)
        self.out.weight = self.emb.weight

    def forward(self, ids):
        h = torch.tanh(self.hidden(self.emb(ids)))
        return self.out(h) + self.hidden(h).sum(-1, keepdim=True)
