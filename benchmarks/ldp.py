"""LDP frequency oracles side by side: dpkit against multi-freq-ldpy and pure-LDP, one (dpkit, anchor) pair per process.

For each (protocol, k) at epsilon = 1 on Zipf(1.1) data: users per second end to end (client perturbation of every
user + server aggregation + estimation), MSE over the analytic variance of the unbiased estimator, and extra peak
memory. dpkit runs ``perturb_aggregate`` (memory-bounded chunks) then ``estimate`` on ``--n`` users. The anchors run
one Python client call per user (and their local-hashing servers loop over n x k), so they get fewer users
(``--anchor-n``, and a tenth of it for OLH at k >= 1000); throughput is per user, so the speed-up compares like with
like. multi-freq-ldpy's estimator clips and normalizes (biased toward the simplex), so its MSE ratio is not
comparable to the unbiased ones.

Time: each anchor is paired with dpkit in a fresh process that runs every cell, the two in ``--rounds``
interleaved rounds (order reversed every round) on fresh data of their sizes, after a warm-up call (numba compiles
multi-freq-ldpy's clients); throughput is users over the median seconds, and the speed-up is dpkit's throughput
over the anchor's in that process. dpkit's bulk random bits use ``--threads`` threads (the output does not depend
on it); the anchors run in one thread. Memory: each (library, cell) in a fresh process of its own: warm-up, then
the extra peak RSS of one end-to-end run over the RSS with its input values already in memory
(``--memory-repeats`` processes, median; run after all timing, two at a time).

    python benchmarks/ldp.py                               # k in {100, 1000}, GRR, OUE, OLH, 3 rounds
    python benchmarks/ldp.py --k 100 --protocols OUE --no-anchors
    python benchmarks/ldp.py --quick --out-dir /tmp/bench
"""

from __future__ import annotations

import sys
from typing import Any

import harness

PROTOCOLS = ("GRR", "OUE", "OLH")
ANCHORS = {"multi-freq-ldpy": "multi-freq-ldpy", "pure-LDP": "pure-ldp"}  # label -> distribution name


# ---------------------------------------------------------------------------------------------- contenders
def _mfl(protocol: str, k: int, eps: float, values):
    """multi-freq-ldpy: one client call per user, then its (normalizing) MI aggregator."""
    import numpy as np
    from multi_freq_ldpy.pure_frequency_oracles import GRR as G
    from multi_freq_ldpy.pure_frequency_oracles import LH as L
    from multi_freq_ldpy.pure_frequency_oracles import UE as U

    if protocol == "GRR":
        return np.asarray(G.GRR_Aggregator_MI([G.GRR_Client(int(v), k, eps) for v in values], k, eps))
    if protocol == "OUE":
        return np.asarray(U.UE_Aggregator_MI([U.UE_Client(int(v), k, eps, True) for v in values], eps, True))
    return np.asarray(L.LH_Aggregator_MI([L.LH_Client(int(v), k, eps, True) for v in values], k, eps, True))


def _pure_ldp(protocol: str, k: int, eps: float, values):
    """pure-LDP: XClient.privatise per user, XServer.aggregate per report, estimate_all (counts, unnormalized)."""
    import numpy as np
    from pure_ldp.frequency_oracles import direct_encoding, local_hashing, unary_encoding

    ident = dict(index_mapper=lambda x: x)
    if protocol == "GRR":
        client, server = direct_encoding.DEClient(eps, k, **ident), direct_encoding.DEServer(eps, k, **ident)
    elif protocol == "OUE":
        client = unary_encoding.UEClient(eps, k, use_oue=True, **ident)
        server = unary_encoding.UEServer(eps, k, use_oue=True, **ident)
    else:
        client = local_hashing.LHClient(eps, k, use_olh=True, **ident)
        server = local_hashing.LHServer(eps, k, use_olh=True, **ident)
    for v in values:
        server.aggregate(client.privatise(int(v)))
    return np.asarray(server.estimate_all(range(k), suppress_warnings=True)) / len(values)


RUNNERS = {"multi-freq-ldpy": _mfl, "pure-LDP": _pure_ldp}


def _oracle(protocol: str, k: int, eps: float):
    from dpkit import mechanisms

    return getattr(mechanisms, protocol)(k, eps)


def zipf_values(n: int, k: int, rng):
    import numpy as np

    w = 1.0 / np.arange(1, k + 1) ** 1.1
    values = rng.choice(k, size=n, p=w / w.sum())
    return values, np.bincount(values, minlength=k) / n


def collector(library: str, protocol: str, k: int, eps: float, rng):
    """``values -> frequency estimates`` for one library."""
    if library == "dpkit":
        oracle = _oracle(protocol, k, eps)
        return lambda values: oracle.estimate(oracle.perturb_aggregate(values, rng))
    return lambda values: RUNNERS[library](protocol, k, eps, values)


def size_for(library: str, protocol: str, k: int, n: int, anchor_n: int) -> int:
    if library == "dpkit":
        return n
    return anchor_n // 10 if (protocol == "OLH" and k >= 1000) else anchor_n


