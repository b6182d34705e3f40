"""LDP heavy hitters side by side: dpkit's PEM, SFP and TreeHist against pure-LDP's, one (dpkit, pure-LDP) pair per
process, on the same data at the same epsilon.

Data: ``--bits``-bit keys (default 10: pure-LDP's local-hashing server loops over the whole 2^bits domain for every
report, so larger keys are out of its reach), 1000 distinct keys drawn at random from the domain with Zipf(1.1)
weights; the target is the top ``--k``. Parameters matched: PEM with a start of floor(log2 k) + 1 bits and one bit
per group (pure-LDP: start_length one less, fragment_length 1: the same groups); TreeHist with one bit per level;
SFP with 2-bit fragments, an 8-bit hash (pure-LDP's 256 values) and OLH at epsilon/2 for the fragments and the
words (pure-LDP's defaults; dpkit's default fragment oracle, HR, is timed on its own too). pure-LDP needs three
work-arounds to run at all: its local-hashing servers get an explicit domain (numpy 2 refuses ``d=None``), its SFP
oracles an explicit ``sketch_based=False`` and its SFP an index mapper that accepts the empty fragment of a padding
string; its SFP maps (hash, fragment) pairs to the oracle's domain by a product, which is not one to one.

Time and F1: for each protocol a fresh process runs dpkit (``run``: clients and server chunk by chunk) and pure-LDP
(one client call and one server ``aggregate`` per user, then ``find_heavy_hitters(k)``) on the same ``--anchor-n``
users, in ``--rounds`` interleaved rounds (order reversed every round) on fresh data; users per second end to end
and F1 of the top k (SFP in pure-LDP returns every assembled candidate: its k largest estimates are kept). Then
dpkit alone on ``--n`` users in a fresh process (users per second and F1 at scale). Memory: dpkit's extra peak RSS
of one run on ``--n`` users in a fresh process.

    python benchmarks/heavy_hitters.py                        # bits 10, k 8, epsilon 4, 1e4 / 1e6 users
    python benchmarks/heavy_hitters.py --protocols PEM --epsilon 2
    python benchmarks/heavy_hitters.py --quick --out-dir /tmp/bench
"""

from __future__ import annotations

import sys

import harness

PROTOCOLS = ("PEM", "SFP", "TreeHist")
ANCHOR = "pure-ldp"


# ---------------------------------------------------------------------------------------------- data
def zipf_keys(n: int, bits: int, rng, distinct: int = 1000):
    import numpy as np

    distinct = min(distinct, 1 << bits)
    keys = rng.choice(1 << bits, distinct, replace=False).astype(np.uint64)
    w = 1.0 / np.arange(1, distinct + 1) ** 1.1
    return keys[rng.choice(distinct, n, p=w / w.sum())]


# ---------------------------------------------------------------------------------------------- contenders
def dpkit_protocol(protocol: str, bits: int, k: int, epsilon: float, fragment_oracle: str = "OLH"):
    from dpkit.mechanisms.heavy_hitters import PEM, SFP, TreeHist

    if protocol == "PEM":
        return PEM(bits, epsilon, k=k, step=1)
    if protocol == "TreeHist":
        return TreeHist(bits, epsilon, k=k, step=1)
    return SFP(bits, epsilon, k=k, fragment_bits=2, hash_bits=8, fragment_oracle=fragment_oracle)


