"""LayerNorm, GroupNorm, RMSNorm: elementwise affine parameters, so per-example gradients are small and
instantiated: ``weight_i = sum (g * x_hat)`` and ``bias_i = sum g`` over example i's positions, with ``x_hat``
the normalized input, recomputed from the saved input (LayerNorm: from the forward's per-position mean and
reciprocal standard deviation, ``x_hat = (x - mean) * rstd``, which costs less than normalizing again)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from dpkit.grad_sample.layers.base import Instantiated, LayerRule, check_batch, register_layer_rule
from dpkit.grad_sample.layers.linear import detached, trained
from dpkit.grad_sample.layers.records import GradRecord, ReducedRecord, TapFn


@dataclasses.dataclass
class _Stats:
    """LayerNorm's forward statistics for one call (``[*, 1...]``, fresh outputs nothing else modifies)."""

    mean: torch.Tensor
    rstd: torch.Tensor


NormT = TypeVar("NormT", nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)
# A norm call whose input is batch-first reduces its gradients in the backward pass; any other call is recorded
# with its input (and LayerNorm's statistics) for prepare, which then raises the error naming the layer.
NormRecord = ReducedRecord | GradRecord[tuple[torch.Tensor, _Stats | None]]


def _no_examples(module: nn.Module, grad: torch.Tensor) -> dict[str, torch.Tensor]:
    """The per-example gradients ``[0, *shape]`` of the trained parameters for an empty batch."""
    return {n: grad.new_zeros((0, *p.shape)) for n, p in module.named_parameters(recurse=False) if p.requires_grad}


class _NormRule(LayerRule[NormT, NormRecord]):
    def forward(self, module: NormT, tap: TapFn[NormRecord], x: torch.Tensor) -> torch.Tensor:
        weight, bias = detached(getattr(module, "weight", None)), detached(getattr(module, "bias", None))
        return self.tap(module, tap, self.normalize(module, x, weight, bias), x.detach(), None)

    def tap(
        self, module: NormT, tap: TapFn[NormRecord], out: torch.Tensor, x: torch.Tensor, stats: _Stats | None
    ) -> torch.Tensor:
        """Record one call (input ``x``, detached): per-example gradients take [B, d] each, so they are formed in
        the backward pass and neither the [B, T, d] output gradient nor the input is held until the step."""
        batch = tap.batch
        if x.dim() == 0 or x.shape[0] != batch:
            return tap(out, GradRecord((x, stats)))
        return tap(out, ReducedRecord(lambda grad, x: self.per_example(module, grad, x, batch, stats)), kept=x)

    def normalize(
        self, module: NormT, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None
    ) -> torch.Tensor:
        raise NotImplementedError

    def normalized(self, module: NormT, x: torch.Tensor, stats: _Stats | None) -> torch.Tensor:
        """``x_hat`` for a saved input, as a new tensor (the caller modifies it)."""
        return self.normalize(module, x, None, None)

    def reduce(self, module: NormT, t: torch.Tensor, batch: int) -> torch.Tensor:
        """Sum ``t`` (shaped like the output) over everything but the batch and the parameter's dimensions."""
        raise NotImplementedError

    def per_example(
        self, module: NormT, grad: torch.Tensor, x: torch.Tensor, batch: int, stats: _Stats | None = None
    ) -> dict[str, torch.Tensor]:
        """Per-example parameter gradients of one call from its output gradient and saved input."""
        parts: dict[str, torch.Tensor] = {}
        if batch == 0:  # an empty batch (a valid step): reshaping 0 values to [0, -1, ...] is ambiguous
            return _no_examples(module, grad)
        if trained(getattr(module, "weight", None)):
            xg = self.normalized(module, x, stats).mul_(grad)
            parts["weight"] = self.reduce(module, xg, batch).to(grad.dtype)
        if trained(getattr(module, "bias", None)):
            parts["bias"] = self.reduce(module, grad, batch)
        return parts

    def prepare(self, module: NormT, records: Sequence[NormRecord], batch: int) -> Instantiated:
        ps: dict[str, torch.Tensor] = {}
        for r in records:
            if isinstance(r, ReducedRecord):
                parts = r.per_example
            else:
                x, stats = r.saved
                check_batch(x, batch, type(module).__name__)
                parts = self.per_example(module, r.output_grad, x, batch, stats)
            for k, v in parts.items():
                ps[k] = v if k not in ps else ps[k] + v
        return Instantiated(ps)


@register_layer_rule(nn.LayerNorm)
class LayerNormRule(_NormRule[nn.LayerNorm]):
    def forward(self, module: nn.LayerNorm, tap: TapFn[NormRecord], x: torch.Tensor) -> torch.Tensor:
        weight, bias = detached(module.weight), detached(module.bias)
        out, mean, rstd = torch.native_layer_norm(x, module.normalized_shape, weight, bias, module.eps)
        return self.tap(module, tap, out, x.detach(), _Stats(mean.detach(), rstd.detach()))

    def normalize(self, module, x, weight, bias):
        return F.layer_norm(x, module.normalized_shape, weight, bias, module.eps)

    def normalized(self, module, x, stats):
        if stats is None:
            return super().normalized(module, x, stats)
        return (x - stats.mean).mul_(stats.rstd).to(x.dtype)

    def reduce(self, module, t, batch):
        shape = tuple(module.normalized_shape)
        return t.reshape(batch, -1, *shape).sum(1)


@register_layer_rule(nn.GroupNorm)
class GroupNormRule(_NormRule[nn.GroupNorm]):
    def normalize(self, module, x, weight, bias):
        return F.group_norm(x, module.num_groups, weight, bias, module.eps)

    def reduce(self, module, t, batch):
        return t.reshape(batch, module.num_channels, -1).sum(2)


@register_layer_rule(nn.RMSNorm)
class RMSNormRule(_NormRule[nn.RMSNorm]):
    param_names = ("weight",)

    def normalize(self, module, x, weight, bias):
        return F.rms_norm(x, module.normalized_shape, weight, module.eps)

    def reduce(self, module, t, batch):
        shape = tuple(module.normalized_shape)
        return t.reshape(batch, -1, *shape).sum(1)
