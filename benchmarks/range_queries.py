"""LDP range queries: the error of flat, hierarchical histograms (HH) and HaarHRR against the range length, and
their users per second (Cormode, Kulkarni, Srivastava, PVLDB 2019, whose figures plot the same).

Data: ``--n`` users (default 1e6) over a domain of ``--domain`` values (default 1024) from a Cauchy distribution
centred in the domain (scale domain/20, redrawn outside it), as in the paper's synthetic data. Every protocol at its
defaults (flat: GRR or OUE by least variance; HH: branching by least variance, GRR or OUE per level, consistency;
HaarHRR), epsilon in ``--epsilons``. Queries: for every range length r in 1, 2, 4, ... < domain, ``--queries``
ranges [a, a + r - 1] with uniform starts. Error: the mean squared error of the answers (frequencies) over the
queries and ``--rounds`` fresh collections, next to the analytic variance of each protocol (f -> 0 form; HaarHRR's
is an upper bound).

Each (protocol, epsilon) runs in a fresh process: ``perturb_aggregate`` of all users, timed (users per second:
client and server, the level states drawn by each level oracle's ``sample_aggregate``), then the answers. Memory:
extra peak RSS of one collection at epsilon = 1 in a fresh process per protocol. The plot (``--plot``, default
``benchmarks/results/range_queries.png``): MSE against range length, one panel per epsilon, log-log.

    python benchmarks/range_queries.py                     # domain 1024, 1e6 users, epsilon 0.5, 1, 2, 4
    python benchmarks/range_queries.py --epsilons 1 --rounds 1
    python benchmarks/range_queries.py --quick --out-dir /tmp/bench
"""

from __future__ import annotations

import sys
from pathlib import Path

import harness

PROTOCOLS = ("flat", "hh", "haar")
LABELS = {"flat": "flat", "hh": "HH", "haar": "HaarHRR"}


def cauchy_values(n: int, domain: int, rng):
    import numpy as np

    out = np.empty(0, dtype=np.int64)
    while out.size < n:
        x = np.floor(domain / 2 + (domain / 20) * rng.standard_cauchy(2 * n)).astype(np.int64)
        out = np.concatenate([out, x[(x >= 0) & (x < domain)]])
    return out[:n]


def _protocol(name: str, domain: int, epsilon: float):
    from dpkit.mechanisms.range_queries import RANGE_PROTOCOLS

    return RANGE_PROTOCOLS[name](domain, epsilon)


def _lengths(domain: int) -> list[int]:
    """1, 2, 4, ... below the domain (the whole domain's answer is the known total: no error)."""
    out, r = [], 1
    while r < domain:
        out.append(r)
        r *= 2
    return out


# ---------------------------------------------------------------------------------------------- children
def cell_task(protocol: str, domain: int, epsilon: float, n: int, queries: int, rounds: int, seed: int, threads: int):
    """One protocol at one epsilon: timed collections, MSE per range length, the analytic variance."""
    import numpy as np

    rng = np.random.default_rng(seed)
    proto = _protocol(protocol, domain, epsilon)
    proto.perturb_aggregate(cauchy_values(2000, domain, rng), rng)  # warm-up
    lengths = _lengths(domain)
    qs = []
    for r in lengths:
        a = rng.integers(0, domain - r + 1, size=queries)
        qs.append(np.stack([a, a + r - 1], axis=1))
    allq = np.concatenate(qs)
    secs, sq = [], np.zeros(len(allq))
    for _ in range(rounds):
        values = cauchy_values(n, domain, rng)
        cs = np.concatenate([[0.0], np.cumsum(np.bincount(values, minlength=domain) / n)])
        with harness.Stopwatch() as sw:
            state = proto.perturb_aggregate(values, rng)
        secs.append(sw.wall)
        sq += (proto.answer(state, allq) - (cs[allq[:, 1] + 1] - cs[allq[:, 0]])) ** 2
    mse = (sq / rounds).reshape(len(lengths), queries).mean(axis=1)
    var = np.asarray(proto.variance(n, allq)).reshape(len(lengths), queries).mean(axis=1)
    out = {"protocol": protocol, "epsilon": epsilon, "n": n, "domain": domain, "params": repr(proto)}
    return {**out, "seconds": harness.summary(secs), "lengths": lengths, "mse": mse.tolist(), "variance": var.tolist()}


