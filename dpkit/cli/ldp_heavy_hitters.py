"""``dpkit ldp heavy-hitters``: find the top-k keys of n users under LDP (PEM, SFP, TreeHist, TAP) and score them.

A thin layer over :mod:`dpkit.mechanisms.heavy_hitters`: draws the users' m-bit keys (Zipf over random keys, or a
CSV column), runs the protocol (clients and server) and compares its answer with the true top-k (F1, NCR).
"""

from __future__ import annotations

import time
from typing import Any

import click
import numpy as np

from dpkit.cli import options as opt
from dpkit.cli.ldp_common import (
    epsilon_option,
    load_column,
    parse_distribution,
    speed,
    speed_line,
    users_option,
    zipf_frequencies,
)

__all__ = ["heavy_hitters", "PROTOCOLS"]

# CLI name -> the name in dpkit.mechanisms.heavy_hitters.HEAVY_HITTERS
PROTOCOLS = {"pem": "PEM", "sfp": "SFP", "treehist": "TreeHist", "tap": "TAP"}
MAX_USERS = 10**8  # the keys live in memory (8 bytes a user)
MAX_TOP = 10_000
ZIPF_EXPONENT = 1.1


def _zipf_keys(n: int, bits: int, top: int, rng: np.random.Generator) -> np.ndarray:
    """n keys drawn by Zipf(1.1) over max(1000, 10 top) distinct random keys of ``bits`` bits (fewer if the
    domain is smaller)."""
    support = min(max(1000, 10 * top), 1 << min(bits, 62))
    if bits <= 20:
        domain = rng.choice(1 << bits, size=support, replace=False).astype(np.uint64)
    else:
        high = (1 << bits) - 1 if bits < 64 else 2**64 - 1
        domain = np.unique(rng.integers(0, high, size=2 * support, dtype=np.uint64, endpoint=True))
        domain = rng.permutation(domain)[:support]
    return domain[rng.choice(len(domain), size=n, p=zipf_frequencies(len(domain), ZIPF_EXPONENT))]


def _column_keys(path: str, column: str, bits: int) -> tuple[np.ndarray, dict[int, str] | None]:
    """Keys of a CSV column: whole numbers in [0, 2^bits) as they are, anything else hashed to ``bits`` bits (the
    labels are kept to print the heavy hitters)."""
    import pandas as pd

    from dpkit.mechanisms.heavy_hitters import hash_bytes

    col = load_column(path, column)
    if pd.api.types.is_integer_dtype(col):
        keys = col.to_numpy()
        if keys.min() < 0 or (bits < 64 and int(keys.max()) >= 1 << bits):
            raise click.BadParameter(
                f"column {column!r} holds integers outside [0, 2^{bits}) (raise --bits, or use text keys)",
                param_hint="'--distribution'",
            )
        return keys.astype(np.uint64), None
    text = col.astype(str).to_numpy(dtype=str)
    labels, inverse = np.unique(text, return_inverse=True)
    try:
        hashed = hash_bytes(labels, bits=bits)
    except (ValueError, TypeError) as err:
        raise click.BadParameter(f"column {column!r}: {err}", param_hint="'--distribution'") from None
    return hashed[inverse], {int(h): str(lab) for h, lab in zip(hashed, labels, strict=True)}


def _protocol(name: str, bits: int, epsilon: float, top: int):
    from dpkit.mechanisms.heavy_hitters import HEAVY_HITTERS

    cls = HEAVY_HITTERS[PROTOCOLS[name]]
    options = {"fragment_bits": min(8, bits)} if name == "sfp" else {}
    try:
        return cls(bits, epsilon, k=top, **options)
    except (ValueError, TypeError, OverflowError) as err:
        raise click.UsageError(
            f"--protocol {name} with --bits {bits}, --top {top}, --epsilon {epsilon:g}: {err}"
        ) from None


