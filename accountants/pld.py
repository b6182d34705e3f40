"""PLD accountant: tight (epsilon, delta) from discretized privacy loss distributions.

Supports Gaussian, Laplace, randomized response and pure-DP events, their Poisson-subsampled versions (add/remove
neighbouring: both the "remove" and the "add" direction are composed and the worse is reported), and any
composition of these. Under replace-one it supports the unsampled mechanisms. Sampling without replacement is not
supported (use the RDP accountant).

The reported epsilon is an upper bound (pessimistic connect-the-dots discretization, pessimistic tails; see
:mod:`dpkit.accountants.pld_pmf`); ``get_epsilon_bounds`` also gives a lower bound on the exact epsilon, so their
difference bounds the discretization error.

**Any delta, any epsilon.** Three things keep the answer finite, monotone and sound for every delta in (0, 1):

* The probability mass that truncations move to infinite loss is adapted to delta: each truncation may move at
  most ``min(tail_mass, 1e-3 delta / n)`` (n: the number of truncations), so the infinite-loss atom never reaches
  delta.
* A float64 FFT composition carries an absolute error of roughly 1e-16 per composed step in every probability it
  returns (measured: about 1e-13 over 1000 steps), which swamps any delta of that size. The accountant estimates
  it as ``noise = max(1e-14, 1e-15 x (number of composed steps))``; it solves for epsilon at ``delta - noise``
  (and adds ``noise`` to the deltas it reports), and uses the FFT only for ``delta >= 10 noise``.
* Every answer is the minimum of the PLD result and an analytic bound: the RDP bound of the same composition
  (Mironov 2017, with the conversion of Balle et al. 2020 / Canonne-Kamath-Steinke 2020) and basic composition of
  the pure-DP epsilons (each holds with the same delta, so their minimum does). A Poisson-subsampled Laplace
  mechanism enters the RDP bound as Poisson-subsampled randomized response with epsilon = 1/scale, which
  dominates it (Kairouz-Oh-Viswanath 2015 for randomized response; Zhu-Dong-Wang 2022, "Optimal accounting of
  differential privacy via characteristic function", for subsampling of dominating pairs). Below the FFT's
  reach (``delta < 10 noise``) the reported epsilon is that analytic bound, so the PLD accountant never needs
  more noise than the RDP accountant, and its lower bound is the one at ``10 noise`` (epsilon does not increase
  with delta, so a lower bound at a larger delta holds).

**Large epsilons** need a coarser grid, not more memory: the grid step is at least ``epsilon_scale / 2.5e5``,
where ``epsilon_scale`` is the analytic bound at delta = 1e-10 (so an epsilon of 1000 is resolved to about 0.01%
and the grid keeps about 10^6 points), and no FFT exceeds ``pld_pmf.MAX_POINTS`` points (the step doubles
instead). The step is also at most ``sqrt(0.4 epsilon_scale / steps)``, so that the rounding drift of the grid
(``steps x step^2 / 8``) stays below 5% of epsilon; when no step satisfies both (hundreds of millions of steps),
or above an epsilon scale of 1e6, only the analytic bound is reported. Every switch between the FFT and the
analytic bound happens at less noise than the FFT needs, so the epsilon stays monotone in the noise. Composed
PLDs are cached up to 64 MB in total.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from typing import Any

from dpkit.accountants.accountant import PrivacyAccountant, register_accountant
from dpkit.accountants.events import (
    DpEvent,
    NeighbouringRelation,
)
from dpkit.accountants.pld_pairs import analytic_view, event_pairs, pair_reason
from dpkit.accountants.pld_pmf import DiscretePLD, GridTooLarge
from dpkit.accountants.progress import Progress, ProgressHook, check_progress
from dpkit.accountants.rdp import RDPAccountant
from dpkit.accountants.validation import check_delta, check_positive

#: Share of delta that all truncations together may move to the infinite-loss atom.
_TAIL_SHARE = 1e-3
#: Estimated absolute error of an FFT-composed probability, per composed step, and its floor.
_FFT_ERROR_PER_STEP = 1e-15
_FFT_ERROR_MIN = 1e-14
#: The FFT result is used only for delta >= this many times its error estimate.
_FFT_DELTA_FACTOR = 10.0
#: Grid step >= epsilon_scale / this; epsilon_scale is the analytic epsilon at _SCALE_DELTA.
_POINTS_PER_EPSILON = 2.5e5
_SCALE_DELTA = 1e-10
#: Largest rounding drift (steps x h^2 / 8) of the grid, as a share of the epsilon scale.
_DRIFT_SHARE = 0.05
#: The finest grid step used (tiny epsilons: the result is the minimum with the analytic bound anyway).
_MIN_STEP = 1e-9
#: Above this epsilon scale only the analytic bound is computed.
_FFT_MAX_EPSILON = 1e6
#: How often the grid step may double when a composition would still exceed MAX_POINTS.
_MAX_COARSENINGS = 8
#: Memory the cache of composed PLDs may hold.
_CACHE_BYTES = 64 << 20


@dataclasses.dataclass(frozen=True)
class _Plan:
    """How a composition is computed by FFT: grid step and the estimated absolute error of its deltas."""

    step: float
    noise: float

    @property
    def min_delta(self) -> float:
        return _FFT_DELTA_FACTOR * self.noise


_Key = tuple[tuple[tuple[DpEvent, int], ...], NeighbouringRelation, float, float]
_CACHE: OrderedDict[_Key, list[DiscretePLD]] = OrderedDict()


def _cache_bytes() -> int:
    return sum(p.pmf.nbytes for plds in _CACHE.values() for p in plds)


def _composed(
    atoms: tuple[tuple[DpEvent, int], ...],
    relation: NeighbouringRelation,
    step: float,
    tail: float,
    progress: Progress,
) -> list[DiscretePLD]:
    """Composed PLDs of ``atoms``, one per direction (a direction-less event joins every direction); cached."""
    key = (atoms, relation, step, tail)
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    per_direction: list[DiscretePLD | None] = [None, None]
    total = sum(math.log2(count + 1) + 1 for _, count in atoms)
    done = 0.0
    for event, count in atoms:
        progress(done / total, f"composing {count} x {event!r}")
        pairs = event_pairs(event, relation, tail)
        plds = [DiscretePLD.from_pair(p, step, tail).self_compose(count, tail) for p in pairs]
        for d in range(2):
            pld = plds[d] if len(plds) == 2 else plds[0]
            acc = per_direction[d]
            per_direction[d] = pld if acc is None else acc.compose(pld, tail)
        done += math.log2(count + 1) + 1
    out = [p for p in per_direction if p is not None]
    progress(1.0, "composed")
    _CACHE[key] = out
    while len(_CACHE) > 1 and _cache_bytes() > _CACHE_BYTES:
        _CACHE.popitem(last=False)
    return out


@register_accountant("pld")
class PLDAccountant(PrivacyAccountant):
    """Privacy loss distribution accountant (FFT composition, pessimistic discretization with a reported error).

    Args:
        neighbouring_relation: ``"add_or_remove"`` (default) or ``"replace_one"``.
        value_discretization_interval: finest grid step h of the privacy loss (default 1e-4); the error bound
            grows like h * sqrt(number of composed steps). Large epsilons use a coarser step (module docstring).
        tail_mass: largest probability mass a truncation may move pessimistically (default 1e-15); smaller
            deltas use less (module docstring).
    """

    def __init__(
        self,
        neighbouring_relation: NeighbouringRelation | str = NeighbouringRelation.ADD_OR_REMOVE,
        value_discretization_interval: float = 1e-4,
        tail_mass: float = 1e-15,
    ) -> None:
        super().__init__(neighbouring_relation)
        h = check_positive("value_discretization_interval", value_discretization_interval)
        if h > 1.0:
            raise ValueError(f"value_discretization_interval must be in (0, 1], got {value_discretization_interval!r}")
        self.value_discretization_interval = h
        self.tail_mass = check_positive("tail_mass", tail_mass)
        if self.tail_mass >= 1e-6:
            raise ValueError(f"tail_mass must be in (0, 1e-6), got {tail_mass!r}")
        self._rdp = RDPAccountant(self.neighbouring_relation)

    def _options(self) -> dict[str, Any]:
        return {"value_discretization_interval": self.value_discretization_interval, "tail_mass": self.tail_mass}

    def _supports_atom(self, event: DpEvent) -> str | None:
        return pair_reason(event, self.neighbouring_relation)

    # ------------------------------------------------------------------ the two analyses
    def _analytic_split(self, atoms: list[tuple[DpEvent, int]]) -> tuple[list[tuple[DpEvent, int]], float, float]:
        """(atoms for the RDP bound, total epsilon and total delta of the (epsilon, delta) atoms)."""
        rdp_atoms: list[tuple[DpEvent, int]] = []
        eps, delta = 0.0, 0.0
        for event, count in atoms:
            view = analytic_view(event, self.neighbouring_relation)
            if isinstance(view, tuple):
                eps, delta = eps + count * view[0], delta + count * view[1]
            else:
                rdp_atoms.append((view, count))
        return rdp_atoms, eps, delta

    def _analytic_epsilon(self, atoms: list[tuple[DpEvent, int]], delta: float) -> float:
        """min(RDP bound, basic composition of pure-DP epsilons) of the composition, plus basic composition with
        the (epsilon, delta) atoms (their deltas are taken from ``delta`` first): valid at any delta."""
        rdp_atoms, eps, spent = self._analytic_split(atoms)
        if spent >= delta:
            return math.inf
        return eps + (self._rdp._epsilon(rdp_atoms, delta - spent) if rdp_atoms else 0.0)

    def _analytic_delta(self, atoms: list[tuple[DpEvent, int]], epsilon: float) -> float:
        rdp_atoms, eps, spent = self._analytic_split(atoms)
        if epsilon < eps:
            return 1.0
        return min(1.0, spent + (self._rdp._delta(rdp_atoms, epsilon - eps) if rdp_atoms else 0.0))

    def _epsilon_scale(self, atoms: list[tuple[DpEvent, int]]) -> float:
        """The analytic epsilon at delta = 1e-10, ignoring the deltas of (epsilon, delta) atoms (sizes the grid)."""
        rdp_atoms, eps, _ = self._analytic_split(atoms)
        return eps + (self._rdp._epsilon(rdp_atoms, _SCALE_DELTA) if rdp_atoms else 0.0)

    def _plan(self, atoms: list[tuple[DpEvent, int]]) -> _Plan | None:
        """Grid step and FFT error estimate for ``atoms``; ``None`` if the FFT is not worth running."""
        steps = math.fsum(float(c) for _, c in atoms) + len(atoms)
        noise = max(_FFT_ERROR_MIN, _FFT_ERROR_PER_STEP * steps)
        scale = self._epsilon_scale(atoms)
        if not scale <= _FFT_MAX_EPSILON or noise * _FFT_DELTA_FACTOR >= 0.5:
            return None
        # Memory: the grid spans about 4 epsilon_scale in at most ~10^6 points. Accuracy: the rounding drift
        # (steps x h^2 / 8) stays below 5% of epsilon_scale. If both cannot hold, the FFT is not worth running.
        finest = scale / _POINTS_PER_EPSILON
        drift_limit = math.sqrt(8.0 * _DRIFT_SHARE * scale / steps)
        step = max(min(max(self.value_discretization_interval, finest), drift_limit), _MIN_STEP)
        if step < finest:
            return None
        return _Plan(step=step, noise=noise)

    def _tail(self, atoms: list[tuple[DpEvent, int]], delta: float) -> float:
        """Mass each truncation may move: their total (at most count + 2 per atom) stays below 1e-3 delta."""
        truncations = math.fsum(float(c) + 2.0 for _, c in atoms)
        budget = _TAIL_SHARE * delta / truncations
        return min(self.tail_mass, 10.0 ** math.floor(math.log10(budget)))  # a power of 10: fewer cache keys

    def _plds(
        self, atoms: list[tuple[DpEvent, int]], plan: _Plan, tail: float, progress: Progress
    ) -> list[DiscretePLD] | None:
        """Composed PLDs per direction (coarsening the grid while it would exceed MAX_POINTS); None if it still does."""
        key = tuple(sorted(atoms, key=lambda a: repr(a[0])))
        step = plan.step
        for _ in range(_MAX_COARSENINGS):
            try:
                return _composed(key, self.neighbouring_relation, step, tail, progress)
            except GridTooLarge:
                step *= 2.0
        return None

    # ------------------------------------------------------------------ accountant interface
    def _epsilon(self, atoms: list[tuple[DpEvent, int]], delta: float, progress: ProgressHook | None = None) -> float:
        analytic = self._analytic_epsilon(atoms, delta)
        plan = self._plan(atoms)
        if plan is None or delta < plan.min_delta:
            return analytic
        plds = self._plds(atoms, plan, self._tail(atoms, delta), Progress(progress))
        if plds is None:
            return analytic
        return min(analytic, float(max(p.get_epsilon(delta - plan.noise) for p in plds)))

    def _delta(self, atoms: list[tuple[DpEvent, int]], epsilon: float, progress: ProgressHook | None = None) -> float:
        analytic = self._analytic_delta(atoms, epsilon)
        plan = self._plan(atoms)
        if plan is None:
            return analytic
        plds = self._plds(atoms, plan, self.tail_mass, Progress(progress))
        if plds is None:
            return analytic
        return min(analytic, 1.0, max(p.get_delta(epsilon) for p in plds) + plan.noise)

    def get_epsilon_bounds(self, delta: float, *, progress: ProgressHook | None = None) -> tuple[float, float]:
        """(lower, upper): upper = get_epsilon(delta); the exact epsilon lies in [lower, upper].

        Both are finite unless something non-private was composed (then both are inf). Where the FFT does not
        reach (very small delta, or an epsilon scale above 1e6) the lower bound is the one at the smallest delta
        it reaches, or 0.
        """
        delta = check_delta("delta", delta)
        report = Progress(check_progress("progress", progress))
        lower, upper = self._bounds(delta, report)
        report(1.0, "epsilon bounds computed")
        return lower, upper

    def _bounds(self, delta: float, report: Progress) -> tuple[float, float]:
        atoms = self.atoms()
        if not atoms:
            return 0.0, 0.0
        upper = self.epsilon_of(atoms, delta, progress=report.part(0.0, 0.5).hook())
        if math.isinf(upper):
            return math.inf, math.inf
        plan = self._plan(atoms)
        at = delta if plan is None else max(delta, plan.min_delta)
        plds = (
            None if plan is None or at >= 0.5 else self._plds(atoms, plan, self._tail(atoms, at), report.part(0.5, 1))
        )
        if plds is None or plan is None:
            return 0.0, upper
        lower = max(p.epsilon_bounds(at, plan.noise)[0] for p in plds)
        return float(max(0.0, min(lower, upper))), float(upper)

    def discretization_error(self, delta: float) -> float:
        """Upper bound on how far get_epsilon(delta) may exceed the exact epsilon."""
        lower, upper = self.get_epsilon_bounds(delta)
        return upper - lower if math.isfinite(upper) else 0.0
