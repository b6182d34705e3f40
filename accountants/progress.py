"""Progress reporting for long accounting work (calibration searches, long PLD compositions).

A progress hook is any callable ``hook(fraction, message)``: ``fraction`` is the share of the work done, in [0, 1]
and non-decreasing from one call to the next; ``message`` says what is being computed. The accountants never print;
an application attaches what it likes (a command line attaches a progress bar)::

    calibrate_noise_multiplier(3.0, 1e-5, 0.01, 1000, progress=lambda f, msg: print(f"{f:4.0%} {msg}"))

The last call of a finished job has ``fraction == 1.0``. Exceptions raised by the hook propagate (a hook may
cancel the work by raising).
"""

from __future__ import annotations

from collections.abc import Callable

#: ``hook(fraction, message)``: fraction of the work done in [0, 1] (non-decreasing), and what is running; what it
#: returns is ignored.
ProgressHook = Callable[[float, str], object]


def check_progress(name: str, value: object) -> ProgressHook | None:
    """``None`` or a callable ``(fraction, message)``."""
    if value is None:
        return None
    if not callable(value):
        raise TypeError(f"{name} must be None or a callable (fraction, message), got {value!r}")
    return value


class Progress:
    """Reports to an optional hook, keeping fractions in [0, 1] and non-decreasing; ``part`` maps a sub-range."""

    def __init__(self, hook: ProgressHook | None, start: float = 0.0, end: float = 1.0) -> None:
        self._hook = hook
        self._start = start
        self._end = end
        self._last = 0.0

    @property
    def active(self) -> bool:
        return self._hook is not None

    def __call__(self, fraction: float, message: str) -> None:
        if self._hook is None:
            return
        f = min(1.0, max(self._last, fraction)) if fraction == fraction else self._last
        self._last = f
        self._hook(self._start + (self._end - self._start) * f, message)

    def part(self, start: float, end: float) -> Progress:
        """A reporter for the sub-range [start, end] of this one's [0, 1]."""
        lo = self._start + (self._end - self._start) * start
        hi = self._start + (self._end - self._start) * end
        return Progress(self._hook, lo, hi)

    def hook(self) -> ProgressHook | None:
        """This reporter as a plain hook (``None`` if nothing listens), for passing to another call."""
        return self if self._hook is not None else None
