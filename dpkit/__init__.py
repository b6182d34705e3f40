"""dpkit: a differential-privacy toolkit.

Three jobs: training models privately (DP-SGD: :class:`PrivacyEngine`), collecting statistics under local
differential privacy (the ``mechanisms`` package), and auditing privacy claims (the ``audits`` package). Privacy is
accounted by the ``accountants`` package (events, RDP and PLD accountants, calibration, budgets); the ``dpkit``
command line is :mod:`dpkit.cli`.

The training names below are imported on first use (PEP 562), so ``import dpkit.accountants`` or the command line
does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dpkit.adaptive_clipping import AdaptiveClipping
    from dpkit.checkpoint import CheckpointError
    from dpkit.data import PoissonBatchSampler
    from dpkit.grad_sample import IncompatibleModuleError
    from dpkit.module_fixer import fix_module
    from dpkit.optimizer import DPOptimizer, NonFiniteGradientWarning
    from dpkit.privacy_engine import PrivacyEngine

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "AdaptiveClipping": "dpkit.adaptive_clipping",
    "CheckpointError": "dpkit.checkpoint",
    "DPOptimizer": "dpkit.optimizer",
    "IncompatibleModuleError": "dpkit.grad_sample",
    "NonFiniteGradientWarning": "dpkit.optimizer",
    "PoissonBatchSampler": "dpkit.data",
    "PrivacyEngine": "dpkit.privacy_engine",
    "fix_module": "dpkit.module_fixer",
}

__all__ = [
    "AdaptiveClipping",
    "CheckpointError",
    "DPOptimizer",
    "IncompatibleModuleError",
    "NonFiniteGradientWarning",
    "PoissonBatchSampler",
    "PrivacyEngine",
    "fix_module",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dpkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # import once; later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
