"""``dpkit poison``: measure a data-poisoning attack (RPA, RIA, MGA) on an LDP frequency oracle, with or without a
defense; simulated gain next to the closed form, or a table over every protocol and attack.

The attacks, gains and defenses are :mod:`dpkit.audits.poisoning`. Imports of numpy and the toolkit happen inside
the command, so ``dpkit --help`` does not load them. Bad input ends with a one-line error naming the option and
exit code 2.
"""

from __future__ import annotations

import json

import click

from dpkit.cli import options as opt
from dpkit.cli.ldp_common import (
    distribution_option,
    domain_option,
    epsilon_option,
    parse_distribution,
    users_option,
    zipf_frequencies,
)

__all__ = ["poison"]

ATTACK_CHOICES = ("rpa", "ria", "mga", "all")
DEFENSE_CHOICES = ("none", "normalize", "detect")
MAX_K = 10**6  # every protocol x attack keeps k estimates per state


def _bad(option: str, message: str) -> click.BadParameter:
    return click.BadParameter(message, param_hint=f"'--{option}'")


def _checked(option: str, check):
    """``check()`` (a dpkit argument check); its error becomes a usage error naming ``--option``."""
    try:
        return check()
    except (ValueError, TypeError) as err:
        raise _bad(option, str(err)) from None


@opt.command("poison", "Measure a data-poisoning attack on an LDP frequency oracle.")
@click.option("--protocol", default="OUE", show_default=True, help="A frequency oracle (GRR, OUE, OLH, ...) or 'all'.")
@opt.choice_option(
    "--attack",
    choices=ATTACK_CHOICES,
    default="mga",
    help="Random perturbed-value, random item or maximal gain attack (Cao, Jia, Gong 2021), or all three.",
)
@domain_option(MAX_K)
@epsilon_option()
@opt.count_option("--targets", minimum=1, default=10, help="Number R of target items, drawn at random (R <= k).")
@click.option("--target-items", default=None, help="Comma-separated target items in [0, k) (instead of --targets).")
@opt.checked_option(
    "--fake-fraction", "beta", type=opt.HALF_OPEN_UNIT, default=0.05, help="beta = m/(n + m), fake users."
)
@users_option(maximum=10**9)
@distribution_option("uniform")
@opt.choice_option(
    "--defense",
    choices=DEFENSE_CHOICES,
    default="none",
    help="normalize: Norm-Sub on the estimates; detect: remove the reports the protocol's detector flags.",
)
@opt.seed_option()
@opt.json_option()
def poison(protocol, attack, k, epsilon, targets, target_items, beta, n, distribution, defense, seed, as_json):
    """Simulate n genuine users and m fake ones; report the gain on the targets (simulated and closed form)."""
    import numpy as np

    from dpkit.audits.poisoning import ATTACKS, check_targets, gain_table, simulate
    from dpkit.cli.ldp import load_codes
    from dpkit.mechanisms.frequency_oracles import FREQUENCY_ORACLES, make_oracle

    r = targets  # the number of targets; ``targets`` becomes the items below

    names = {name.upper(): name for name in FREQUENCY_ORACLES}
    if protocol.lower() != "all" and protocol.upper() not in names:
        raise _bad("protocol", f"must be one of {', '.join(FREQUENCY_ORACLES)} or all, got {protocol!r}")
    rng = np.random.default_rng(seed)
    source, column = parse_distribution(distribution, ("uniform", "zipf"))
    if column is None:
        if k is None:
            raise _bad("k", "is required with a synthetic distribution")
        probs = zipf_frequencies(k) if source == "zipf" else np.full(k, 1.0 / k)
        values = rng.choice(k, size=n, p=probs)
    else:
        values, labels = load_codes(source, column, k)
        k = k if k is not None else max(2, len(labels))
    if target_items is not None:
        try:
            items = [int(t) for t in str(target_items).replace(" ", "").split(",") if t]
        except ValueError:
            raise _bad("target-items", f"must be comma-separated integers, got {target_items!r}") from None
        targets = _checked("target-items", lambda: check_targets("target-items", np.array(items, dtype=np.int64), k))
    else:
        if r > k:
            raise _bad("targets", f"must be a whole number in [1, {k}] (at most --k), got {r}")
        targets = np.sort(rng.choice(k, size=r, replace=False))
    attacks = list(ATTACKS) if attack.lower() == "all" else [attack.lower()]
    if protocol.lower() == "all" or len(attacks) > 1:
        protos = list(FREQUENCY_ORACLES) if protocol.lower() == "all" else [names[protocol.upper()]]
        try:
            rows = gain_table(
                k, epsilon, values, targets, beta, rng, protocols=protos, attacks=attacks, defense=defense
            )
        except (ValueError, TypeError) as err:
            raise click.UsageError(str(err)) from None
        if as_json:
            click.echo(json.dumps({"k": k, "epsilon": epsilon, "targets": targets.tolist(), "rows": rows}))
        else:
            _print_table(rows, k, epsilon, targets, beta, defense)
        return
    try:
        oracle = make_oracle(names[protocol.upper()], k, epsilon)
        result = simulate(oracle, attacks[0], values, targets, beta, rng, defense=defense)
    except (ValueError, TypeError) as err:
        raise click.UsageError(str(err)) from None
    out = result.to_dict()
    if as_json:
        click.echo(json.dumps(out))
        return
    _print_one(out)


def _fmt(x, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _print_one(d: dict) -> None:
    click.echo(
        f"{d['protocol']}: {d['attack'].upper()} with {d['n_fake']} fake users next to {d['n_genuine']} genuine "
        f"(beta = {d['beta']:.4f}), {len(d['targets'])} targets, defense {d['defense']}"
    )
    std = f" (simulation +- {d['gain_std']:.4f})" if d.get("gain_std") else ""
    click.echo(f"gain on the targets      {_fmt(d['gain'])}   closed form {_fmt(d['analytic_gain'])}{std}")
    click.echo(
        f"target frequency         true {_fmt(d['target_frequency'])}, estimated before "
        f"{_fmt(d['target_frequency_before'])}, after {_fmt(d['target_frequency_after'])}"
    )
    if d["detected_fraction"] is not None:
        click.echo(
            f"detection                {d['detected_fraction']:.1%} of fake users flagged, "
            f"{d['false_positive_rate']:.3%} of genuine users flagged"
        )


def _print_table(rows, k, epsilon, targets, beta, defense) -> None:
    click.echo(f"k = {k}, epsilon = {epsilon:g}, {len(targets)} targets, beta = {beta:g}, defense {defense}")
    cols = (("gain", 9), ("closed form", 11), ("before", 8), ("after", 8), ("detected", 9), ("FPR", 7))
    click.echo(f"{'protocol':11} {'attack':6} " + " ".join(f"{c:>{w}}" for c, w in cols))
    for row in rows:
        det = "n/a" if row["detected_fraction"] is None else f"{row['detected_fraction']:.1%}"
        fpr = "n/a" if row["false_positive_rate"] is None else f"{row['false_positive_rate']:.2%}"
        click.echo(
            f"{row['protocol']:11} {row['attack']:6} {row['gain']:9.4f} {_fmt(row['analytic_gain']):>11} "
            f"{row['target_frequency_before']:8.4f} {row['target_frequency_after']:8.4f} {det:>9} {fpr:>7}"
        )
