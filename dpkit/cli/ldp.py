"""``dpkit ldp simulate``: run the clients and the server of a frequency oracle on synthetic or real data.

The ``ldp`` group of the ``dpkit`` command line (:mod:`dpkit.cli`). Bad input ends with a one-line error naming
the option and exit code 2.
"""

from __future__ import annotations

import json
import math
import time

import click
import numpy as np

from dpkit.mechanisms.frequency_oracles import FREQUENCY_ORACLES, make_oracle

PROTOCOLS = (*FREQUENCY_ORACLES, "ADP")


def zipf_frequencies(k: int, s: float = 1.1) -> np.ndarray:
    w = 1.0 / np.arange(1, k + 1) ** s
    return w / w.sum()


def _load_column(spec: str, k: int | None) -> tuple[np.ndarray, list]:
    import pandas as pd

    path, _, column = spec.rpartition(":")
    if not path or not column:
        raise click.BadParameter(f"must be zipf, uniform or FILE:COLUMN, got {spec!r}", param_hint="'--distribution'")
    try:
        df = pd.read_csv(path, usecols=[column])
    except (OSError, ValueError) as err:
        raise click.BadParameter(
            f"cannot read column {column!r} of {path!r}: {err}", param_hint="'--distribution'"
        ) from None
    col = df[column].dropna()
    cats = sorted(col.unique().tolist(), key=str)
    if k is not None and len(cats) > k:
        raise click.BadParameter(f"column {column!r} has {len(cats)} categories, more than --k {k}", param_hint="'--k'")
    codes = pd.Categorical(col, categories=cats).codes.astype(np.int64)
    return codes, cats


@click.group(short_help="Local differential privacy protocols.")
def ldp() -> None:
    """Local differential privacy: frequency oracles run by the users themselves."""


@ldp.command(short_help="Simulate a frequency oracle: estimated vs true frequencies, MSE, analytic variance.")
@click.option("--protocol", type=click.Choice(PROTOCOLS, case_sensitive=False), default="OLH", show_default=True)
@click.option("--k", "k", type=int, default=None, help="Domain size (default for FILE:COLUMN: its categories).")
@click.option("--epsilon", type=float, required=True, help="Privacy parameter per user, in (0, inf).")
@click.option("--n", "n", type=int, default=100_000, show_default=True, help="Number of users (synthetic data).")
@click.option("--distribution", default="zipf", show_default=True, help="zipf, uniform, or FILE:COLUMN of a CSV.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--postprocess",
    type=click.Choice(["none", "clip", "norm-sub", "ibu"]),
    default="none",
    show_default=True,
    help="Post-processing of the estimates (MSE is always of the raw estimator).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Save a bar plot (needs matplotlib).")
def simulate(protocol, k, epsilon, n, distribution, seed, postprocess, as_json, plot):
    """Run n clients and the server, compare the estimates with the true frequencies."""
    if not math.isfinite(epsilon) or epsilon <= 0:
        raise click.BadParameter(f"must be in (0, inf), got {epsilon!r}", param_hint="'--epsilon'")
    rng = np.random.default_rng(seed)
    labels = None
    if distribution in ("zipf", "uniform"):
        if k is None:
            raise click.BadParameter("is required with a synthetic distribution", param_hint="'--k'")
        if k < 2:
            raise click.BadParameter(f"must be a whole number >= 2, got {k}", param_hint="'--k'")
        if n < 1:
            raise click.BadParameter(f"must be a whole number >= 1, got {n}", param_hint="'--n'")
        probs = zipf_frequencies(k) if distribution == "zipf" else np.full(k, 1.0 / k)
        values = rng.choice(k, size=n, p=probs)
    else:
        values, labels = _load_column(distribution, k)
        k = k if k is not None else max(2, len(labels))
        n = len(values)
        if n < 1:
            raise click.BadParameter("the column has no values", param_hint="'--distribution'")
    try:
        oracle = make_oracle(protocol, k, epsilon)
    except (ValueError, TypeError) as err:
        raise click.UsageError(str(err)) from None
    f_true = np.bincount(values, minlength=k) / n
    t0 = time.perf_counter()
    state = oracle.perturb_aggregate(values, rng)
    raw = oracle.estimate(state)
    seconds = time.perf_counter() - t0
    shown = raw if postprocess == "none" else oracle.estimate(state, postprocess=postprocess)
    mse = float(np.mean((raw - f_true) ** 2))
    analytic = oracle.mean_variance(n, f_true)
    out = {
        "protocol": oracle.name,
        "n": int(n),
        "k": int(k),
        "epsilon": float(epsilon),
        "mse": mse,
        "analytic_variance": analytic,
        "seconds": seconds,
        "users_per_second": n / seconds if seconds > 0 else float("inf"),
    }
    if plot:
        _plot(plot, f_true, shown, out)
    if as_json:
        click.echo(json.dumps(out))
        return
    click.echo(f"{oracle!r}: n={n}, k={k}, epsilon={epsilon:g} ({oracle.name}, {oracle.privacy_event()})")
    top = np.argsort(-f_true)[: min(k, 10)]
    click.echo(f"{'item':>12} {'true':>10} {'estimate':>10}")
    for v in top:
        name = str(labels[v]) if labels is not None and v < len(labels) else str(v)
        click.echo(f"{name[:12]:>12} {f_true[v]:10.5f} {shown[v]:10.5f}")
    click.echo(f"MSE {mse:.4g}   analytic variance {analytic:.4g}   ratio {mse / analytic:.3f}")
    click.echo(f"{seconds:.3f} s, {out['users_per_second']:,.0f} users/s")


def _plot(path, f_true, est, out):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise click.UsageError("--plot needs matplotlib (pip install matplotlib)") from None
    k = len(f_true)
    x = np.arange(k)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.bar(x - 0.2, f_true, width=0.4, label="true")
    ax.bar(x + 0.2, est, width=0.4, label="estimate")
    ax.set_xlabel("item")
    ax.set_ylabel("frequency")
    ax.set_title(f"{out['protocol']} k={out['k']} eps={out['epsilon']:g} n={out['n']}: MSE {out['mse']:.3g}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
