"""The LDP-Auditor grid with dpkit's vectorized auditor; dpkit against the anchors' per-user clients; broken
randomizers the auditor catches.

Grid (Arcolezi and Gambs, PoPETs 2024): 8 pure protocols (GRR, SS, SUE, OUE, THE, SHE, BLH, OLH) x k in
{2, 25, 100, 200} x epsilon in {0.25, 0.5, 0.75, 1, 2, 4, 6, 10}, ``--trials`` per input (1e6 as in the paper),
confidence 0.99 jointly over the 256 settings (each at 1 - 0.01 / 256, Bonferroni: at 0.99 per setting a correct
protocol would show about 2.5 violations by chance), tests: the exact-model likelihood-ratio test (both
directions) and LDP-Auditor's family attack (the ``lr-split`` test is left out, so the cost is the paper's
2 x trials randomizer calls per setting). Settings
run in ``--workers`` processes of one thread each; reported: wall and CPU time, calls per second, the largest
worker's peak RSS (imports included).

Side by side: LDP-Auditor itself (ldp-audit) is not on PyPI; it drives multi-freq-ldpy's per-user clients (one
Python call per trial). Each anchor is paired with dpkit in a fresh process: dpkit's whole audit of
``--pair-trials`` trials per input (randomizer, both tests, bounds) against the anchor's client alone called
``--anchor-calls`` times, in ``--rounds`` interleaved rounds (order reversed every round), for GRR and OUE at
k in {25, 200}, epsilon = 1; the speed-up is dpkit's randomizer calls per second over the anchor's (the anchor's
figure counts no attack at all, so it flatters the anchor). Memory: each (library, cell) in a fresh process: extra
peak RSS of one such run (these processes run after all timing, two at a time).

Findings: randomizers broken the way real libraries broke (``dpkit.audits.ldp.broken``), audited with
``--findings-trials`` trials per input at confidence 0.99; the lower bound must exceed the claimed epsilon.

    python benchmarks/audit.py                             # the full grid (about 5 minutes on 2 idle cores)
    python benchmarks/audit.py --quick --out-dir /tmp/bench
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import harness

PROTOCOLS = ("GRR", "SS", "SUE", "OUE", "THE", "SHE", "BLH", "OLH")
EPSILONS = (0.25, 0.5, 0.75, 1.0, 2.0, 4.0, 6.0, 10.0)
KS = (2, 25, 100, 200)
PAIR_CELLS = (("GRR", 25), ("GRR", 200), ("OUE", 25), ("OUE", 200))
PAIR_EPSILON = 1.0
ANCHORS = {"multi-freq-ldpy": "multi-freq-ldpy", "pure-LDP": "pure-ldp"}  # label -> distribution name
CONFIDENCE = 0.99  # the grid's, jointly over all its settings


# ---------------------------------------------------------------------------------------------- grid
def _one_setting(args) -> dict[str, Any]:
    name, k, eps, trials, seed, confidence = args
    from dpkit.audits.ldp import audit, resolve

    with harness.Stopwatch() as sw:
        target = resolve(f"dpkit:{name}", k=k, epsilon=eps)
        r = audit(target, trials, confidence=confidence, seed=seed, attacks=("lr", "family"))
    lr = max((t.epsilon_lower_bound for t in r.tests if t.name.startswith("lr")), default=None)
    fam = next((t.epsilon_lower_bound for t in r.tests if t.name.startswith("family")), None)
    return {
        "protocol": name,
        "k": k,
        "epsilon": eps,
        "eps_lb": r.epsilon_lower_bound,
        "eps_lb_lr": lr,
        "eps_lb_family": fam,
        "cap": r.cap,
        "confidence": r.confidence,
        "violation": bool(r.violation),
        "seconds": sw.wall,
        "cpu_seconds": sw.cpu,
        "worker_maxrss_mb": harness.maxrss_mb(),
    }


def run_grid(protocols, ks, epsilons, trials, workers) -> tuple[list[dict], float]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    from dpkit.audits.ldp import grid_confidence

    cells = [(p, k, e) for p in protocols for k in ks for e in epsilons]
    per_setting = grid_confidence(CONFIDENCE, len(cells))  # CONFIDENCE holds jointly over the whole grid
    settings = [(p, k, e, trials, i, per_setting) for i, (p, k, e) in enumerate(cells)]
    settings.sort(key=lambda s: -s[1] * (1 if s[0] == "GRR" else 10))  # heaviest first: the workers end together
    os.environ.update(harness.thread_env(1))  # each worker one thread (spawned workers read it at start)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_import_auditor) as ex:
        list(ex.map(_ready, range(workers)))  # every worker started and its imports done before the clock starts
        t0 = time.perf_counter()
        rows = list(tqdm(ex.map(_one_setting, settings), total=len(settings), desc="grid", unit="setting"))
        wall = time.perf_counter() - t0
    return rows, wall


def _import_auditor() -> None:
    import dpkit.audits.ldp  # noqa: F401


def _ready(_: int) -> None:
    time.sleep(0.5)  # holds this worker so that the next one starts too


# ---------------------------------------------------------------------------------------------- pairs
def _anchor_client(library: str, protocol: str, k: int, eps: float):
    """``value -> report``: the anchor's client for one user."""
    if library == "multi-freq-ldpy":
        from multi_freq_ldpy.pure_frequency_oracles import GRR as G
        from multi_freq_ldpy.pure_frequency_oracles import UE as U

        if protocol == "GRR":
            return lambda v: G.GRR_Client(v, k, eps)
        return lambda v: U.UE_Client(v, k, eps, True)
    from pure_ldp.frequency_oracles import direct_encoding, unary_encoding

    ident = dict(index_mapper=lambda x: x)
    if protocol == "GRR":
        return direct_encoding.DEClient(eps, k, **ident).privatise
    return unary_encoding.UEClient(eps, k, use_oue=True, **ident).privatise


