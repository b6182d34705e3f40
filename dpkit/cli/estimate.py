"""``dpkit estimate-eps`` and ``dpkit mia-run``: epsilon intervals from membership-inference results.

``estimate-eps`` reads attack counts or scores; ``mia-run`` trains models with dpkit and attacks them
(:mod:`dpkit.cli.mia_harness`). Bad input ends with exit code 2 and an error line naming the option (click's
usage-error convention).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import click
import numpy as np

from dpkit.accountants import validation
from dpkit.audits import (
    METHODS,
    AttackCounts,
    EpsilonEstimate,
    EpsilonPosterior,
    InsufficientEvidenceError,
    estimate_all,
    estimate_from_scores,
)
from dpkit.audits.bayesian import DEFAULT_MAX_EPS
from dpkit.audits.scores import SELECTIONS
from dpkit.cli import options as opt
from dpkit.cli.mia_harness import MiaConfig

__all__ = ["estimate_eps", "mia_run", "plot_posterior"]

MAX_EPS_LIMIT = 700.0  # e^700 is near the largest double: the posterior's CDF is computed up to here
MAX_SAMPLES = 2**53


def _max_eps(name: str, value: float) -> float:
    return validation.check_range(name, validation.check_positive(name, value), 0.0, MAX_EPS_LIMIT)


MAX_EPS = opt.Real(_max_eps, f"(0, {MAX_EPS_LIMIT:g}]")


def _estimates_json(estimates: Iterable[tuple[str, EpsilonEstimate]]) -> dict[str, dict[str, float]]:
    """``{method or attack: {lower, upper, point}}``, the JSON both commands print."""
    return {name: {"lower": e.lower, "upper": e.upper, "point": e.point} for name, e in estimates}


def _read_scores(path: str) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    hint = "'--scores'"
    try:
        df = pd.read_csv(path)
    except Exception as err:  # noqa: BLE001 (any parse failure is a bad --scores file)
        raise click.BadParameter(f"cannot read {path!r} as CSV: {err}".splitlines()[0], param_hint=hint) from None
    missing = [c for c in ("is_member", "score") if c not in df.columns]
    if missing:
        raise click.BadParameter(
            f"{path!r} needs columns is_member and score; missing {', '.join(missing)} (has {list(df.columns)})",
            param_hint=hint,
        )
    if len(df) == 0:
        raise click.BadParameter(f"{path!r} has no rows", param_hint=hint)
    try:
        b = pd.to_numeric(df["is_member"], errors="raise").to_numpy()
        s = pd.to_numeric(df["score"], errors="raise").to_numpy(dtype=float)
    except (ValueError, TypeError) as err:
        raise click.BadParameter(f"{path!r}: {err}", param_hint=hint) from None
    return b, s


def plot_posterior(post: EpsilonPosterior, est: dict[str, EpsilonEstimate], path: str) -> None:
    """Posterior density of epsilon with each method's interval marked (matplotlib, Agg backend)."""
    bayes = est.get("bayes")
    ends = [e.upper for e in est.values() if math.isfinite(e.upper)]
    top = max([post.ppf(0.999) if math.isfinite(post.ppf(0.999)) else post.max_eps, *ends]) * 1.05 or 1.0
    grid, dens = post.density_on_grid(top, 400)

    def draw(fig, ax) -> None:
        ax.plot(grid, dens, color="C0", label="posterior density of epsilon")
        if bayes is not None:
            inside = (grid >= bayes.lower) & (grid <= bayes.upper)
            ax.fill_between(
                grid[inside],
                dens[inside],
                alpha=0.3,
                color="C0",
                label=f"{1 - bayes.alpha:.0%} credible [{bayes.lower:.3g}, {bayes.upper:.3g}]",
            )
        for i, (name, e) in enumerate(est.items()):
            if name == "bayes":
                continue
            for x in (e.lower, e.upper):
                if math.isfinite(x):
                    ax.axvline(x, color=f"C{i + 1}", ls="--", lw=1)
            ax.plot([], [], color=f"C{i + 1}", ls="--", label=f"{name} [{e.lower:.3g}, {e.upper:.3g}]")
        if post.prob_zero > 0:
            ax.set_title(f"P[epsilon = 0] = {post.prob_zero:.3g} (atom not drawn)", fontsize=9)
        c = post.counts
        ax.set_xlabel(f"epsilon (delta = {post.delta:g}; TP={c.tp} FP={c.fp} TN={c.tn} FN={c.fn})")
        ax.set_ylabel("density")
        ax.set_xlim(0, top)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)

    opt.save_figure(draw, path, figsize=(7, 4), dpi=100)


