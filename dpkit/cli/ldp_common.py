"""What the ``dpkit ldp`` commands share: the users' data (synthetic Zipf or uniform, or a CSV column), the chunked
simulation, and the options the protocols share (``--epsilon``, ``--n``, ``--k``, ``--distribution``).

Synthetic values are drawn and aggregated :data:`CHUNK` users at a time, so memory stays bounded by one chunk
whatever ``--n`` is, and a progress hook sees every chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
import numpy as np

from dpkit.accountants import validation
from dpkit.cli import options as opt

__all__ = [
    "CHUNK",
    "MAX_EPSILON",
    "MAX_USERS",
    "distribution_option",
    "domain_option",
    "epsilon_option",
    "load_column",
    "parse_distribution",
    "replay",
    "simulate_chunks",
    "speed",
    "speed_line",
    "users_option",
    "zipf_frequencies",
]

CHUNK = 1 << 20  # users per chunk of a synthetic simulation
SYNTHETIC = ("zipf", "uniform")
MAX_EPSILON = 700.0  # e^epsilon overflows a double beyond about 709
MAX_USERS = 10**10  # simulated users (memory is bounded by a chunk; time is not)


def _ldp_epsilon(name: str, value: float) -> float:
    return validation.check_range(name, validation.check_positive(name, value), 0.0, MAX_EPSILON)


def epsilon_option(required: bool = True) -> Callable:
    return opt.checked_option(
        "--epsilon",
        type=opt.Real(_ldp_epsilon, f"(0, {MAX_EPSILON:g}]"),
        required=required,
        help="Epsilon-LDP per user.",
    )


def users_option(default: int = 100_000, maximum: int = MAX_USERS) -> Callable:
    return opt.count_option(
        "--n", "n", minimum=1, maximum=maximum, default=default, help="Number of users (synthetic data)."
    )


def domain_option(maximum: int) -> Callable:
    return opt.count_option(
        "--k", "k", minimum=2, maximum=maximum, help="Domain size (default for FILE:COLUMN: its categories)."
    )


def distribution_option(default: str) -> Callable:
    """``--distribution``: a synthetic one (:data:`SYNTHETIC`, ``default`` first in the help) or ``FILE:COLUMN``."""
    names = [default, *(name for name in SYNTHETIC if name != default)]
    return click.option(
        "--distribution", default=default, show_default=True, help=f"{', '.join(names)}, or FILE:COLUMN of a CSV."
    )


def speed(n: int, seconds: float) -> dict[str, float]:
    """``{"seconds", "users_per_second"}`` of a simulation of n users."""
    return {"seconds": seconds, "users_per_second": n / seconds if seconds > 0 else float("inf")}


def speed_line(n: int, seconds: float) -> str:
    return f"{seconds:.3f} s, {speed(n, seconds)['users_per_second']:,.0f} users/s"


def zipf_frequencies(k: int, s: float = 1.1) -> np.ndarray:
    """Frequencies proportional to 1 / rank^s over k items (item 0 the most frequent)."""
    w = 1.0 / np.arange(1, k + 1) ** s
    return w / w.sum()


def parse_distribution(spec: str, allowed: tuple[str, ...] = SYNTHETIC) -> tuple[str, str | None]:
    """``(name, None)`` for a synthetic distribution in ``allowed``, or ``(path, column)`` for FILE:COLUMN."""
    if spec in allowed:
        return spec, None
    path, _, column = spec.rpartition(":")
    if not path or not column:
        raise click.BadParameter(
            f"must be {' or '.join(allowed)} or FILE:COLUMN (a column of a CSV file), got {spec!r}",
            param_hint="'--distribution'",
        )
    return path, column


def load_column(path: str, column: str) -> Any:
    """The non-missing values of ``column`` in the CSV file ``path`` (a pandas Series); errors name --distribution."""
    import pandas as pd

    hint = "'--distribution'"
    try:
        df = pd.read_csv(path, usecols=[column])
    except FileNotFoundError:
        raise click.BadParameter(f"no such file: {path!r}", param_hint=hint) from None
    except Exception as err:  # noqa: BLE001 (any parse failure is a bad file)
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise click.BadParameter(f"cannot read column {column!r} of {path!r}: {first}", param_hint=hint) from None
    col = df[column].dropna()
    if len(col) == 0:
        raise click.BadParameter(f"column {column!r} of {path!r} has no values", param_hint=hint)
    return col


def simulate_chunks(
    n: int,
    sample: Callable[[int, np.random.Generator], np.ndarray],
    aggregate: Callable[[np.ndarray, np.random.Generator], Any],
    observe: Callable[[np.ndarray], None],
    rng: np.random.Generator,
    progress: Callable[[float, str], None],
    chunk: int = CHUNK,
) -> Any:
    """The sum of ``aggregate(values, rng)`` over chunks of m <= ``chunk`` users, ``values = sample(m, rng)``, until
    ``n`` users; ``observe(values)`` sees every chunk (to keep the true histogram), ``progress`` every step."""
    state = None
    done = 0
    while done < n:
        m = min(chunk, n - done)
        values = sample(m, rng)
        observe(values)
        part = aggregate(values, rng)
        state = part if state is None else state + part
        done += m
        progress(done / n, f"{done:,} of {n:,} users")
    return state


def replay(values: np.ndarray) -> Callable[[int, np.random.Generator], np.ndarray]:
    """A ``sample`` for :func:`simulate_chunks` that returns consecutive slices of ``values`` (real data)."""
    position = 0

    def sample(m: int, rng: np.random.Generator) -> np.ndarray:
        nonlocal position
        out = values[position : position + m]
        position += m
        return out

    return sample
