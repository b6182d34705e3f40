"""``dpkit ldp range``: answer random range queries under LDP (Flat, HH, HaarHRR, HIO) and compare the error with
the analytic variance.

A thin layer over :mod:`dpkit.mechanisms.range_queries`: draws n users' values (Zipf or uniform over the domain; one
value per attribute for HIO), runs clients and server chunk by chunk, answers ``--queries`` random ranges
[a, b] (ends uniform, sorted; a box of such ranges for HIO) and reports their mean squared error next to the mean of
the protocol's analytic variance for the same ranges and population (``variance(n, queries, f)``).
"""

from __future__ import annotations

import math
import time

import click
import numpy as np

from dpkit.cli import options as opt
from dpkit.cli.ldp_common import epsilon_option, simulate_chunks, speed, speed_line, users_option, zipf_frequencies

__all__ = ["PROTOCOLS", "range_command"]

PROTOCOLS = ("flat", "hh", "haar", "hio")
MAX_DOMAIN = 2**16  # cells of the domain (HIO: of the product of the attributes' domains)


def _domains(text: str, protocol: str) -> tuple[int, ...]:
    from dpkit.accountants.validation import check_count

    parts = [p for p in str(text).replace(" ", "").split(",") if p]
    hint = "'--domain'"
    if not parts or (len(parts) > 1 and protocol != "hio"):
        raise click.BadParameter(
            f"must be one domain size (a comma list D1,D2,... only with --protocol hio), got {text!r}", param_hint=hint
        )
    sizes = []
    for p in parts:
        try:
            number: int | float = int(p.replace("_", ""))
        except ValueError:
            try:
                number = float(p)
            except ValueError:
                raise click.BadParameter(f"domain must be whole numbers, got {p!r}", param_hint=hint) from None
        try:
            sizes.append(check_count("domain", number, minimum=2, maximum=MAX_DOMAIN))
        except (ValueError, TypeError) as err:
            raise click.BadParameter(str(err), param_hint=hint) from None
    if math.prod(sizes) > MAX_DOMAIN:
        raise click.BadParameter(
            f"the domains' product must be at most {MAX_DOMAIN}, got {math.prod(sizes)}", param_hint=hint
        )
    return tuple(sizes)


def _protocol(name: str, domains: tuple[int, ...], epsilon: float):
    from dpkit.mechanisms.range_queries import HIO, RANGE_PROTOCOLS

    try:
        if name == "hio":
            return HIO(tuple(f"a{i}" for i in range(len(domains))), domains, epsilon)
        return RANGE_PROTOCOLS[name](domains[0], epsilon)
    except (ValueError, TypeError, OverflowError) as err:
        raise click.UsageError(f"--protocol {name} with --domain {domains} and --epsilon {epsilon:g}: {err}") from None


def _random_boxes(domains: tuple[int, ...], q: int, rng: np.random.Generator) -> np.ndarray:
    """q random boxes, shape (q, d, 2): per attribute two uniform ends, sorted."""
    ends = np.stack([rng.integers(0, c, size=(q, 2)) for c in domains], axis=1)
    return np.sort(ends, axis=2)