@opt.command("estimate-eps", "Epsilon interval from membership-inference attack results.")
@opt.count_option("--tp", maximum=MAX_SAMPLES, help="True positives (members guessed 'member').")
@opt.count_option("--fp", maximum=MAX_SAMPLES, help="False positives (non-members guessed 'member').")
@opt.count_option("--tn", maximum=MAX_SAMPLES, help="True negatives.")
@opt.count_option("--fn", maximum=MAX_SAMPLES, help="False negatives.")
@click.option(
    "--scores",
    "scores_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="CSV with columns is_member (0/1) and score (higher = member), instead of counts.",
)
@opt.checked_option("--delta", type=opt.HALF_OPEN_UNIT, default=0.0, help="Delta.")
@opt.checked_option("--alpha", type=opt.OPEN_UNIT, default=0.05, help="Significance: intervals at level 1 - alpha.")
@opt.choice_option("--method", choices=[*METHODS, "all"], default="all")
@opt.choice_option(
    "--sided",
    choices=["two-sided", "lower"],
    default="two-sided",
    help="'lower': one-sided lower bounds at level 1 - alpha (upper = inf).",
)
@opt.checked_option(
    "--max-eps",
    type=MAX_EPS,
    default=DEFAULT_MAX_EPS,
    help="Largest epsilon the Bayesian method resolves (an upper end of inf means beyond it).",
)
@opt.choice_option(
    "--selection",
    choices=SELECTIONS,
    default="holdout",
    help="With --scores: threshold chosen on a held-out split, or the best of --num-thresholds "
    "with a Bonferroni correction.",
)
@opt.checked_option(
    "--holdout-fraction",
    type=opt.OPEN_UNIT,
    default=0.5,
    help="With --scores --selection holdout: fraction used to choose the threshold.",
)
@opt.count_option(
    "--num-thresholds",
    minimum=1,
    maximum=10**6,
    default=20,
    help="With --scores: number of candidate thresholds (the Bonferroni K for --selection best).",
)
@opt.seed_option("Seed of the holdout split.")
@opt.json_option("Print one JSON object {method: {lower, upper, point}}.")
@opt.plot_option("Write the posterior density of epsilon with the intervals marked.")
def estimate_eps(
    tp,
    fp,
    tn,
    fn,
    scores_path,
    delta,
    alpha,
    method,
    sided,
    max_eps,
    selection,
    holdout_fraction,
    num_thresholds,
    seed,
    as_json,
    plot_path,
) -> None:
    """Estimate epsilon from a membership-inference attack: Bayesian credible interval (joint-Beta posterior,
    Zanella-Beguelin et al. 2023) and the Clopper-Pearson / Jeffreys confidence intervals, from counts
    (--tp --fp --tn --fn) or from scores (--scores FILE.csv).

    Results that say nothing about epsilon (no member or no non-member sample, an attack that guessed the same
    for every sample, constant scores) are an error naming the problem, not an interval from the prior alone.
    """
    given = {name: v for name, v in (("--tp", tp), ("--fp", fp), ("--tn", tn), ("--fn", fn)) if v is not None}
    methods = METHODS if method == "all" else (method,)
    if scores_path is not None:
        if given:
            raise click.UsageError(f"give either --scores or counts, not both (got --scores and {', '.join(given)})")
        b, s = _read_scores(scores_path)
        est = {}
        for m in methods:
            try:
                est[m] = estimate_from_scores(
                    b,
                    s,
                    method=m,
                    alpha=alpha,
                    delta=delta,
                    sided=sided,
                    selection=selection,
                    holdout_fraction=holdout_fraction,
                    num_thresholds=num_thresholds,
                    seed=seed,
                    **({"max_eps": max_eps} if m == "bayes" else {}),
                )
            except (ValueError, TypeError) as err:
                raise click.BadParameter(str(err), param_hint="'--scores'") from None
        counts = next(iter(est.values())).counts
    else:
        missing = [n for n in ("--tp", "--fp", "--tn", "--fn") if n not in given]
        if missing:
            raise click.UsageError(f"missing {', '.join(missing)}: give all four counts, or --scores FILE.csv")
        counts = AttackCounts(tp, fp, tn, fn)
        try:
            est = estimate_all(counts, methods, alpha=alpha, delta=delta, sided=sided, max_eps=max_eps)
        except InsufficientEvidenceError as err:
            raise click.BadParameter(str(err), param_hint="'--tp' / '--fp' / '--tn' / '--fn'") from None

    if plot_path is not None:
        post = EpsilonPosterior(counts, delta, max_eps=max_eps)
        plot_posterior(post, est, plot_path)

    if as_json:
        opt.echo_json(_estimates_json(est.items()))
        return
    c = counts
    click.echo(f"counts: TP={c.tp} FP={c.fp} TN={c.tn} FN={c.fn}  delta={delta:g}  level={1 - alpha:g} ({sided})")
    if scores_path is not None:
        first = next(iter(est.values()))
        x = dict(first.extra)
        click.echo(
            f"threshold: {x['threshold']:.6g} ({selection}, {x['comparisons']} comparison(s), "
            f"{x['samples_used']} of {x['samples_total']} samples)"
        )
    click.echo(f"{'method':<16} {'lower':>10} {'upper':>10} {'point':>10}")
    for name, e in est.items():
        click.echo(f"{name:<16} {e.lower:>10.4f} {e.upper:>10.4f} {e.point:>10.4f}")
    if plot_path is not None:
        click.echo(f"plot written to {plot_path}")


