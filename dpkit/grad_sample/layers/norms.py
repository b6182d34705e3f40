"""LayerNorm, GroupNorm, RMSNorm: elementwise affine parameters, so per-example gradients are small and
instantiated: ``weight_i = sum (g * x_hat)`` and ``bias_i = sum g`` over example i's positions, with ``x_hat``
the normalized input, recomputed from the saved input (LayerNorm: from the forward's per-position mean and
reciprocal standard deviation, ``x_hat = (x - mean) * rstd``, which costs less than normalizing again)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dpkit.grad_sample.layers.base import (
    Instantiated,
    LayerRule,
    Record,
    TapFn,
    check_batch,
    register_layer_rule,
)
from dpkit.grad_sample.layers.linear import detached, trained


@dataclasses.dataclass
class _Stats:
    """LayerNorm's forward statistics for one call (``[*, 1...]``, fresh outputs nothing else modifies)."""

    mean: torch.Tensor
    rstd: torch.Tensor


def _split(saved) -> tuple:
    """A norm call's saved object -> (input, _Stats or None); LayerNorm saves ``(input, _Stats)``."""
    return saved if isinstance(saved, tuple) else (saved, None)


class _NormRule(LayerRule):
    def forward(self, module, tap: TapFn, x: torch.Tensor) -> torch.Tensor:
        weight, bias = detached(getattr(module, "weight", None)), detached(getattr(module, "bias", None))
        return tap(self.normalize(module, x, weight, bias), x.detach())

    def normalize(self, module, x, weight, bias) -> torch.Tensor:
        raise NotImplementedError

    def normalized(self, module, x: torch.Tensor, stats: _Stats | None) -> torch.Tensor:
        """``x_hat`` for a saved input, as a new tensor (the caller modifies it)."""
        return self.normalize(module, x, None, None)

    def reduce(self, module, t: torch.Tensor, batch: int) -> torch.Tensor:
        """Sum ``t`` (shaped like the output) over everything but the batch and the parameter's dimensions."""
        raise NotImplementedError

    def per_example(
        self, module, grad: torch.Tensor, x: torch.Tensor, batch: int, stats: _Stats | None = None
    ) -> dict[str, torch.Tensor]:
        """Per-example parameter gradients of one call from its output gradient and saved input."""
        parts = {}
        if trained(getattr(module, "weight", None)):
            xg = self.normalized(module, x, stats).mul_(grad)
            parts["weight"] = self.reduce(module, xg, batch).to(grad.dtype)
        if trained(getattr(module, "bias", None)):
            parts["bias"] = self.reduce(module, grad, batch)
        return parts

    def reducer(self, module, batch: int, saved, out):
        # Per-example gradients take [B, d] each: form them in the backward pass, so that neither the [B, T, d]
        # output gradient nor the input is held until the step (not for an input that is not batch-first:
        # prepare then raises the error).
        saved, stats = _split(saved)
        if not isinstance(saved, torch.Tensor) or saved.dim() == 0 or saved.shape[0] != batch:
            return None
        return (lambda grad, x: self.per_example(module, grad, x, batch, stats)), saved

    def prepare(self, module, records: Sequence[Record], batch: int) -> Instantiated:
        ps: dict[str, torch.Tensor] = {}
        for r in records:
            if r.reduced is not None:
                parts = r.reduced
            else:
                x, stats = _split(r.saved)
                check_batch(x, batch, type(module).__name__)
                parts = self.per_example(module, r.grad, x, batch, stats)
            for k, v in parts.items():
                ps[k] = v if k not in ps else ps[k] + v
        return Instantiated(ps)


@register_layer_rule(nn.LayerNorm)
class LayerNormRule(_NormRule):
    def forward(self, module, tap: TapFn, x: torch.Tensor) -> torch.Tensor:
        weight, bias = detached(module.weight), detached(module.bias)
        out, mean, rstd = torch.native_layer_norm(x, module.normalized_shape, weight, bias, module.eps)
        return tap(out, (x.detach(), _Stats(mean.detach(), rstd.detach())))

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
class GroupNormRule(_NormRule):
    def normalize(self, module, x, weight, bias):
        return F.group_norm(x, module.num_groups, weight, bias, module.eps)

    def reduce(self, module, t, batch):
        return t.reshape(batch, module.num_channels, -1).sum(2)


@register_layer_rule(nn.RMSNorm)
class RMSNormRule(_NormRule):
    param_names = ("weight",)

    def normalize(self, module, x, weight, bias):
        return F.rms_norm(x, module.normalized_shape, weight, module.eps)

    def reduce(self, module, t, batch):
        shape = tuple(module.normalized_shape)
        return t.reshape(batch, -1, *shape).sum(1)