# ---------------------------------------------------------------------------------------------- children
def pair_task(
    anchor: str | None, cells: list[list], n: int, anchor_n: int, epsilon: float, rounds: int, seed: int, threads: int
) -> list[dict[str, Any]]:
    """In a fresh process: dpkit and ``anchor`` (or dpkit alone) over every cell, interleaved rounds."""
    import numpy as np

    rng = np.random.default_rng(seed)
    libraries = ["dpkit"] + ([anchor] if anchor else [])
    out = []
    for protocol, k in cells:
        oracle = _oracle(protocol, k, epsilon)
        runs = {lib: collector(lib, protocol, k, epsilon, rng) for lib in libraries}
        for run in runs.values():
            run(zipf_values(200, k, rng)[0])  # warm-up
        secs: dict[str, list[float]] = {lib: [] for lib in libraries}
        mse: dict[str, list[float]] = {lib: [] for lib in libraries}
        for _, lib in harness.interleaved(libraries, rounds):
            size = size_for(lib, protocol, k, n, anchor_n)
            values, f = zipf_values(size, k, rng)
            with harness.Stopwatch() as sw:
                est = runs[lib](values)
            secs[lib].append(sw.wall)
            mse[lib].append(float(np.mean((est - f) ** 2)) / oracle.mean_variance(size, f))
        for lib in libraries:
            out.append(
                {
                    "protocol": protocol,
                    "k": k,
                    "library": lib,
                    "n": size_for(lib, protocol, k, n, anchor_n),
                    "seconds": harness.summary(secs[lib]),
                    "mse_over_variance": harness.summary(mse[lib]),
                }
            )
    return out


def memory_task(library: str, protocol: str, k: int, size: int, epsilon: float, seed: int, threads: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    run = collector(library, protocol, k, epsilon, rng)
    run(zipf_values(200, k, rng)[0])  # warm-up, as in the timing
    values, _ = zipf_values(size, k, rng)
    with harness.PeakMemory() as m:
        run(values)
    return {**m.to_dict(), "method": m.method}


# ---------------------------------------------------------------------------------------------- parent
def measure(cells, *, n, anchor_n, epsilon, rounds, anchors, memory_repeats, threads) -> dict[str, list]:
    timing = []
    common = {"cells": cells, "n": n, "anchor_n": anchor_n, "epsilon": epsilon, "rounds": rounds, "threads": threads}
    for anchor in anchors or [None]:
        harness.say(f"[ldp] pair process: dpkit / {anchor or '(no anchor)'}")
        rows = harness.try_child(__file__, {"kind": "pair", "anchor": anchor, "seed": 0, **common}, threads=threads)
        if rows is None:
            continue
        by_cell = {(r["protocol"], r["k"], r["library"]): r for r in rows}
        for r in rows:
            r["users_per_s"] = harness.ratio(r["n"], r["seconds"]["median"])
            r["pair"] = anchor
            if r["library"] != "dpkit":
                dp = by_cell[(r["protocol"], r["k"], "dpkit")]
                r["dpkit_speedup"] = harness.ratio(dp["n"] / dp["seconds"]["median"], r["users_per_s"])
            timing.append(r)
            harness.say(f"    {r['protocol']} k={r['k']} {r['library']}: {r['users_per_s']:,.0f} users/s")
    memory = []
    if memory_repeats > 0:
        jobs = [(p, k, lib, size_for(lib, p, k, n, anchor_n)) for p, k in cells for lib in ["dpkit", *anchors]]
        tasks = [
            {"kind": "memory", "library": lib, "protocol": p, "k": k, "size": size, "epsilon": epsilon, "seed": rep,
             "threads": threads}
            for p, k, lib, size in jobs
            for rep in range(memory_repeats)
        ]  # fmt: skip
        harness.say(f"[ldp] memory: {len(tasks)} fresh processes, {threads} at a time")
        results = harness.run_children(__file__, tasks, threads=threads)
        for i, (p, k, lib, size) in enumerate(jobs):
            mine = results[i * memory_repeats : (i + 1) * memory_repeats]
            for x in mine:
                if isinstance(x, harness.ChildFailed):
                    harness.say(f"    memory {p} k={k} {lib} failed: {x}")
            peaks = [x["extra_peak_mb"] for x in mine if isinstance(x, dict)]
            memory.append({"protocol": p, "k": k, "library": lib, "n": size, "extra_peak_mb": harness.summary(peaks)})
    return {"timing": timing, "memory": memory}


def main(argv=None) -> None:
    if harness.child_main(argv, {"pair": pair_task, "memory": memory_task}):
        return
    ap = harness.parser(__doc__, "k = 100, GRR and OUE, 1e5 / 2e3 users, 1 round (a smoke test)")
    ap.add_argument("--n", type=int, default=1_000_000, help="users for dpkit")
    ap.add_argument("--anchor-n", type=int, default=100_000, help="users for the anchors (OLH at k >= 1000: 1/10)")
    harness.add_oracle_grid(ap, PROTOCOLS)
    ap.add_argument("--no-anchors", action="store_true")
    ap.add_argument("--rounds", "--repeat", type=int, default=3, help="interleaved rounds per cell (medians)")
    ap.add_argument("--memory-repeats", type=int, default=1, help="fresh processes per memory figure (median)")
    ap.add_argument("--no-memory", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.anchor_n, args.k, args.protocols, args.rounds = 100_000, 2_000, [100], ["GRR", "OUE"], 1
    cells = [[p, k] for k in args.k for p in args.protocols]
    anchors = [] if args.no_anchors else list(ANCHORS)
    run = harness.Run("ldp", args, __doc__, anchors=tuple(ANCHORS.values()))
    results = measure(
        cells,
        n=args.n,
        anchor_n=args.anchor_n,
        epsilon=args.epsilon,
        rounds=args.rounds,
        anchors=anchors,
        memory_repeats=0 if args.no_memory else args.memory_repeats,
        threads=args.threads,
    )
    run.finish(
        {"anchor_distributions": ANCHORS, **results},
        settings={
            "n": args.n,
            "anchor_n": args.anchor_n,
            "k": args.k,
            "epsilon": args.epsilon,
            "protocols": args.protocols,
            "anchors": anchors,
            "rounds": args.rounds,
            "memory_repeats": 0 if args.no_memory else args.memory_repeats,
            "data": "Zipf(1.1)",
        },
    )


if __name__ == "__main__":
    sys.exit(main())
