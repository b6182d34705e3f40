"""``dpkit account`` and ``dpkit account-report``: privacy accounting of DP-SGD from the command line.

``dpkit account`` answers the two everyday accounting questions for DP-SGD with Poisson sampling (epsilon of a
run; noise multiplier for a target epsilon) under the RDP and/or PLD accountant; ``dpkit account-report`` prints
an accounting report for a CIFAR-10-sized run (the tables of :mod:`dpkit.cli.report`).

Bad input ends with a one-line error that names the parameter and exit code 2 (click's usage-error code),
never a traceback.
"""

from __future__ import annotations

import json
import math
import time

import click

from dpkit.accountants import validation
from dpkit.cli.options import click_callback

RELATIONS = ("add_or_remove", "replace_one")


# ------------------------------------------------------------ option checks


_positive = click_callback(validation.check_positive)
_sampling_rate = click_callback(validation.check_probability)
_delta = click_callback(lambda name, value: validation.check_delta(name, value))
_steps = click_callback(lambda name, value: validation.check_count(name, value, minimum=1))


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _json_number(x: float) -> float | str:
    """JSON has no infinity or NaN: those become the strings "inf" / "nan" (``float()`` reads them back)."""
    return x if math.isfinite(x) else str(x)


# ------------------------------------------------------------ the commands
@click.command("account", short_help="Epsilon of a DP-SGD run, or the noise multiplier for a target epsilon.")
@click.option(
    "--sampling-rate",
    "-q",
    type=float,
    required=True,
    callback=_sampling_rate,
    help="Poisson sampling probability q per step (expected batch size / dataset size), in (0, 1].",
)
@click.option(
    "--noise-multiplier",
    "-s",
    type=float,
    default=None,
    callback=_positive,
    help="Noise std / L2 sensitivity under the chosen relation (DP-SGD: std / clipping norm under "
    "add_or_remove, half that under replace_one). Give this to get epsilon.",
)
@click.option(
    "--target-epsilon",
    "-e",
    type=float,
    default=None,
    callback=_positive,
    help="Target epsilon. Give this (instead of --noise-multiplier) to get the noise multiplier.",
)
@click.option("--steps", "-t", type=int, default=None, callback=_steps, help="Number of steps (>= 1).")
@click.option(
    "--epochs",
    type=float,
    default=None,
    callback=_positive,
    help="Number of epochs, instead of --steps: steps = ceil(epochs / sampling rate).",
)
@click.option("--delta", "-d", type=float, required=True, callback=_delta, help="Target delta, in (0, 1).")
@click.option(
    "--accountant",
    "-a",
    type=click.Choice(["rdp", "pld", "both"], case_sensitive=False),
    default="both",
    show_default=True,
    help="Which accountant(s) to use.",
)
@click.option(
    "--neighbouring-relation",
    type=click.Choice(RELATIONS),
    default="add_or_remove",
    show_default=True,
    help="Neighbouring datasets: one record added or removed, or one replaced.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the inputs and the results.")
def account(
    sampling_rate: float,
    noise_multiplier: float | None,
    target_epsilon: float | None,
    steps: int | None,
    epochs: float | None,
    delta: float,
    accountant: str,
    neighbouring_relation: str,
    as_json: bool,
) -> None:
    """Epsilon of a DP-SGD run, or the noise multiplier a target epsilon needs.

    The run is --steps (or ceil(--epochs / --sampling-rate)) steps of the Poisson-subsampled Gaussian
    mechanism. With --noise-multiplier it prints epsilon at --delta; with --target-epsilon it prints the
    smallest noise multiplier (within 0.1%) whose epsilon is at most the target. With one accountant the
    output is a bare number; with `both` (the default) one line per accountant. PLD's epsilon is an upper
    bound (pessimistic discretization); its lower bound and discretization error are shown too.

    \b
    Examples:
      dpkit account -q 0.01 -s 1.0 --steps 1000 -d 1e-5
      dpkit account -q 0.00512 --epochs 100 -d 1e-5 --target-epsilon 3 --accountant pld
      dpkit account -q 0.01 -s 1.0 --steps 1000 -d 1e-5 --json
    """
    from dpkit.accountants import UnsupportedEventError
    from dpkit.cli.report import account_dpsgd, calibrate_dpsgd, epochs_to_steps

    if (noise_multiplier is None) == (target_epsilon is None):
        raise click.UsageError(
            "give exactly one of --noise-multiplier (to get epsilon) and --target-epsilon (to get the noise multiplier)"
        )
    if (steps is None) == (epochs is None):
        raise click.UsageError("give exactly one of --steps and --epochs")
    if epochs is not None:
        steps = epochs_to_steps(epochs, sampling_rate)
    assert steps is not None  # exactly one of --steps and --epochs was given
    accountant = accountant.lower()
    names = ["rdp", "pld"] if accountant == "both" else [accountant]

    sigmas: dict[str, float] = {}
    results = {}
    try:
        for name in names:
            if target_epsilon is not None:
                sigmas[name], _ = calibrate_dpsgd(
                    name, sampling_rate, target_epsilon, steps, delta, neighbouring_relation
                )
            elif noise_multiplier is not None:
                sigmas[name] = noise_multiplier
            results[name] = account_dpsgd(name, sampling_rate, sigmas[name], steps, delta, neighbouring_relation)
    except UnsupportedEventError as err:  # the accountant cannot analyse DP-SGD under this relation
        raise click.BadParameter(str(err), param_hint="'--neighbouring-relation'") from None
    except (ValueError, TypeError) as err:
        raise click.UsageError(str(err)) from None

    query = dict(
        sampling_rate=sampling_rate,
        steps=steps,
        epochs=epochs,
        delta=delta,
        noise_multiplier=noise_multiplier,
        target_epsilon=target_epsilon,
        neighbouring_relation=neighbouring_relation,
    )
    if as_json:
        _print_json(accountant, names, results, sigmas, **query)
    elif len(names) == 1:
        name = names[0]
        click.echo(_fmt(sigmas[name] if target_epsilon is not None else results[name].epsilon))
    else:
        _print_text(names, results, sigmas, **query)


