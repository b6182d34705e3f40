"""Which modules per-example gradients cannot handle, and why (with the fix), named by their path in the
model; and the error of a step whose batch dimension is not the examples (:class:`BatchDimensionError`).

Checks are registered per module type with :func:`register_module_check`; a check returns ``None`` (fine) or a
``(reason, fix)`` pair. :func:`check_module` raises :class:`IncompatibleModuleError` listing every problem. One
check is on the model itself: every engine reads the batch from the first dimension of the model's input, so a
model that is a stock module reading sequence-first input (``batch_first=False``) is refused (its examples would be
split along time, silently).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

Check = Callable[[nn.Module], "tuple[str, str] | None"]
_CHECKS: list[tuple[type[nn.Module], Check]] = []

# Stock modules with a batch_first switch, and where each keeps it (the transformer layers on self_attn).
_BATCH_FIRST: dict[type[nn.Module], Callable[[Any], bool]] = {
    nn.MultiheadAttention: lambda m: m.batch_first,
    nn.RNNBase: lambda m: m.batch_first,
    nn.Transformer: lambda m: m.batch_first,
    nn.TransformerEncoderLayer: lambda m: m.self_attn.batch_first,
    nn.TransformerDecoderLayer: lambda m: m.self_attn.batch_first,
    nn.TransformerEncoder: lambda m: m.layers[0].self_attn.batch_first,
    nn.TransformerDecoder: lambda m: m.layers[0].self_attn.batch_first,
}


def sequence_first(module: nn.Module) -> bool:
    """Whether ``module`` is a stock module set to read sequence-first input (``batch_first=False``)."""
    read = next((f for cls, f in _BATCH_FIRST.items() if isinstance(module, cls)), None)
    return read is not None and not read(module)


class IncompatibleModuleError(ValueError):
    """The module contains layers whose per-example gradients are not defined or not computable."""

    def __init__(self, problems: list[tuple[str, nn.Module, str, str]]):
        self.problems = problems
        lines = [
            f"  - {path or '<root>'} ({type(m).__name__}): {reason}. Fix: {fix}" for path, m, reason, fix in problems
        ]
        super().__init__(
            f"{len(problems)} module(s) cannot be trained with per-example gradient clipping:\n" + "\n".join(lines)
        )


SEQUENCE_FIRST_FIX = (
    "build the sequence layers with batch_first=True (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer, "
    "nn.MultiheadAttention, nn.LSTM / nn.GRU / nn.RNN) and call the model on [batch, T, ...] inputs; or call a "
    "sequence-first model through a wrapper module whose forward takes [batch, T, ...] and transposes inside, with "
    "PrivacyEngine(grad_sample_engine='functorch') (which runs every example alone)"
)


class BatchDimensionError(ValueError):
    """The dimension the per-sample gradient engine clips over is not the examples of the batch the loader drew:
    each clipped row would not be one example, and the privacy guarantee would not hold."""


def register_module_check(module_type: type[nn.Module]):
    """Decorator: ``check(module) -> (reason, fix) | None`` for each submodule of type ``module_type``."""

    def deco(fn: Check) -> Check:
        _CHECKS.append((module_type, fn))
        return fn

    return deco


def incompatible_modules(module: nn.Module) -> list[tuple[str, nn.Module, str, str]]:
    """``[(path, submodule, reason, fix), ...]`` for every problem found."""
    problems = []
    if sequence_first(module):
        problems.append(
            (
                "",
                module,
                "it reads sequence-first input (batch_first=False), but per-example gradients split the batch along "
                "the first dimension of the model's input",
                "construct it with batch_first=True, or call it from a module that takes batch-first input and "
                "transposes it",
            )
        )
    for path, sub in module.named_modules():
        for cls, check in _CHECKS:
            if isinstance(sub, cls):
                found = check(sub)
                if found is not None:
                    problems.append((path, sub, *found))
    return problems


def check_module(module: nn.Module) -> None:
    problems = incompatible_modules(module)
    if problems:
        raise IncompatibleModuleError(problems)


@register_module_check(nn.modules.batchnorm._BatchNorm)
def _batch_norm(m: nn.Module):
    return (
        "batch normalization mixes the examples of a batch (batch statistics), so an example's gradient "
        "depends "
        "on the other examples and its contribution cannot be bounded",
        "call dpkit.fix_module(model) to replace every BatchNorm by GroupNorm (or use LayerNorm/GroupNorm)",
    )


@register_module_check(nn.modules.instancenorm._InstanceNorm)
def _instance_norm(m: nn.Module):
    if m.track_running_stats:
        return (
            "track_running_stats=True updates running statistics from the whole batch",
            "construct it with track_running_stats=False, or call dpkit.fix_module(model)",
        )
    return None
