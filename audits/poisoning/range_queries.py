"""Poisoning range queries: hierarchical histograms and HIO (Liao, Lin, Tsai, Murakami, Yu, Sakuma, Huang, Kikuchi,
"Data Poisoning Attacks to Locally Differentially Private Range Query Protocols", arXiv 2503.03454 v2).

A level-sampled protocol (:mod:`dpkit.mechanisms.range_queries`) has each user report the node holding their value
at one level (HH) or the cell at one layer (HIO) through a frequency oracle. Fake users attack every level
consistently: at level l their targets are the nodes that intersect the target range (or box), so every level
agrees that mass moved into it, and each fake report is the level oracle's own attack (:mod:`.attacks`:
RPA, RIA, MGA, dispatched on the level oracle's class) on those nodes. Fake users go to the levels like genuine
ones (``allocation='uniform'``: the level counts look honest) or all to the single level whose fake user moves the
chosen answer most (``allocation='best'``).

Answers are linear in the level estimates before post-processing, so the expected gain of the raw answer (the
B-adic decomposition) and of the consistent one (Hay et al.'s least squares) has a closed form: the answer's change
between the expected states before and after, each level's estimate moving by m_l/(n_l + m_l) (E phi_l - x_l).
Norm-Sub on the consistent leaves is non-linear: it is measured, and shown next to the linear modes (Liao et al.
find that it amplifies the attack: the clipped negative leaves outside the range hand their mass to the range).
HIO answers raw (it has no consistency step).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import singledispatch
from typing import Any

import numpy as np

from dpkit.audits.poisoning.attacks import ATTACKS, FakeReports
from dpkit.audits.poisoning.simulation import check_attack
from dpkit.audits.poisoning.threat import check_fake_fraction, fake_count
from dpkit.mechanisms._validation import check_rng
from dpkit.mechanisms.base import PureFrequencyOracle, SupportCounts
from dpkit.mechanisms.range_queries import HIO, HierarchicalHistogram, RangeState

__all__ = [
    "RangePoisoningResult",
    "level_targets",
    "answer_modes",
    "target_frequency",
    "state_of_estimate",
    "range_attack",
    "simulate_range",
]

Answer = Callable[[RangeState], float]


@dataclass(frozen=True)
class RangePoisoningResult:
    """Per answer mode ('raw', 'consistent', 'norm-sub'): the target range's frequency ``before`` and ``after`` the
    fake reports, the ``gain`` and the closed-form ``analytic_gain`` (None after Norm-Sub, which is non-linear)."""

    protocol: str
    attack: str
    target: Any
    n_genuine: int
    n_fake: int
    beta: float
    allocation: str
    target_frequency: float
    modes: dict[str, dict[str, float | None]]
    fake_levels: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------- targets per level
@singledispatch
def level_targets(proto: Any, level: int, target: Any) -> np.ndarray:
    """The nodes (cells) of ``level`` that intersect the target range (box)."""
    raise TypeError(f"no range poisoning registered for {type(proto).__name__}")


@level_targets.register(HierarchicalHistogram)
def _hh_targets(proto: HierarchicalHistogram, level: int, target: Any) -> np.ndarray:
    a, b = _hh_range(proto, target)
    lo, hi = proto._node_index(np.array([a, b]), level)
    return np.arange(lo, hi + 1)


def _hh_range(proto: HierarchicalHistogram, target: Any) -> tuple[int, int]:
    a, b = (int(x) for x in np.asarray(target).ravel()[:2])
    if not 0 <= a <= b < proto.domain:
        raise ValueError(f"target must be a range (a, b) with 0 <= a <= b < {proto.domain}, got {target!r}")
    return a, b


def _hio_box(proto: HIO, target: Any) -> list[tuple[int, int]]:
    if not isinstance(target, dict):
        raise TypeError(f"target must be a dict {{column: (lo, hi) | value}} for HIO, got {type(target).__name__}")
    unknown = [c for c in target if c not in proto.columns]
    if unknown:
        raise ValueError(f"target names unknown columns {unknown}; columns are {proto.columns}")
    box = []
    for col, c in zip(proto.columns, proto.domains, strict=True):
        pred = target.get(col)
        lo, hi = (0, c - 1) if pred is None else (pred if np.ndim(pred) == 1 else (pred, pred))
        if not 0 <= int(lo) <= int(hi) < c:
            raise ValueError(f"target[{col!r}] must lie in [0, {c - 1}] with lo <= hi, got {pred!r}")
        box.append((int(lo), int(hi)))
    return box


@level_targets.register(HIO)
def _hio_targets(proto: HIO, level: int, target: Any) -> np.ndarray:
    box = _hio_box(proto, target)
    ranges = []
    for (b, H), t, (lo, hi) in zip(proto.trees, proto.layers[level], box, strict=True):
        s = b ** (H - t)
        ranges.append(np.arange(lo // s, hi // s + 1))
    grid = np.meshgrid(*ranges, indexing="ij")
    return np.ravel_multi_index(tuple(g.ravel() for g in grid), proto.layer_shapes[level])


# --------------------------------------------------------------------------------------------------- answers
@singledispatch
def answer_modes(proto: Any, target: Any) -> dict[str, Answer]:
    """The protocol's answers to the target query, by mode."""
    raise TypeError(f"no range poisoning registered for {type(proto).__name__}")


