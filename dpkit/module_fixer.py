"""``fix_module``: make a model trainable with per-example clipping by replacing layers that mix examples."""

from __future__ import annotations

import math
from typing import Any

from torch import nn


def _group_norm_for(bn: nn.modules.batchnorm._BatchNorm) -> nn.GroupNorm:
    channels = bn.num_features
    groups = math.gcd(32, channels)
    gn = nn.GroupNorm(groups, channels, eps=bn.eps, affine=bn.affine)
    return gn.to(device=bn.weight.device if bn.affine else None, dtype=bn.weight.dtype if bn.affine else None)


def _instance_norm_without_stats(m: nn.modules.instancenorm._InstanceNorm) -> nn.Module:
    options: dict[str, Any] = {"eps": m.eps, "momentum": m.momentum, "affine": m.affine}
    new = type(m)(m.num_features, **options, track_running_stats=False)
    if m.affine:
        new.load_state_dict({"weight": m.weight.detach(), "bias": m.bias.detach()})
    return new


def _replacement(m: nn.Module) -> nn.Module | None:
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return _group_norm_for(m)
    if isinstance(m, nn.modules.instancenorm._InstanceNorm) and m.track_running_stats:
        return _instance_norm_without_stats(m)
    return None


def fix_module(module: nn.Module) -> nn.Module:
    """Replace, in place, every BatchNorm by GroupNorm (gcd(32, C) groups, same eps and affine) and every
    InstanceNorm that tracks running statistics by one that does not. Returns the module (a new one if the
    root itself was replaced). The replacements are freshly initialized: fix the model before training it.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    root = _replacement(module)
    if root is not None:
        return root
    for name, child in list(module.named_children()):
        new = _replacement(child)
        if new is not None:
            setattr(module, name, new)
        else:
            fix_module(child)
    return module
