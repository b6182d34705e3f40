"""transformers' ``Conv1D`` (GPT-2, GPT): a Linear layer whose weight is stored transposed, ``[in, out]``
(``out = x @ W + b``). Per-example gradients are those of :mod:`.linear` with the weight transposed
(``A_i^T G_i``, :class:`~dpkit.grad_sample.layers.matmul.MatmulGrads` with ``transposed=True``).

Registered by the class's full name: dpkit does not import transformers, and the rule applies once a model
built with it is attached.
"""

from __future__ import annotations

import torch
from torch import nn

from dpkit.grad_sample.layers.base import register_layer_rule
from dpkit.grad_sample.layers.linear import LinearRule, trained
from dpkit.grad_sample.layers.records import GradRecord, TapFn


@register_layer_rule("transformers.pytorch_utils.Conv1D")
class TransposedLinearRule(LinearRule):
    transposed = True

    def forward(self, module: nn.Module, tap: TapFn[GradRecord[torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
        weight, bias = module.get_parameter("weight"), module.get_parameter("bias")
        out = torch.addmm(bias.detach(), x.reshape(-1, x.shape[-1]), weight.detach())
        return self.tap(tap, x, out.view(*x.shape[:-1], weight.shape[1]), trained(bias))
