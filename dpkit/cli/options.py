"""What every ``dpkit`` command shares: checked option types, option decorators, output files, JSON, progress bars
and exit codes.

* Values: :class:`Count` (whole numbers, also written like ``1e6`` the way the help prints defaults; ``1.5`` is
  refused), :class:`Real` (a number run through one of dpkit's checks), :data:`SEED`; :func:`click_callback` runs any
  dpkit check ``(name, value)`` as a click callback. Every error is click's one-line usage error naming the option.
* Output files: :class:`OutputPath` checks a ``--plot`` / ``--csv`` / ``--json``-file path when the command line is
  parsed, before any work: the extension is one the writer supports, the folder exists and the file can be written.
* Decorators for the options many commands share (``--json``, ``--seed``, ``--plot``, ``--csv``,
  ``--progress/--no-progress``) and :func:`exit_codes`, the "Exit status" paragraph of a command's help.
* Output: :func:`echo_json` (inf / NaN as the strings "inf" / "nan"), :func:`progress_bar` (a tqdm bar on stderr fed
  by the accountants' ``progress=`` hooks), :func:`save_figure`.

The command modules import it as one name, ``from dpkit.cli import options as opt``, and write
``@opt.count_option(...)``, ``opt.POSITIVE``, ``opt.echo_json(out)``.

This module imports click and dpkit's argument checks only, so ``dpkit account`` starts without numpy's heavier
neighbours (tqdm and matplotlib are imported when a bar or a figure is made).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

from dpkit.accountants import validation

__all__ = [
    "CSV_EXTENSIONS",
    "HALF_OPEN_UNIT",
    "NONNEGATIVE",
    "OPEN_UNIT",
    "POSITIVE",
    "PROBABILITY",
    "EXIT_FINDING",
    "EXIT_TARGET_FAILED",
    "EXIT_USAGE",
    "JSON_EXTENSIONS",
    "PLOT_EXTENSIONS",
    "SEED",
    "Count",
    "OutputPath",
    "Real",
    "TargetFailure",
    "check_writable",
    "checked_option",
    "click_callback",
    "choice_option",
    "command",
    "count_option",
    "csv_option",
    "echo_json",
    "exit_codes",
    "json_option",
    "json_safe",
    "plot_option",
    "progress_bar",
    "progress_option",
    "save_figure",
    "seed_option",
]

# ------------------------------------------------------------------------------------------------- exit codes
EXIT_FINDING = 1  # audit-ldp: a violation was found
EXIT_USAGE = 2  # click's code for a usage error: a bad option value, a missing file, an unwritable output path
EXIT_TARGET_FAILED = 3  # audit-ldp: the audited target raised an error while it ran


def exit_codes(*extra: tuple[int, str], success: str = "success") -> str:
    """The "Exit status" paragraph of a command's help: 0, 2 and the command's own ``(code, meaning)`` pairs."""
    usage = "usage error (bad option value, unreadable input, unwritable output path)"
    rows = [(0, success), *extra, (EXIT_USAGE, usage)]
    lines = [f"  {code}  {meaning}" for code, meaning in sorted(rows)]
    return "\b\nExit status:\n" + "\n".join(lines)


class TargetFailure(click.ClickException):
    """The audited target failed while it ran (exit status 3, one line on stderr, no traceback)."""

    exit_code = EXIT_TARGET_FAILED


# ------------------------------------------------------------------------------------------------- value types
def click_callback(check: Callable[[str, Any], Any]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click option callback running ``check(param_name, value)``; its error becomes a click.BadParameter.

    Lets every command reuse dpkit's checks (e.g. :mod:`dpkit.accountants.validation`):
    ``callback=click_callback(check_positive)``. A missing value (``None``) is passed through unchecked.
    """

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        try:
            return check(str(param.name), value)
        except (ValueError, TypeError, OverflowError) as err:
            raise click.BadParameter(str(err), ctx=ctx, param=param) from None

    return callback


class Count(click.ParamType):
    """A whole number in [minimum, maximum]; ``1e6``, ``1_000_000`` and ``1000000.0`` are read as 1000000, while
    ``1.5``, ``nan`` and ``inf`` are refused with the allowed range."""

    name = "integer"

    def __init__(self, minimum: int = 0, maximum: int | None = None) -> None:
        self.minimum, self.maximum = minimum, maximum

    def describe(self) -> str:
        """The allowed values, for a help text: "a whole number in [1, 1e6]"."""
        if self.maximum is None:
            return f"a whole number >= {_number(self.minimum)}"
        return f"a whole number in [{_number(self.minimum)}, {_number(self.maximum)}]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        name = param.name if param is not None and param.name else "value"
        number: Any = value
        if isinstance(value, str):
            text = value.strip().replace("_", "")
            try:
                number = int(text)
            except ValueError:
                try:
                    number = float(text)
                except ValueError:
                    number = value  # check_count names the range and the value
        try:
            return validation.check_count(name, number, minimum=self.minimum, maximum=self.maximum)
        except (ValueError, TypeError, OverflowError) as err:
            self.fail(str(err), param, ctx)


