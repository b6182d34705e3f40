"""Per-sample gradient engines: what turns one backward pass into clipped per-example contributions.

An engine is attached to an (unwrapped) module and, at optimizer-step time, returns the sum over the batch of
the clipped per-example gradients (:class:`~dpkit.grad_sample.engine.ClippedSum`). Engines are registered by
name:

* ``"bookkeeping"`` (:class:`BookkeepingEngine`): one ordinary backward pass; per-layer ghost norms or
  instantiation and one weighted matmul per parameter (Book-Keeping); per-layer rules in
  :mod:`dpkit.grad_sample.layers`, torch.func fallback for any other module with parameters.
* ``"functorch"`` (:class:`FunctorchEngine`): generic and exact for every module with parameters, built on
  ``torch.func`` (``functional_call`` + ``vmap`` + ``grad``).
* ``"auto"`` (the default of :class:`~dpkit.PrivacyEngine`): the fastest exact one for the module
  (:func:`select_engine`).

Another engine plugs in with ``@register_engine("name")`` on a :class:`GradSampleEngine` subclass.
"""

from dpkit.grad_sample.bookkeeping_engine import BookkeepingEngine
from dpkit.grad_sample.clipping import ClippingPolicy, FlatClipping, PerLayerClipping
from dpkit.grad_sample.engine import (
    ClippedSum,
    GradSampleEngine,
    available_engines,
    create_engine,
    register_engine,
    select_engine,
)
from dpkit.grad_sample.functorch_engine import FunctorchEngine
from dpkit.grad_sample.validation import (
    IncompatibleModuleError,
    check_module,
    incompatible_modules,
    register_module_check,
)

__all__ = [
    "BookkeepingEngine",
    "ClippedSum",
    "ClippingPolicy",
    "FlatClipping",
    "FunctorchEngine",
    "GradSampleEngine",
    "IncompatibleModuleError",
    "PerLayerClipping",
    "available_engines",
    "check_module",
    "create_engine",
    "incompatible_modules",
    "register_engine",
    "register_module_check",
    "select_engine",
]
