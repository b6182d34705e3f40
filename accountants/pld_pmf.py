"""Discrete privacy loss distributions: pessimistic discretization, FFT composition, epsilon and its error.

**Discretization (connect-the-dots).** Losses live on the grid l_i = i * h. The mass of P on an interval
(l_i, l_{i+1}] is split between its two ends so that E_P[e^{-L}] is preserved: the upper end receives
(P_int - e^{l_i} Q_int) / (1 - e^{-h}) (P_int, Q_int the interval's P- and Q-masses), the lower end the rest. The
hockey-stick curve delta(eps) = E_P[(1 - e^{eps - L})_+] of the result is the chord interpolation of the true one
(convex in e^eps), hence an upper bound everywhere: the discretized pair dominates the true one (Doroshenko, Ghazi,
Kamath, Kumar, Manurangsi, "Connect the dots", PETS 2022). Mass below the grid is rounded up to its first point,
mass above it goes to the infinite-loss atom; both are pessimistic.

**Composition.** The PLD of a composition is the convolution of the PLDs. T identical steps are composed in one
FFT: the PMF is raised to the T-th power in the frequency domain on a window [L, U] chosen by Chernoff bounds so
that the mass outside is at most ``tail_mass``; the upper tail bound is added to the infinite-loss atom
(pessimistic), the lower tail wraps into the window (adding mass, also pessimistic).

**Discretization error.** Couple each true loss L with its split image L' = L + D: given L, D lies in an interval
of length h with mean in [0, m_h], m_h = max_u h(1 - e^{-u})/(1 - e^{-h}) - u ~ h^2/8. After n discretized steps,
Hoeffding gives sum D <= n m_h + h sqrt(n log(1/eta)/2) =: s except with probability eta, so
delta'(eps + s) <= delta(eps) + eta + (tail masses moved), i.e. the exact epsilon at delta is at least
eps'(delta + eta + tails) - s (eta = 1e-3 delta). ``epsilon_bounds`` returns that lower bound with the upper one.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from dpkit.accountants._typing import FloatArray
from dpkit.accountants.privacy_loss import Pair

#: The largest FFT the accountant will run; beyond it the grid is coarsened (pessimistically) instead.
MAX_POINTS = 1 << 22


class GridTooLarge(Exception):
    """The PLD at this grid step would need more than ``MAX_POINTS`` points."""


def split_drift(h: float) -> float:
    """m_h: the largest conditional mean of the connect-the-dots rounding D for grid step h."""
    u = -math.log(-math.expm1(-h) / h)
    return h * -math.expm1(-u) / -math.expm1(-h) - u


@dataclasses.dataclass
class DiscretePLD:
    """A PMF on losses (offset + i) * step, an infinite-loss mass, and the book-keeping of the error bound."""

    step: float
    offset: int
    pmf: FloatArray
    inf_mass: float
    n_split: int = 0
    drift: float = 0.0
    moved_mass: float = 0.0

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pair(cls, pair: Pair, step: float, tail_mass: float) -> DiscretePLD:
        lo, hi = loss_range(pair, tail_mass)
        i_lo, i_hi = math.floor(lo / step), math.ceil(hi / step)
        if i_hi - i_lo + 1 > MAX_POINTS:
            raise GridTooLarge
        if i_hi == i_lo:
            i_hi += 1
        grid = np.arange(i_lo, i_hi + 1, dtype=np.float64) * step
        m = pair.masses(grid)
        # Split each interval's mass between its ends, preserving E_P[e^{-L}]. e^{l_i} Q_int is formed in logs:
        # where Q_int underflows to 0 the whole interval goes up (pessimistic) instead of inf * 0.
        with np.errstate(divide="ignore", over="ignore"):
            eq = np.where(m.q > 0, np.exp(np.minimum(grid[:-1] + np.log(np.where(m.q > 0, m.q, 1.0)), 700.0)), 0.0)
        up = (m.p - eq) / -math.expm1(-step)
        up = np.clip(up, 0.0, m.p)
        pmf = np.zeros(len(grid))
        pmf[1:] += up
        pmf[:-1] += m.p - up
        pmf[0] += m.p_below
        return cls(
            step=step,
            offset=i_lo,
            pmf=pmf,
            inf_mass=m.p_above,
            n_split=1,
            drift=split_drift(step),
            moved_mass=m.p_below + m.p_above,
        )

    # ------------------------------------------------------------------ composition
    def self_compose(self, count: int, tail_mass: float) -> DiscretePLD:
        if count == 1:
            return self
        import scipy.fft  # imported where used, like scipy.signal: the command line starts without them

        n = len(self.pmf)
        lo_w, hi_w = _chernoff_window(self.pmf, count, tail_mass)
        width = hi_w - lo_w + 1
        size = scipy.fft.next_fast_len(max(width, n), real=True)
        if size > MAX_POINTS:
            raise GridTooLarge
        spec = scipy.fft.rfft(self.pmf, size)
        np.power(spec, count, out=spec)
        out = scipy.fft.irfft(spec, size)
        del spec
        # Entries lo_w .. hi_w of the count-fold convolution, at positions (lo_w + t) mod size (slices, no index
        # arrays: memory stays a few copies of the FFT).
        start = lo_w % size
        if start + width <= size:
            finite = out[start : start + width].copy()
        else:
            finite = np.concatenate([out[start:], out[: start + width - size]])
        del out
        np.clip(finite, 0.0, None, out=finite)
        upper_tail = tail_mass if hi_w < count * (n - 1) else 0.0
        lower_tail = tail_mass if lo_w > 0 else 0.0
        inf_mass = -math.expm1(count * math.log1p(-self.inf_mass)) if self.inf_mass < 1 else 1.0
        return DiscretePLD(
            step=self.step,
            offset=count * self.offset + lo_w,
            pmf=finite,
            inf_mass=min(1.0, inf_mass + upper_tail),
            n_split=count * self.n_split,
            drift=count * self.drift,
            moved_mass=count * self.moved_mass + upper_tail + lower_tail,
        )

    def compose(self, other: DiscretePLD, tail_mass: float) -> DiscretePLD:
        if other.step != self.step:
            raise ValueError("cannot compose PLDs on different grids")
        from scipy.signal import fftconvolve  # imported where used: scipy.signal is slow to import

        pmf = np.clip(fftconvolve(self.pmf, other.pmf), 0.0, None)
        # Trim negligible tails: the bottom is rounded up, the top goes to infinity (both pessimistic).
        cum_lo = np.cumsum(pmf)
        cum_hi = np.cumsum(pmf[::-1])[::-1]
        first = int(np.searchsorted(cum_lo, tail_mass, side="right"))
        last = len(pmf) - 1 - int(np.searchsorted(cum_hi[::-1], tail_mass, side="right"))
        first, last = min(first, last), max(first, last)
        low_mass = float(cum_lo[first - 1]) if first > 0 else 0.0
        high_mass = float(cum_hi[last + 1]) if last + 1 < len(pmf) else 0.0
        trimmed = pmf[first : last + 1].copy()
        trimmed[0] += low_mass
        inf_mass = 1.0 - (1.0 - self.inf_mass) * (1.0 - other.inf_mass)
        return DiscretePLD(
            step=self.step,
            offset=self.offset + other.offset + first,
            pmf=trimmed,
            inf_mass=min(1.0, inf_mass + high_mass),
            n_split=self.n_split + other.n_split,
            drift=self.drift + other.drift,
            moved_mass=self.moved_mass + other.moved_mass + low_mass + high_mass,
        )

    # ------------------------------------------------------------------ queries
    @property
    def losses(self) -> FloatArray:
        return (self.offset + np.arange(len(self.pmf), dtype=np.float64)) * self.step

    def get_delta(self, epsilon: float) -> float:
        """delta(eps) = P(L = inf) + sum_{l > eps} p_l (1 - e^{eps - l})."""
        l = self.losses
        sel = l > epsilon
        val = self.inf_mass + float(np.sum(self.pmf[sel] * -np.expm1(epsilon - l[sel])))
        return min(1.0, max(0.0, val))

    def get_epsilon(self, delta: float) -> float:
        """Smallest eps >= 0 with delta(eps) <= delta (exact for this discrete PLD)."""
        if self.inf_mass >= delta:
            return math.inf
        l = self.losses
        pos = np.nonzero(l > 0)[0]
        if len(pos) == 0:
            return 0.0
        p, lp = self.pmf[pos], l[pos]
        # Suffix sums over atoms j..end: A_j = sum p, logB_j = log sum p e^{-l}.
        a = np.cumsum(p[::-1])[::-1] + self.inf_mass
        with np.errstate(divide="ignore"):
            logterms = np.log(p) - lp
        logb = np.logaddexp.accumulate(logterms[::-1])[::-1]
        # delta at eps = l_{j-1} (atoms >= j are above it); at eps = 0 all positive atoms count.
        eps_left = np.concatenate([[0.0], lp[:-1]])
        d_left = a - np.exp(eps_left + logb)
        ok = np.nonzero(d_left <= delta)[0]
        if len(ok) == 0:
            # delta(l_last) = inf_mass < delta: solve on the last interval.
            j = len(lp) - 1
        else:
            j = int(ok[0])
            if j == 0:
                return 0.0
            j -= 1
        # On (l_{j-1}, l_j]: delta(eps) = A_j - e^eps B_j = delta.
        return max(0.0, math.log(a[j] - delta) - logb[j]) if a[j] > delta else 0.0

    def error_margin(self, delta: float) -> tuple[float, float]:
        """(s, eta): the exact epsilon at delta is at least get_epsilon(delta + eta) - s (see module docstring)."""
        eta_h = 1e-3 * delta
        log_inv_eta = math.log(1e3) - math.log(delta)  # log(1 / eta_h), finite for every positive delta
        s = self.drift + self.step * math.sqrt(self.n_split * log_inv_eta / 2.0)
        return s, eta_h + self.moved_mass

    def epsilon_bounds(self, delta: float, noise: float = 0.0) -> tuple[float, float]:
        """(lower, upper) on the exact epsilon at ``delta``, given that the PMF's deltas may be off by ``noise``
        (absolute, e.g. FFT rounding): upper solves at delta - noise, lower at delta + eta + noise."""
        upper = self.get_epsilon(delta - noise) if delta > noise else math.inf
        s, eta = self.error_margin(delta)
        top = delta + eta + noise
        lower = self.get_epsilon(min(top, 1.0 - 1e-15)) - s if top < 1 else 0.0
        return max(0.0, min(lower, upper)), upper


def loss_range(pair: Pair, tail_mass: float) -> tuple[float, float]:
    """Loss values (lo, hi) with P(L < lo) <= tail_mass and P(L > hi) <= tail_mass (probed on a geometric grid)."""
    mags = np.geomspace(1e-6, 1e4, 201)
    probe = np.concatenate([-mags[::-1], [0.0], mags])
    m = pair.masses(probe)
    below = m.p_below + np.concatenate([[0.0], np.cumsum(m.p)])  # P(L <= probe_k)
    above = m.p_above + np.concatenate([np.cumsum(m.p[::-1])[::-1], [0.0]])  # P(L > probe_k)
    ok_lo = np.nonzero(below <= tail_mass)[0]
    ok_hi = np.nonzero(above <= tail_mass)[0]
    lo = probe[ok_lo[-1]] if len(ok_lo) else probe[0]
    hi = probe[ok_hi[0]] if len(ok_hi) else probe[-1]
    return float(lo), float(max(hi, lo))


def _chernoff_window(pmf: FloatArray, count: int, tail_mass: float) -> tuple[int, int]:
    """Index window [lo, hi] of the count-fold sum outside which at most ``tail_mass`` lies on each side.

    Chernoff: mass(S >= u) <= M(lam)^count e^{-lam u} for lam > 0 (and symmetrically below), with M the
    moment-generating function of the index. M is bounded on blocks of the PMF with each block's mass put at its
    far end, which keeps the bound valid and makes it cheap.
    """
    n = len(pmf)
    block = max(1, n // 2048)
    nb = -(-n // block)
    mass = np.zeros(nb * block)
    mass[:n] = pmf
    mass = mass.reshape(nb, block).sum(axis=1)
    keep = mass > 0
    logm = np.log(mass[keep])
    r_hi = (np.arange(nb) * block + block - 1)[keep].astype(float)
    r_lo = (np.arange(nb) * block)[keep].astype(float)
    lams = np.geomspace(1e-7, 50.0, 48)[:, None]
    log_tail = math.log(tail_mass)

    def log_mgf(x: FloatArray) -> FloatArray:  # rows: lambdas; log sum exp(x + logm)
        top = np.max(x, axis=1, keepdims=True)
        out: FloatArray = (top + np.log(np.sum(np.exp(x - top), axis=1, keepdims=True)))[:, 0]
        return out

    his = (count * log_mgf(lams * r_hi + logm) - log_tail) / lams[:, 0]
    los = -(count * log_mgf(-lams * r_lo + logm) - log_tail) / lams[:, 0]
    top = count * (n - 1)
    hi = int(min(top, max(0, math.ceil(np.min(his)))))
    lo = int(min(max(0, math.floor(np.max(los))), hi))
    return lo, hi
