"""dpkit: a differential-privacy toolkit.

dpkit is meant for three jobs: training models privately (DP-SGD and its successors), collecting statistics
under local differential privacy, and auditing privacy claims. Today it ships the privacy accounting (the
top-level ``accountants`` package: events, RDP and PLD accountants, calibration, budgets), the ``dpkit``
command line (:mod:`dpkit.cli`) and the accounting report behind ``dpkit demo`` (:mod:`dpkit.report`); private
training, the local-DP protocols (``mechanisms``) and the audits (``audits``) are on the roadmap.
"""

__version__ = "0.1.0"