def memory_task(protocol: str, domain: int, epsilon: float, n: int, seed: int, threads: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    proto = _protocol(protocol, domain, epsilon)
    proto.perturb_aggregate(cauchy_values(2000, domain, rng), rng)
    values = cauchy_values(n, domain, rng)
    with harness.PeakMemory() as m:
        proto.perturb_aggregate(values, rng)
    return {**m.to_dict(), "method": m.method}


# ---------------------------------------------------------------------------------------------- parent
def plot(cells: list[dict], path: Path, n: int, domain: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epsilons = sorted({c["epsilon"] for c in cells})
    fig, axes = plt.subplots(1, len(epsilons), figsize=(4 * len(epsilons), 3.6), squeeze=False, sharey=True)
    styles = {"flat": ("tab:gray", "s"), "hh": ("tab:blue", "o"), "haar": ("tab:red", "^")}
    for ax, eps in zip(axes[0], epsilons, strict=True):
        for c in (c for c in cells if c["epsilon"] == eps):
            color, marker = styles[c["protocol"]]
            ax.loglog(c["lengths"], c["mse"], marker=marker, color=color, label=LABELS[c["protocol"]])
            ax.loglog(c["lengths"], c["variance"], ls=":", color=color, lw=1)
        ax.set_title(f"epsilon = {eps:g}")
        ax.set_xlabel("range length")
        ax.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel("MSE of the range frequency")
    axes[0][0].legend(title="measured (dotted: analytic)", fontsize=8)
    fig.suptitle(f"LDP range queries, domain {domain}, {n:,} users, Cauchy data (dpkit)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def measure(protocols, epsilons, *, domain, n, queries, rounds, memory, threads) -> dict[str, list]:
    cells, mem = [], []
    for eps in epsilons:
        for p in protocols:
            harness.say(f"[range] {LABELS[p]} at epsilon {eps:g}: {rounds} collection(s) of {n:,} users")
            task = {"kind": "cell", "protocol": p, "domain": domain, "epsilon": eps, "n": n, "queries": queries,
                    "rounds": rounds, "seed": 0, "threads": threads}  # fmt: skip
            c = harness.try_child(__file__, task, threads=threads)
            if c is None:
                continue
            c["users_per_s"] = harness.ratio(n, c["seconds"]["median"])
            harness.say(f"    {c['users_per_s']:,.0f} users/s; MSE at length 1: {c['mse'][0]:.3g}")
            cells.append(c)
    if memory:
        tasks = [{"kind": "memory", "protocol": p, "domain": domain, "epsilon": 1.0, "n": n, "seed": 1,
                  "threads": threads} for p in protocols]  # fmt: skip
        for p, x in zip(protocols, harness.run_children(__file__, tasks, threads=threads), strict=True):
            if isinstance(x, harness.ChildFailed):
                harness.say(f"    memory {p} failed: {x}")
                continue
            mem.append({"protocol": p, "epsilon": 1.0, "n": n, "extra_peak_mb": x["extra_peak_mb"]})
    return {"cells": cells, "memory": mem}


def main(argv=None) -> None:
    if harness.child_main(argv, {"cell": cell_task, "memory": memory_task}):
        return
    ap = harness.parser(__doc__, "domain 256, 1e5 users, epsilon 1, 1 round (a smoke test)")
    ap.add_argument("--domain", type=int, default=1024)
    ap.add_argument("--n", type=int, default=1_000_000, help="users per collection")
    ap.add_argument("--epsilons", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0])
    ap.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=list(PROTOCOLS))
    ap.add_argument("--queries", type=int, default=200, help="random ranges per length")
    ap.add_argument("--rounds", type=int, default=3, help="fresh collections per cell (MSE mean, time median)")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--plot", default=None, help="the figure's path (default: <out-dir>/range_queries.png)")
    args = ap.parse_args(argv)
    if args.quick:
        args.domain, args.n, args.epsilons, args.rounds = 256, 100_000, [1.0], 1
    run = harness.Run("range_queries", args, __doc__)
    results = measure(args.protocols, args.epsilons, domain=args.domain, n=args.n, queries=args.queries,
                      rounds=args.rounds, memory=not args.no_memory, threads=args.threads)  # fmt: skip
    figure = Path(args.plot) if args.plot else run.out_dir / "range_queries.png"
    if results["cells"]:
        plot(results["cells"], figure, args.n, args.domain)
        harness.say(f"wrote {figure}")
    run.finish(
        {**results, "figure": figure.name},
        settings={
            "domain": args.domain,
            "n": args.n,
            "epsilons": args.epsilons,
            "protocols": args.protocols,
            "queries": args.queries,
            "rounds": args.rounds,
            "data": "Cauchy(domain/2, domain/20), redrawn outside the domain",
        },  # fmt: skip
    )


if __name__ == "__main__":
    sys.exit(main())