def _runner(library: str, protocol: str, k: int, trials: int, calls: int):
    """``() -> randomizer calls made``: dpkit's whole audit of ``trials`` per input, or ``calls`` anchor calls."""
    if library == "dpkit":
        from dpkit.audits.ldp import audit, resolve

        def run_dpkit():  # a fresh target every time: its set-up is part of every audit
            audit(resolve(f"dpkit:{protocol}", k=k, epsilon=PAIR_EPSILON), trials, seed=0, attacks=("lr", "family"))
            return 2 * trials

        return run_dpkit
    client = _anchor_client(library, protocol, k, PAIR_EPSILON)

    def run_anchor():
        for i in range(calls):
            client(i & 1)  # v1 = 0 and v2 = 1 in turn, as in the game
        return calls

    return run_anchor


def pair_task(anchor: str, cells: list[list], trials: int, calls: int, rounds: int, threads: int) -> list[dict]:
    out = []
    for protocol, k in cells:
        runs = {lib: _runner(lib, protocol, k, trials, calls) for lib in ("dpkit", anchor)}
        for lib in runs:  # warm-up (numba compiles multi-freq-ldpy's clients)
            _runner(lib, protocol, k, 1000, 100)()
        secs: dict[str, list[float]] = {lib: [] for lib in runs}
        made = {}
        for _, lib in harness.interleaved(list(runs), rounds):
            with harness.Stopwatch() as sw:
                made[lib] = runs[lib]()
            secs[lib].append(sw.wall)
        for lib in runs:
            s = harness.summary(secs[lib])
            out.append({"protocol": protocol, "k": k, "library": lib, "calls": made[lib], "seconds": s,
                        "calls_per_s": harness.ratio(made[lib], s["median"])})  # fmt: skip
    return out


