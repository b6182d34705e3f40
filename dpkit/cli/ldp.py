"""``dpkit ldp``: local differential privacy protocols from the command line.

* ``dpkit ldp simulate``: run the clients and the server of a frequency oracle on synthetic or real data (here);
* ``dpkit ldp heavy-hitters``: PEM, SFP, TreeHist or TAP on m-bit keys (:mod:`dpkit.cli.ldp_heavy_hitters`);
* ``dpkit ldp range``: range queries with Flat, HH, HaarHRR or HIO (:mod:`dpkit.cli.ldp_range`).

Bad input ends with a one-line error naming the option and exit code 2.
"""

from __future__ import annotations

import time

import click
import numpy as np

from dpkit.cli import options as opt
from dpkit.cli.ldp_common import (
    distribution_option,
    domain_option,
    epsilon_option,
    load_column,
    parse_distribution,
    replay,
    simulate_chunks,
    speed,
    speed_line,
    users_option,
    zipf_frequencies,
)
from dpkit.cli.ldp_heavy_hitters import heavy_hitters
from dpkit.cli.ldp_range import range_command
from dpkit.mechanisms.frequency_oracles import APPROXIMATE_ORACLES, FREQUENCY_ORACLES, make_oracle

PROTOCOLS = (*FREQUENCY_ORACLES, "ADP", *APPROXIMATE_ORACLES)
MAX_K = 10**7  # the estimates are k numbers per state


def load_codes(path: str, column: str, k: int | None) -> tuple[np.ndarray, list]:
    """Integer codes of a CSV column's categories (sorted) and the categories; errors name --distribution / --k."""
    import pandas as pd

    col = load_column(path, column)
    cats = sorted(col.unique().tolist(), key=str)
    if k is not None and len(cats) > k:
        raise click.BadParameter(f"column {column!r} has {len(cats)} categories, more than --k {k}", param_hint="'--k'")
    codes = pd.Categorical(col, categories=cats).codes.astype(np.int64)
    return codes, cats


@click.group(short_help="Local differential privacy protocols.")
def ldp() -> None:
    """Local differential privacy: frequency oracles, heavy hitters and range queries, run by the users
    themselves and simulated here."""


