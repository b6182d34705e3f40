"""Per-example gradients of a weight used as ``out[t] = W @ a[t] (+ b)`` over positions t (Linear, Conv).

Example i's weight gradient is ``G_i^T A_i`` (``A_i``: ``[T, d]`` inputs, ``G_i``: ``[T, p]`` output gradients).
Its squared norm is either ``<A_i A_i^T, G_i G_i^T>`` (ghost / Gram trick, O(T^2) memory per example) or
``||G_i^T A_i||^2`` after instantiating it (O(p d) per example); the cheaper is chosen per layer by
fastDP's rule (:func:`use_ghost`: Gram matrices iff ``2 T^2 <= p d``, i.e. when they take less memory than
the instantiated gradient). For T = 1 the ghost norm is ``||g_i||^2 ||a_i||^2``. The clipped sum is one matmul
``(c * G)^T A`` over all examples (ghost) or one matrix-vector product over the instantiated gradients. A layer
that stores its weight transposed (``[d, p]``, ``out[t] = a[t] @ W``: transformers' Conv1D) has ``transposed=True``:
its gradients are ``A_i^T G_i``, with the same norms.

A FLOP-and-memory cost model that instantiates more layers was measured slower than this rule on CPU (the
measurement is in benchmarks/README.md, "Design measurements").
"""

from __future__ import annotations

import torch

from dpkit.grad_sample.layers.base import Prepared


def use_ghost(t: int, p: int, d: int) -> bool:
    """Gram matrices (True) or instantiation (False) for T positions, p outputs, d inputs per example."""
    return t == 1 or 2 * t * t <= p * d


class MatmulGrads(Prepared):
    """``A``: ``[B, T, d]``, ``G``: ``[B, T, p]`` (``[T, B, *]`` with ``time_major``); ``weight`` / ``bias``:
    parameter names (None: not trained); ``g_sum``: ``sum_t G[:, t]`` when the backward pass formed it
    (``PositionSumRecord.position_sums``); ``same_g_as``: another MatmulGrads of the same ``G`` (its Gram matrices
    are shared); ``transposed``: the weight is stored as ``[d, p]`` (see the module docstring)."""

    def __init__(
        self,
        a: torch.Tensor,
        g: torch.Tensor,
        *,
        weight: str | None,
        bias: str | None,
        weight_shape: torch.Size | None = None,
        g_sum: torch.Tensor | None = None,
        time_major: bool = False,
        same_g_as: MatmulGrads | None = None,
        transposed: bool = False,
    ):
        self.time_major = time_major
        self._a, self._g = a, g  # as given: the clipped sum runs over all positions in their layout, no copy
        self.a, self.g = (a.transpose(0, 1), g.transpose(0, 1)) if time_major else (a, g)  # batch-first views
        self.weight, self.bias = weight, bias
        self.batch, self.t, self.d = self.a.shape
        self.p = g.shape[2]
        self.transposed = transposed
        default_shape = (self.d, self.p) if transposed else (self.p, self.d)
        self.weight_shape = weight_shape if weight_shape is not None else torch.Size(default_shape)
        self.ghost = use_ghost(self.t, self.p, self.d)
        self._ps: torch.Tensor | None = None
        self._gsum: torch.Tensor | None = g_sum  # [B, p]: sum_t g_it, if formed in the backward pass
        self._gsq: torch.Tensor | None = None
        self._gram_g: torch.Tensor | None = None
        self._g_owner = same_g_as

    # ------------------------------------------------------------------ helpers
    def _instantiated(self) -> torch.Tensor:
        if self._ps is None:
            if self.transposed:
                self._ps = torch.bmm(self.a.transpose(1, 2), self.g)  # [B, d, p]
            else:
                self._ps = torch.bmm(self.g.transpose(1, 2), self.a)  # [B, p, d]
        return self._ps

    def _bias_sum(self) -> torch.Tensor:
        if self._gsum is None:
            self._gsum = self.g[:, 0] if self.t == 1 else self.g.sum(1)  # [B, p]
        return self._gsum

    def _g_sq(self) -> torch.Tensor:
        """``||sum_t g_it||^2`` per example: the bias norm, and for T = 1 a factor of the weight norm.

        With the output-gradient Gram matrix at hand (ghost weight norm), it is the sum of its entries
        (``1^T G G^T 1``), which spares a pass over ``G``."""
        if self._gsq is None:
            if self._gram_g is not None and self._gsum is None:
                self._gsq = self._gram_g.sum((1, 2))
            else:
                self._gsq = torch.linalg.vector_norm(self._bias_sum(), dim=1).square_()
        return self._gsq

    def _gram(self) -> torch.Tensor:
        if self._g_owner is not None:
            return self._g_owner._gram()
        if self._gram_g is None:
            self._gram_g = torch.bmm(self.g, self.g.transpose(1, 2))  # [B, T, T]
        return self._gram_g

    # ------------------------------------------------------------------ Prepared
    def select(self, keep: torch.Tensor) -> MatmulGrads:
        kept = MatmulGrads(
            self.a[keep],
            self.g[keep],
            weight=self.weight,
            bias=self.bias,
            weight_shape=self.weight_shape,
            g_sum=None if self._gsum is None else self._gsum[keep],
            transposed=self.transposed,
        )
        kept._ps = None if self._ps is None else self._ps[keep]
        return kept

    def sq_norms(self, name: str) -> torch.Tensor:
        if name == self.bias:
            if self.ghost and self.t > 1 and self.weight is not None:
                self._gram()  # shared with the weight's norm
            return self._g_sq()
        if not self.ghost:
            return torch.linalg.vector_norm(self._instantiated(), dim=(1, 2)).square_()
        if self.t == 1:  # rank one: ||g_i a_i^T||^2 = ||g_i||^2 ||a_i||^2
            return torch.linalg.vector_norm(self.a[:, 0], dim=1).square_().mul_(self._g_sq())
        ga = torch.bmm(self.a, self.a.transpose(1, 2))
        return torch.linalg.vecdot(ga.view(self.batch, -1), self._gram().view(self.batch, -1))

    def per_sample(self, name: str) -> torch.Tensor:
        if name == self.bias:
            return self._bias_sum()
        return self._instantiated().reshape(self.batch, *self.weight_shape)

    def accumulate(self, name: str, factors: torch.Tensor, out: torch.Tensor) -> None:
        factors = factors.to(self.g.dtype)
        if name == self.bias:
            if self._gsum is None and self.t > 1:  # sum_i c_i sum_t g_it in one pass over G
                per_row = factors.repeat(self.t) if self.time_major else factors.repeat_interleave(self.t)
                out.view(-1).addmv_(self._g.reshape(-1, self.p).t(), per_row)
            else:
                out.view(-1).addmv_(self._bias_sum().t(), factors)
            return
        if self._ps is not None:  # already instantiated: a matrix-vector product over the examples
            out.view(-1).addmv_(self._ps.reshape(self.batch, -1).t(), factors)
            return
        # (c * G)^T A as one matmul over all positions; scale whichever of G, A is smaller.
        a, g = self._a, self._g
        per_example = factors.view(1, -1, 1) if self.time_major else factors.view(-1, 1, 1)
        if self.p <= self.d:
            g = g * per_example
        else:
            a = a * per_example
        if self.transposed:
            out.view(self.d, self.p).addmm_(a.reshape(-1, self.d).t(), g.reshape(-1, self.p))
        else:
            out.view(self.p, self.d).addmm_(g.reshape(-1, self.p).t(), a.reshape(-1, self.d))
