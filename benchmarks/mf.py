"""Matrix-factorization mechanisms: optimized RMSE and optimization time against jax-privacy, and the per-step cost of
streaming correlated noise in training.

Optimization, one fresh process per cell holding dpkit and (where installed) jax-privacy 2.0 with float64 enabled;
each optimizer runs once (jax-privacy's time includes its JIT compilation), and both strategies are scored by
dpkit's ``evaluate`` (prefix-sum workload, mean error), so the RMSE columns are comparable:

* BLT, n = 1000: k = 1 (single participation) and k = 10 participations b = 100 apart (``optimize_blt`` with
  ``MinSeparation(100, 10)`` against ``buffered_toeplitz.optimize(n, min_sep, max_participations, error="mean")``);
* banded Toeplitz, n = 1000, b_hat in {4, 16, 64} bands, single participation (``optimize_banded_toeplitz`` against
  ``toeplitz.optimize_banded_toeplitz``);
* the dense multi-epoch optimum for (k, b) fixed epochs, (n, k) in {(256, 4), (1000, 10)} (``optimize_dense``
  against ``dense.optimize(n, epochs=k)``).

Targets: every dpkit RMSE within 0.2% of jax-privacy's or better; BLT optimization under 10 s; dense n = 1000 under
60 s. Noise stream: in a fresh process, the noise of one training step for ``--dim`` float32 parameters, DP-SGD's
(``GaussianNoise.fill_``: one seeded draw) against correlated noise from a BLT with 4 buffers (the same draw, then
the recurrence's ``peek`` and ``commit`` as ``MFOptimizer`` runs them), interleaved rounds, medians; the target is an
overhead (MF - DP-SGD) within 10% of DP-SGD's noise cost.

    python benchmarks/mf.py                      # the full set (jax-privacy side by side where installed)
    python benchmarks/mf.py --quick              # small n, a smoke test
    python benchmarks/mf.py --no-anchor          # dpkit only
"""

from __future__ import annotations

import sys
from typing import Any

import harness

TARGET_RMSE_RATIO = 1.002


def _jax():
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        from jax_privacy.matrix_factorization import buffered_toeplitz, dense, toeplitz
    except ImportError:
        return None
    return buffered_toeplitz, dense, toeplitz


