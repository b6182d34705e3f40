"""Audit targets: what the game runs. dpkit protocols, the anchor libraries, or any user function.

One module per kind of target: :mod:`.protocol` (a frequency oracle), :mod:`.longitudinal` (tau reports of a
longitudinal protocol), :mod:`.multidimensional` (a tuple of attributes), :mod:`.numeric` (a bounded number),
:mod:`.anchors` (multi-freq-ldpy and pure-LDP clients), :mod:`.levels` (level-sampled clients: range queries and
heavy hitters; their TARGET names in :mod:`.clients`), :mod:`.functions` (any ``f(value) -> report``), the common
base :mod:`.base`, :mod:`.spec`, which builds a target from a TARGET string (``resolve``), and :mod:`.registry`,
whose ``audit_targets(protocol)`` gives the targets of a dpkit protocol object (registered per class). The attacks a
target runs are the ones registered for its protocol's class in :mod:`dpkit.audits.ldp.attacks`.
"""

from dpkit.audits.ldp.targets.anchors import ANCHOR_PROTOCOLS, ANCHOR_TRIALS, AnchorTarget
from dpkit.audits.ldp.targets.base import DEFAULT_TRIALS, Target
from dpkit.audits.ldp.targets.clients import CLIENT_NAMES
from dpkit.audits.ldp.targets.functions import CallableTarget
from dpkit.audits.ldp.targets.levels import LevelTarget
from dpkit.audits.ldp.targets.longitudinal import LongitudinalTarget
from dpkit.audits.ldp.targets.multidimensional import MultidimensionalTarget
from dpkit.audits.ldp.targets.numeric import NumericTarget
from dpkit.audits.ldp.targets.protocol import ProtocolTarget
from dpkit.audits.ldp.targets.registry import audit_targets
from dpkit.audits.ldp.targets.spec import MULTIDIMENSIONAL_NAMES, NUMERIC_NAMES, dpkit_protocol_names, resolve

__all__ = [
    "Target",
    "ProtocolTarget",
    "LongitudinalTarget",
    "MultidimensionalTarget",
    "NumericTarget",
    "AnchorTarget",
    "CallableTarget",
    "LevelTarget",
    "audit_targets",
    "resolve",
    "dpkit_protocol_names",
    "MULTIDIMENSIONAL_NAMES",
    "NUMERIC_NAMES",
    "CLIENT_NAMES",
    "ANCHOR_PROTOCOLS",
    "ANCHOR_TRIALS",
    "DEFAULT_TRIALS",
]