@answer_modes.register(HierarchicalHistogram)
def _hh_modes(proto: HierarchicalHistogram, target: Any) -> dict[str, Answer]:
    q = np.array([_hh_range(proto, target)])
    return {
        "raw": lambda s: float(proto.answer(s, q, consistency=False)[0]),
        "consistent": lambda s: float(proto.answer(s, q, consistency=True)[0]),
        "norm-sub": lambda s: float(proto.answer(s, q, consistency=True, postprocess="norm-sub")[0]),
    }


@answer_modes.register(HIO)
def _hio_modes(proto: HIO, target: Any) -> dict[str, Answer]:
    box = _hio_box(proto, target)
    q = [{col: lohi for col, lohi in zip(proto.columns, box, strict=True)}]
    return {"raw": lambda s: float(proto.answer(s, q)[0])}


LINEAR_MODES = ("raw", "consistent")


@singledispatch
def state_of_estimate(fo: Any, n: float, x: np.ndarray) -> SupportCounts | None:
    """A state of ``n`` reports whose unbiased estimate is exactly ``x`` (None where the estimator is not the pure
    one)."""
    return None


@state_of_estimate.register(PureFrequencyOracle)
def _pure_state(fo: PureFrequencyOracle, n: float, x: np.ndarray) -> SupportCounts:
    return SupportCounts(n * (fo.q_star + (fo.p_star - fo.q_star) * x), max(n, 1e-12), fo.key)  # type: ignore[arg-type]


def _expected_state(proto: Any, sizes: list[float], levels: list[np.ndarray]) -> RangeState | None:
    """The state whose level estimates are exactly ``levels`` (level sizes ``sizes``)."""
    parts = [state_of_estimate(fo, n, x) for fo, n, x in zip(proto.oracles, sizes, levels, strict=True)]
    if any(p is None for p in parts):
        return None
    return RangeState(tuple(parts), proto.key)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------- attack
def range_attack(
    proto: Any, attack: str, target: Any, fake_levels: np.ndarray, rng: np.random.Generator, **options: Any
) -> list[FakeReports | None]:
    """Per level: the level oracle's attack on the nodes intersecting the target (None where no fake user went).
    ``options`` go to the level attacks that take them (levels may use different oracles)."""
    key = check_attack(attack)
    out: list[FakeReports | None] = []
    for lvl, fo in enumerate(proto.oracles):
        m_l = int(np.sum(fake_levels == lvl))
        if not m_l:
            out.append(None)
            continue
        func = ATTACKS[key].dispatch(type(fo))  # type: ignore[attr-defined]  # a singledispatch function
        params = inspect.signature(func).parameters
        mine = {k: v for k, v in options.items() if k in params}
        out.append(func(fo, level_targets(proto, lvl, target), m_l, rng, **mine))
    return out


def _node_frequencies(proto: Any, values: np.ndarray) -> list[np.ndarray]:
    return [
        np.bincount(proto._node_index(values, lvl), minlength=fo.empty_state().counts.shape[0]) / len(values)
        for lvl, fo in enumerate(proto.oracles)
    ]


def _analytic(proto, modes, n_l, m_l, x, fakes) -> dict[str, float | None]:
    if any(f is not None and f.expected_scores is None for f in fakes):
        return {}
    after_levels = [
        x[i] if f is None else (n_l[i] * x[i] + m_l[i] * f.expected_scores) / (n_l[i] + m_l[i])
        for i, f in enumerate(fakes)
    ]
    before = _expected_state(proto, list(n_l), x)
    after = _expected_state(proto, [n + m for n, m in zip(n_l, m_l, strict=True)], after_levels)
    if before is None or after is None:
        return {}
    return {mode: modes[mode](after) - modes[mode](before) for mode in LINEAR_MODES if mode in modes}