def memory_task(library: str, protocol: str, k: int, trials: int, calls: int, threads: int) -> dict[str, Any]:
    _runner(library, protocol, k, 1000, 100)()  # warm-up
    run = _runner(library, protocol, k, trials, calls)
    with harness.PeakMemory() as m:
        run()
    return {**m.to_dict(), "method": m.method}


# ---------------------------------------------------------------------------------------------- findings
def findings_task(trials: int, threads: int) -> list[dict]:
    from dpkit.audits.ldp import LongitudinalTarget, ProtocolTarget, audit
    from dpkit.audits.ldp.broken import (
        ForgetfulPopulation,
        LeakyTrueBitOUE,
        LeakyTrueBitSUE,
        TooHonestGRR,
        WrongQOUE,
    )
    from dpkit.mechanisms import LGRR

    lgrr, tau = LGRR(2, 1.0, 0.5), 8
    cases = [
        ("pure-LDP 1.1.2's OUE (true bit keeps its q-draw when the p-coin fails)", LeakyTrueBitOUE(25, 1.0)),
        ("the same bug in SUE", LeakyTrueBitSUE(25, 0.25)),
        ("OUE with a wrong q", WrongQOUE(25, 0.25)),
        ("GRR reporting one input's true value too often", TooHonestGRR(10, 1.0, favourite=0, p_leak=0.6)),
    ]
    out = []
    for label, proto in cases:
        r = audit(ProtocolTarget(proto), trials, seed=1)
        out.append({"randomizer": label, "k": proto.k, "claimed": proto.epsilon, "true": proto.true_epsilon(),
                    "lower_bound": r.epsilon_lower_bound, "cap": r.cap, "violation": bool(r.violation)})  # fmt: skip
    r = audit(LongitudinalTarget(lgrr, tau, population=ForgetfulPopulation), trials, seed=4)
    out.append(
        {
            "randomizer": f"longitudinal client that forgets its memoized value (L-GRR, {tau} reports)",
            "k": lgrr.k,
            "claimed": r.epsilon_claimed,
            "true": ForgetfulPopulation.true_epsilon(lgrr, tau),
            "lower_bound": r.epsilon_lower_bound,
            "cap": r.cap,
            "violation": bool(r.violation),
        }
    )
    for row in out:
        row["trials"] = trials
    return out


