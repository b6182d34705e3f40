"""The check every layer rule passes (tests/test_layer_rules_*.py): in float64, the book-keeping engine's clipped
sums and norms equal a micro-batch loop's (each example's gradient by ordinary autograd, clipped, summed) and the
generic torch.func engine's, under flat and per-layer clipping with thresholds that clip some examples and not
others; and the module runs on the book-keeping engine's fast path (a layer rule, not the torch.func fallback)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch
from test_bookkeeping import loss_of, trainable  # the engine tests' loss: nonlinear, per example
from torch import nn

import dpkit.grad_sample.layers.conv as conv_rule
import dpkit.grad_sample.layers.embedding as embedding_rule
import dpkit.grad_sample.layers.matmul as matmul_rule
from dpkit.grad_sample import FlatClipping, PerLayerClipping, create_engine
from dpkit.grad_sample.clipping import NORM_EPS

__all__ = ["check_rule", "loss_of", "norm_mode_fixture", "per_example", "rule_units", "trainable"]

RTOL, ATOL = 1e-5, 1e-9

Example = Callable[[int], tuple]


def to_double(x):
    return x.double() if isinstance(x, torch.Tensor) and x.is_floating_point() else x


def per_example(model: nn.Module, example: Example, batch: int) -> list[list[torch.Tensor]]:
    """Each example's gradient of its own loss, one example at a time through ordinary autograd."""
    params = trainable(model)
    grads = []
    for i in range(batch):
        g = torch.autograd.grad(loss_of(model(*example(i))), params, allow_unused=True, materialize_grads=True)
        grads.append([t.detach() for t in g])
    return grads


def clipped_reference(grads: list[list[torch.Tensor]], thresholds: Sequence[float] | float):
    """``sum_i c_i g_i`` with flat clipping (one threshold) or per-layer clipping (one per parameter)."""
    total = [torch.zeros_like(t) for t in grads[0]]
    for g in grads:
        if isinstance(thresholds, float):
            norm = float(torch.sqrt(sum(t.pow(2).sum() for t in g)))
            factors = [min(1.0, thresholds / (norm + NORM_EPS))] * len(g)
        else:
            factors = [min(1.0, c / (float(t.norm()) + NORM_EPS)) for t, c in zip(g, thresholds, strict=True)]
        for acc, t, f in zip(total, g, factors, strict=True):
            acc.add_(t * f)
    return total


def engine_sums(name: str, model: nn.Module, inputs: tuple, policies, reduction: str = "sum"):
    engine = create_engine(name, model, trainable(model), loss_reduction=reduction)
    engine.attach()
    try:
        loss_of(model(*inputs), reduction).backward()
        assert all(p.grad is None for p in trainable(model)), "autograd must not write parameter gradients"
        return [engine.clipped_sum(p) for p in policies], engine
    finally:
        engine.detach()


def rule_units(model: nn.Module) -> dict[str, str]:
    """``{path: unit kind}`` of the book-keeping engine's plan for ``model``."""
    engine = create_engine("bookkeeping", model, trainable(model))
    return {u.path: type(u).__name__ for u in engine._plan()}


def check_rule(
    model: nn.Module,
    inputs: tuple,
    *,
    example: Example | None = None,
    batch: int | None = None,
    functorch: bool = True,
    fast_path: Sequence[str] = (),
    reduction: str = "sum",
) -> None:
    """See the module docstring. ``example(i)``: the inputs of example i alone (default: every input sliced
    ``[i:i+1]``); ``functorch=False`` where the torch.func engine cannot take the inputs (packed sequences,
    offsets), ``batch`` then gives the number of examples; ``fast_path``: module paths that must be handled by
    a layer rule."""
    model = model.double()
    inputs = tuple(to_double(x) for x in inputs)
    if example is None:
        batch = next(x for x in inputs if isinstance(x, torch.Tensor)).shape[0]

        def example(i):
            return tuple(x[i : i + 1] if isinstance(x, torch.Tensor) else x for x in inputs)

    else:
        inner = example

        def example(i):
            return tuple(to_double(x) for x in inner(i))

    units = rule_units(model)
    for path in fast_path:
        assert units.get(path) == "_RuleUnit", f"{path} is not on the fast path: {units}"
    assert batch is not None
    grads = per_example(model, example, batch)
    params = trainable(model)
    totals = torch.stack([torch.sqrt(sum(t.pow(2).sum() for t in g)) for g in grads])
    layer_norms = torch.stack([torch.stack([t.norm() for t in g]) for g in grads])  # [B, L]
    flat_c = float(totals.median())
    assert (totals > flat_c).any() and (totals < flat_c).any(), "some examples clipped, some not"
    per_layer = [float(c) if c > 0 else 1.0 for c in layer_norms.median(0).values]
    policies = [FlatClipping(flat_c), PerLayerClipping(per_layer, len(params))]
    refs = [clipped_reference(grads, flat_c), clipped_reference(grads, per_layer)]
    names = ["bookkeeping", "functorch"] if functorch else ["bookkeeping"]
    for name in names:
        sums, _ = engine_sums(name, model, inputs, policies, reduction)
        for kind, got, ref in zip(("flat", "per-layer"), sums, refs, strict=True):
            assert got.batch_size == batch
            for p_name, g, r in zip(_names(model), got.grads, ref, strict=True):
                torch.testing.assert_close(
                    g, r, rtol=RTOL, atol=ATOL, msg=lambda m, p=p_name, k=kind, n=name: f"{n} {k} {p}: {m}"
                )
        torch.testing.assert_close(sums[0].norms, totals, rtol=RTOL, atol=ATOL)  # each example's own gradient


def _names(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


@pytest.fixture(params=["auto", "ghost", "instantiate"], name="norm_mode")
def norm_mode_fixture(request, monkeypatch):
    """Force the ghost (Gram) or the instantiation path of every matmul-like rule, or let the rule choose."""
    if request.param != "auto":
        ghost = request.param == "ghost"
        for module in (matmul_rule, conv_rule, embedding_rule):  # those that decide with their own name for it
            monkeypatch.setattr(module, "use_ghost", lambda t, p, d: ghost)
    return request.param