@opt.command("simulate", "Simulate a frequency oracle: estimated vs true frequencies, MSE, analytic variance.")
@opt.choice_option("--protocol", choices=PROTOCOLS, default="OLH")
@domain_option(MAX_K)
@epsilon_option()
@opt.checked_option(
    "--delta",
    type=opt.HALF_OPEN_UNIT,
    default=0.0,
    help=f"Delta of the (epsilon, delta)-LDP protocols ({', '.join(APPROXIMATE_ORACLES)}), required > 0 for them; "
    "0 for the others.",
)
@users_option()
@distribution_option("zipf")
@opt.seed_option()
@opt.choice_option(
    "--postprocess",
    choices=("none", "clip", "norm-sub", "ibu"),
    default="none",
    help="Post-processing of the estimates (MSE is always of the raw estimator).",
)
@opt.json_option("Print one JSON object.")
@opt.plot_option("Save a bar plot of the true and estimated frequencies.")
@opt.progress_option()
def simulate(protocol, k, epsilon, delta, n, distribution, seed, postprocess, as_json, plot_path, progress):
    """Run n clients and the server, compare the estimates with the true frequencies.

    Synthetic users are drawn and aggregated a million at a time, so memory stays bounded at any --n. The
    (epsilon, delta)-LDP protocols (AGRR, ASUE, ABLH, AOLH, GM, AGM) run at the given --delta.
    """
    approximate = protocol in APPROXIMATE_ORACLES
    if approximate and delta == 0:
        message = f"--protocol {protocol} is (epsilon, delta)-LDP: give its delta, in (0, 1)"
        raise click.BadParameter(message, param_hint="'--delta'")
    if not approximate and delta != 0:
        raise click.BadParameter(
            f"must be 0 for --protocol {protocol} (epsilon-LDP), got {delta:g}; a delta in (0, 1) is for "
            f"{', '.join(APPROXIMATE_ORACLES)}",
            param_hint="'--delta'",
        )
    rng = np.random.default_rng(seed)
    labels = None
    source, column = parse_distribution(distribution)
    if column is None:
        if k is None:
            raise click.BadParameter("is required with a synthetic distribution", param_hint="'--k'")
        probs = zipf_frequencies(k) if source == "zipf" else np.full(k, 1.0 / k)
        sample = lambda m, g: g.choice(k, size=m, p=probs)  # noqa: E731
    else:
        codes, labels = load_codes(source, column, k)
        k = k if k is not None else max(2, len(labels))
        n = len(codes)
        sample = replay(codes)
    try:
        oracle = make_oracle(protocol, k, epsilon, **({"delta": delta} if approximate else {}))
    except (ValueError, TypeError, OverflowError) as err:
        given = (
            f"--k {k}, --epsilon {epsilon:g} and --delta {delta:g}"
            if approximate
            else f"--k {k} and --epsilon {epsilon:g}"
        )
        raise click.UsageError(f"--protocol {protocol} with {given}: {err}") from None
    hist = np.zeros(k, dtype=np.int64)

    def observe(values: np.ndarray) -> None:
        hist[:] += np.bincount(values, minlength=k)

    t0 = time.perf_counter()
    with opt.progress_bar(f"simulating {oracle.name}", progress) as hook:
        state = simulate_chunks(n, sample, oracle.perturb_aggregate, observe, rng, hook)
    raw = oracle.estimate(state)
    seconds = time.perf_counter() - t0
    f_true = hist / n
    shown = raw if postprocess == "none" else oracle.estimate(state, postprocess=postprocess)
    mse = float(np.mean((raw - f_true) ** 2))
    analytic = oracle.mean_variance(n, f_true)
    out = {
        "protocol": oracle.name,
        "n": int(n),
        "k": int(k),
        "epsilon": float(epsilon),
        **({"delta": float(delta)} if approximate else {}),  # the pure protocols' keys stay as they were
        "mse": mse,
        "analytic_variance": analytic,
        **speed(n, seconds),
    }
    if plot_path:
        _plot(plot_path, f_true, shown, out)
    if as_json:
        opt.echo_json(out)
        return
    delta_text = f", delta={delta:g}" if approximate else ""
    click.echo(f"{oracle!r}: n={n}, k={k}, epsilon={epsilon:g}{delta_text} ({oracle.name}, {oracle.privacy_event()})")
    top = np.argsort(-f_true)[: min(k, 10)]
    click.echo(f"{'item':>12} {'true':>10} {'estimate':>10}")
    for v in top:
        name = str(labels[v]) if labels is not None and v < len(labels) else str(v)
        click.echo(f"{name[:12]:>12} {f_true[v]:10.5f} {shown[v]:10.5f}")
    click.echo(f"MSE {mse:.4g}   analytic variance {analytic:.4g}   ratio {mse / analytic:.3f}")
    click.echo(speed_line(n, seconds))


PLOT_ITEMS = 200  # beyond this many items the plot shows the most frequent ones


def _plot(path, f_true, est, out):
    items = np.arange(len(f_true)) if len(f_true) <= PLOT_ITEMS else np.sort(np.argsort(-f_true)[:PLOT_ITEMS])
    x = np.arange(len(items))

    def draw(fig, ax) -> None:
        ax.bar(x - 0.2, f_true[items], width=0.4, label="true")
        ax.bar(x + 0.2, est[items], width=0.4, label="estimate")
        ax.set_xlabel("item" if len(items) == len(f_true) else f"the {PLOT_ITEMS} most frequent items")
        ax.set_ylabel("frequency")
        ax.set_title(f"{out['protocol']} k={out['k']} eps={out['epsilon']:g} n={out['n']}: MSE {out['mse']:.3g}")
        ax.legend()

    opt.save_figure(draw, path, figsize=(8, 3.5), dpi=100)


for _command in (simulate, heavy_hitters, range_command):
    ldp.add_command(_command)
