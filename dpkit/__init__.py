"""dpkit: a differential-privacy toolkit.

Three jobs: training models privately (DP-SGD: :class:`PrivacyEngine`), collecting statistics under local
differential privacy (the ``mechanisms`` package), and auditing privacy claims (the ``audits`` package). Privacy is
accounted by the ``accountants`` package (events, RDP and PLD accountants, calibration, budgets); the ``dpkit``
command line is :mod:`dpkit.cli`.
"""

from dpkit.data import PoissonBatchSampler
from dpkit.grad_sample import IncompatibleModuleError
from dpkit.module_fixer import fix_module
from dpkit.optimizer import DPOptimizer
from dpkit.privacy_engine import PrivacyEngine

__version__ = "0.1.0"

__all__ = ["DPOptimizer", "IncompatibleModuleError", "PoissonBatchSampler", "PrivacyEngine", "fix_module"]
