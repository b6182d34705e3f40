"""The full LDP-Auditor grid with dpkit's vectorized auditor, and what the anchors' per-user clients would cost.

    .venv/bin/python benchmarks/audit.py [--quick] [--trials 1000000] [--workers 2] [--csv FILE] [--no-anchors]

Grid (ldp.md 7.1, Arcolezi & Gambs PoPETs 2024): 8 pure protocols (GRR, SS, SUE, OUE, THE, SHE, BLH, OLH) x
k in {2, 25, 100, 200} x epsilon in {0.25, 0.5, 0.75, 1, 2, 4, 6, 10}, ``--trials`` per input (1e6 as in the
paper), confidence 0.99, tests: the exact-model likelihood-ratio test (both directions) and LDP-Auditor's family
attack (as in the paper; the ``lr-split`` test is left out here so the cost is the paper's 2e6 randomizer calls per
setting). Settings run in ``--workers`` processes. ``--quick``: k in {2, 25}, epsilon in {0.5, 1, 4}, 1e5 trials.

Anchor cost: ldp-audit (GitHub hharcolezi/ldp-audit) is not on PyPI and is not installed here; it drives
multi-freq-ldpy's per-user numba clients (one Python call per trial, with Ray over cores). We time those clients
(and pure-LDP's) per call on this machine and extrapolate to the grid's 2 x trials x settings calls; these are
extrapolations, printed as such, next to ldp_libraries.md's measured per-call numbers.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pandas as pd  # noqa: E402

PROTOCOLS = ("GRR", "SS", "SUE", "OUE", "THE", "SHE", "BLH", "OLH")
EPSILONS = (0.25, 0.5, 0.75, 1.0, 2.0, 4.0, 6.0, 10.0)
KS = (2, 25, 100, 200)


def _one(args):
    name, k, eps, trials, seed = args
    from dpkit.audits.ldp import audit, resolve

    t0, c0 = time.perf_counter(), time.process_time()
    r = audit(resolve(f"dpkit:{name}", k=k, epsilon=eps), trials, seed=seed, attacks=("lr", "family"))
    lr = max((t.epsilon_lower_bound for t in r.tests if t.name.startswith("lr")), default=float("nan"))
    fam = next((t.epsilon_lower_bound for t in r.tests if t.name.startswith("family")), float("nan"))
    return {
        "protocol": name,
        "k": k,
        "epsilon": eps,
        "eps_lb": r.epsilon_lower_bound,
        "eps_lb_lr": lr,
        "eps_lb_family": fam,
        "cap": r.cap,
        "violation": r.violation,
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
    }


def run_grid(protocols, ks, epsilons, trials, workers):
    settings = [
        (p, k, e, trials, i) for i, (p, k, e) in enumerate((p, k, e) for p in protocols for k in ks for e in epsilons)
    ]
    # heaviest first (k = 200 UE/HE/SS) so the two workers finish together
    settings.sort(key=lambda s: -s[1] * (1 if s[0] in ("GRR",) else 10))
    t0 = time.perf_counter()
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        from tqdm import tqdm

        with ProcessPoolExecutor(workers) as ex:
            rows = list(tqdm(ex.map(_one, settings), total=len(settings), desc="grid", unit="setting"))
    else:
        from tqdm import tqdm

        rows = [_one(s) for s in tqdm(settings, desc="grid", unit="setting")]
    return pd.DataFrame(rows), time.perf_counter() - t0


def anchor_cost(n_calls: int = 2000) -> pd.DataFrame:
    """Seconds per client call of the anchors (numba warm-up excluded), k = 25 and 200, epsilon = 1."""
    rows = []
    try:
        from multi_freq_ldpy.pure_frequency_oracles import GRR as G
        from multi_freq_ldpy.pure_frequency_oracles import UE as U

        for k in (25, 200):
            for name, f in (
                ("GRR", lambda v, k=k: G.GRR_Client(v, k, 1.0)),
                ("OUE", lambda v, k=k: U.UE_Client(v, k, 1.0, True)),
            ):
                f(0)
                t0 = time.perf_counter()
                for _ in range(n_calls):
                    f(0)
                rows.append(
                    {
                        "library": "multi-freq-ldpy",
                        "protocol": name,
                        "k": k,
                        "us_per_call": 1e6 * (time.perf_counter() - t0) / n_calls,
                    }
                )
    except ImportError:
        pass
    try:
        from pure_ldp.frequency_oracles.unary_encoding import UEClient

        for k in (25, 200):
            c = UEClient(1.0, k, use_oue=True, index_mapper=lambda x: x)
            t0 = time.perf_counter()
            for _ in range(n_calls):
                c.privatise(0)
            rows.append(
                {
                    "library": "pure-ldp",
                    "protocol": "OUE",
                    "k": k,
                    "us_per_call": 1e6 * (time.perf_counter() - t0) / n_calls,
                }
            )
    except ImportError:
        pass
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--trials", type=int, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--csv", default=None)
    ap.add_argument("--no-anchors", action="store_true")
    a = ap.parse_args(argv)
    ks, eps = ((2, 25), (0.5, 1.0, 4.0)) if a.quick else (KS, EPSILONS)
    trials = a.trials or (100_000 if a.quick else 1_000_000)
    frame, wall = run_grid(PROTOCOLS, ks, eps, trials, a.workers)
    n_set = len(frame)
    calls = 2 * trials * n_set
    pd.set_option("display.width", 160)
    table = frame.pivot_table(index=["protocol", "k"], columns="epsilon", values="eps_lb").round(3)
    print(f"\nepsilon lower bound (max of LR and family tests, confidence 0.99), {trials} trials per input:")
    print(table.to_string())
    fam = frame.pivot_table(index=["protocol", "k"], columns="epsilon", values="eps_lb_family").round(3)
    print("\nLDP-Auditor's family attack alone:")
    print(fam.to_string())
    print(f"\nviolations: {int(frame['violation'].sum())} of {n_set} settings; cap {frame['cap'].iloc[0]:.3f}")
    print(
        f"grid: {n_set} settings x 2 x {trials} trials = {calls:.3g} randomizer calls in {wall:.1f} s wall "
        f"({a.workers} worker(s)): {calls / wall:,.0f} trials/s"
    )
    cpu = frame["cpu_seconds"].sum()
    print(
        f"CPU time {cpu:.1f} s: {calls / cpu:,.0f} trials/s per core; on {a.workers} uncontended cores the grid "
        f"needs ~{cpu / a.workers:.0f} s (wall above is larger if other jobs share the cores)"
    )
    per_proto = frame.groupby("protocol")["cpu_seconds"].sum().round(1)
    print("CPU seconds per protocol:", per_proto.to_dict())
    if a.csv:
        frame.to_csv(a.csv, index=False)
    if not a.no_anchors:
        cost = anchor_cost()
        if len(cost):
            cost["grid_hours_1_core"] = cost["us_per_call"] * 1e-6 * 2 * 1_000_000 * len(KS) * len(EPSILONS) / 3600
            print(
                "\nAnchor clients, measured per call here (warm); the full grid at 1e6 trials would need per "
                "protocol (extrapolated, one core, client calls only):"
            )
            print(cost.round(3).to_string(index=False))
        print(
            "ldp_libraries.md 5.2 (measured there): multi-freq-ldpy OUE k=100 client 142k users/s, pure-LDP OUE "
            "k=100 18k users/s; ldp_libraries.md 3.4: pure-LDP UEClient ~50 us/call, ~10 s per 1e5-trial setting."
        )


if __name__ == "__main__":
    main()