def simulate_range(
    protocol: HierarchicalHistogram | HIO,
    attack: str,
    values: Any,
    target: Any,
    beta: float,
    rng: np.random.Generator,
    *,
    allocation: str = "uniform",
    best_for: str | None = None,
    **attack_options: Any,
) -> RangePoisoningResult:
    """n genuine users (``values``: HH, items in [0, domain); HIO, (n, d) codes or a DataFrame) and m fake users
    attacking the ``target`` range (HH: (a, b); HIO: {column: (lo, hi) | value}); the gain of every answer mode.

    ``allocation``: 'uniform' (each fake user samples its level like a genuine user) or 'best' (all at the level
    where one fake user raises the ``best_for`` answer most, by the closed form; default 'consistent' where the
    protocol has it, else 'raw'). Each mode reports ``gain_per_beta`` = gain / beta: a fake user's influence on the
    answer over a genuine user's largest (1/n, moving its own value into the range).
    """
    check_rng(rng)
    values = protocol._check_values(values)
    n = len(values)
    if n == 0:
        raise ValueError("values must hold at least one genuine user, got 0")
    beta = check_fake_fraction("beta", beta)
    if allocation not in ("uniform", "best"):
        raise ValueError(f"allocation must be 'uniform' or 'best', got {allocation!r}")
    m = fake_count(n, beta)
    modes = answer_modes(protocol, target)
    best_for = best_for or ("consistent" if "consistent" in modes else "raw")
    if best_for not in modes:
        raise ValueError(f"best_for must be one of {', '.join(modes)}, got {best_for!r}")
    h = protocol.num_levels
    genuine = protocol.perturb(values, rng)
    n_l = [len(g) for g in genuine]
    x = _node_frequencies(protocol, values)
    if allocation == "uniform":
        fake_levels = rng.integers(0, h, size=m) if h > 1 else np.zeros(m, dtype=np.int64)
    else:
        per_level: list[float] = []
        for lvl in range(h):  # the closed-form gain of all m fake users at this level
            trial = range_attack(protocol, attack, target, np.full(min(m, 64), lvl), rng, **attack_options)
            m_try = [m if i == lvl else 0 for i in range(h)]
            gain = _analytic(protocol, modes, n_l, m_try, x, trial).get(best_for)
            per_level.append(-np.inf if gain is None else gain)
        fake_levels = np.full(m, int(np.argmax(per_level)))
    fakes = range_attack(protocol, attack, target, fake_levels, rng, **attack_options)
    m_l = [0 if f is None else len(f.reports) for f in fakes]
    merged = tuple(
        g if f is None else np.concatenate([np.asarray(g), np.asarray(f.reports).astype(np.asarray(g).dtype)])
        for g, f in zip(genuine, fakes, strict=True)
    )
    before, after = protocol.aggregate(genuine), protocol.aggregate(merged)
    analytic = _analytic(protocol, modes, n_l, m_l, x, fakes)
    out = {}
    for mode, answer in modes.items():
        b_, a_ = answer(before), answer(after)
        gpb = (a_ - b_) * (n + m) / m if m else None
        out[mode] = {
            "before": b_,
            "after": a_,
            "gain": a_ - b_,
            "analytic_gain": analytic.get(mode),
            "gain_per_beta": gpb,
        }
    truth = target_frequency(protocol, values, target)
    return RangePoisoningResult(
        protocol=repr(protocol),
        attack=check_attack(attack),
        target=target if isinstance(target, dict) else [int(t) for t in np.asarray(target).ravel()[:2]],
        n_genuine=n,
        n_fake=m,
        beta=m / (n + m),
        allocation=allocation,
        target_frequency=truth,
        modes=out,
        fake_levels=sorted({int(v) for v in fake_levels}),
    )


@singledispatch
def target_frequency(proto: Any, values: np.ndarray, target: Any) -> float:
    """The genuine users' true frequency of the target range (box)."""
    raise TypeError(f"no range poisoning registered for {type(proto).__name__}")


@target_frequency.register(HierarchicalHistogram)
def _hh_truth(proto: HierarchicalHistogram, values: np.ndarray, target: Any) -> float:
    a, b = _hh_range(proto, target)
    return float(np.mean((values >= a) & (values <= b)))


@target_frequency.register(HIO)
def _hio_truth(proto: HIO, values: np.ndarray, target: Any) -> float:
    inside = np.ones(len(values), dtype=bool)
    for i, (lo, hi) in enumerate(_hio_box(proto, target)):
        inside &= (values[:, i] >= lo) & (values[:, i] <= hi)
    return float(inside.mean())