# MiaConfig's fields and the options that set them (its errors name the field)
_MIA_OPTIONS = {
    "noise_multiplier": "--noise-multiplier",
    "max_grad_norm": "--max-grad-norm",
    "epochs": "--epochs",
    "num_models": "--models",
    "num_shadow": "--shadow",
    "num_canaries": "--canaries",
    "delta": "--delta",
    "alpha": "--alpha",
}
MAX_MIA_COUNT = 10**5


def _config_count(field: str, *, minimum: int, help: str) -> Callable:
    """The ``mia-run`` option setting the whole-number field ``field`` of MiaConfig, with the field's default."""
    return opt.count_option(
        _MIA_OPTIONS[field], field, minimum=minimum, maximum=MAX_MIA_COUNT, default=getattr(MiaConfig, field), help=help
    )


@opt.command("mia-run", "Audit dpkit's DP-SGD with a membership-inference harness (experimental).")
@opt.checked_option(
    "--noise-multiplier", type=opt.NONNEGATIVE, default=1.0, help="DP-SGD noise multiplier (0: not private)."
)
@opt.checked_option("--max-grad-norm", type=opt.POSITIVE, default=1.0, help="Clipping norm.")
@_config_count("epochs", minimum=1, help="Training epochs per model.")
@_config_count("num_models", minimum=3, help="Models trained, shadows included (at least --shadow + 1).")
@_config_count("num_shadow", minimum=2, help="Shadow models (LiRA).")
@_config_count(
    "num_canaries", minimum=1, help="Mislabelled canaries per model (at most the held-out digits, about 360)."
)
@opt.checked_option("--delta", type=opt.HALF_OPEN_UNIT, default=1e-5, help="Delta.")
@opt.checked_option("--alpha", type=opt.OPEN_UNIT, default=0.05, help="Significance.")
@opt.choice_option("--method", choices=METHODS, default="bayes")
@opt.seed_option("Seed of the canaries, the membership bits and the training.")
@opt.json_option("Print one JSON object {attack: {lower, upper, point} or {error}, accountant_epsilon}.")
@opt.progress_option()
def mia_run(as_json: bool, progress: bool | None, **settings: Any) -> None:
    """Train small private models on digits with mislabelled canaries, attack them (loss and LiRA), and compare
    the estimated epsilon interval with the accountant's epsilon.

    An attack whose test says nothing about epsilon (e.g. it guessed 'non-member' for every canary) is reported
    with the reason instead of an interval.
    """
    from dpkit.cli.mia_harness import run_mia

    try:
        cfg = MiaConfig(**settings)  # every other option sets the field of its name
        models = cfg.num_models
        with opt.progress_bar("training models", progress) as hook:
            res = run_mia(cfg, progress=lambda i: hook((i + 1) / models, f"model {i + 1} of {models}"))
    except (ValueError, TypeError) as err:
        option = _MIA_OPTIONS.get(str(err).split(" ", 1)[0])
        if option is None:
            raise click.UsageError(str(err)) from None
        raise click.BadParameter(str(err), param_hint=f"'{option}'") from None
    if as_json:
        out: dict[str, object] = dict(_estimates_json(res.estimates))
        out.update({name: {"error": reason} for name, reason in res.no_evidence})
        out["accountant_epsilon"] = res.accountant_epsilon
        opt.echo_json(out)
        return
    click.echo(f"accountant epsilon (delta={cfg.delta:g}): {res.accountant_epsilon:.4g}")
    for n, e in res.estimates:
        click.echo(f"{n:<6} {cfg.method} [{e.lower:.4f}, {e.upper:.4f}] point {e.point:.4f}")
    for n, reason in res.no_evidence:
        click.echo(f"{n:<6} {reason}")
