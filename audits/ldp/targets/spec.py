"""TARGET strings: ``resolve(spec, k=..., epsilon=...)`` builds the target a string names.

* ``dpkit:NAME``: a frequency oracle (GRR, SUE, OUE, BLH, OLH, SS, SHE, THE, HR, HR-general, ADP; the
  (epsilon, delta)-LDP AGRR, ASUE, ABLH, AOLH, GM and AGM at the given ``delta``), ``BoundedGaussian`` (the local
  Gaussian mechanism on the range [0, k - 1], audited at its ends; (epsilon, delta)-LDP), a longitudinal
  protocol (L-GRR, L-SUE, L-OUE, L-OSUE, L-SOUE, dBitFlipPM, LOLOHA; over ``tau`` reports of a constant value, with the
  memo kept in a :class:`dpkit.mechanisms.longitudinal.ClientPopulation`), or a multidimensional one
  (``RS+FD[GRR|OUE-z|OUE-r|SUE-z|SUE-r]``, ``SPL[FO]``, ``SMP[FO]``; ``d`` attributes of domain ``k``; ``scope``
  'tuple' (all attributes change) or 'attribute' (attribute 0 changes)), or a heavy-hitter or range-query client
  (``PEM``, ``TAP``, ``TreeHist[prefix|whole-key]``, ``SFP[fragment|whole-key]`` over ``bits``-bit keys; ``Flat``,
  ``HH``, ``HaarHRR``, ``HIO`` over [0, k) (HIO: ``d`` attributes), with an optional ``[ORACLE]`` and ``branching``;
  ``HaarLevel``, ``CandidateHashing``; see :mod:`.clients`).
* ``multi-freq-ldpy:NAME`` (GRR, SUE, OUE, BLH, OLH, SS, SHE, THE) and ``pure-ldp:NAME`` (GRR, SUE, OUE, BLH, OLH,
  SHE, THE): the library's own per-user client, imported only when asked. These are Python loops (far slower per
  report), so their default is ``ANCHOR_TRIALS`` trials, not 1e6. Their clients are epsilon-LDP: a nonzero
  ``delta`` is refused.
* ``package.module:callable``: any function ``f(value) -> report`` (an int, or a length-k vector of bits or
  floats); the user declares epsilon, delta and k. Its event is chosen on a training split (no model is known).
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from typing import Any

from dpkit.audits.ldp.targets.anchors import ANCHOR_PROTOCOLS, AnchorTarget
from dpkit.audits.ldp.targets.base import Target
from dpkit.audits.ldp.targets.clients import CLIENT_NAMES, client_target
from dpkit.audits.ldp.targets.functions import CallableTarget
from dpkit.audits.ldp.targets.longitudinal import LongitudinalTarget
from dpkit.audits.ldp.targets.multidimensional import MultidimensionalTarget
from dpkit.audits.ldp.targets.numeric import NumericTarget
from dpkit.audits.ldp.targets.protocol import ProtocolTarget
from dpkit.mechanisms.frequency_oracles import APPROXIMATE_ORACLES, FREQUENCY_ORACLES, make_oracle
from dpkit.mechanisms.gaussian import BoundedGaussian
from dpkit.mechanisms.longitudinal import LONGITUDINAL_PROTOCOLS, LongitudinalProtocol
from dpkit.mechanisms.multidimensional import RSFD, SMP, SPL, MultidimensionalProtocol

__all__ = ["resolve", "dpkit_protocol_names", "MULTIDIMENSIONAL_NAMES", "NUMERIC_NAMES"]

MULTIDIMENSIONAL_NAMES = (
    "RS+FD[GRR]",
    "RS+FD[OUE-z]",
    "RS+FD[OUE-r]",
    "RS+FD[SUE-z]",
    "RS+FD[SUE-r]",
    "SPL[GRR]",
    "SPL[OUE]",
    "SMP[GRR]",
    "SMP[OUE]",
)

NUMERIC_NAMES = ("BoundedGaussian",)


def dpkit_protocol_names() -> list[str]:
    """Every LDP protocol dpkit ships, read from the mechanisms registries (new ones are picked up)."""
    return [*FREQUENCY_ORACLES, *APPROXIMATE_ORACLES, *NUMERIC_NAMES, *LONGITUDINAL_PROTOCOLS, *MULTIDIMENSIONAL_NAMES]


_MD = re.compile(r"^(RS\+?FD|SPL|SMP)[\[\-_:]?([A-Za-z\-]+)\]?$", re.IGNORECASE)


def _longitudinal(
    cls: type[LongitudinalProtocol], k: int, epsilon: float, eps_1: float | None, calibration: str
) -> LongitudinalProtocol:
    """The protocol at budget ``epsilon`` (eps_perm; eps_1 = epsilon / 2 unless given, for the protocols with a
    separate per-report budget) and ``calibration`` (for the protocols that have one), from its fields."""
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]  # protocols are dataclasses
    if "eps_1" not in fields:
        return cls(k, epsilon)  # type: ignore[call-arg]  # (k, epsilon, ...) as dBitFlipPM
    kw = {"calibration": calibration} if "calibration" in fields else {}
    return cls(k, epsilon, epsilon / 2 if eps_1 is None else eps_1, **kw)  # type: ignore[call-arg]


def _dpkit(
    name: str,
    k: int,
    epsilon: float,
    delta: float = 0.0,
    *,
    eps_1: float | None = None,
    tau: int = 10,
    d: int = 3,
    scope: str = "tuple",
    calibration: str = "paper",
    bits: int | None = None,
    branching: int | None = None,
) -> Target:
    key = name.upper().replace("_", "-")
    approximate = {n.upper(): n for n in (*APPROXIMATE_ORACLES, *NUMERIC_NAMES)}
    if key in approximate:
        if approximate[key] in NUMERIC_NAMES:
            return NumericTarget(BoundedGaussian(epsilon, delta, 0.0, float(k - 1)), k=k)
        return ProtocolTarget(make_oracle(key, k, epsilon, delta=delta), name=f"dpkit:{approximate[key]}")
    if delta != 0:
        raise ValueError(
            f"delta={delta!r} applies to the (epsilon, delta)-LDP protocols ({', '.join(approximate.values())}); "
            f"{name} is epsilon-LDP (delta = 0)"
        )
    fos = {n.upper(): n for n in FREQUENCY_ORACLES}
    if key in fos or key in ("ADP", "ADAPTIVE", "AUTO"):
        return ProtocolTarget(make_oracle(key, k, epsilon), name=f"dpkit:{fos.get(key, 'ADP')}")
    longs = {n.upper().replace("_", "-"): n for n in LONGITUDINAL_PROTOCOLS}
    if key in longs:
        proto = _longitudinal(LONGITUDINAL_PROTOCOLS[longs[key]], k, epsilon, eps_1, calibration)
        return LongitudinalTarget(proto, tau, name=f"dpkit:{longs[key]}")
    client = client_target(name, k, epsilon, bits=bits, branching=branching, d=d, scope=scope)
    if client is not None:
        return client
    m = _MD.match(name.strip())
    if m:
        kind, fo = m.group(1).upper().replace("+", ""), m.group(2)
        sizes = (k,) * d
        md: MultidimensionalProtocol
        if kind == "RSFD":
            fo_name = {"GRR": "GRR", "OUE-Z": "OUE-z", "OUE-R": "OUE-r", "SUE-Z": "SUE-z", "SUE-R": "SUE-r"}.get(
                fo.upper()
            )
            if fo_name is None:
                raise ValueError(f"RS+FD protocol must be one of GRR, OUE-z, OUE-r, SUE-z, SUE-r, got {fo!r}")
            md = RSFD(sizes, epsilon, fo_name)
        else:
            md = (SPL if kind == "SPL" else SMP)(sizes, epsilon, fo.upper())
        return MultidimensionalTarget(md, scope=scope)
    names = ", ".join([*dpkit_protocol_names(), *CLIENT_NAMES])
    raise ValueError(f"unknown dpkit protocol {name!r}; choose one of {names}")


def resolve(spec: str, *, k: int, epsilon: float, delta: float = 0.0, **options: Any) -> Target:
    """Build a target from a TARGET string (see the module docstring). ``delta``: the claimed delta of a callable,
    or of a dpkit (epsilon, delta)-LDP protocol (0 for the others and for the anchors). ``options``: eps_1, tau, d,
    scope, calibration, bits, branching for dpkit protocols."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(
            f"target must be dpkit:PROTOCOL, multi-freq-ldpy:PROTOCOL, pure-ldp:PROTOCOL or "
            f"package.module:callable, got {spec!r}"
        )
    prefix, _, name = spec.partition(":")
    if prefix == "dpkit":
        return _dpkit(name, k, epsilon, delta, **options)
    if prefix in ANCHOR_PROTOCOLS:
        return AnchorTarget(prefix, name, k, epsilon, delta)
    try:
        module = importlib.import_module(prefix)
    except ImportError as err:
        raise ValueError(f"cannot import module {prefix!r} of target {spec!r}: {err}") from None
    func: Any = module
    for part in name.split("."):
        if not hasattr(func, part):
            raise ValueError(f"module {prefix!r} has no attribute {name!r} (target {spec!r})")
        func = getattr(func, part)
    return CallableTarget(func, k, epsilon, delta, name=spec)
