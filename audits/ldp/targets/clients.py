"""TARGET names of the heavy-hitter and range-query clients: ``client_target(name, ...)`` builds the protocol a name
gives and returns its audit target (:func:`~dpkit.audits.ldp.targets.registry.audit_targets`).

* Heavy hitters over ``bits``-bit keys (default: the fewest bits holding [0, k), so the domain is 2^bits): ``PEM``,
  ``TAP``, and the composed ``TreeHist`` and ``SFP``, whose users send two report families at epsilon / 2 each: name
  the family, ``TreeHist[prefix]``, ``TreeHist[whole-key]``, ``SFP[fragment]``, ``SFP[whole-key]`` (no violation in
  either means none of the shares is exceeded; see :mod:`.registry`). Their top-k is min(10, 2^bits), SFP's
  fragment bits min(8, bits); the rest are the protocols' defaults.
* Range queries over [0, k): ``Flat``, ``HH`` (``branching``, default: chosen by variance), ``HaarHRR``, and ``HIO``
  over ``d`` attributes of domain k (whole rows; ``branching``, default 5). ``Flat[ORACLE]``, ``HH[ORACLE]`` and
  ``HIO[ORACLE]`` choose the level oracle (a :func:`dpkit.mechanisms.make_oracle` name).
* The lone level clients: ``HaarLevel`` (m = k / 2 coefficients; reports in [0, k), k even) and
  ``CandidateHashing`` (OLH on 64-bit keys; audited on the keys 0 and 15, ``k`` is not used).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from dpkit.audits.ldp.targets.base import Target
from dpkit.audits.ldp.targets.registry import audit_targets
from dpkit.mechanisms.heavy_hitters import HEAVY_HITTERS, CandidateHashing
from dpkit.mechanisms.range_queries import HH, HIO, FlatRange, HaarHRR, HaarLevel

__all__ = ["CLIENT_NAMES", "client_target"]

TOP_K = 10  # the heavy hitters' top-k (at most 2^bits)
SFP_FRAGMENT_BITS = 8  # SFP's default fragment length (at most bits)
HIO_BRANCHING = 5  # HIO's default tree branching

_RANGE: dict[str, Any] = {"Flat": FlatRange, "HH": HH, "HaarHRR": HaarHRR, "HIO": HIO}
_FAMILIES = {"TreeHist": ("prefix", "whole-key"), "SFP": ("fragment", "whole-key")}

CLIENT_NAMES = (
    *(f"{n}[{f}]" if n in _FAMILIES else n for n in HEAVY_HITTERS for f in _FAMILIES.get(n, ("",))),
    *_RANGE,
    "HaarLevel",
    "CandidateHashing",
)

_NAME = re.compile(r"^([A-Za-z][A-Za-z0-9\-]*)(?:\[([^\]]*)\])?$")


def key_bits(k: int, bits: int | None) -> int:
    """``bits`` if given, else the fewest bits holding the keys [0, k)."""
    return bits if bits is not None else max(1, (int(k) - 1).bit_length())


def _heavy(cls: Any, k: int, epsilon: float, bits: int | None) -> Any:
    b = key_bits(k, bits)
    kw: dict[str, Any] = {"k": min(TOP_K, 1 << b)}
    if "fragment_bits" in _fields(cls):
        kw["fragment_bits"] = min(SFP_FRAGMENT_BITS, b)
    return cls(b, epsilon, **kw)


def _fields(cls: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.init}


def _range(name: str, k: int, epsilon: float, oracle: str | None, branching: int | None, d: int, scope: str) -> Any:
    cls, fields = _RANGE[name], _fields(_RANGE[name])
    kw: dict[str, Any] = {}
    for option, value in (("oracle", oracle), ("branching", branching)):
        if value is not None:
            if option not in fields:
                users = ", ".join(n for n, c in _RANGE.items() if option in _fields(c))
                raise ValueError(f"{name} has no {option} (given {value!r}); it applies to {users}")
            kw[option] = value
    if cls is not HIO:
        return cls(k, epsilon, **kw)
    if scope != "tuple":
        raise ValueError(f"scope must be 'tuple' for HIO (its guarantee covers a user's whole row), got {scope!r}")
    kw.setdefault("branching", HIO_BRANCHING)
    return HIO(tuple(f"a{i}" for i in range(d)), (k,) * d, epsilon, **kw)


def client_target(
    name: str,
    k: int,
    epsilon: float,
    *,
    bits: int | None = None,
    branching: int | None = None,
    d: int = 3,
    scope: str = "tuple",
) -> Target | None:
    """The audit target the client ``name`` gives (see the module docstring), or None if ``name`` is not one."""
    m = _NAME.match(name.strip())
    if m is None:
        return None
    lowered = {n.lower(): n for n in (*HEAVY_HITTERS, *_RANGE, "HaarLevel", "CandidateHashing")}
    base, arg = lowered.get(m.group(1).lower()), m.group(2)
    if base is None:
        return None
    if arg is not None and base not in _FAMILIES and base not in ("Flat", "HH", "HIO"):
        raise ValueError(f"{base} takes no [...] argument, got {name!r}")
    if base in HEAVY_HITTERS:
        protocol = _heavy(HEAVY_HITTERS[base], k, epsilon, bits)
    elif base in _RANGE:
        protocol = _range(base, k, epsilon, arg, branching, d, scope)
    elif base == "HaarLevel":
        if k % 2:
            raise ValueError(f"k must be even for HaarLevel (its m = k / 2 coefficients report on [0, 2m)), got {k}")
        protocol = HaarLevel(k // 2, epsilon)
    else:
        protocol = CandidateHashing(epsilon)
    targets = audit_targets(protocol)
    if base not in _FAMILIES:
        return targets[0]
    families = dict(zip(_FAMILIES[base], targets, strict=True))
    choices = " or ".join(f"dpkit:{base}[{f}]" for f in families)
    if arg is None or arg.strip().lower() not in families:
        got = "" if arg is None else f", got [{arg}]"
        raise ValueError(
            f"{base} sends {len(families)} report families, each audited at its share of epsilon: name one, "
            f"{choices}{got}"
        )
    return families[arg.strip().lower()]
