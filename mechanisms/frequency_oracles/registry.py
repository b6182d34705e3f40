"""The frequency oracles by name, and the adaptive chooser (least approximate variance for (k, epsilon)).

A new frequency oracle is one module in this package plus one entry in :data:`FREQUENCY_ORACLES` (epsilon-LDP,
built from (k, epsilon)) or :data:`APPROXIMATE_ORACLES` ((epsilon, delta)-LDP, built from (k, epsilon, delta=...)).
"""

from __future__ import annotations

import math
from typing import Any

from dpkit.mechanisms._validation import check_domain, check_epsilon
from dpkit.mechanisms.base import FrequencyOracle
from dpkit.mechanisms.frequency_oracles.approximate import ABLH, AGRR, AOLH, ASUE
from dpkit.mechanisms.frequency_oracles.gaussian_encoding import AGM, GM
from dpkit.mechanisms.frequency_oracles.grr import GRR
from dpkit.mechanisms.frequency_oracles.hadamard import HadamardResponse, HadamardResponseGeneral
from dpkit.mechanisms.frequency_oracles.histogram_encoding import SHE, THE
from dpkit.mechanisms.frequency_oracles.local_hashing import BLH, OLH
from dpkit.mechanisms.frequency_oracles.refined import ALH, ASS, ATHE, AUE
from dpkit.mechanisms.frequency_oracles.subset_selection import SubsetSelection
from dpkit.mechanisms.frequency_oracles.unary_encoding import OUE, SUE

__all__ = ["FREQUENCY_ORACLES", "APPROXIMATE_ORACLES", "make_oracle", "choose_protocol"]

FREQUENCY_ORACLES: dict[str, type[FrequencyOracle]] = {
    "GRR": GRR,
    "SUE": SUE,
    "OUE": OUE,
    "BLH": BLH,
    "OLH": OLH,
    "SS": SubsetSelection,
    "SHE": SHE,
    "THE": THE,
    "HR": HadamardResponse,
    "HR-general": HadamardResponseGeneral,
    "ASS": ASS,
    "AUE": AUE,
    "ALH": ALH,
    "ATHE": ATHE,
}

#: (epsilon, delta)-LDP frequency oracles (``delta`` is a keyword-only field); not candidates of the chooser.
APPROXIMATE_ORACLES: dict[str, type[FrequencyOracle]] = {
    "AGRR": AGRR,
    "ASUE": ASUE,
    "ABLH": ABLH,
    "AOLH": AOLH,
    "GM": GM,
    "AGM": AGM,
}


def _protocol_key(name: object) -> str:
    return str(name).upper().replace("-", "").replace("_", "")


def make_oracle(name: str, k: int, epsilon: float, **kwargs: Any) -> FrequencyOracle:
    """Instantiate a frequency oracle by name (case-insensitive, '-' and '_' ignored; 'ADP' = the adaptive
    chooser). The approximate-LDP oracles (:data:`APPROXIMATE_ORACLES`) need ``delta=...``."""
    key = _protocol_key(name)
    if key in ("ADP", "ADAPTIVE", "AUTO"):
        return choose_protocol(k, epsilon)
    approximate = {_protocol_key(n): n for n in APPROXIMATE_ORACLES}
    if key in approximate and "delta" not in kwargs:
        raise ValueError(f"{approximate[key]} is an (epsilon, delta)-LDP protocol: give delta=... (its claimed delta)")
    classes = {_protocol_key(n): cls for n, cls in {**FREQUENCY_ORACLES, **APPROXIMATE_ORACLES}.items()}
    if key not in classes:
        names = ", ".join([*FREQUENCY_ORACLES, *APPROXIMATE_ORACLES])
        raise ValueError(f"protocol must be one of {names} or ADP, got {name!r}")
    return classes[key](k, epsilon, **kwargs)  # type: ignore[call-arg]  # every oracle's fields start (k, epsilon)


def choose_protocol(k: int, epsilon: float, candidates: tuple[str, ...] | None = None) -> FrequencyOracle:
    """The frequency oracle of least approximate variance V* for (k, epsilon) among ``candidates``.

    Default candidates: GRR, OUE, OLH, SS, HR, THE, SUE, BLH, SHE (ties go to the earlier, cheaper protocol).
    With candidates=("GRR", "OUE") this is ADP (GRR iff k < 3 e^eps + 2). HR-general is not a default candidate:
    its V* is never the least (see :class:`HadamardResponseGeneral`); name it in ``candidates`` to include it.
    ``k`` and ``epsilon`` are checked first (the shared limits); a candidate that does not exist at this
    (k, epsilon) (OLH beyond epsilon 22.18, whose g would pass 2^32; HR beyond k = 2^31 - 1) is left out, and if
    none exists the error says why for each.
    """
    k = check_domain("k", k)
    epsilon = check_epsilon("epsilon", epsilon)
    names = candidates or ("GRR", "OUE", "OLH", "SS", "HR", "THE", "SUE", "BLH", "SHE")
    if isinstance(names, str) or not names:
        raise ValueError(f"candidates must be a non-empty tuple of protocol names, got {candidates!r}")
    best: FrequencyOracle | None = None
    best_v = math.inf
    unavailable = []
    for name in names:
        try:
            oracle = make_oracle(name, k, epsilon)
        except ValueError as err:
            if _protocol_key(name) not in {_protocol_key(n) for n in FREQUENCY_ORACLES}:
                raise
            unavailable.append(f"{name}: {err}")
            continue
        v = oracle.variance(1)
        if v < best_v * (1 - 1e-12):
            best, best_v = oracle, float(v)
    if best is None:
        raise ValueError(f"no candidate protocol exists at k={k}, epsilon={epsilon}: {'; '.join(unavailable)}")
    return best
