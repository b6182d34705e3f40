"""``dpkit estimate-eps`` and ``dpkit mia-run``: epsilon intervals from membership-inference results.

``estimate-eps`` reads attack counts or scores; ``mia-run`` trains models with dpkit and attacks them
(:mod:`dpkit.cli.mia_harness`). Bad input ends with exit code 2 and an error line naming the option (click's
usage-error convention).
"""

from __future__ import annotations

import json
import math

import click
import numpy as np

from dpkit.accountants import validation
from dpkit.audits import METHODS, AttackCounts, EpsilonEstimate, EpsilonPosterior, estimate_all, estimate_from_scores
from dpkit.audits._checks import check_alpha, check_audit_delta
from dpkit.audits.bayesian import DEFAULT_MAX_EPS
from dpkit.audits.results import json_number
from dpkit.audits.scores import SELECTIONS
from dpkit.cli.mia_harness import MiaConfig
from dpkit.cli.options import click_callback

__all__ = ["estimate_eps", "mia_run", "plot_posterior"]


_count = click_callback(lambda name, v: validation.check_count(name, v, minimum=0))
_alpha = click_callback(lambda name, v: check_alpha(name, v))
_delta = click_callback(lambda name, v: check_audit_delta(name, v))
_positive = click_callback(validation.check_positive)
_fraction = click_callback(lambda name, v: validation.check_probability(name, v, open_low=True, open_high=True))
_num = click_callback(lambda name, v: validation.check_count(name, v, minimum=1))


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bayes = est.get("bayes")
    ends = [e.upper for e in est.values() if math.isfinite(e.upper)]
    top = max([post.ppf(0.999) if math.isfinite(post.ppf(0.999)) else post.max_eps, *ends]) * 1.05 or 1.0
    grid, dens = post.density_on_grid(top, 400)
    fig, ax = plt.subplots(figsize=(7, 4))
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
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


@click.command("estimate-eps", short_help="Epsilon interval from membership-inference attack results.")
@click.option("--tp", type=int, callback=_count, help="True positives (members guessed 'member').")
@click.option("--fp", type=int, callback=_count, help="False positives (non-members guessed 'member').")
@click.option("--tn", type=int, callback=_count, help="True negatives.")
@click.option("--fn", type=int, callback=_count, help="False negatives.")
@click.option(
    "--scores",
    "scores_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="CSV with columns is_member (0/1) and score (higher = member), instead of counts.",
)
@click.option("--delta", type=float, default=0.0, show_default=True, callback=_delta, help="Delta, in [0, 1).")
@click.option(
    "--alpha",
    type=float,
    default=0.05,
    show_default=True,
    callback=_alpha,
    help="Significance: intervals at level 1 - alpha, in (0, 1).",
)
@click.option("--method", type=click.Choice([*METHODS, "all"]), default="all", show_default=True)
@click.option(
    "--sided",
    type=click.Choice(["two-sided", "lower"]),
    default="two-sided",
    show_default=True,
    help="'lower': one-sided lower bounds at level 1 - alpha (upper = inf).",
)
@click.option(
    "--max-eps",
    type=float,
    default=DEFAULT_MAX_EPS,
    show_default=True,
    callback=_positive,
    help="Largest epsilon the Bayesian method resolves (an upper end of inf means beyond it).",
)
@click.option(
    "--selection",
    type=click.Choice(SELECTIONS),
    default="holdout",
    show_default=True,
    help="With --scores: threshold chosen on a held-out split, or the best of --num-thresholds "
    "with a Bonferroni correction.",
)
@click.option(
    "--holdout-fraction",
    type=float,
    default=0.5,
    show_default=True,
    callback=_fraction,
    help="With --scores --selection holdout: fraction used to choose the threshold.",
)
@click.option(
    "--num-thresholds",
    type=int,
    default=20,
    show_default=True,
    callback=_num,
    help="With --scores: number of candidate thresholds (the Bonferroni K for --selection best).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the holdout split.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object {method: {lower, upper, point}}.")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write the posterior density of epsilon with the intervals marked (PNG/PDF/SVG).",
)
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
    (--tp --fp --tn --fn) or from scores (--scores FILE.csv)."""
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
        est = estimate_all(counts, methods, alpha=alpha, delta=delta, sided=sided, max_eps=max_eps)

    if plot_path is not None:
        post = EpsilonPosterior(counts, delta, max_eps=max_eps)
        plot_posterior(post, est, plot_path)

    if as_json:
        out = {
            name: {"lower": json_number(e.lower), "upper": json_number(e.upper), "point": json_number(e.point)}
            for name, e in est.items()
        }
        click.echo(json.dumps(out))
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


@click.command("mia-run", short_help="Audit dpkit's DP-SGD with a membership-inference harness (experimental).")
@click.option("--noise-multiplier", type=float, default=1.0, show_default=True)
@click.option("--max-grad-norm", type=float, default=1.0, show_default=True, callback=_positive)
@click.option("--epochs", type=int, default=MiaConfig.epochs, show_default=True, callback=_num)
@click.option("--models", "num_models", type=int, default=MiaConfig.num_models, show_default=True, callback=_num)
@click.option("--shadow", "num_shadow", type=int, default=MiaConfig.num_shadow, show_default=True, callback=_num)
@click.option("--canaries", "num_canaries", type=int, default=MiaConfig.num_canaries, show_default=True, callback=_num)
@click.option("--delta", type=float, default=1e-5, show_default=True, callback=_delta)
@click.option("--alpha", type=float, default=0.05, show_default=True, callback=_alpha)
@click.option("--method", type=click.Choice(METHODS), default="bayes", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def mia_run(
    noise_multiplier, max_grad_norm, epochs, num_models, num_shadow, num_canaries, delta, alpha, method, seed, as_json
) -> None:
    """Train small private models on digits with mislabelled canaries, attack them (loss and LiRA), and compare
    the estimated epsilon interval with the accountant's epsilon."""
    from tqdm import tqdm

    from dpkit.cli.mia_harness import run_mia

    try:
        cfg = MiaConfig(
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            epochs=epochs,
            num_models=num_models,
            num_shadow=num_shadow,
            num_canaries=num_canaries,
            delta=delta,
            alpha=alpha,
            method=method,
            seed=seed,
        )
    except (ValueError, TypeError) as err:
        raise click.UsageError(str(err)) from None
    with tqdm(total=num_models, desc="training models", disable=as_json) as bar:
        res = run_mia(cfg, progress=lambda i: bar.update(1))
    if as_json:
        out: dict[str, object] = {
            n: {"lower": json_number(e.lower), "upper": json_number(e.upper), "point": json_number(e.point)}
            for n, e in res.estimates
        }
        out["accountant_epsilon"] = json_number(res.accountant_epsilon)
        click.echo(json.dumps(out))
        return
    click.echo(f"accountant epsilon (delta={delta:g}): {res.accountant_epsilon:.4g}")
    for n, e in res.estimates:
        click.echo(f"{n:<6} {method} [{e.lower:.4f}, {e.upper:.4f}] point {e.point:.4f}")