def pure_ldp_run(protocol: str, bits: int, k: int, epsilon: float, keys, seed: int) -> list[int]:
    """pure-LDP: one client call and one server aggregate per user, then find_heavy_hitters(k): the top-k keys."""
    import random

    import numpy as np
    from pure_ldp.frequency_oracles.local_hashing import LHClient, LHServer

    random.seed(seed)
    np.random.seed(seed)
    strings = [format(int(v), f"0{bits}b") for v in keys]
    if protocol == "PEM":
        from pure_ldp.heavy_hitters.prefix_extending.pem_client import PEMClient
        from pure_ldp.heavy_hitters.prefix_extending.pem_server import PEMServer

        start = dpkit_protocol("PEM", bits, k, epsilon).start_bits - 1
        client, server = PEMClient(epsilon, start, bits, 1), PEMServer(epsilon, start, bits, 1)
    elif protocol == "TreeHist":
        from pure_ldp.heavy_hitters.treehistogram.treehist_client import TreeHistClient
        from pure_ldp.heavy_hitters.treehistogram.treehist_server import TreeHistServer

        client = TreeHistClient(epsilon, 1, bits)
        server = TreeHistServer(epsilon, bits, 1, fo_server=LHServer(epsilon / 2, 1 << bits, use_olh=True))
    else:
        from pure_ldp.heavy_hitters.apple_sfp.sfp_client import SFPClient
        from pure_ldp.heavy_hitters.apple_sfp.sfp_server import SFPServer

        fo_client, fo_server = LHClient(epsilon, None, use_olh=True), LHServer(epsilon / 2, 1 << bits, use_olh=True)
        fo_client.sketch_based = fo_server.sketch_based = False  # read by SFP, defined only on sketch oracles

        def mapper(s: str) -> int:
            return int(s, 2) if s else 0  # the padding fragment '**' maps to '' (bitstring refuses it)

        alphabet = {"0", "1"}  # SFPServer adds the padding character to it with set.add
        client = SFPClient(epsilon, 2, bits, alphabet=alphabet, index_mapper=mapper, fo_client=fo_client)
        server = SFPServer(epsilon, 2, bits, alphabet=alphabet, index_mapper=mapper, fo_server=fo_server)
    for s in strings:
        server.aggregate(client.privatise(s))
    found, freq = server.find_heavy_hitters(k=k)
    top = np.argsort(-np.asarray(freq, dtype=float), kind="stable")[:k] if len(found) else []
    return [int(str(found[i]).split("*")[0] or "0", 2) for i in top]


def _f1(found, keys, k: int) -> float:
    from dpkit.mechanisms.heavy_hitters import f1_score, true_top_k

    return f1_score(found, true_top_k(keys, k))


# ---------------------------------------------------------------------------------------------- children
def pair_task(protocol: str, bits: int, k: int, epsilon: float, n: int, rounds: int, seed: int, threads: int):
    """dpkit and pure-LDP on the same data, interleaved rounds."""
    import warnings

    import numpy as np

    warnings.simplefilter("ignore")  # pure-LDP warns on every small-n estimate
    rng = np.random.default_rng(seed)
    proto = dpkit_protocol(protocol, bits, k, epsilon)
    libs = ["dpkit", ANCHOR]
    warm = zipf_keys(200, bits, rng)
    proto.run(warm, rng)
    pure_ldp_run(protocol, bits, k, epsilon, warm[:50], 0)
    secs: dict[str, list[float]] = {lib: [] for lib in libs}
    f1: dict[str, list[float]] = {lib: [] for lib in libs}
    data = {}
    for r, lib in harness.interleaved(libs, rounds):
        if r not in data:
            data[r] = zipf_keys(n, bits, rng)
        keys = data[r]
        with harness.Stopwatch() as sw:
            found = proto.run(keys, rng).values if lib == "dpkit" else pure_ldp_run(protocol, bits, k, epsilon, keys, r)
        secs[lib].append(sw.wall)
        f1[lib].append(_f1(found, keys, k))
    return [{"protocol": protocol, "library": lib, "n": n, "seconds": harness.summary(secs[lib]),
             "f1": harness.summary(f1[lib])} for lib in libs]  # fmt: skip


def scale_task(protocol: str, bits: int, k: int, epsilon: float, n: int, rounds: int, seed: int, threads: int,
               fragment_oracle: str = "OLH"):  # fmt: skip
    """dpkit alone on n users: seconds and F1 per round."""
    import numpy as np

    rng = np.random.default_rng(seed)
    proto = dpkit_protocol(protocol, bits, k, epsilon, fragment_oracle)
    proto.run(zipf_keys(200, bits, rng), rng)
    secs, f1 = [], []
    for _ in range(rounds):
        keys = zipf_keys(n, bits, rng)
        with harness.Stopwatch() as sw:
            found = proto.run(keys, rng).values
        secs.append(sw.wall)
        f1.append(_f1(found, keys, k))
    return {"seconds": harness.summary(secs), "f1": harness.summary(f1)}


