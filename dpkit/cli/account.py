"""``dpkit account`` and ``dpkit account-report``: privacy accounting of DP-SGD from the command line.

``dpkit account`` answers the two everyday accounting questions for DP-SGD with Poisson sampling (epsilon of a
run; noise multiplier for a target epsilon) under the RDP and/or PLD accountant; ``dpkit account-report`` prints
an accounting report for a CIFAR-10-sized run (the tables of :mod:`dpkit.cli.report`).

Bad input ends with a one-line error that names the parameter and exit code 2 (click's usage-error code),
never a traceback.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping

import click

from dpkit.accountants.events import MAX_COUNT
from dpkit.cli import options as opt

RELATIONS = ("add_or_remove", "replace_one")


def _fmt(x: float) -> str:
    return f"{x:.6g}"


@dataclasses.dataclass(frozen=True)
class _Query:
    """What was asked: the DP-SGD run and either its noise multiplier or the target epsilon."""

    sampling_rate: float
    steps: int
    epochs: float | None
    delta: float
    noise_multiplier: float | None
    target_epsilon: float | None
    neighbouring_relation: str

    def setting(self) -> str:
        return f"q={_fmt(self.sampling_rate)}, {self.steps} steps, delta={self.delta:g}, {self.neighbouring_relation}"


# ------------------------------------------------------------ the commands
@opt.command("account", "Epsilon of a DP-SGD run, or the noise multiplier for a target epsilon.")
@opt.checked_option(
    "--sampling-rate",
    "-q",
    type=opt.PROBABILITY,
    required=True,
    help="Poisson sampling probability q per step (expected batch size / dataset size).",
)
@opt.checked_option(
    "--noise-multiplier",
    "-s",
    type=opt.POSITIVE,
    help="Noise std / L2 sensitivity under the chosen relation (DP-SGD: std / clipping norm under "
    "add_or_remove, half that under replace_one). Give this to get epsilon.",
)
@opt.checked_option(
    "--target-epsilon",
    "-e",
    type=opt.POSITIVE,
    help="Target epsilon. Give this (instead of --noise-multiplier) to get the noise multiplier.",
)
@opt.count_option("--steps", "-t", minimum=1, maximum=MAX_COUNT, help="Number of steps.")
@opt.checked_option(
    "--epochs", type=opt.POSITIVE, help="Number of epochs, instead of --steps: steps = ceil(epochs / sampling rate)."
)
@opt.checked_option("--delta", "-d", type=opt.OPEN_UNIT, required=True, help="Target delta.")
@opt.choice_option(
    "--accountant",
    "-a",
    choices=["rdp", "pld", "both"],
    default="both",
    help="Which accountant(s) to use.",
)
@opt.choice_option(
    "--neighbouring-relation",
    choices=RELATIONS,
    default="add_or_remove",
    help="Neighbouring datasets: one record added or removed, or one replaced.",
)
@opt.json_option("Print one JSON object with the inputs and the results.")
@opt.progress_option()
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
    progress: bool | None,
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
    from dpkit.accountants.progress import Progress
    from dpkit.cli.report import account_dpsgd, calibrate_dpsgd, epochs_to_steps

    if (noise_multiplier is None) == (target_epsilon is None):
        raise click.UsageError(
            "give exactly one of --noise-multiplier (to get epsilon) and --target-epsilon (to get the noise multiplier)"
        )
    if (steps is None) == (epochs is None):
        raise click.UsageError("give exactly one of --steps and --epochs")
    if epochs is not None:
        steps = epochs_to_steps(epochs, sampling_rate)
        if steps > MAX_COUNT:
            raise click.BadParameter(
                f"epochs / sampling rate = {steps} steps, more than the 2^53 an accountant composes",
                param_hint="'--epochs'",
            )
    assert steps is not None  # exactly one of --steps and --epochs was given
    accountant = accountant.lower()
    names = ["rdp", "pld"] if accountant == "both" else [accountant]
    query = _Query(sampling_rate, steps, epochs, delta, noise_multiplier, target_epsilon, neighbouring_relation)

    sigmas: dict[str, float] = {}
    results = {}
    try:
        with opt.progress_bar("accounting", progress) as hook:
            report = Progress(hook)
            for i, name in enumerate(names):
                part = report.part(i / len(names), (i + 1) / len(names))
                if target_epsilon is not None:
                    sigmas[name], _ = calibrate_dpsgd(
                        name,
                        sampling_rate,
                        target_epsilon,
                        steps,
                        delta,
                        neighbouring_relation,
                        progress=part.part(0.0, 0.9).hook(),
                    )
                    part = part.part(0.9, 1.0)
                elif noise_multiplier is not None:
                    sigmas[name] = noise_multiplier
                results[name] = account_dpsgd(
                    name, sampling_rate, sigmas[name], steps, delta, neighbouring_relation, progress=part.hook()
                )
    except UnsupportedEventError as err:  # the accountant cannot analyse DP-SGD under this relation
        raise click.BadParameter(str(err), param_hint="'--neighbouring-relation'") from None
    except (ValueError, TypeError, OverflowError) as err:
        raise click.UsageError(str(err)) from None

    if as_json:
        _print_json(accountant, names, results, sigmas, query)
    elif len(names) == 1:
        name = names[0]
        click.echo(_fmt(sigmas[name] if target_epsilon is not None else results[name].epsilon))
    else:
        _print_text(names, results, sigmas, query)


def _print_json(accountant: str, names: list[str], results, sigmas: dict[str, float], query: _Query) -> None:
    out: dict = {
        "accountant": accountant,
        "neighbouring_relation": query.neighbouring_relation,
        "sampling_rate": query.sampling_rate,
        "steps": query.steps,
    }
    if query.epochs is not None:
        out["epochs"] = query.epochs
    out["delta"] = query.delta
    if query.target_epsilon is not None:
        out["target_epsilon"] = query.target_epsilon

    def per_accountant(values: Mapping[str, float | None]):
        return values[names[0]] if len(names) == 1 else values

    out["noise_multiplier"] = per_accountant(sigmas) if query.target_epsilon is not None else query.noise_multiplier
    out["epsilon"] = per_accountant({n: r.epsilon for n, r in results.items()})
    lower = [n for n, r in results.items() if r.epsilon_lower is not None]
    if lower:
        out["epsilon_lower"] = per_accountant({n: results[n].epsilon_lower for n in lower})
        out["discretization_error"] = per_accountant({n: results[n].discretization_error for n in lower})
    opt.echo_json(out)


def _print_text(names: list[str], results, sigmas: dict[str, float], query: _Query) -> None:
    from dpkit.cli.report import compare_noise

    if query.target_epsilon is None:
        assert query.noise_multiplier is not None  # exactly one of the two was given
        click.echo(f"epsilon of DP-SGD with noise multiplier {_fmt(query.noise_multiplier)} ({query.setting()}):")
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
        click.echo(f"noise multiplier for epsilon <= {_fmt(query.target_epsilon)} ({query.setting()}):")
        for n in names:
            click.echo(f"  {n.upper()}: {_fmt(sigmas[n])}  (epsilon at this noise: {_fmt(results[n].epsilon)})")
        if "rdp" in sigmas and "pld" in sigmas:
            click.echo(f"  {compare_noise(sigmas['rdp'], sigmas['pld'])}")


@opt.command("account-report", "Accounting report for a CIFAR-10-sized DP-SGD run.")
@opt.count_option("--dataset-size", minimum=1, maximum=MAX_COUNT, default=50_000, help="Number of training records N.")
@opt.count_option(
    "--batch-size", minimum=1, maximum=MAX_COUNT, default=256, help="Expected batch size (q = batch size / N), <= N."
)
@opt.checked_option("--epochs", type=opt.POSITIVE, default=100.0, help="Number of epochs (steps = ceil(epochs / q)).")
@opt.checked_option("--delta", type=opt.OPEN_UNIT, default=1e-5, help="Target delta.")
@opt.progress_option()
def account_report(dataset_size: int, batch_size: int, epochs: float, delta: float, progress: bool | None) -> None:
    """Print an accounting report for a CIFAR-10-sized DP-SGD run.

    (a) epsilon under RDP and PLD at noise multipliers 0.8, 1.0, 1.2, 1.5; (b) the noise multiplier each
    accountant needs for epsilon 1, 3, 8, and how much PLD saves; with the seconds each computation took.
    """
    from dpkit.cli.report import DpSgdSetting, epochs_to_steps, render_report

    if batch_size > dataset_size:
        raise click.BadParameter(
            f"must be at most --dataset-size={dataset_size}, got {batch_size}", param_hint="'--batch-size'"
        )
    if epochs_to_steps(epochs, batch_size / dataset_size) > MAX_COUNT:
        raise click.BadParameter(
            f"epochs x dataset size / batch size is more than the 2^53 steps an accountant composes, got {epochs:g}",
            param_hint="'--epochs'",
        )
    start = time.perf_counter()
    try:
        setting = DpSgdSetting(dataset_size=dataset_size, batch_size=batch_size, epochs=epochs, delta=delta)
        with opt.progress_bar("accounting report", progress) as hook:
            text = render_report(setting, progress=hook)
    except (ValueError, TypeError, OverflowError) as err:
        raise click.UsageError(str(err)) from None
    click.echo(text)
    click.echo(f"\nTotal: {time.perf_counter() - start:.1f} s")