class Real(click.ParamType):
    """A real number run through ``check(name, value)`` (e.g. :func:`dpkit.accountants.validation.check_positive`);
    ``domain`` states the allowed values for help texts, e.g. "(0, inf)"."""

    name = "float"

    def __init__(self, check: Callable[[str, float], float], domain: str) -> None:
        self.check, self.domain = check, domain

    def describe(self) -> str:
        return f"in {self.domain}"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        name = param.name if param is not None and param.name else "value"
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                self.fail(f"{name} must be a number, got {value!r}", param, ctx)
        try:
            return self.check(name, value)
        except (ValueError, TypeError, OverflowError) as err:
            self.fail(str(err), param, ctx)


def _number(x: int) -> str:
    """1e6 for powers of ten from 1e4 on, 2^53 for large powers of two, else the digits."""
    if x >= 10**4 and 10 ** round(math.log10(x)) == x:
        return f"1e{round(math.log10(x))}"
    if x >= 2**16 and x & (x - 1) == 0:
        return f"2^{x.bit_length() - 1}"
    if x >= 2**16 and (x + 1) & x == 0:
        return f"2^{x.bit_length()} - 1"
    return str(x)


def positive(name: str, value: Any) -> float:
    return validation.check_positive(name, value)


def nonnegative(name: str, value: Any) -> float:
    return validation.check_nonnegative(name, value)


def open_unit(name: str, value: Any) -> float:
    return validation.check_probability(name, value, open_low=True, open_high=True)


def half_open_unit(name: str, value: Any) -> float:
    return validation.check_probability(name, value, open_low=False, open_high=True)


POSITIVE = Real(positive, "(0, inf)")
NONNEGATIVE = Real(nonnegative, "[0, inf)")
PROBABILITY = Real(validation.check_probability, "(0, 1]")
OPEN_UNIT = Real(open_unit, "(0, 1)")
HALF_OPEN_UNIT = Real(half_open_unit, "[0, 1)")
SEED = Count(0, 2**63 - 1)


# ------------------------------------------------------------------------------------------------- output files
PLOT_EXTENSIONS = ("png", "pdf", "svg", "svgz", "jpg", "jpeg", "eps", "ps", "tif", "tiff", "webp")
CSV_EXTENSIONS = ("csv",)
JSON_EXTENSIONS = ("json",)


def check_writable(path: str | os.PathLike[str]) -> str:
    """``path`` as a string if a file can be written there: not a folder, its folder exists, and opening it for
    writing succeeds (a file created by the check is removed again; an existing one is left unchanged)."""
    text = os.fspath(path)
    if not text:
        raise ValueError("the path is empty")
    if os.path.isdir(text):
        raise ValueError(f"{text!r} is a folder, not a file")
    folder = os.path.dirname(text) or "."
    if not os.path.exists(folder):
        raise ValueError(f"the folder {folder!r} does not exist (create it first)")
    if not os.path.isdir(folder):
        raise ValueError(f"{folder!r} is not a folder")
    existed = os.path.exists(text)
    try:
        with open(text, "ab"):
            pass
    except OSError as err:
        raise ValueError(f"cannot write {text!r}: {err.strerror or err}") from None
    if not existed:
        with contextlib.suppress(OSError):
            os.remove(text)
    return text


class OutputPath(click.ParamType):
    """A file a command will write, checked when the command line is parsed (before any work): its extension is
    one of ``extensions`` (case-insensitive; the error lists them) and :func:`check_writable` passes."""

    name = "file"

    def __init__(self, extensions: tuple[str, ...], kind: str) -> None:
        self.extensions, self.kind = extensions, kind

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = os.fspath(value)
        ext = os.path.splitext(text)[1].lower().lstrip(".")
        if ext not in self.extensions:
            allowed = ", ".join(f".{e}" for e in self.extensions)
            got = f"extension .{ext}" if ext else "no extension"
            self.fail(f"{text!r} has {got}; the {self.kind} writer supports {allowed}", param, ctx)
        try:
            return check_writable(text)
        except ValueError as err:
            self.fail(str(err), param, ctx)


PLOT_FILE = OutputPath(PLOT_EXTENSIONS, "plot")
CSV_FILE = OutputPath(CSV_EXTENSIONS, "CSV")
JSON_FILE = OutputPath(JSON_EXTENSIONS, "JSON")