def _box_sums(freq: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Sum of ``freq`` (shape = domains) over every box (q, d, 2), inclusive ends, by a summed-area table."""
    sat = freq
    for axis in range(freq.ndim):
        sat = np.cumsum(sat, axis=axis)
        sat = np.concatenate([np.zeros_like(sat.take([0], axis=axis)), sat], axis=axis)
    d = freq.ndim
    total = np.zeros(len(boxes))
    for corner in range(1 << d):
        index, sign = [], 1
        for i in range(d):
            upper = (corner >> i) & 1
            index.append(boxes[:, i, 1] + 1 if upper else boxes[:, i, 0])
            sign *= 1 if upper else -1
        total += sign * sat[tuple(index)]
    return total


@opt.command("range", "Range queries under LDP (Flat, HH, HaarHRR, HIO): MSE vs analytic variance.")
@opt.choice_option("--protocol", choices=PROTOCOLS, default="hh")
@click.option(
    "--domain",
    "domain_text",
    default="1024",
    show_default=True,
    help=f"Domain size D in [2, {MAX_DOMAIN}]; HIO: a comma list D1,D2,... (one per attribute, product <= "
    f"{MAX_DOMAIN}).",
)
@epsilon_option()
@users_option()
@opt.count_option(
    "--queries",
    minimum=1,
    maximum=100_000,
    default=1000,
    help="Random ranges answered (MSE and variance are averaged over them).",
)
@opt.choice_option(
    "--distribution", choices=("zipf", "uniform"), default="zipf", help="The users' values (HIO: each attribute)."
)
@opt.seed_option()
@opt.json_option("Print one JSON object: mse, analytic_variance, seconds, users_per_second, ...")
@opt.progress_option()
def range_command(protocol, domain_text, epsilon, n, queries, distribution, seed, as_json, progress):
    """Answer random range queries [a, b] with an LDP range protocol and compare the MSE with the analytic variance.

    Flat: one frequency oracle over the domain; HH: a B-ary hierarchical histogram with consistency; haar: HaarHRR
    (Haar coefficients through randomized response); HIO: hierarchical intervals over several attributes
    (multidimensional boxes). Each is epsilon-LDP for one user's value (HIO: the user's whole row), neighbouring
    relation: replace it.

    \b
    Example:
      dpkit ldp range --protocol hh --domain 1024 --epsilon 1 --n 1000000 --queries 500 --json
    """
    protocol = protocol.lower()
    domains = _domains(domain_text, protocol)
    proto = _protocol(protocol, domains, epsilon)
    rng = np.random.default_rng(seed)
    probs = [zipf_frequencies(c) if distribution == "zipf" else np.full(c, 1.0 / c) for c in domains]
    hist = np.zeros(domains, dtype=np.int64)

    def sample(m: int, g: np.random.Generator) -> np.ndarray:
        cols = [g.choice(c, size=m, p=p) for c, p in zip(domains, probs, strict=True)]
        return cols[0] if protocol != "hio" else np.stack(cols, axis=1)

    def observe(values: np.ndarray) -> None:
        flat = np.ravel_multi_index(values.T, domains) if values.ndim == 2 else values
        hist.reshape(-1)[:] += np.bincount(flat, minlength=hist.size)

    t0 = time.perf_counter()
    with opt.progress_bar(f"simulating {proto.name}", progress) as hook:
        state = simulate_chunks(n, sample, proto.perturb_aggregate, observe, rng, hook)
    boxes = _random_boxes(domains, queries, np.random.default_rng([seed, 1]))
    asked = boxes if protocol == "hio" else boxes[:, 0, :]
    try:
        answers = proto.answer(state, asked)
    except ValueError as err:  # a level or layer without users
        raise click.UsageError(f"{err} (raise --n)") from None
    seconds = time.perf_counter() - t0
    f = hist / n
    truth = _box_sums(f, boxes)
    variance = np.asarray(proto.variance(n, asked, f=f if protocol == "hio" else f.ravel()), dtype=np.float64)
    mse = float(np.mean((answers - truth) ** 2))
    analytic = float(np.mean(variance))
    out = {
        "protocol": proto.name,
        "domain": list(domains) if protocol == "hio" else domains[0],
        "epsilon": float(epsilon),
        "n": int(n),
        "queries": int(queries),
        "mse": mse,
        "analytic_variance": analytic,
        **speed(n, seconds),
    }
    if as_json:
        opt.echo_json(out)
        return
    click.echo(f"{proto!r}: n={n}, domain {'x'.join(map(str, domains))}, epsilon={epsilon:g} ({proto.privacy_event()})")
    click.echo(
        f"{queries} random ranges: MSE {mse:.4g}   mean analytic variance {analytic:.4g}   ratio {mse / analytic:.3f}"
    )
    click.echo(speed_line(n, seconds))
