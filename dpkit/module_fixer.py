"""``fix_module``: make a model trainable with per-example clipping by replacing layers that mix examples.

BatchNorm normalizes each channel over the batch, so one example's output depends on every other example: its
per-example gradient is not defined and clipping it would not bound one example's influence. It is replaced by a
normalization over each example alone:

* ``BatchNorm1d`` (input ``[B, C]`` or ``[B, C, L]``) by ``GroupNorm(1, C)``: each example normalized over all of its
  channels (and positions), with a per-channel affine map, like LayerNorm. One group is the only choice that
  normalizes ``[B, C]`` features: with ``g > 1`` groups every group of ``C / g`` features is normalized on its own,
  and with ``g = C`` (what ``GroupNorm(gcd(32, C), C)`` gives for C = 8, 16, 32) each feature alone, which makes
  the layer's output its bias, whatever the input.
* ``BatchNorm2d`` / ``BatchNorm3d`` (and lazy or SyncBatchNorm of those ranks) by ``GroupNorm(gcd(32, C), C)``
  (Wu and He, "Group Normalization", ECCV 2018; also Opacus' choice): each group normalizes its channels over the
  spatial positions, so even one channel per group sees ``H x W`` values.
* ``InstanceNorm`` that tracks running statistics by the same layer without them (the running statistics mix
  examples in evaluation mode only, but are updated from the batch in training).

Every replacement is reported: a :class:`ModuleFixedWarning` lists each replaced layer's path, what it was and
what it became.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from torch import nn


class ModuleFixedWarning(UserWarning):
    """``fix_module`` replaced layers (the message names each one)."""


def _moved(new: nn.Module, old: nn.Module) -> nn.Module:
    p = next(old.parameters(), None)
    if p is None:
        p = next((b for b in old.buffers() if b.is_floating_point()), None)
    return new if p is None else new.to(p.device, p.dtype)


def _group_norm_for(bn: nn.modules.batchnorm._NormBase) -> nn.GroupNorm:
    channels = bn.num_features
    if channels <= 0:  # a lazy BatchNorm that has not seen input yet
        raise ValueError(
            f"{type(bn).__name__} has no number of features yet (a lazy module): run one forward pass before "
            "dpkit.fix_module, or construct the model with the number of features"
        )
    one_d = isinstance(bn, nn.BatchNorm1d | nn.LazyBatchNorm1d)
    groups = 1 if one_d else math.gcd(32, channels)
    gn = nn.GroupNorm(groups, channels, eps=bn.eps, affine=bn.affine)
    return _moved(gn, bn)  # type: ignore[return-value]


def _instance_norm_without_stats(m: nn.modules.instancenorm._InstanceNorm) -> nn.Module:
    options: dict[str, Any] = {"eps": m.eps, "momentum": m.momentum, "affine": m.affine}
    new = type(m)(m.num_features, **options, track_running_stats=False)
    return _moved(new, m)


def _replacement(m: nn.Module) -> nn.Module | None:
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return _group_norm_for(m)
    if isinstance(m, nn.modules.instancenorm._InstanceNorm) and m.track_running_stats:
        return _instance_norm_without_stats(m)
    return None


def _describe(m: nn.Module) -> str:
    if isinstance(m, nn.GroupNorm):
        return f"GroupNorm({m.num_groups}, {m.num_channels})"
    return f"{type(m).__name__}({getattr(m, 'num_features', '')}, track_running_stats=False)"


def fix_module(module: nn.Module) -> nn.Module:
    """Replace, in place, every BatchNorm by a GroupNorm that normalizes each example alone (``BatchNorm1d``: one
    group; 2-D and 3-D: gcd(32, C) groups; same eps and affine; see the module docstring) and every InstanceNorm
    that tracks running statistics by one that does not. Returns the module (a new one if the root itself was
    replaced) and warns (:class:`ModuleFixedWarning`) with the list of replacements. The replacements are freshly
    initialized: fix the model before training it."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    done: list[str] = []

    def fix(m: nn.Module, path: str) -> nn.Module | None:
        new = _replacement(m)
        if new is not None:
            done.append(f"{path or '<root>'}: {type(m).__name__}({getattr(m, 'num_features', '')}) -> {_describe(new)}")
            return new
        for name, child in list(m.named_children()):
            replaced = fix(child, f"{path}.{name}" if path else name)
            if replaced is not None:
                setattr(m, name, replaced)
        return None

    root = fix(module, "")
    if done:
        warnings.warn(
            f"dpkit.fix_module replaced {len(done)} layer(s) that mix examples: " + "; ".join(done),
            ModuleFixedWarning,
            stacklevel=2,
        )
    return module if root is None else root


__all__ = ["ModuleFixedWarning", "fix_module"]
