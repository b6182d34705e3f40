"""Layer rules of the book-keeping engine, one file per layer family (see :mod:`.base`).

A new layer type = one file defining a :class:`LayerRule` subclass decorated with
``@register_layer_rule(ModuleType)``, imported here.
"""

from dpkit.grad_sample.layers import conv, embedding, linear, norms  # noqa: F401  (registration)
from dpkit.grad_sample.layers.base import (
    Instantiated,
    LayerRule,
    Prepared,
    Record,
    Tap,
    register_layer_rule,
    registered_layer_types,
    rule_for,
)

__all__ = [
    "Instantiated",
    "LayerRule",
    "Prepared",
    "Record",
    "Tap",
    "register_layer_rule",
    "registered_layer_types",
    "rule_for",
]
