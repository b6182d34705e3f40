"""``dpkit mf optimize`` and ``dpkit mf compare``: matrix-factorization (correlated-noise) strategies for n steps of
private training, and their error with unit noise and clipping.

A thin layer over :mod:`dpkit.mechanisms.matrix_factorization`. The command-line names of the strategy families and
the registry names they build (``make_strategy``):

* ``identity`` -> ``dp-sgd`` (independent noise every step: the DP-SGD baseline);
* ``sqrt`` -> ``sqrt`` (the square-root factorization of the prefix-sum workload);
* ``nu`` -> ``nu-dp-ftrl`` (``--nu V``; without it the best nu of a grid over [0, 0.999] for the setting);
* ``banded`` -> ``banded-toeplitz`` (the optimal ``--bands``-banded Toeplitz strategy; default bands: the
  participation's separation, at most n);
* ``banded-column`` -> ``banded`` (column-normalized banded, not Toeplitz; mean error only);
* ``blt`` -> ``blt`` (buffered linear Toeplitz, ``--buffers`` or chosen by the optimizer);
* ``dense`` -> ``dense`` (the optimal explicit strategy; single or fixed-epoch participation, mean error only).

Participation (who may contribute to which steps): none given, each example once; ``--participations K`` alone,
K epochs in a fixed order (n / K steps each, n a multiple of K); ``--min-sep B``, any steps at least B apart (at most
``--participations`` of them, else as many as fit).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import click
import numpy as np

from dpkit.cli import options as opt

__all__ = ["FAMILIES", "mf"]

# CLI name -> registry name of dpkit.mechanisms.matrix_factorization.make_strategy
FAMILIES = {
    "identity": "dp-sgd",
    "sqrt": "sqrt",
    "nu": "nu-dp-ftrl",
    "banded": "banded-toeplitz",
    "banded-column": "banded",
    "blt": "blt",
    "dense": "dense",
}
MAX_STEPS = 100_000
FAMILY_MAX_STEPS = {"dense": 2000, "banded-column": 2000}  # O(n^3) per iteration / slow L-BFGS beyond
MEAN_ONLY = ("banded-column", "dense")
NU_GRID = np.concatenate([[0.0], np.geomspace(1e-4, 0.999, 60)])


def _participation(n: int, participations: int | None, min_sep: int | None):
    from dpkit.mechanisms.matrix_factorization import FixedEpoch, MinSeparation, SingleParticipation

    if min_sep is not None:
        if min_sep > n:
            raise click.BadParameter(f"must be in [1, n={n}], got {min_sep}", param_hint="'--min-sep'")
        return MinSeparation(min_sep, participations)
    if participations is None or participations == 1:
        return SingleParticipation()
    if n % participations:
        raise click.BadParameter(
            f"{participations} epochs in a fixed order need n to be a multiple of it, got n={n} (or give --min-sep)",
            param_hint="'--participations'",
        )
    return FixedEpoch(participations, n // participations)


def _loss(report, error: str) -> float:
    return report.sensitivity.squared * (report.mean_error if error == "mean" else report.max_error)


def _best_nu(n: int, participation, error: str, progress: Callable[[float, str], None]):
    """nu-DP-FTRL with the nu of NU_GRID that minimizes sensitivity^2 x error for the setting."""
    from dpkit.mechanisms.matrix_factorization import make_strategy

    best = None
    for i, nu in enumerate(NU_GRID):
        progress(i / len(NU_GRID), f"nu = {nu:.4g}")
        strategy = make_strategy("nu-dp-ftrl", n, participation=participation, nu=float(nu))
        loss = _loss(strategy.evaluate(participation), error)
        if best is None or loss < best[0]:
            best = (loss, strategy)
    assert best is not None
    return best[1]


def _build(family: str, n: int, participation, *, bands, buffers, nu, error: str, progress=lambda f, m: None):
    """The strategy of ``family`` (a CLI name) for the setting; options a family does not take are errors."""
    from dpkit.mechanisms.matrix_factorization import make_strategy

    for option, value, takes in (("--bands", bands, ("banded", "banded-column")), ("--buffers", buffers, ("blt",))):
        if value is not None and family not in takes:
            raise click.BadParameter(
                f"applies to --strategy {' or '.join(takes)}, not {family}", param_hint=f"'{option}'"
            )
    if nu is not None and family != "nu":
        raise click.BadParameter(f"applies to --strategy nu, not {family}", param_hint="'--nu'")
    if error == "max" and family in MEAN_ONLY:
        raise click.BadParameter(f"--strategy {family} optimizes the mean error only", param_hint="'--error'")
    if n > FAMILY_MAX_STEPS.get(family, MAX_STEPS):
        raise click.BadParameter(
            f"--strategy {family} takes n <= {FAMILY_MAX_STEPS[family]} here (its optimizer grows fast), got {n}",
            param_hint="'--n'",
        )
    name = FAMILIES[family]
    if family in ("banded", "banded-column"):
        bands = bands if bands is not None else min(n, participation.separation(n))
        if bands > n:
            raise click.BadParameter(f"must be in [1, n={n}], got {bands}", param_hint="'--bands'")
        options = {"bands": bands, **({"error": error} if family == "banded" else {})}
        return make_strategy(name, n, participation=participation, **options)
    if family == "nu":
        if nu is None:
            return _best_nu(n, participation, error, progress)
        return make_strategy(name, n, participation=participation, nu=nu)
    if family == "blt":
        return make_strategy(name, n, participation=participation, buffers=buffers, error=error)
    return make_strategy(name, n, participation=participation)


def _evaluate(family: str, n: int, participation, **options) -> dict:
    """The strategy's figures (``StrategyReport.to_dict()``) with the family, its registry name and the seconds
    building and evaluating it took."""
    start = time.perf_counter()
    try:
        strategy = _build(family, n, participation, **options)
        report = strategy.evaluate(participation)
    except (ValueError, TypeError, OverflowError) as err:
        raise click.UsageError(f"--strategy {family}: {err}") from None
    return {
        "family": family,
        "registry_name": FAMILIES[family],
        **report.to_dict(),
        "seconds": time.perf_counter() - start,
    }


def _setting_options(f):
    """``--n``, ``--participations`` and ``--min-sep``: the setting both commands take."""
    f = opt.count_option(
        "--min-sep", minimum=1, maximum=MAX_STEPS, help="Min-separation B: an example's steps are at least B apart."
    )(f)
    f = opt.count_option(
        "--participations",
        minimum=1,
        maximum=MAX_STEPS,
        help="Times one example may take part: alone, K epochs in a fixed order (n a multiple of K); with "
        "--min-sep, at most K steps.",
    )(f)
    return opt.count_option("--n", "n", minimum=1, maximum=MAX_STEPS, required=True, help="Number of steps.")(f)


@click.group(short_help="Matrix-factorization (correlated-noise) strategies: optimize one, compare them all.")
def mf() -> None:
    """Matrix-factorization mechanisms: correlated noise across training steps that cancels in the running sum.

    Figures are for the prefix-sum workload with unit noise multiplier and clipping norm: rmse = sqrt(sensitivity^2 x
    mean error), max_rmse likewise with the max error; multiply by the noise multiplier for a given privacy budget.
    """


@opt.command("optimize", "Build or optimize one strategy and print its error and sensitivity.")
@opt.choice_option("--strategy", "family", choices=FAMILIES, default="blt")
@_setting_options
@opt.count_option("--bands", minimum=1, maximum=MAX_STEPS, help="banded: number of bands [default: separation].")
@opt.count_option("--buffers", minimum=0, maximum=64, help="blt: number of buffers [default: optimized].")
@opt.checked_option("--nu", type=opt.HALF_OPEN_UNIT, help="nu: its parameter [default: the best of a grid].")
@opt.choice_option(
    "--error", choices=("mean", "max"), default="mean", help="The error the optimizer minimizes (times sensitivity^2)."
)
@opt.json_option("Print one JSON object: rmse, max_rmse, mean_error, max_error, sensitivity, seconds, ...")
@opt.progress_option()
def optimize(family, n, participations, min_sep, bands, buffers, nu, error, as_json, progress):
    """Build the strategy of one family for n steps (optimizing it where the family is optimized) and print its
    figures. The family names map to dpkit.mechanisms.matrix_factorization's registry: identity -> dp-sgd,
    nu -> nu-dp-ftrl, banded -> banded-toeplitz, banded-column -> banded; the others are the same.

    \b
    Examples:
      dpkit mf optimize --strategy blt --n 1000 --participations 10
      dpkit mf optimize --strategy banded --n 1000 --min-sep 100 --bands 64 --json
    """
    participation = _participation(n, participations, min_sep)
    with opt.progress_bar(f"{family} strategy", progress) as hook:
        row = _evaluate(family, n, participation, bands=bands, buffers=buffers, nu=nu, error=error, progress=hook)
    if as_json:
        opt.echo_json(row)
        return
    exact = "exact" if row["sensitivity_exact"] else "upper bound"
    for label, value in (
        ("strategy", f"{row['strategy']}  (family {family}, registry name {row['registry_name']})"),
        ("participation", f"{row['participation']}, n={n}"),
        ("rmse", f"{row['rmse']:.6g}  (sqrt of sensitivity^2 x mean error; unit noise and clip)"),
        ("max rmse", f"{row['max_rmse']:.6g}"),
        ("mean error", f"{row['mean_error']:.6g}"),
        ("max error", f"{row['max_error']:.6g}"),
        ("sensitivity", f"{row['sensitivity']:.6g}  ({exact}: {row['sensitivity_method']})"),
        ("noise memory", f"{row['noise_memory']} buffers"),
        ("seconds", f"{row['seconds']:.3f}"),
    ):
        click.echo(f"{label:<14} {value}")


@opt.command("compare", "Every strategy family for one setting, in a table.")
@_setting_options
@opt.json_option("Print one JSON object {n, participation, results: {family: figures}}.")
@opt.progress_option()
def compare(n, participations, min_sep, as_json, progress):
    """Build every strategy family for one setting (default options, mean error) and print their figures side by
    side, best rmse first. A family that cannot serve the setting (dense under min-separation, a size beyond its
    optimizer's limit) is listed as skipped with the reason.

    \b
    Example:
      dpkit mf compare --n 1000 --participations 10
    """
    participation = _participation(n, participations, min_sep)
    rows, skipped = [], {}
    with opt.progress_bar("strategies", progress) as hook:
        for i, family in enumerate(FAMILIES):
            hook(i / len(FAMILIES), family)
            try:
                rows.append(_evaluate(family, n, participation, bands=None, buffers=None, nu=None, error="mean"))
            except click.UsageError as err:
                skipped[family] = err.format_message()
        hook(1.0, "done")
    rows.sort(key=lambda r: r["rmse"])
    if as_json:
        opt.echo_json(
            {
                "n": n,
                "participation": participation.describe(),
                "results": {r["family"]: r for r in rows},
                "skipped": skipped,
            }
        )
        return
    click.echo(f"prefix sums over n={n} steps, {participation.describe()}; unit noise multiplier and clipping norm")
    click.echo(f"{'family':<14} {'strategy':<40} {'rmse':>9} {'max rmse':>9} {'sens.':>7} {'memory':>6} {'seconds':>8}")
    for r in rows:
        click.echo(
            f"{r['family']:<14} {r['strategy'][:40]:<40} {r['rmse']:>9.4g} {r['max_rmse']:>9.4g} "
            f"{r['sensitivity']:>7.4g} {r['noise_memory']:>6} {r['seconds']:>8.2f}"
        )
    for family, reason in skipped.items():
        click.echo(f"{family:<14} skipped: {reason}")


for _command in (optimize, compare):
    mf.add_command(_command)
