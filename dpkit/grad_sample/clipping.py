"""Clipping policies: per-example clip factors from per-example, per-parameter squared gradient norms.

Engines compute, for a chunk of ``b`` examples and the ``L`` trainable parameter tensors, the squared norms
``sq[i, l] = ||g_{i,l}||^2`` and ask the policy for factors ``c[i, l]``; the clipped sum is
``sum_i c[i, l] * g_{i,l}``. The L2 sensitivity of that sum (one example added or removed) is ``sensitivity``.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence

import torch

from dpkit.accountants.validation import check_positive

# Added to the norm before dividing (as Opacus does): keeps factors finite for zero gradients and guarantees a
# clipped norm strictly below the threshold.
NORM_EPS = 1e-6


class ClippingPolicy(abc.ABC):
    """Maps squared per-example, per-parameter norms ``[b, L]`` to clip factors ``[b, L]`` in [0, 1]."""

    @property
    @abc.abstractmethod
    def sensitivity(self) -> float:
        """L2 norm bound of one example's clipped contribution (all parameters together)."""

    @abc.abstractmethod
    def factors(self, sq_norms: torch.Tensor) -> torch.Tensor:
        """Clip factors for squared norms ``sq_norms`` of shape ``[b, L]``."""


class FlatClipping(ClippingPolicy):
    """Clip each example's whole gradient (all parameters concatenated) to norm ``max_grad_norm``."""

    def __init__(self, max_grad_norm: float):
        self.max_grad_norm = check_positive("max_grad_norm", max_grad_norm)

    @property
    def sensitivity(self) -> float:
        return self.max_grad_norm

    def factors(self, sq_norms: torch.Tensor) -> torch.Tensor:
        total = sq_norms.sum(dim=1, keepdim=True).sqrt()
        return (self.max_grad_norm / (total + NORM_EPS)).clamp(max=1.0).expand_as(sq_norms)

    def __repr__(self) -> str:
        return f"FlatClipping(max_grad_norm={self.max_grad_norm:g})"


class PerLayerClipping(ClippingPolicy):
    """Clip each parameter tensor of each example separately, to its own threshold.

    ``max_grad_norm`` is either one number C, split evenly over the L parameter tensors (each gets C /
    sqrt(L), so the total sensitivity is C), or one threshold per parameter tensor (sensitivity sqrt(sum
    C_l^2)).
    """

    def __init__(self, max_grad_norm: float | Sequence[float], num_params: int):
        if num_params < 1:
            raise ValueError(f"num_params must be >= 1, got {num_params}")
        if isinstance(max_grad_norm, Sequence) and not isinstance(max_grad_norm, str):
            if len(max_grad_norm) != num_params:
                raise ValueError(
                    f"max_grad_norm has {len(max_grad_norm)} per-layer thresholds but there are {num_params} "
                    "trainable parameter tensors; give one number or one threshold per parameter tensor"
                )
            self.thresholds = [check_positive(f"max_grad_norm[{i}]", c) for i, c in enumerate(max_grad_norm)]
        else:
            c = check_positive("max_grad_norm", max_grad_norm)
            self.thresholds = [c / math.sqrt(num_params)] * num_params
        self._sensitivity = math.sqrt(sum(c * c for c in self.thresholds))

    @property
    def sensitivity(self) -> float:
        return self._sensitivity

    def factors(self, sq_norms: torch.Tensor) -> torch.Tensor:
        c = torch.tensor(self.thresholds, dtype=sq_norms.dtype, device=sq_norms.device)
        return (c / (sq_norms.sqrt() + NORM_EPS)).clamp(max=1.0)

    def __repr__(self) -> str:
        return f"PerLayerClipping({len(self.thresholds)} thresholds, sensitivity={self.sensitivity:g})"
