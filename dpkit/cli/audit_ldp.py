"""``dpkit audit-ldp``: audit an LDP randomizer from the command line.

The auditor itself is :mod:`dpkit.audits.ldp`. Exit status: 0 no violation, 1 a violation (the lower bound exceeds
the claimed epsilon), 2 a usage error (a bad option, or a TARGET that cannot be resolved or returns reports of the
wrong kind; one line naming the option or TARGET), 3 the audited target raised an error while it ran (one line with
the exception and where it was raised). A crash of the target is never mistaken for a violation.
"""

from __future__ import annotations

import os
import traceback

import click

import dpkit
from dpkit import accountants, audits, mechanisms
from dpkit.accountants import validation
from dpkit.audits.ldp import ATTACKS, LDP_AUDITOR_EPSILONS, LDP_AUDITOR_KS, audit, results_frame, run_grid
from dpkit.audits.ldp.targets import resolve
from dpkit.cli import options as opt

__all__ = ["audit_ldp"]

_PROGRESS_TRIALS = 200_000  # show a progress bar (stderr) from this many trials per input on
MAX_TRIALS = 10**12
MAX_K = 2**32
_DPKIT_CODE = tuple(os.path.dirname(m.__file__ or "") + os.sep for m in (dpkit, accountants, mechanisms, audits))


def _list(text: str, param: str, conv, check, many: bool):
    """The values of a comma list option, each checked; one value unless ``many``."""
    parts = [p for p in str(text).replace(" ", "").split(",") if p]
    hint = f"'--{param}'"
    if not parts:
        raise click.BadParameter(f"{param} must not be empty", param_hint=hint)
    if len(parts) > 1 and not many:
        raise click.BadParameter(f"{param} takes one value (lists need --grid), got {text!r}", param_hint=hint)
    out = []
    for p in parts:
        try:
            value = conv(p)
        except ValueError:
            raise click.BadParameter(f"{param} must be a number, got {p!r}", param_hint=hint) from None
        try:
            out.append(check(param, value))
        except (ValueError, TypeError, OverflowError) as err:
            raise click.BadParameter(str(err), param_hint=hint) from None
    return out


def _count_of(text: str) -> int | float:
    """A whole number written as 10, 1e3 or 1_000 (check_count refuses the non-integral ones)."""
    text = text.replace("_", "")
    try:
        return int(text)
    except ValueError:
        return float(text)


def _raised_in_dpkit(err: BaseException) -> bool:
    """Whether the innermost frame of ``err``'s traceback is dpkit's own code (not the audited target's)."""
    frames = traceback.extract_tb(err.__traceback__)
    return not frames or frames[-1].filename.startswith(_DPKIT_CODE)


def _target_failure(target: str, err: BaseException) -> opt.TargetFailure:
    frames = traceback.extract_tb(err.__traceback__)
    where = f" (raised at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    message = str(err).splitlines()[0] if str(err) else ""
    return opt.TargetFailure(
        f"the audited target {target} failed while running: {type(err).__name__}: {message}{where}"
    )