@opt.command("heavy-hitters", "Find the top-k keys under LDP (PEM, SFP, TreeHist, TAP): F1, NCR, speed.")
@opt.choice_option("--protocol", choices=PROTOCOLS, default="pem")
@opt.count_option("--bits", minimum=1, maximum=64, default=32, help="Bits per key m.")
@opt.count_option(
    "--top", minimum=1, maximum=MAX_TOP, default=10, help="How many heavy hitters k to find (at most 2^m)."
)
@epsilon_option()
@users_option(default=100_000, maximum=MAX_USERS)
@click.option(
    "--distribution",
    default="zipf",
    show_default=True,
    help="zipf (Zipf(1.1) over max(1000, 10 k) random m-bit keys), or FILE:COLUMN of a CSV (integers in "
    "[0, 2^m) as keys, other values hashed to m bits).",
)
@opt.count_option(
    "--parties",
    minimum=1,
    maximum=1000,
    default=4,
    help="TAP: the users are split among this many parties uniformly at random.",
)
@opt.seed_option()
@opt.json_option("Print one JSON object: heavy_hitters, true_top_k, f1, ncr, seconds, users_per_second, ...")
def heavy_hitters(protocol, bits, top, epsilon, n, distribution, parties, seed, as_json):
    """Run a heavy-hitter protocol on n users' m-bit keys and score its top-k against the true top-k.

    Each protocol is epsilon-LDP for one user's key (neighbouring relation: replace it). F1 is the harmonic mean of
    precision and recall of the found set; NCR weighs the true top-k by rank (Wang, Li, Jha 2019).

    \b
    Examples:
      dpkit ldp heavy-hitters --protocol pem --bits 32 --top 10 --epsilon 4 --n 1000000
      dpkit ldp heavy-hitters --protocol tap --parties 8 --bits 24 --top 20 --epsilon 2 --json
    """
    from dpkit.mechanisms.heavy_hitters import f1_score, ncr, true_top_k

    protocol = protocol.lower()
    proto = _protocol(protocol, bits, epsilon, top)  # before any data is drawn or read
    rng = np.random.default_rng(seed)
    source, column = parse_distribution(distribution, allowed=("zipf",))
    labels = None
    if column is None:
        keys = _zipf_keys(n, bits, top, rng)
    else:
        keys, labels = _column_keys(source, column, bits)
        n = len(keys)
    t0 = time.perf_counter()
    try:
        if protocol == "tap":
            found = proto.run(keys, rng.integers(0, parties, size=n), rng)
        else:
            found = proto.run(keys, rng)
    except ValueError as err:  # e.g. a level or a party without users: too few users for the setting
        raise click.UsageError(f"{err} (--n {n} is too small for --protocol {protocol} at --bits {bits})") from None
    seconds = time.perf_counter() - t0
    truth = true_top_k(keys, top)
    f1, rank_score = f1_score(found.values, truth), ncr(found.values, truth)
    rows: list[dict[str, Any]] = []
    for value, count, variance in zip(found.values, found.counts, found.variances, strict=True):
        row: dict[str, Any] = {"value": int(value), "count": float(count), "variance": float(variance)}
        if labels is not None and int(value) in labels:  # a found key that no user holds has no label
            row["label"] = labels[int(value)]
        rows.append(row)
    out: dict[str, Any] = {
        "protocol": found.protocol or proto.name,
        "bits": bits,
        "top": top,
        "epsilon": float(epsilon),
        "n": int(n),
        "heavy_hitters": rows,
        "true_top_k": [int(v) for v in truth],
        "f1": f1,
        "ncr": rank_score,
        **speed(n, seconds),
    }
    if as_json:
        opt.echo_json(out)
        return
    click.echo(f"{out['protocol']}: n={n}, {bits}-bit keys, top {top}, epsilon={epsilon:g} ({proto.privacy_event()})")
    true_set = set(out["true_top_k"])
    click.echo(f"{'rank':>4} {'key':>20} {'estimated count':>16} {'std':>10}  true top-k")
    for i, row in enumerate(rows, 1):
        key = row.get("label") or str(row["value"])
        mark = "yes" if row["value"] in true_set else "no"
        click.echo(f"{i:>4} {key[:20]:>20} {row['count']:>16,.0f} {row['variance'] ** 0.5:>10,.0f}  {mark}")
    click.echo(f"F1 {f1:.3f}   NCR {rank_score:.3f}   {speed_line(n, seconds)}")