def optimize_task(family: str, n: int, param: int, anchor: bool, threads: int) -> dict[str, Any]:
    """One cell: dpkit's optimizer (and jax-privacy's), seconds and RMSE scored by dpkit."""
    import numpy as np

    from dpkit.mechanisms.matrix_factorization import (
        BufferedToeplitz,
        DenseStrategy,
        FixedEpoch,
        MinSeparation,
        SingleParticipation,
        ToeplitzStrategy,
        optimize_banded_toeplitz,
        optimize_blt,
        optimize_dense,
    )

    if family == "blt":
        k, b = param, (n // 10 if param > 1 else n)
        schema = MinSeparation(b, k) if k > 1 else SingleParticipation()

        def ours():
            return optimize_blt(n, schema)

        def theirs(mods):
            blt = mods[0].optimize(n=n, min_sep=b if k > 1 else 1, max_participations=k, error="mean")
            return BufferedToeplitz(np.asarray(blt.buf_decay, float), np.asarray(blt.output_scale, float), n)

    elif family == "banded-toeplitz":
        schema = SingleParticipation()

        def ours():
            return optimize_banded_toeplitz(n, param)

        def theirs(mods):
            return ToeplitzStrategy(np.asarray(mods[2].optimize_banded_toeplitz(n, param), float), n)

    else:  # dense
        schema = FixedEpoch(param, n // param)

        def ours():
            return optimize_dense(n, schema)

        def theirs(mods):
            return DenseStrategy(np.tril(np.asarray(mods[1].optimize(n, epochs=param), float)))

    out: dict[str, Any] = {"family": family, "n": n, "param": param, "participation": schema.describe()}
    with harness.Stopwatch() as sw:
        strategy = ours()
    out["dpkit"] = {"seconds": sw.wall, "rmse": strategy.evaluate(schema).rmse, "strategy": strategy.describe()}
    mods = _jax() if anchor else None
    if mods is not None:
        with harness.Stopwatch() as sw:
            other = theirs(mods)
        out["jax_privacy"] = {"seconds": sw.wall, "rmse": other.evaluate(schema).rmse, "strategy": other.describe()}
        out["rmse_ratio"] = out["dpkit"]["rmse"] / out["jax_privacy"]["rmse"]
    return out


def noise_task(dim: int, buffers: int, rounds: int, threads: int) -> dict[str, Any]:
    """Per-step noise seconds: DP-SGD's draw against the BLT stream's draw + peek + commit."""
    import numpy as np
    import torch

    from dpkit.mechanisms.matrix_factorization import BufferedToeplitz
    from dpkit.noise import GaussianNoise

    harness.set_torch_threads(threads)
    decay = np.linspace(0.99, 0.5, buffers)
    blt = BufferedToeplitz(decay, np.full(buffers, 0.1), 10_000)
    rec = blt.noising_recurrence()
    noise = GaussianNoise(0)
    buf = torch.empty(dim)
    state: list[torch.Tensor] = []
    t_mf = 0

    def draw(step: int) -> torch.Tensor:
        return noise.fill_(torch.empty(dim), 1.0, step)

    def mf_step() -> None:
        nonlocal t_mf
        y = rec.peek(state, t_mf, draw)
        torch.mul(y, 0.5, out=buf)
        rec.commit(state, t_mf, y)
        t_mf += 1

    for _ in range(3):  # warm-up (and fills the buffers)
        mf_step()
        noise.fill_(buf, 0.5, 0)
    secs: dict[str, list[float]] = {"dp-sgd": [], "mf": []}
    for i, name in harness.interleaved(list(secs), rounds):
        with harness.Stopwatch() as sw:
            if name == "mf":
                mf_step()
            else:
                noise.fill_(buf, 0.5, i)
        secs[name].append(sw.wall)
    dp = harness.summary(secs["dp-sgd"])
    mf = harness.summary(secs["mf"])
    return {
        "dim": dim,
        "buffers": buffers,
        "dp_sgd": dp,
        "mf": mf,
        "overhead": (mf["median"] - dp["median"]) / dp["median"],
    }


def main(argv=None) -> None:
    if harness.child_main(argv, {"optimize": optimize_task, "noise": noise_task}):
        return
    ap = harness.parser(__doc__, "n = 200, bands {4, 16}, dense n in {64, 128}, 1e5 parameters (a smoke test)")
    ap.add_argument("--no-anchor", action="store_true", help="dpkit only (skip jax-privacy)")
    ap.add_argument("--dim", type=int, default=10_000_000, help="parameters of the noise-stream timing")
    ap.add_argument("--rounds", type=int, default=20, help="interleaved rounds of the noise-stream timing")
    args = ap.parse_args(argv)
    n, bands, dense = 1000, [4, 16, 64], [(256, 4), (1000, 10)]
    if args.quick:
        n, bands, dense, args.dim, args.rounds = 200, [4, 16], [(64, 4), (128, 4)], 100_000, 5
    cells = [("blt", n, 1), ("blt", n, 10), *(("banded-toeplitz", n, b) for b in bands)]
    cells += [("dense", dn, k) for dn, k in dense]
    anchors = () if args.no_anchor else ("jax-privacy", "jax")
    run = harness.Run("mf", args, __doc__, anchors=anchors)
    optimization = []
    for family, cn, param in cells:
        task = {"kind": "optimize", "family": family, "n": cn, "param": param, "anchor": not args.no_anchor,
                "threads": args.threads}  # fmt: skip
        r = harness.try_child(__file__, task, threads=args.threads, label=f"[mf] {family} n={cn} {param}: ")
        if r is None:
            continue
        optimization.append(r)
        other = r.get("jax_privacy")
        vs = f", jax-privacy {other['rmse']:.4f} in {other['seconds']:.2f} s" if other else ""
        harness.say(f"[mf] {family} n={cn} ({param}): dpkit RMSE {r['dpkit']['rmse']:.4f} in "
                    f"{r['dpkit']['seconds']:.2f} s{vs}")  # fmt: skip
    harness.say(f"[mf] noise stream: {args.dim:,} parameters, BLT with 4 buffers, {args.rounds} rounds")
    noise = harness.run_child(
        __file__, {"kind": "noise", "dim": args.dim, "buffers": 4, "rounds": args.rounds, "threads": args.threads},
        threads=args.threads,
    )  # fmt: skip
    harness.say(f"    overhead over DP-SGD's noise: {noise['overhead']:+.1%}")
    run.finish(
        {"optimization": optimization, "noise_stream": noise},
        settings={
            "n": n,
            "bands": bands,
            "dense": dense,
            "dim": args.dim,
            "rounds": args.rounds,
            "anchor": not args.no_anchor,
            "target_rmse_ratio": TARGET_RMSE_RATIO,
        },  # fmt: skip
    )


if __name__ == "__main__":
    sys.exit(main())