@opt.command(
    "audit-ldp",
    "Audit an LDP randomizer: an empirical lower bound on its epsilon.",
    (opt.EXIT_FINDING, "a violation: the lower bound exceeds the claimed epsilon"),
    (opt.EXIT_TARGET_FAILED, "the audited target raised an error while it ran"),
    success="no violation",
)
@click.argument("target")
@click.option(
    "--epsilon",
    "epsilon_text",
    default=None,
    help="Claimed epsilon, in (0, inf) (longitudinal: eps_perm). With --grid: a comma list "
    f"[default there: {','.join(f'{e:g}' for e in LDP_AUDITOR_EPSILONS)}].",
)
@click.option(
    "--k",
    "k_text",
    default=None,
    help=f"Domain size, in [2, 2^32]. With --grid: a comma list [default there: {','.join(map(str, LDP_AUDITOR_KS))}].",
)
@opt.checked_option(
    "--delta",
    type=opt.HALF_OPEN_UNIT,
    default=0.0,
    help="Claimed delta (approximate LDP: dpkit's (epsilon, delta)-LDP protocols and callables; 0 for the others).",
)
@opt.count_option(
    "--trials",
    minimum=1,
    maximum=MAX_TRIALS,
    help="Trials per input [default: 1e6 for dpkit, 5e4 for the anchors' per-user Python clients, 1e5 for callables].",
)
@opt.checked_option(
    "--confidence",
    type=opt.OPEN_UNIT,
    default=0.99,
    help="Joint confidence of the lower bound over all tests (with --grid: over every setting of the grid).",
)
@opt.choice_option(
    "--attack",
    "attacks",
    choices=ATTACKS,
    default=None,
    multiple=True,
    help="Tests to run (repeatable) [default: all].",
)
@opt.count_option(
    "--tau",
    minimum=1,
    maximum=10**6,
    default=10,
    help="Longitudinal protocols: reports per user (constant value, memo reused).",
)
@opt.checked_option(
    "--eps-1", "eps_1", type=opt.POSITIVE, help="Longitudinal protocols: single-report epsilon [default: epsilon / 2]."
)
@opt.count_option(
    "--d", "d", minimum=1, maximum=1000, default=3, help="Multidimensional protocols and HIO: number of attributes."
)
@opt.choice_option(
    "--scope",
    choices=["tuple", "attribute"],
    default="tuple",
    help="Multidimensional protocols: change every attribute or attribute 0 only.",
)
@opt.count_option(
    "--bits",
    minimum=1,
    maximum=64,
    help="Heavy-hitter clients (PEM, TAP, TreeHist, SFP): key length, keys in [0, 2^bits) [default: the fewest bits "
    "holding [0, k)].",
)
@opt.count_option(
    "--branching",
    minimum=2,
    maximum=MAX_K,
    help="Range-query clients HH and HIO: tree branching [default: HH chooses by variance, HIO 5].",
)
@click.option("--grid", is_flag=True, help="Run over a grid of epsilon and k and print a table.")
@opt.seed_option("Seed of the trials (a grid uses seed + index per setting).")
@opt.json_option("Print JSON (one object; a list with --grid).")
@opt.csv_option()
@opt.plot_option("Save a chart of epsilon lower bound vs claimed epsilon.")
@opt.progress_option()
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
    bits,
    branching,
    grid,
    seed,
    as_json,
    csv_path,
    plot_path,
    progress,
):
    """Audit TARGET: run its randomizer on two inputs, bound epsilon from below with Clopper-Pearson.

    TARGET is dpkit:PROTOCOL, multi-freq-ldpy:PROTOCOL, pure-ldp:PROTOCOL or package.module:callable (a function
    of one value returning one report; declare --epsilon, --delta and --k). dpkit:PROTOCOL names a frequency
    oracle, a longitudinal or multidimensional protocol, a heavy-hitter client (PEM, TAP, TreeHist[prefix],
    TreeHist[whole-key], SFP[fragment], SFP[whole-key]: TreeHist and SFP send two report families at epsilon / 2
    each, audited one at a time; keys of --bits bits) or a range-query client (Flat, HH, HaarHRR, HIO over [0, k),
    HIO with --d attributes; Flat[ORACLE], HH[ORACLE], HIO[ORACLE] choose the level oracle; HaarLevel,
    CandidateHashing). Exit status 1 when the lower bound exceeds the claimed epsilon (a violation); an error
    raised by the target while it runs is exit status 3, never a violation.
    """
    if as_json and csv_path:
        raise click.BadParameter("give --json or --csv, not both", param_hint="'--csv'")
    if not grid and (epsilon_text is None or k_text is None):
        missing = "--epsilon" if epsilon_text is None else "--k"
        raise click.BadParameter(f"{missing[2:]} is required (or use --grid)", param_hint=f"'{missing}'")
    eps_list = (
        _list(epsilon_text, "epsilon", float, validation.check_positive, grid)
        if epsilon_text is not None
        else list(LDP_AUDITOR_EPSILONS)
    )
    k_list = (
        _list(k_text, "k", _count_of, lambda n, v: validation.check_count(n, v, minimum=2, maximum=MAX_K), grid)
        if k_text is not None
        else list(LDP_AUDITOR_KS)
    )
    options = {}
    if target.startswith("dpkit:"):
        options = {"tau": tau, "d": d, "scope": scope}
        given = {"eps_1": eps_1, "bits": bits, "branching": branching}
        options.update({name: value for name, value in given.items() if value is not None})
    try:  # resolve once to validate TARGET (and the options) before any long run
        first = resolve(target, k=k_list[0], epsilon=eps_list[0], delta=delta, **options)
    except (ValueError, TypeError, OverflowError) as err:
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
    except (ValueError, TypeError, OverflowError) as err:
        if not _raised_in_dpkit(err):
            raise _target_failure(target, err) from None
        raise click.BadParameter(str(err), param_hint="'TARGET'") from None
    except Exception as err:  # noqa: BLE001 (whatever the audited code raises is reported, never a traceback)
        raise _target_failure(target, err) from None
    frame = results_frame(results)
    if as_json:
        objs = [r.to_dict() for r in results]
        opt.echo_json(objs if grid else objs[0], indent=2)
    elif grid:
        cols = ["target", "k", "epsilon_claimed", "epsilon_lower_bound", "cap", "trials", "violation", "seconds"]
        click.echo(frame[cols].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
        n_bad = int(frame["violation"].sum())
        click.echo(
            f"\n{len(results)} settings, confidence {confidence:g} jointly over the grid "
            f"(each setting at {results[0].confidence:.6g}): " + (f"{n_bad} VIOLATION(S)" if n_bad else "no violation")
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
        raise SystemExit(opt.EXIT_FINDING)


def _plot(frame, path: str) -> None:
    def draw(fig, ax) -> None:
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

    opt.save_figure(draw, path, figsize=(6, 4.5))
