"""nn.Bilinear's layer rule: 2-D and sequence inputs, with and without bias, Gram matrices or instantiation."""

from __future__ import annotations

import pytest
import torch
from layer_rule_checks import check_rule, norm_mode_fixture  # noqa: F401  (a fixture)
from torch import nn

B = 5


class Pair(nn.Module):
    def __init__(self, bias=True, d1=3, d2=4, out=2):
        super().__init__()
        self.a, self.b = nn.Linear(3, d1), nn.Linear(3, d2)
        self.bil = nn.Bilinear(d1, d2, out, bias=bias)
        self.head = nn.Linear(out, 2)

    def forward(self, x):
        return self.head(torch.tanh(self.bil(torch.tanh(self.a(x)), self.b(x)))).flatten(1)


@pytest.mark.parametrize("shape", [(B, 3), (B, 4, 3), (B, 2, 3, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_bilinear(norm_mode, shape, bias):
    torch.manual_seed(0)
    check_rule(Pair(bias), (torch.randn(shape),), fast_path=["bil", "a", "b"])


class Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.bil = nn.Bilinear(3, 3, 3)

    def forward(self, x):
        h = torch.tanh(self.bil(x, x))
        return self.bil(h, x[:, :1].expand_as(h)).sum(1)


def test_called_twice_with_a_frozen_bias(norm_mode):
    torch.manual_seed(1)
    model = Twice()
    check_rule(model, (torch.randn(B, 4, 3),), fast_path=["bil"])
    model.bil.bias.requires_grad_(False)
    check_rule(model, (torch.randn(B, 4, 3),), fast_path=["bil"])