# ---------------------------------------------------------------------------------------------- parent
def main(argv=None) -> None:
    if harness.child_main(argv, {"pair": pair_task, "memory": memory_task, "findings": findings_task}):
        return
    ap = harness.parser(__doc__, "k in {2, 25}, epsilon in {0.5, 1, 4}, 2e4 trials; small pairs (a smoke test)")
    ap.add_argument("--trials", type=int, default=None, help="grid trials per input (1e6; --quick: 2e4)")
    ap.add_argument("--workers", type=int, default=2, help="grid processes (one thread each)")
    ap.add_argument("--csv", default=None, help="also write the grid's rows to this CSV file")
    ap.add_argument("--no-anchors", action="store_true", help="skip the side-by-side pairs")
    ap.add_argument("--pair-trials", type=int, default=100_000, help="dpkit's trials per input in the pairs")
    ap.add_argument("--anchor-calls", type=int, default=20_000, help="anchor client calls per round in the pairs")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds per pair cell")
    ap.add_argument("--findings-trials", type=int, default=100_000)
    ap.add_argument("--no-findings", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    a = ap.parse_args(argv)
    ks, eps = ((2, 25), (0.5, 1.0, 4.0)) if a.quick else (KS, EPSILONS)
    trials = a.trials or (20_000 if a.quick else 1_000_000)
    if a.quick:
        a.pair_trials, a.anchor_calls, a.rounds = 10_000, 1_000, 1
    run = harness.Run("audit", a, __doc__, anchors=tuple(ANCHORS.values()))

    harness.say(f"[audit] grid: {len(PROTOCOLS) * len(ks) * len(eps)} settings, {trials} trials per input")
    rows, wall = run_grid(PROTOCOLS, ks, eps, trials, a.workers)
    if a.csv:
        import csv

        with open(a.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    calls = 2 * trials * len(rows)
    cpu = sum(r["cpu_seconds"] for r in rows)
    grid = {
        "settings": len(rows),
        "trials": trials,
        "randomizer_calls": calls,
        "workers": a.workers,
        "threads_per_worker": 1,
        "wall_s": wall,
        "cpu_s": cpu,
        "calls_per_s": calls / wall,
        "calls_per_cpu_s": calls / cpu,
        "violations": sum(r["violation"] for r in rows),
        "max_worker_peak_rss_mb": max(r["worker_maxrss_mb"] for r in rows),
        "rows": rows,
    }
    harness.say(f"    {calls:.3g} calls in {wall:.1f} s wall, {cpu:.1f} s CPU; {grid['violations']} violation(s)")

    pairs, memory = [], []
    anchors = [] if a.no_anchors else list(ANCHORS)
    cells = [list(c) for c in PAIR_CELLS]
    for anchor in anchors:
        harness.say(f"[audit] pair process: dpkit / {anchor}")
        task = {"kind": "pair", "anchor": anchor, "cells": cells, "trials": a.pair_trials, "calls": a.anchor_calls,
                "rounds": a.rounds, "threads": a.threads}  # fmt: skip
        res = harness.try_child(__file__, task, threads=a.threads)
        if res is None:
            continue
        dp = {(r["protocol"], r["k"]): r["calls_per_s"] for r in res if r["library"] == "dpkit"}
        for r in res:
            r["pair"] = anchor
            if r["library"] != "dpkit":
                r["dpkit_speedup"] = harness.ratio(dp[(r["protocol"], r["k"])], r["calls_per_s"])
            harness.say(f"    {r['protocol']} k={r['k']} {r['library']}: {r['calls_per_s']:,.0f} calls/s")
        pairs += res
    if anchors and not a.no_memory:
        jobs = [(p, k, lib) for p, k in cells for lib in ["dpkit", *anchors]]
        tasks = [
            {"kind": "memory", "library": lib, "protocol": p, "k": k, "trials": a.pair_trials,
             "calls": a.anchor_calls, "threads": a.threads}
            for p, k, lib in jobs
        ]  # fmt: skip
        harness.say(f"[audit] memory: {len(tasks)} fresh processes, {a.threads} at a time")
        for (p, k, lib), res in zip(jobs, harness.run_children(__file__, tasks, threads=a.threads), strict=True):
            if isinstance(res, harness.ChildFailed):
                harness.say(f"    memory {p} k={k} {lib} failed: {res}")
            mb = None if isinstance(res, harness.ChildFailed) else res["extra_peak_mb"]
            memory.append({"protocol": p, "k": k, "library": lib, "extra_peak_mb": mb})

    findings = []
    if not a.no_findings:
        harness.say("[audit] findings: broken randomizers")
        findings = harness.run_child(
            __file__, {"kind": "findings", "trials": a.findings_trials, "threads": a.threads}, threads=a.threads
        )

    run.finish(
        {"grid": grid, "pairs": pairs, "memory": memory, "findings": findings, "anchor_distributions": ANCHORS},
        settings={
            "protocols": list(PROTOCOLS),
            "k": list(ks),
            "epsilons": list(eps),
            "trials": trials,
            "workers": a.workers,
            "confidence": CONFIDENCE,
            "confidence_per_setting": rows[0]["confidence"],
            "attacks": ["lr", "family"],
            "pair_cells": cells,
            "pair_epsilon": PAIR_EPSILON,
            "pair_trials": a.pair_trials,
            "anchor_calls": a.anchor_calls,
            "rounds": a.rounds,
            "findings_trials": a.findings_trials,
            "full_grid_calls_per_protocol": 2 * 1_000_000 * len(KS) * len(EPSILONS),
        },
    )


if __name__ == "__main__":
    sys.exit(main())