# ------------------------------------------------------------------------------------------------- shared options
def command(name: str, short_help: str, *exit_extra: tuple[int, str], success: str = "success") -> Callable:
    """``click.command`` with the short help ``dpkit --help`` shows and the "Exit status" paragraph at the end of
    the command's own help (:func:`exit_codes`)."""
    return click.command(name, short_help=short_help, epilog=exit_codes(*exit_extra, success=success))


def checked_option(*decls: str, type: Count | Real, help: str, **kwargs: Any) -> Callable:
    """``click.option`` of a :class:`Count` or :class:`Real` whose help ends with the allowed values; defaults are
    shown."""
    kwargs.setdefault("show_default", kwargs.get("default") is not None)
    return click.option(*decls, type=type, help=f"{help} {type.describe().capitalize()}.", **kwargs)


def count_option(*decls: str, minimum: int = 0, maximum: int | None = None, help: str, **kwargs: Any) -> Callable:
    """An option taking a whole number in [minimum, maximum] (``1e6`` accepted, ``1.5`` refused)."""
    return checked_option(*decls, type=Count(minimum, maximum), help=help, **kwargs)


def choice_option(*decls: str, choices: Any, default: str | None, help: str = "", **kwargs: Any) -> Callable:
    """An option taking one of ``choices`` (case-insensitive), with its default shown."""
    kind = click.Choice(tuple(choices), case_sensitive=False)
    return click.option(*decls, type=kind, default=default, show_default=default is not None, help=help, **kwargs)


def json_option(help: str = "Print one JSON object on stdout (inf and NaN as the strings 'inf', 'nan').") -> Callable:
    return click.option("--json", "as_json", is_flag=True, help=help)


def seed_option(help: str = "Seed of the random generator.", default: int = 0) -> Callable:
    return checked_option("--seed", type=SEED, default=default, help=help)


def plot_option(help: str, default: str | None = None) -> Callable:
    return click.option(
        "--plot",
        "plot_path",
        type=PLOT_FILE,
        default=default,
        show_default=default is not None,
        help=f"{help} Format from the extension: {', '.join(PLOT_EXTENSIONS)}.",
    )


def csv_option(help: str = "Write the results as CSV to this file (.csv).") -> Callable:
    return click.option("--csv", "csv_path", type=CSV_FILE, default=None, help=help)


def progress_option() -> Callable:
    return click.option(
        "--progress/--no-progress",
        default=None,
        help="Progress bar on stderr [default: when stderr is a terminal, or once the work has taken 5 s].",
    )


# ------------------------------------------------------------------------------------------------- output
def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float as the string "inf", "-inf" or "nan" (JSON has no such numbers;
    ``float()`` reads them back), numpy scalars and arrays as Python numbers and lists."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, str | bytes):  # numpy scalars and arrays
        return json_safe(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


def echo_json(obj: Any, indent: int | None = None) -> None:
    """Print ``obj`` as one JSON document on stdout (:func:`json_safe` first)."""
    click.echo(json.dumps(json_safe(obj), indent=indent))


#: a bar shows after this many seconds when stderr is a terminal, and after LONG_WORK seconds otherwise
TERMINAL_DELAY = 0.5
LONG_WORK = 5.0
_STEPS = 1000


@contextlib.contextmanager
def progress_bar(desc: str, enabled: bool | None = None) -> Iterator[Callable[[float, str], None]]:
    """A progress hook ``(fraction, message)`` (the accountants' ``progress=``) drawing a tqdm bar on stderr.

    ``enabled``: True always, False never, None (auto): shown only if the work lasts TERMINAL_DELAY seconds when
    stderr is a terminal, LONG_WORK seconds otherwise. stdout is never written to, so ``--json`` output stays one
    clean document.
    """
    if enabled is False:
        yield lambda fraction, message: None
        return
    from tqdm.auto import tqdm

    tty = sys.stderr.isatty()
    bar = tqdm(
        total=_STEPS,
        desc=desc,
        file=sys.stderr,
        delay=0.0 if enabled else (TERMINAL_DELAY if tty else LONG_WORK),
        mininterval=0.1 if tty else 5.0,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}",
        leave=False,
    )

    def hook(fraction: float, message: str) -> None:
        done = int(round(min(max(float(fraction), 0.0), 1.0) * _STEPS))
        if message:
            bar.set_postfix_str(message[:60], refresh=False)
        if done > bar.n:
            bar.update(done - bar.n)

    try:
        yield hook
    finally:
        bar.close()


def save_figure(draw: Callable[[Any, Any], None], path: str, *, figsize: tuple[float, float], dpi: int = 120) -> None:
    """Draw with ``draw(fig, ax)`` on a new matplotlib figure (Agg backend) and save it to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    try:
        draw(fig, ax)
        fig.tight_layout()
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
