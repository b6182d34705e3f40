"""Per-example gradients of a weight used as ``out[t] = W @ a[t] (+ b)`` over positions t (Linear, Conv).

Example i's weight gradient is ``G_i^T A_i`` (``A_i``: ``[T, d]`` inputs, ``G_i``: ``[T, p]`` output gradients).
Its squared norm is either ``<A_i A_i^T, G_i G_i^T>`` (ghost / Gram trick, O(T^2) memory per example) or
``||G_i^T A_i||^2`` after instantiating it (O(p d) per example); the cheaper is chosen per layer by
fastDP's rule (:func:`use_ghost`: Gram matrices iff ``2 T^2 <= p d``, i.e. when they take less memory than
the instantiated gradient). For T = 1 the ghost norm is ``||g_i||^2 ||a_i||^2``. The clipped sum is one matmul
``(c * G)^T A`` over all examples (ghost) or one matrix-vector product over the instantiated gradients.

Measured on the 2-core CPU of benchmarks/training.py (tiny transformer, T = 64): a FLOP-and-memory cost model
that instantiates the 128x128 and 128x512 projections was slower than this rule (1.33x vs 1.26x of non-private
in interleaved runs): streaming instantiated gradients through memory costs more than the Gram matrices.
"""

from __future__ import annotations

import torch

from dpkit.grad_sample.layers.base import Prepared


def use_ghost(t: int, p: int, d: int) -> bool:
    """Gram matrices (True) or instantiation (False) for T positions, p outputs, d inputs per example."""
    return t == 1 or 2 * t * t <= p * d


class MatmulGrads(Prepared):
    """``A``: ``[B, T, d]``, ``G``: ``[B, T, p]``; ``weight`` / ``bias``: parameter names (None: not trained)."""

    def __init__(
        self,
        a: torch.Tensor,
        g: torch.Tensor,
        *,
        weight: str | None,
        bias: str | None,
        weight_shape: torch.Size | None = None,
    ):
        self.a, self.g = a, g
        self.weight, self.bias = weight, bias
        self.batch, self.t, self.d = a.shape
        self.p = g.shape[2]
        self.weight_shape = weight_shape if weight_shape is not None else torch.Size((self.p, self.d))
        self.ghost = use_ghost(self.t, self.p, self.d)
        self._ps: torch.Tensor | None = None
        self._gsum: torch.Tensor | None = None

    # ------------------------------------------------------------------ helpers
    def _instantiated(self) -> torch.Tensor:
        if self._ps is None:
            self._ps = torch.bmm(self.g.transpose(1, 2), self.a)  # [B, p, d]
        return self._ps

    def _bias_sum(self) -> torch.Tensor:
        if self._gsum is None:
            self._gsum = self.g.sum(1)  # [B, p]
        return self._gsum

    # ------------------------------------------------------------------ Prepared
    def sq_norms(self, name: str) -> torch.Tensor:
        if name == self.bias:
            s = self._bias_sum()
            return (s * s).sum(1)
        if not self.ghost:
            ps = self._instantiated()
            return (ps * ps).sum((1, 2))
        if self.t == 1:
            a, g = self.a[:, 0], self.g[:, 0]
            return (a * a).sum(1) * (g * g).sum(1)
        ga = torch.bmm(self.a, self.a.transpose(1, 2))
        gg = torch.bmm(self.g, self.g.transpose(1, 2))
        return (ga * gg).sum((1, 2))

    def per_sample(self, name: str) -> torch.Tensor:
        if name == self.bias:
            return self._bias_sum()
        return self._instantiated().reshape(self.batch, *self.weight_shape)

    def accumulate(self, name: str, factors: torch.Tensor, out: torch.Tensor) -> None:
        factors = factors.to(self.g.dtype)
        if name == self.bias:
            out.view(-1).addmv_(self._bias_sum().t(), factors)
            return
        if self._ps is not None:  # already instantiated: a matrix-vector product over the examples
            out.view(-1).addmv_(self._ps.reshape(self.batch, -1).t(), factors)
            return
        # (c * G)^T A as one matmul; scale whichever of G, A is smaller.
        a, g = self.a, self.g
        if self.p <= self.d:
            g = g * factors.view(-1, 1, 1)
        else:
            a = a * factors.view(-1, 1, 1)
        out.view(self.p, self.d).addmm_(g.reshape(-1, self.p).t(), a.reshape(-1, self.d))
