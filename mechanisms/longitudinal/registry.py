"""The longitudinal protocols by name (a new protocol is one module in this package plus one entry here)."""

from __future__ import annotations

from dpkit.mechanisms.longitudinal.base import LongitudinalProtocol
from dpkit.mechanisms.longitudinal.dbitflip import DBitFlipPM
from dpkit.mechanisms.longitudinal.grr import LGRR
from dpkit.mechanisms.longitudinal.loloha import LOLOHA
from dpkit.mechanisms.longitudinal.unary_encoding import LOSUE, LOUE, LSOUE, LSUE

__all__ = ["LONGITUDINAL_PROTOCOLS"]

LONGITUDINAL_PROTOCOLS: dict[str, type[LongitudinalProtocol]] = {
    "L-GRR": LGRR,
    "L-SUE": LSUE,
    "L-OUE": LOUE,
    "L-OSUE": LOSUE,
    "L-SOUE": LSOUE,
    "dBitFlipPM": DBitFlipPM,
    "LOLOHA": LOLOHA,
}
