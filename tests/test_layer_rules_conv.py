"""Convolution rules beyond Conv1d/2d (those are in test_bookkeeping.py): Conv3d and ConvTranspose1d/2d/3d, with
stride, padding, dilation, groups, output_padding and output_size, by Gram matrices or instantiation."""

from __future__ import annotations

import pytest
import torch
from layer_rule_checks import check_rule, norm_mode_fixture  # noqa: F401  (a fixture)
from torch import nn

from dpkit.grad_sample.layers.conv import unfold

B = 5


def _net(layer, x):
    with torch.no_grad():
        n = layer(x).flatten(1).shape[1]
    return nn.Sequential(layer, nn.Tanh(), nn.Flatten(), nn.Linear(n, 3))


@pytest.mark.parametrize(
    "conv, spatial",
    [
        (lambda: nn.Conv3d(2, 3, 3, padding=1), (4, 5, 3)),
        (lambda: nn.Conv3d(2, 4, (2, 3, 2), stride=(2, 1, 1), dilation=(1, 2, 1), bias=False), (5, 6, 4)),
        (lambda: nn.Conv3d(4, 4, 3, groups=2, padding="same", padding_mode="replicate"), (3, 4, 4)),
        (lambda: nn.ConvTranspose1d(3, 4, 3, stride=2, padding=1, output_padding=1), (6,)),
        (lambda: nn.ConvTranspose1d(4, 6, 2, groups=2, dilation=2), (5,)),
        (lambda: nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1), (4, 5)),
        (
            lambda: nn.ConvTranspose2d(2, 4, (2, 3), stride=(1, 2), padding=(0, 1), output_padding=(0, 1), bias=False),
            (3, 4),
        ),
        (lambda: nn.ConvTranspose2d(4, 4, 3, groups=4, dilation=(2, 1)), (3, 3)),
        (lambda: nn.ConvTranspose3d(2, 3, 2, stride=2), (2, 3, 2)),
    ],
)
def test_convolutions(norm_mode, conv, spatial):
    torch.manual_seed(0)
    layer = conv()
    x = torch.randn(B, layer.in_channels, *spatial)
    check_rule(_net(layer, x), (x,), fast_path=["0"])


class OutputSize(nn.Module):
    """A transposed convolution asked for an output size (the output padding it implies), called twice."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(2, 3, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1)
        self.head = nn.Linear(2 * 7 * 6, 2)

    def forward(self, x):
        h = torch.tanh(self.down(x))
        y = self.up(h, output_size=x.shape[2:]) + self.up(h, output_size=(7, 6)).flip(3)
        return self.head(torch.tanh(y).flatten(1))


def test_output_size_and_two_calls(norm_mode):
    torch.manual_seed(1)
    check_rule(OutputSize(), (torch.randn(B, 2, 7, 6),), fast_path=["down", "up"])


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_unfold_matches_the_convolution(nd):
    # Columns times the flattened weight are the convolution (the 3-D case has no F.unfold).
    torch.manual_seed(2)
    conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[nd - 1](3, 4, 3, stride=2, padding=1, dilation=2, bias=False).double()
    x = torch.randn(2, 3, *(7,) * nd, dtype=torch.float64)
    cols = unfold(x, conv.kernel_size, conv.dilation, conv.padding, conv.stride)
    got = conv.weight.reshape(4, -1) @ cols
    torch.testing.assert_close(got, conv(x).flatten(2))
