"""Data poisoning on LDP frequency oracles: how fast dpkit crafts fake users' reports and simulates genuine ones.

For each (protocol, k) at epsilon = 1, r = 10 targets, in a fresh process: fake users per second of each attack
(RPA, RIA, MGA: ``aggregate_fakes`` crafts the m reports and aggregates them chunk by chunk, about 64 MB of reports
at a time, the server's report check included),
genuine users per second (``perturb_aggregate``: clients and server, memory-bounded chunks), and users per second of
a whole :func:`dpkit.audits.poisoning.simulate` (n genuine + m fake users, beta = 0.05, no defense), each the median
of ``--rounds`` rounds after a warm-up; MGA on local hashing includes its search over 2^20 hash functions (once
per chunk). Extra
peak memory of one end-to-end simulation in a fresh process of its own, after all timing. There is no anchor
library for poisoning: the figures stand alone.

    python benchmarks/poisoning.py                            # GRR, OUE, OLH at k in {100, 1000}, 1e6 users
    python benchmarks/poisoning.py --protocols GRR OUE --k 100
    python benchmarks/poisoning.py --quick --out-dir /tmp/bench
"""

from __future__ import annotations

import sys
from typing import Any

import harness

PROTOCOLS = ("GRR", "OUE", "OLH")
ATTACKS = ("rpa", "ria", "mga")


def _setup(protocol: str, k: int, epsilon: float, n: int, seed: int):
    import numpy as np

    from dpkit.mechanisms.frequency_oracles import make_oracle

    rng = np.random.default_rng(seed)
    return make_oracle(protocol, k, epsilon), rng, rng.integers(0, k, size=n), np.arange(10)


def timing_task(cells: list[list], n: int, m: int, epsilon: float, rounds: int, seed: int, threads: int):
    """In a fresh process: every cell's fake, genuine and end-to-end rates, interleaved rounds."""
    from dpkit.audits.poisoning import aggregate_fakes, simulate

    out = []
    for protocol, k in cells:
        proto, rng, values, targets = _setup(protocol, k, epsilon, n, seed)
        for attack in ATTACKS:  # warm-up, small
            aggregate_fakes(proto, attack, targets, 1000, rng, variance_sample=0)
        proto.perturb_aggregate(values[:1000], rng)
        names = [*(f"fake {a}" for a in ATTACKS), "genuine", "simulate"]
        secs: dict[str, list[float]] = {name: [] for name in names}
        for _, name in harness.interleaved(names, rounds):
            with harness.Stopwatch() as sw:
                if name == "genuine":
                    proto.perturb_aggregate(values, rng)
                elif name == "simulate":
                    simulate(proto, "mga", values, targets, 0.05, rng)
                else:
                    aggregate_fakes(proto, name.split()[1], targets, m, rng, variance_sample=0)
            secs[name].append(sw.wall)
        m_sim = int(round(0.05 * n / 0.95))
        for name in names:
            users = n if name == "genuine" else n + m_sim if name == "simulate" else m
            s = harness.summary(secs[name])
            out.append({"protocol": protocol, "k": k, "what": name, "users": users, "seconds": s,
                        "users_per_s": harness.ratio(users, s["median"])})  # fmt: skip
    return out


def memory_task(protocol: str, k: int, n: int, epsilon: float, seed: int, threads: int) -> dict[str, Any]:
    from dpkit.audits.poisoning import simulate

    proto, rng, values, targets = _setup(protocol, k, epsilon, n, seed)
    simulate(proto, "mga", values[:1000], targets, 0.05, rng)  # warm-up
    with harness.PeakMemory() as mem:
        simulate(proto, "mga", values, targets, 0.05, rng)
    return {**mem.to_dict(), "method": mem.method}


def main(argv=None) -> None:
    if harness.child_main(argv, {"timing": timing_task, "memory": memory_task}):
        return
    ap = harness.parser(__doc__, "k = 100, GRR and OUE, 1e5 genuine and fake users, 1 round (a smoke test)")
    ap.add_argument("--n", type=int, default=1_000_000, help="genuine users")
    ap.add_argument("--m", type=int, default=1_000_000, help="fake users per attack timing")
    harness.add_oracle_grid(ap, PROTOCOLS)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per cell (medians)")
    ap.add_argument("--no-memory", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.m, args.k, args.protocols, args.rounds = 100_000, 100_000, [100], ["GRR", "OUE"], 1
    cells = [[p, k] for k in args.k for p in args.protocols]
    run = harness.Run("poisoning", args, __doc__)
    harness.say(f"[poisoning] timing: {len(cells)} cell(s) in one fresh process")
    task = {"kind": "timing", "cells": cells, "n": args.n, "m": args.m, "epsilon": args.epsilon,
            "rounds": args.rounds, "seed": 0, "threads": args.threads}  # fmt: skip
    timing = harness.run_child(__file__, task, threads=args.threads)
    for r in timing:
        harness.say(f"    {r['protocol']} k={r['k']} {r['what']}: {r['users_per_s']:,.0f} users/s")
    memory = []
    if not args.no_memory:
        for protocol, k in cells:
            mem_task = {"kind": "memory", "protocol": protocol, "k": k, "n": args.n, "epsilon": args.epsilon,
                        "seed": 1, "threads": args.threads}  # fmt: skip
            res = harness.try_child(__file__, mem_task, threads=args.threads, label=f"    memory {protocol} k={k} ")
            if res is None:
                continue
            memory.append({"protocol": protocol, "k": k, "n": args.n, "extra_peak_mb": res["extra_peak_mb"]})
    run.finish(
        {"timing": timing, "memory": memory},
        settings={
            "n": args.n,
            "m": args.m,
            "k": args.k,
            "epsilon": args.epsilon,
            "protocols": args.protocols,
            "rounds": args.rounds,
            "targets": 10,
            "beta": 0.05,
            "data": "uniform",
        },
    )


if __name__ == "__main__":
    sys.exit(main())
