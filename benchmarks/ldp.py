"""LDP frequency oracles side by side: dpkit vs multi-freq-ldpy 0.2.5 vs pure-LDP 1.2.0, in one process.

    .venv/bin/python benchmarks/ldp.py [--n 1000000] [--k 100 1000] [--anchor-n 100000] [--no-anchors]
                                       [--protocols GRR OUE OLH] [--repeat 1] [--threads N]

For each (protocol, k) at epsilon = 1 on Zipf(1.1) data: users per second end to end (client perturbation of every
user + server aggregation + estimation) and MSE / analytic variance of the unbiased estimator, dpkit first, then the
anchors, round after round. The anchors run one Python call per user (and their local-hashing servers loop over
n x k), so they get fewer users (``--anchor-n``, and 1/10 of it for OLH at k >= 1000); throughput is per user, so
the speed-up column compares like with like. multi-freq-ldpy's estimator clips and normalizes (it is biased toward
the simplex), so its MSE ratio is not comparable to the unbiased ones. ``--repeat R`` runs the whole interleaved
sequence R times and reports, per cell, the median throughput; the speed-up is the ratio of the medians.
dpkit's unary encoding draws its bulk random bits in one thread per core (``--threads``, default all cores; the
output does not depend on it); the anchors run in one thread.
"""

from __future__ import annotations

import argparse
import time

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dpkit.mechanisms import GRR, OLH, OUE  # noqa: E402
from dpkit.mechanisms.bernoulli import get_threads, set_threads  # noqa: E402


def _mfl(protocol: str, k: int, eps: float, values: np.ndarray) -> np.ndarray:
    """multi-freq-ldpy: one client call per user, then its (normalizing) MI aggregator."""
    from multi_freq_ldpy.pure_frequency_oracles import GRR as G
    from multi_freq_ldpy.pure_frequency_oracles import LH as L
    from multi_freq_ldpy.pure_frequency_oracles import UE as U

    if protocol == "GRR":
        return np.asarray(G.GRR_Aggregator_MI([G.GRR_Client(int(v), k, eps) for v in values], k, eps))
    if protocol == "OUE":
        return np.asarray(U.UE_Aggregator_MI([U.UE_Client(int(v), k, eps, True) for v in values], eps, True))
    return np.asarray(L.LH_Aggregator_MI([L.LH_Client(int(v), k, eps, True) for v in values], k, eps, True))


def _pure_ldp(protocol: str, k: int, eps: float, values: np.ndarray) -> np.ndarray:
    """pure-LDP: XClient.privatise per user, XServer.aggregate per report, estimate_all (counts, unnormalized)."""
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


ANCHORS = {"multi-freq-ldpy 0.2.5": _mfl, "pure-LDP 1.2.0": _pure_ldp}


def zipf_values(n: int, k: int, rng) -> tuple[np.ndarray, np.ndarray]:
    w = 1.0 / np.arange(1, k + 1) ** 1.1
    values = rng.choice(k, size=n, p=w / w.sum())
    return values, np.bincount(values, minlength=k) / n


PROTOCOLS = {"GRR": GRR, "OUE": OUE, "OLH": OLH}


def run(
    n: int, ks: list[int], eps: float, anchor_n: int, anchors: bool, protocols=tuple(PROTOCOLS), repeat: int = 1
) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for round_, k, proto in ((r, k, p) for r in range(repeat) for k in ks for p in protocols):
        oracle = PROTOCOLS[proto](k, eps)
        contenders = [("dpkit", n)]
        if anchors:
            m = anchor_n // 10 if (oracle.name == "OLH" and k >= 1000) else anchor_n
            contenders += [(name, m) for name in ANCHORS]
        for name, size in contenders:  # interleaved: dpkit, then each anchor, on fresh data of its size

            def collect(values, name=name, oracle=oracle, k=k):
                if name == "dpkit":
                    return oracle.estimate(oracle.perturb_aggregate(values, rng))
                return ANCHORS[name](oracle.name, k, eps, values)

            collect(zipf_values(200, k, rng)[0])  # warm-up (numba compiles multi-freq-ldpy's clients)
            values, f = zipf_values(size, k, rng)
            t0 = time.perf_counter()
            est = collect(values)
            seconds = time.perf_counter() - t0
            mse = float(np.mean((est - f) ** 2))
            rows.append(
                {
                    "protocol": oracle.name,
                    "k": k,
                    "library": name,
                    "round": round_,
                    "n": size,
                    "seconds": seconds,
                    "users/s": size / seconds,
                    "MSE / analytic variance": mse / oracle.mean_variance(size, f),
                }
            )
    keys = ["protocol", "k", "library"]
    table = pd.DataFrame(rows).groupby(keys, sort=False).median(numeric_only=True).reset_index().drop(columns="round")
    dp = table[table.library == "dpkit"].set_index(["protocol", "k"])["users/s"]
    table["dpkit speed-up"] = [dp[(r.protocol, r.k)] / r["users/s"] for _, r in table.iterrows()]
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="users for dpkit")
    ap.add_argument("--anchor-n", type=int, default=100_000, help="users for the anchors (OLH at k >= 1000: 1/10)")
    ap.add_argument("--k", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--no-anchors", action="store_true")
    ap.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=list(PROTOCOLS))
    ap.add_argument("--repeat", type=int, default=1, help="rounds of the whole interleaved sequence (medians)")
    ap.add_argument("--threads", type=int, default=None, help="threads for dpkit's bulk Bernoulli draws")
    args = ap.parse_args()
    set_threads(args.threads)
    pd.set_option("display.width", 160)
    table = run(args.n, args.k, args.epsilon, args.anchor_n, not args.no_anchors, args.protocols, args.repeat)
    fmt = table.copy()
    fmt["users/s"] = fmt["users/s"].map(lambda x: f"{x:,.0f}")
    fmt["seconds"] = fmt["seconds"].map(lambda x: f"{x:.3f}")
    fmt["MSE / analytic variance"] = fmt["MSE / analytic variance"].map(lambda x: f"{x:.3f}")
    fmt["dpkit speed-up"] = fmt["dpkit speed-up"].map(lambda x: f"{x:,.0f}x")
    fmt["n"] = fmt["n"].astype(int)
    print(
        f"epsilon = {args.epsilon}, Zipf(1.1) data, end to end (perturb + aggregate + estimate), one process, "
        f"median of {args.repeat} round(s), dpkit bulk Bernoulli threads: {get_threads()}"
    )
    print(fmt.to_string(index=False))


if __name__ == "__main__":
    main()
