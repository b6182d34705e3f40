"""nn.Conv1d / nn.Conv2d: the input is unfolded (im2col), after which a convolution is a matmul over the
output positions (T = number of output positions, d = in_channels / groups * kernel size, p = out_channels).

Any ``padding_mode`` (the padding is applied before the convolution, as nn.Conv does), ``padding="same"`` with
symmetric padding, stride, dilation and groups (grouped convolutions instantiate the per-example gradients).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dpkit.grad_sample.layers.base import Instantiated, LayerRule, Prepared, check_batch, register_layer_rule
from dpkit.grad_sample.layers.linear import detached, trained
from dpkit.grad_sample.layers.matmul import MatmulGrads, use_ghost
from dpkit.grad_sample.layers.records import GradRecord, TapFn

# Examples unfolded at a time when instantiating: bounds the im2col buffer (C k^2 x positions per example).
UNFOLD_CHUNK = 32


def _numeric_padding(module: nn.modules.conv._ConvNd) -> tuple[int, ...] | None:
    pad = module.padding
    if isinstance(pad, str):
        if pad == "valid":
            return (0,) * len(module.kernel_size)
        total = [d * (k - 1) for d, k in zip(module.dilation, module.kernel_size, strict=True)]
        if any(t % 2 for t in total):
            return None  # asymmetric "same" padding
        return tuple(t // 2 for t in total)
    return tuple(pad)


Conv = nn.Conv1d | nn.Conv2d
# The (padded) input and the numeric padding the convolution was run with.
ConvRecord = GradRecord[tuple[torch.Tensor, tuple[int, ...]]]


class _ConvRule(LayerRule[Conv, ConvRecord]):
    conv = staticmethod(F.conv2d)

    def unsupported(self, module: Conv) -> str | None:
        if _numeric_padding(module) is None:
            return "asymmetric padding='same'"
        return None

    def forward(self, module: Conv, tap: TapFn[ConvRecord], x: torch.Tensor) -> torch.Tensor:
        if module.padding_mode != "zeros":
            x = F.pad(x, module._reversed_padding_repeated_twice, mode=module.padding_mode)
            padding: tuple[int, ...] | None = (0,) * len(module.kernel_size)
        else:
            padding = _numeric_padding(module)
        assert padding is not None  # unsupported() refuses modules without a numeric padding
        out = self.conv(
            x, module.weight.detach(), detached(module.bias), module.stride, padding, module.dilation, module.groups
        )
        return tap(out, GradRecord((x.detach(), padding)))

    def _unfold(self, module: Conv, x: torch.Tensor, padding: tuple[int, ...]) -> torch.Tensor:
        """``[B, C * prod(kernel), L]`` columns of the input."""
        if x.dim() == 3:  # Conv1d: a 2-D convolution of height 1
            return F.unfold(
                x.unsqueeze(2),
                (1, module.kernel_size[0]),
                dilation=(1, module.dilation[0]),
                padding=(0, padding[0]),
                stride=(1, module.stride[0]),
            )
        return F.unfold(x, module.kernel_size, dilation=module.dilation, padding=padding, stride=module.stride)

    def prepare(self, module: Conv, records: Sequence[ConvRecord], batch: int) -> Prepared:
        weight = "weight" if trained(module.weight) else None
        bias = "bias" if trained(module.bias) else None
        for r in records:
            check_batch(r.saved[0], batch, type(module).__name__)
        positions = sum(r.output_grad[0].numel() // module.out_channels for r in records) if batch else 0
        p, d = module.out_channels, module.weight[0].numel()
        if module.groups == 1 and batch and not use_ghost(positions, p, d):
            return self._instantiate(module, records, batch, weight, bias)
        cols, grads = [], []
        for r in records:
            x, padding = r.saved
            check_batch(x, batch, type(module).__name__)
            cols.append(self._unfold(module, x, padding))  # [B, d, L]
            grads.append(r.output_grad.reshape(batch, module.out_channels, -1))  # [B, p, L]
        a = cols[0] if len(cols) == 1 else torch.cat(cols, 2)
        g = grads[0] if len(grads) == 1 else torch.cat(grads, 2)
        if module.groups == 1:
            return MatmulGrads(
                a.transpose(1, 2), g.transpose(1, 2), weight=weight, bias=bias, weight_shape=module.weight.shape
            )
        k = module.groups
        ps: dict[str, torch.Tensor] = {}
        if weight:
            w = torch.einsum(
                "bgol,bgcl->bgoc", g.reshape(batch, k, -1, g.shape[-1]), a.reshape(batch, k, -1, a.shape[-1])
            )
            ps["weight"] = w.reshape(batch, *module.weight.shape)
        if bias:
            ps["bias"] = g.sum(2)
        return Instantiated(ps)

    def _instantiate(
        self, module: Conv, records: Sequence[ConvRecord], batch: int, weight: str | None, bias: str | None
    ) -> Instantiated:
        """Per-example gradients ``G_i A_i^T``, unfolding ``UNFOLD_CHUNK`` examples at a time."""
        ps: dict[str, torch.Tensor] = {}
        for r in records:
            x, padding = r.saved
            g = r.output_grad.reshape(batch, module.out_channels, -1)  # [B, p, L]
            if weight:
                w = g.new_empty(batch, module.out_channels, module.weight[0].numel())
                for s in range(0, batch, UNFOLD_CHUNK):
                    cols = self._unfold(module, x[s : s + UNFOLD_CHUNK], padding)  # [b, d, L]
                    torch.bmm(g[s : s + UNFOLD_CHUNK], cols.transpose(1, 2), out=w[s : s + UNFOLD_CHUNK])
                ps["weight"] = w if "weight" not in ps else ps["weight"] + w
            if bias:
                ps["bias"] = g.sum(2) if "bias" not in ps else ps["bias"] + g.sum(2)
        return Instantiated({k: v.reshape(batch, *getattr(module, k).shape) for k, v in ps.items()})


@register_layer_rule(nn.Conv1d)
class Conv1dRule(_ConvRule):
    conv = staticmethod(F.conv1d)


@register_layer_rule(nn.Conv2d)
class Conv2dRule(_ConvRule):
    conv = staticmethod(F.conv2d)
