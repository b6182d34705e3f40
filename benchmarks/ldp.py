"""Throughput of dpkit's LDP frequency oracles: users per second of perturb + aggregate + estimate, end to end.

    .venv/bin/python benchmarks/ldp.py [--n 1000000] [--k 10 100 1000] [--repeats 1]

Prints a pandas table (users/s, MSE / analytic variance of the raw estimator) and, for reference, the anchor
libraries' numbers QUOTED from ../shared/specs/ldp_libraries.md section 5.2 (measured there at n = 100k, or 10k for
OLH at k = 1000, on a 2-core machine). The anchors are not installed or run here.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# Run as a script, this directory (which holds benchmarks/accountants.py) would shadow the accountants package.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mechanisms import GRR, OLH, OUE  # noqa: E402

QUOTED = pd.DataFrame(
    [
        ("multi-freq-ldpy 0.2.5", "GRR", 100, 466e3),
        ("multi-freq-ldpy 0.2.5", "GRR", 1000, 290e3),
        ("multi-freq-ldpy 0.2.5", "OUE", 100, 119e3),
        ("multi-freq-ldpy 0.2.5", "OUE", 1000, 21.3e3),
        ("multi-freq-ldpy 0.2.5", "OLH", 100, 2.95e3),
        ("multi-freq-ldpy 0.2.5", "OLH", 1000, 257),
        ("pure-ldp 1.2.0", "GRR", 100, 293e3),
        ("pure-ldp 1.2.0", "GRR", 1000, 281e3),
        ("pure-ldp 1.2.0", "OUE", 100, 16.9e3),
        ("pure-ldp 1.2.0", "OUE", 1000, 10.3e3),
        ("pure-ldp 1.2.0", "OLH", 100, 2.47e3),
        ("pure-ldp 1.2.0", "OLH", 1000, 225),
    ],
    columns=["library (QUOTED, not measured here)", "protocol", "k", "users/s end to end"],
)


def zipf_values(n: int, k: int, rng) -> tuple[np.ndarray, np.ndarray]:
    w = 1.0 / np.arange(1, k + 1) ** 1.1
    values = rng.choice(k, size=n, p=w / w.sum())
    return values, np.bincount(values, minlength=k) / n


def run(n: int, ks: list[int], eps: float, repeats: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for k in ks:
        values, f = zipf_values(n, k, rng)
        for cls in (GRR, OUE, OLH):
            oracle = cls(k, eps)
            oracle.perturb_aggregate(values[:1000], rng)  # warm-up
            best, mse = float("inf"), 0.0
            for _ in range(repeats):
                t0 = time.perf_counter()
                est = oracle.estimate(oracle.perturb_aggregate(values, rng))
                best = min(best, time.perf_counter() - t0)
                mse = float(np.mean((est - f) ** 2))
            rows.append({"protocol": oracle.name, "k": k, "n": n, "epsilon": eps, "seconds": round(best, 3),
                         "users/s": n / best, "MSE / analytic variance": mse / oracle.mean_variance(n, f)})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--k", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    pd.set_option("display.width", 140)
    table = run(args.n, args.k, args.epsilon, args.repeats)
    fmt = table.copy()
    fmt["users/s"] = fmt["users/s"].map(lambda x: f"{x:,.0f}")
    fmt["MSE / analytic variance"] = fmt["MSE / analytic variance"].map(lambda x: f"{x:.3f}")
    print("dpkit (measured now, single process):")
    print(fmt.to_string(index=False))
    print()
    print("Anchors, QUOTED from ldp_libraries.md 5.2 (n = 100k; OLH k = 1000 at n = 10k), not run here:")
    q = QUOTED.copy()
    q["users/s end to end"] = q["users/s end to end"].map(lambda x: f"{x:,.0f}")
    print(q.to_string(index=False))


if __name__ == "__main__":
    main()
