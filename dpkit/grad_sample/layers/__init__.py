"""Layer rules of the book-keeping engine, one file per layer family (see :mod:`.base`), and the records of
layer calls they make (:mod:`.records`).

A new layer type = one file defining a :class:`LayerRule` subclass decorated with
``@register_layer_rule(ModuleType)``, imported here.
"""

from dpkit.grad_sample.layers import (  # noqa: F401  (registration)
    attention,
    bilinear,
    conv,
    embedding,
    embedding_bag,
    linear,
    norms,
    recurrent,
    transformers_conv1d,
)
from dpkit.grad_sample.layers.base import (
    AnyRule,
    ByName,
    Instantiated,
    LayerRule,
    Prepared,
    RowBlocks,
    register_layer_rule,
    registered_layer_types,
    rule_for,
)
from dpkit.grad_sample.layers.records import (
    GradRecord,
    PositionSumRecord,
    Record,
    ReducedRecord,
    Tap,
    TapFn,
)

__all__ = [
    "AnyRule",
    "ByName",
    "GradRecord",
    "Instantiated",
    "LayerRule",
    "PositionSumRecord",
    "Prepared",
    "Record",
    "ReducedRecord",
    "RowBlocks",
    "Tap",
    "TapFn",
    "register_layer_rule",
    "registered_layer_types",
    "rule_for",
]