def _print_json(
    accountant,
    names,
    results,
    sigmas,
    *,
    sampling_rate,
    steps,
    epochs,
    delta,
    noise_multiplier,
    target_epsilon,
    neighbouring_relation,
) -> None:
    out: dict = {
        "accountant": accountant,
        "neighbouring_relation": neighbouring_relation,
        "sampling_rate": sampling_rate,
        "steps": steps,
    }
    if epochs is not None:
        out["epochs"] = epochs
    out["delta"] = delta
    if target_epsilon is not None:
        out["target_epsilon"] = target_epsilon

    def per_accountant(values: dict[str, float]):
        as_json = {k: _json_number(v) for k, v in values.items()}
        return as_json[names[0]] if len(names) == 1 else as_json

    out["noise_multiplier"] = per_accountant(sigmas) if target_epsilon is not None else noise_multiplier
    out["epsilon"] = per_accountant({n: r.epsilon for n, r in results.items()})
    lower = {n: r.epsilon_lower for n, r in results.items() if r.epsilon_lower is not None}
    if lower:
        error = {n: results[n].discretization_error for n in lower}
        if len(names) == 1:
            out["epsilon_lower"], out["discretization_error"] = (
                _json_number(lower[names[0]]),
                _json_number(error[names[0]]),
            )
        else:
            out["epsilon_lower"] = {k: _json_number(v) for k, v in lower.items()}
            out["discretization_error"] = {k: _json_number(v) for k, v in error.items()}
    click.echo(json.dumps(out))


def _print_text(
    names,
    results,
    sigmas,
    *,
    sampling_rate,
    steps,
    epochs,
    delta,
    noise_multiplier,
    target_epsilon,
    neighbouring_relation,
) -> None:
    setting = f"q={_fmt(sampling_rate)}, {steps} steps, delta={delta:g}, {neighbouring_relation}"
    if target_epsilon is None:
        click.echo(f"epsilon of DP-SGD with noise multiplier {_fmt(noise_multiplier)} ({setting}):")
        for n in names:
            r = results[n]
            line = f"  {n.upper()}: {_fmt(r.epsilon)}"
            if r.epsilon_lower is not None:
                line += (
                    f"  (upper bound; lower bound {_fmt(r.epsilon_lower)}, discretization error "
                    f"{r.discretization_error:.2g})"
                )
            click.echo(line)
    else:
        click.echo(f"noise multiplier for epsilon <= {_fmt(target_epsilon)} ({setting}):")
        for n in names:
            click.echo(f"  {n.upper()}: {_fmt(sigmas[n])}  (epsilon at this noise: {_fmt(results[n].epsilon)})")
        if "rdp" in sigmas and "pld" in sigmas:
            saving = 100.0 * (1.0 - sigmas["pld"] / sigmas["rdp"])
            click.echo(f"  PLD needs {saving:.1f}% less noise than RDP")


@click.command("account-report", short_help="Accounting report for a CIFAR-10-sized DP-SGD run.")
@click.option(
    "--dataset-size",
    type=click.IntRange(min=1),
    default=50_000,
    show_default=True,
    help="Number of training records N.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Expected batch size (q = batch size / N).",
)
@click.option(
    "--epochs",
    type=float,
    default=100.0,
    show_default=True,
    callback=_positive,
    help="Number of epochs (steps = ceil(epochs / q)).",
)
@click.option("--delta", type=float, default=1e-5, show_default=True, callback=_delta, help="Target delta.")
def account_report(dataset_size: int, batch_size: int, epochs: float, delta: float) -> None:
    """Print an accounting report for a CIFAR-10-sized DP-SGD run.

    (a) epsilon under RDP and PLD at noise multipliers 0.8, 1.0, 1.2, 1.5; (b) the noise multiplier each
    accountant needs for epsilon 1, 3, 8, and how much PLD saves; with the seconds each computation took.
    """
    from dpkit.cli.report import DpSgdSetting, render_report

    if batch_size > dataset_size:
        raise click.BadParameter(
            f"must be at most --dataset-size={dataset_size}, got {batch_size}", param_hint="'--batch-size'"
        )
    start = time.perf_counter()
    try:
        setting = DpSgdSetting(dataset_size=dataset_size, batch_size=batch_size, epochs=epochs, delta=delta)
        text = render_report(setting)
    except (ValueError, TypeError) as err:
        raise click.UsageError(str(err)) from None
    click.echo(text)
    click.echo(f"\nTotal: {time.perf_counter() - start:.1f} s")
