"""Auditing local differential privacy implementations (LDP-Auditor's game, stronger tests).

* :mod:`dpkit.audits.ldp.bounds`: Clopper-Pearson bounds, the epsilon lower bound, the measurable cap, and the
  Neyman-Pearson event chosen from an exact distribution.
* :mod:`dpkit.audits.ldp.attacks`: LDP-Auditor's per-family attacks and the likelihood-ratio statistics, registered
  per protocol class (one registration per new protocol).
* :mod:`dpkit.audits.ldp.targets`: what is audited (dpkit protocols, multi-freq-ldpy, pure-LDP, any callable), and
  ``resolve`` of a TARGET string.
* :mod:`dpkit.audits.ldp.game`: :func:`audit` -> :class:`AuditResult`.
* :mod:`dpkit.audits.ldp.grid`: :func:`run_grid` over (epsilon, k), its confidence joint over the grid
  (:func:`grid_confidence`); :func:`results_frame`.
* :mod:`dpkit.audits.ldp.broken`: randomizers broken the way real libraries broke (regression fixtures).
"""

from dpkit.audits.ldp.bounds import choose_event, cp_lower, cp_upper, epsilon_lower_bound, measurable_cap, side_level
from dpkit.audits.ldp.game import ATTACKS, AuditResult, TestResult, audit
from dpkit.audits.ldp.grid import LDP_AUDITOR_EPSILONS, LDP_AUDITOR_KS, grid_confidence, results_frame, run_grid
from dpkit.audits.ldp.targets import (
    AnchorTarget,
    CallableTarget,
    LevelTarget,
    LongitudinalTarget,
    MultidimensionalTarget,
    ProtocolTarget,
    Target,
    audit_targets,
    dpkit_protocol_names,
    resolve,
)

__all__ = [
    "ATTACKS",
    "LDP_AUDITOR_EPSILONS",
    "LDP_AUDITOR_KS",
    "AnchorTarget",
    "AuditResult",
    "CallableTarget",
    "LevelTarget",
    "audit_targets",
    "LongitudinalTarget",
    "MultidimensionalTarget",
    "ProtocolTarget",
    "Target",
    "TestResult",
    "audit",
    "choose_event",
    "cp_lower",
    "cp_upper",
    "dpkit_protocol_names",
    "epsilon_lower_bound",
    "measurable_cap",
    "resolve",
    "results_frame",
    "run_grid",
    "grid_confidence",
    "side_level",
]