def memory_task(protocol: str, bits: int, k: int, epsilon: float, n: int, seed: int, threads: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    proto = dpkit_protocol(protocol, bits, k, epsilon)
    proto.run(zipf_keys(200, bits, rng), rng)
    keys = zipf_keys(n, bits, rng)
    with harness.PeakMemory() as m:
        proto.run(keys, rng)
    return {**m.to_dict(), "method": m.method}


# ---------------------------------------------------------------------------------------------- parent
def measure(protocols, *, bits, k, epsilon, n, anchor_n, rounds, memory, threads, anchors) -> dict[str, list]:
    common = {"bits": bits, "k": k, "epsilon": epsilon, "threads": threads}
    pairs, scale, mem = [], [], []
    for p in protocols if anchors else []:
        harness.say(f"[heavy-hitters] pair process: {p}, dpkit / pure-LDP on {anchor_n:,} users")
        rows = harness.try_child(__file__, {"kind": "pair", "protocol": p, "n": anchor_n, "rounds": rounds,
                                            "seed": 0, **common}, threads=threads)  # fmt: skip
        if rows is None:
            continue
        for r in rows:
            r["users_per_s"] = harness.ratio(r["n"], r["seconds"]["median"])
            harness.say(f"    {r['library']}: {r['users_per_s']:,.0f} users/s, F1 {r['f1']['median']:.2f}")
        rows[0]["speedup"] = harness.ratio(rows[0]["users_per_s"], rows[1]["users_per_s"])
        pairs.extend(rows)
    jobs = [(p, "OLH") for p in protocols] + ([("SFP", "HR")] if "SFP" in protocols else [])
    for p, fo in jobs:
        harness.say(f"[heavy-hitters] dpkit {p}{' (HR fragments)' if fo == 'HR' else ''} on {n:,} users")
        res = harness.try_child(__file__, {"kind": "scale", "protocol": p, "n": n, "rounds": rounds, "seed": 1,
                                           "fragment_oracle": fo, **common}, threads=threads)  # fmt: skip
        if res is None:
            continue
        res.update(protocol=p, fragment_oracle=fo if p == "SFP" else None, n=n)
        res["users_per_s"] = harness.ratio(n, res["seconds"]["median"])
        harness.say(f"    {res['users_per_s']:,.0f} users/s, F1 {res['f1']['median']:.2f}")
        scale.append(res)
    if memory:
        tasks = [{"kind": "memory", "protocol": p, "n": n, "seed": 2, **common} for p in protocols]
        for p, x in zip(protocols, harness.run_children(__file__, tasks, threads=threads), strict=True):
            if isinstance(x, harness.ChildFailed):
                harness.say(f"    memory {p} failed: {x}")
                continue
            mem.append({"protocol": p, "n": n, "extra_peak_mb": x["extra_peak_mb"]})
    return {"pairs": pairs, "scale": scale, "memory": mem}


def main(argv=None) -> None:
    tasks = {"pair": pair_task, "scale": scale_task, "memory": memory_task}
    if harness.child_main(argv, tasks):
        return
    ap = harness.parser(__doc__, "1e3 / 1e5 users, 1 round (a smoke test)")
    ap.add_argument("--bits", type=int, default=10, help="key length in bits (pure-LDP's cost grows as 2^bits)")
    ap.add_argument("--k", type=int, default=8, help="the top-k to find")
    ap.add_argument("--epsilon", type=float, default=4.0)
    ap.add_argument("--n", type=int, default=1_000_000, help="users of dpkit's run at scale")
    ap.add_argument("--anchor-n", type=int, default=10_000, help="users of each (dpkit, pure-LDP) round")
    ap.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=list(PROTOCOLS))
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians)")
    ap.add_argument("--no-anchors", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.anchor_n, args.rounds = 100_000, 1_000, 1
    run = harness.Run("heavy_hitters", args, __doc__, anchors=(ANCHOR,))
    results = measure(
        args.protocols,
        bits=args.bits,
        k=args.k,
        epsilon=args.epsilon,
        n=args.n,
        anchor_n=args.anchor_n,
        rounds=args.rounds,
        memory=not args.no_memory,
        threads=args.threads,
        anchors=not args.no_anchors,
    )
    run.finish(
        results,
        settings={
            "bits": args.bits,
            "k": args.k,
            "epsilon": args.epsilon,
            "n": args.n,
            "anchor_n": args.anchor_n,
            "protocols": args.protocols,
            "rounds": args.rounds,
            "anchors": not args.no_anchors,
            "data": "Zipf(1.1) over 1000 random keys",
        },  # fmt: skip
    )


if __name__ == "__main__":
    sys.exit(main())
