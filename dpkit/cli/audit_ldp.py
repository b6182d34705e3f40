"""``dpkit audit-ldp``: audit an LDP randomizer from the command line (exit status 1 on a violation).

The auditor itself is :mod:`dpkit.audits.ldp`. Bad input ends with a one-line error naming the option and exit
code 2 (click's usage error), never a traceback.
"""

from __future__ import annotations

import json

import click

from dpkit.accountants import validation
from dpkit.audits.ldp import ATTACKS, LDP_AUDITOR_EPSILONS, LDP_AUDITOR_KS, audit, results_frame, run_grid
from dpkit.audits.ldp.targets import resolve
from dpkit.cli.options import click_callback

__all__ = ["audit_ldp"]

_PROGRESS_TRIALS = 200_000  # show a progress bar (stderr) from this many trials per input on


def _list(text: str, param: str, conv, check, many: bool):
    parts = [p for p in str(text).replace(" ", "").split(",") if p]
    if not parts:
        raise click.BadParameter(f"{param} must not be empty", param_hint=f"'--{param}'")
    if len(parts) > 1 and not many:
        raise click.BadParameter(
            f"{param} takes one value (lists need --grid), got {text!r}", param_hint=f"'--{param}'"
        )
    out = []
    for p in parts:
        try:
            out.append(check(param, conv(p)))
        except (ValueError, TypeError) as err:
            raise click.BadParameter(
                str(err) if "must" in str(err) else f"{param} must be a number, got {p!r}", param_hint=f"'--{param}'"
            ) from None
    return out


