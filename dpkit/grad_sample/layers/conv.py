"""nn.Conv1d / Conv2d / Conv3d and nn.ConvTranspose1d / ConvTranspose2d / ConvTranspose3d.

A convolution is a matmul over positions once its input is unfolded (im2col): T = output positions, d =
in_channels / groups * kernel size, p = out_channels. A transposed convolution is the input gradient of a
convolution, so its weight gradient is that convolution's weight gradient with the roles swapped: the output
gradient unfolded (with the layer's stride, padding and dilation) is the "input", the layer's input the "output
gradient" (T = input positions, p = in_channels, d = out_channels / groups * kernel size); its bias gradient is the
output gradient summed over positions.

Norms: Gram matrices of the unfolded columns when ``use_ghost`` prefers them (``groups=1``), else each example's
gradient instantiated by one grouped convolution backward with the batch folded into the groups (the examples'
gradients come out of the same optimized kernel as ordinary training; no im2col buffer). Any ``padding_mode``
(the padding is applied before the convolution, as nn.Conv does), ``padding="same"`` with symmetric padding,
stride, dilation, groups, ``output_padding`` and ``output_size``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dpkit.grad_sample.layers.base import (
    ByName,
    Instantiated,
    LayerRule,
    Prepared,
    check_batch,
    register_layer_rule,
)
from dpkit.grad_sample.layers.linear import detached, trained
from dpkit.grad_sample.layers.matmul import MatmulGrads, use_ghost
from dpkit.grad_sample.layers.records import GradRecord, TapFn


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


# The (padded) input, the numeric padding and the output padding the convolution was run with.
ConvRecord = GradRecord[tuple[torch.Tensor, tuple[int, ...], tuple[int, ...]]]


def unfold(x: torch.Tensor, kernel: Sequence[int], dilation, padding, stride) -> torch.Tensor:
    """``[B, C * prod(kernel), L]`` columns of ``x`` ``[B, C, *spatial]`` (F.unfold's order, any dimension)."""
    nd = x.dim() - 2
    if nd == 1:  # a 2-D convolution of height 1
        return F.unfold(
            x.unsqueeze(2), (1, kernel[0]), dilation=(1, dilation[0]), padding=(0, padding[0]), stride=(1, stride[0])
        )
    if nd == 2:
        return F.unfold(x, tuple(kernel), dilation=tuple(dilation), padding=tuple(padding), stride=tuple(stride))
    x = F.pad(x, [q for p in reversed(padding) for q in (p, p)])
    for i in range(nd):  # windows of each spatial dimension, appended as trailing dimensions
        x = x.unfold(2 + i, dilation[i] * (kernel[i] - 1) + 1, stride[i])
    x = x[(...,) + tuple(slice(None, None, d) for d in dilation)]
    b, c = x.shape[:2]
    order = [0, 1, *range(2 + nd, 2 + 2 * nd), *range(2, 2 + nd)]
    return x.permute(order).reshape(b, c * math.prod(kernel), -1)


class _ConvRule(LayerRule[nn.modules.conv._ConvNd, ConvRecord]):
    transposed = False

    def unsupported(self, module: nn.modules.conv._ConvNd) -> str | None:
        if _numeric_padding(module) is None:
            return "asymmetric padding='same'"
        return None

    def forward(
        self, module: nn.modules.conv._ConvNd, tap: TapFn[ConvRecord], x: torch.Tensor, output_size: Any = None
    ) -> torch.Tensor:
        nd = len(module.kernel_size)
        weight, bias = module.weight.detach(), detached(module.bias)
        padding: tuple[int, ...]
        if self.transposed:
            assert isinstance(module, nn.modules.conv._ConvTransposeNd) and not isinstance(module.padding, str)
            padding = tuple(module.padding)
            out_pad = tuple(
                module._output_padding(
                    x, output_size, list(module.stride), list(padding), list(module.kernel_size), nd,
                    list(module.dilation),
                )
            )  # fmt: skip
            conv_t = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[nd - 1]
            out = conv_t(x, weight, bias, module.stride, padding, out_pad, module.groups, module.dilation)
        else:
            out_pad = (0,) * nd
            if module.padding_mode != "zeros":
                x = F.pad(x, module._reversed_padding_repeated_twice, mode=module.padding_mode)
                padding = (0,) * nd
            else:
                found = _numeric_padding(module)
                assert found is not None  # unsupported() refuses modules without a numeric padding
                padding = found
            conv = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
            out = conv(x, weight, bias, module.stride, padding, module.dilation, module.groups)
        return tap(out, GradRecord((x.detach(), padding, out_pad)))

    # ------------------------------------------------------------------ step
    def prepare(self, module: nn.modules.conv._ConvNd, records: Sequence[ConvRecord], batch: int) -> Prepared:
        weight = "weight" if trained(module.weight) else None
        bias = "bias" if trained(module.bias) else None
        for r in records:
            check_batch(r.saved[0], batch, type(module).__name__)
        # the matmul's shapes: p outputs of d inputs at T positions (module docstring)
        p = module.in_channels if self.transposed else module.out_channels
        d = module.weight[0].numel()
        positions = sum((r.saved[0] if self.transposed else r.output_grad)[0, 0].numel() for r in records)
        if module.groups > 1 or not batch or not use_ghost(positions, p, d):
            return self._instantiate(module, records, batch, weight, bias)
        cols, grads = [], []
        for r in records:
            x, padding, _ = r.saved
            g = r.output_grad
            if self.transposed:  # the output gradient unfolded, and the input in the output gradient's place
                cols.append(unfold(g, module.kernel_size, module.dilation, padding, module.stride))
                grads.append(x.reshape(batch, p, -1))
            else:
                cols.append(unfold(x, module.kernel_size, module.dilation, padding, module.stride))
                grads.append(g.reshape(batch, p, -1))
        a = cols[0] if len(cols) == 1 else torch.cat(cols, 2)
        g = grads[0] if len(grads) == 1 else torch.cat(grads, 2)
        if not self.transposed:
            return MatmulGrads(
                a.transpose(1, 2), g.transpose(1, 2), weight=weight, bias=bias, weight_shape=module.weight.shape
            )
        parts: dict[str, Prepared] = {
            "weight": MatmulGrads(
                a.transpose(1, 2), g.transpose(1, 2), weight=weight, bias=None, weight_shape=module.weight.shape
            )
        }
        if bias:
            parts["bias"] = Instantiated({"bias": self._bias(module, records, batch)})
        return ByName(parts)

    def _bias(self, module: nn.modules.conv._ConvNd, records: Sequence[ConvRecord], batch: int) -> torch.Tensor:
        sums = [r.output_grad.reshape(batch, module.out_channels, -1).sum(2) for r in records]
        return sum(sums[1:], sums[0])

    def _instantiate(
        self,
        module: nn.modules.conv._ConvNd,
        records: Sequence[ConvRecord],
        batch: int,
        weight: str | None,
        bias: str | None,
    ) -> Instantiated:
        """Per-example weight gradients from one convolution backward with the batch folded into the groups."""
        ps: dict[str, torch.Tensor] = {}
        if weight:
            w = module.weight
            shape = (batch * w.shape[0], *w.shape[1:])
            for r in records:
                x, padding, out_pad = r.saved
                g = r.output_grad
                _, per, _ = torch.ops.aten.convolution_backward(
                    g.reshape(1, -1, *g.shape[2:]),
                    x.reshape(1, -1, *x.shape[2:]),
                    g.new_empty(shape),
                    None,
                    list(module.stride),
                    list(padding),
                    list(module.dilation),
                    self.transposed,
                    list(out_pad),
                    batch * module.groups,
                    [False, True, False],
                )
                per = per.reshape(batch, *w.shape)
                ps["weight"] = per if "weight" not in ps else ps["weight"] + per
        if bias:
            ps["bias"] = self._bias(module, records, batch)
        return Instantiated(ps)


@register_layer_rule(nn.Conv1d)
class Conv1dRule(_ConvRule):
    pass


@register_layer_rule(nn.Conv2d)
class Conv2dRule(_ConvRule):
    pass


@register_layer_rule(nn.Conv3d)
class Conv3dRule(_ConvRule):
    pass


@register_layer_rule(nn.ConvTranspose1d)
class ConvTranspose1dRule(_ConvRule):
    transposed = True


@register_layer_rule(nn.ConvTranspose2d)
class ConvTranspose2dRule(_ConvRule):
    transposed = True


@register_layer_rule(nn.ConvTranspose3d)
class ConvTranspose3dRule(_ConvRule):
    transposed = True