@click.command("audit-ldp", short_help="Audit an LDP randomizer: an empirical lower bound on its epsilon.")
@click.argument("target")
@click.option(
    "--epsilon",
    "epsilon_text",
    default=None,
    help="Claimed epsilon (longitudinal: eps_perm). With --grid: a comma list "
    f"[default there: {','.join(f'{e:g}' for e in LDP_AUDITOR_EPSILONS)}].",
)
@click.option(
    "--k",
    "k_text",
    default=None,
    help=f"Domain size. With --grid: a comma list [default there: {','.join(map(str, LDP_AUDITOR_KS))}].",
)
@click.option(
    "--delta",
    type=float,
    default=0.0,
    show_default=True,
    callback=click_callback(lambda n, v: validation.check_probability(n, v, open_low=False, open_high=True)),
    help="Claimed delta (approximate LDP), in [0, 1).",
)
@click.option(
    "--trials",
    type=int,
    default=None,
    callback=click_callback(lambda n, v: validation.check_count(n, v, minimum=1)),
    help="Trials per input [default: 1e6 for dpkit, 5e4 for the anchors' per-user Python clients, 1e5 for callables].",
)
@click.option(
    "--confidence",
    type=float,
    default=0.99,
    show_default=True,
    callback=click_callback(lambda n, v: validation.check_probability(n, v, open_high=True)),
    help="Joint confidence of the lower bound over all tests, in (0, 1).",
)
@click.option(
    "--attack", "attacks", type=click.Choice(ATTACKS), multiple=True, help="Tests to run (repeatable) [default: all]."
)
@click.option(
    "--tau",
    type=int,
    default=10,
    show_default=True,
    callback=click_callback(lambda n, v: validation.check_count(n, v, minimum=1)),
    help="Longitudinal protocols: reports per user (constant value, memo reused).",
)
@click.option(
    "--eps-1",
    "eps_1",
    type=float,
    default=None,
    callback=click_callback(validation.check_positive),
    help="Longitudinal protocols: single-report epsilon [default: epsilon / 2].",
)
@click.option(
    "--d",
    "d",
    type=int,
    default=3,
    show_default=True,
    callback=click_callback(lambda n, v: validation.check_count(n, v, minimum=1)),
    help="Multidimensional protocols: number of attributes.",
)
@click.option(
    "--scope",
    type=click.Choice(["tuple", "attribute"]),
    default="tuple",
    show_default=True,
    help="Multidimensional protocols: change every attribute or attribute 0 only.",
)
@click.option("--grid", is_flag=True, help="Run over a grid of epsilon and k and print a table.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object; a list with --grid).")
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write the results as CSV to this file.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Save a chart of epsilon lower bound vs claimed epsilon.",
)
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr [default: on long runs].")
def audit_ldp(
    target,
    epsilon_text,
    k_text,
    delta,
    trials,
    confidence,
    attacks,
    tau,
    eps_1,
    d,
    scope,
    grid,
    seed,
    as_json,
    csv_path,
    plot_path,
    progress,
):
    """Audit TARGET: run its randomizer on two inputs, bound epsilon from below with Clopper-Pearson.

    TARGET is dpkit:PROTOCOL, multi-freq-ldpy:PROTOCOL, pure-ldp:PROTOCOL or package.module:callable (a function
    of one value returning one report; declare --epsilon, --delta and --k). Exit status 1 when the lower bound
    exceeds the claimed epsilon (a violation), 0 otherwise.
    """
    if as_json and csv_path:
        raise click.BadParameter("give --json or --csv, not both", param_hint="'--csv'")
    if not grid and (epsilon_text is None or k_text is None):
        missing = "--epsilon" if epsilon_text is None else "--k"
        raise click.BadParameter(f"{missing[2:]} is required (or use --grid)", param_hint=f"'{missing}'")
    eps_list = (
        _list(epsilon_text, "epsilon", float, validation.check_positive, grid)
        if epsilon_text
        else list(LDP_AUDITOR_EPSILONS)
    )
    k_list = (
        _list(k_text, "k", int, lambda n, v: validation.check_count(n, v, minimum=2), grid)
        if k_text
        else list(LDP_AUDITOR_KS)
    )
    options = {}
    if target.startswith("dpkit:"):
        options = {"tau": tau, "d": d, "scope": scope}
        if eps_1 is not None:
            options["eps_1"] = eps_1
    try:  # resolve once to validate TARGET (and the options) before any long run
        first = resolve(target, k=k_list[0], epsilon=eps_list[0], delta=delta, **options)
    except (ValueError, TypeError) as err:
        raise click.BadParameter(str(err), param_hint="'TARGET'") from None
    n_trials = trials or first.default_trials
    show = progress if progress is not None else (grid or n_trials >= _PROGRESS_TRIALS)
    attacks = attacks or ATTACKS
    try:
        if grid:
            results = run_grid(
                target,
                eps_list,
                k_list,
                trials=trials,
                confidence=confidence,
                delta=delta,
                seed=seed,
                attacks=attacks,
                progress=show,
                **options,
            )
        else:
            results = [audit(first, trials, confidence=confidence, seed=seed, attacks=attacks, progress=show)]
    except (ValueError, TypeError) as err:
        raise click.BadParameter(str(err), param_hint="'TARGET'") from None
    frame = results_frame(results)
    if as_json:
        objs = [r.to_dict() for r in results]
        click.echo(json.dumps(objs if grid else objs[0], indent=2))
    elif grid:
        cols = ["target", "k", "epsilon_claimed", "epsilon_lower_bound", "cap", "trials", "violation", "seconds"]
        click.echo(frame[cols].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
        n_bad = int(frame["violation"].sum())
        click.echo(
            f"\n{len(results)} settings, confidence {confidence:g}: "
            + (f"{n_bad} VIOLATION(S)" if n_bad else "no violation")
        )
    else:
        r = results[0]
        click.echo(f"target             {r.target}  (k={r.k}, delta={r.delta:g})")
        click.echo(f"claimed epsilon    {r.epsilon_claimed:.6g}")
        click.echo(
            f"epsilon >=         {r.epsilon_lower_bound:.4f}  with confidence {r.confidence:g} "
            f"(best test: {r.best_test})"
        )
        click.echo(f"cap                {r.cap:.4f}  (the largest bound {r.trials} trials per input can show)")
        click.echo(f"verdict            {r.verdict}")
    if csv_path:
        frame.to_csv(csv_path, index=False)
    if plot_path:
        _plot(frame, plot_path)
    if any(r.violation for r in results):
        raise SystemExit(1)


def _plot(frame, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for k, sub in frame.groupby("k"):
        sub = sub.sort_values("epsilon_claimed")
        ax.plot(sub["epsilon_claimed"], sub["epsilon_lower_bound"].clip(lower=0), "o-", label=f"k={k}")
    hi = float(max(frame["epsilon_claimed"].max(), 1.0))
    ax.plot([0, hi], [0, hi], "k:", label="claimed")
    ax.axhline(float(frame["cap"].min()), color="grey", ls="--", label="cap")
    ax.set_xlabel("claimed epsilon")
    ax.set_ylabel("epsilon lower bound")
    ax.set_title(str(frame["target"].iloc[0]))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
