"""Data-parallel DP-SGD on CPU processes: the step time against non-private DDP, and what the noise all-reduce costs.

For each number of processes W (1, 2, 4 by default), in a fresh process that starts W local processes (gloo,
:func:`dpkit.distributed.run_processes`, ``threads // W`` threads each, at least 1): an MLP (``--width``) on
synthetic data, a global batch of ``--batch`` examples split over the ranks (strong scaling: the logical batch does
not change with W). The same processes hold both contenders of the ratio: non-private DDP (plain SGD, DDP's own
gradient all-reduce, ``batch / W`` examples per rank) and dpkit's data-parallel DP-SGD (``make_private`` on the DDP
model: the rank's part of a Poisson batch of expected size ``batch``, per-example clipping, the rank's noise blocks,
one all-reduce of the clipped sums and noise), timed in interleaved rounds of ``--steps`` steps each (the order is
reversed every round; a barrier starts each timing). Also timed there, alone: the all-reduce of a buffer of the
model's size (what the private step's reduction moves) and the rank's share of the noise (``GaussianNoise.fill_``
with its shard). Times are rank 0's, medians over rounds, per step.

    python benchmarks/distributed.py                            # W = 1, 2, 4; width 512; batch 256
    python benchmarks/distributed.py --procs 1 2 --width 256
    python benchmarks/distributed.py --quick --out-dir /tmp/bench
"""

from __future__ import annotations

import sys
from typing import Any

import harness


def _rank_task(rank: int, world_size: int, cfg: dict[str, Any]) -> dict[str, Any]:
    """In each of the W processes: interleaved timing of the two steps, then the all-reduce and the noise share."""
    import warnings

    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, TensorDataset

    from dpkit.noise import GaussianNoise
    from dpkit.privacy_engine import PrivacyEngine

    g = torch.Generator().manual_seed(0)
    d, width, batch = cfg["features"], cfg["width"], cfg["batch"]
    n = batch * 8
    data = TensorDataset(torch.randn(n, d, generator=g), torch.randint(0, 10, (n,), generator=g))

    def mlp() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(d, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))

    plain = mlp()
    plain_ddp = DistributedDataParallel(plain)
    plain_opt = torch.optim.SGD(plain.parameters(), lr=0.01)
    per_rank = batch // world_size
    lo = rank * per_rank
    xs, ys = data.tensors[0][lo : lo + per_rank], data.tensors[1][lo : lo + per_rank]

    private = mlp()
    engine = PrivacyEngine(seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, opt, loader = engine.make_private(
            DistributedDataParallel(private),
            torch.optim.SGD(private.parameters(), lr=0.01),
            DataLoader(data, batch_size=batch),
            noise_multiplier=1.0,
            max_grad_norm=1.0,
        )

    def batches():
        while True:
            yield from loader

    stream = batches()

    def step(name: str) -> None:
        if name == "non-private DDP":
            plain_opt.zero_grad()
            nn.functional.cross_entropy(plain_ddp(xs), ys).backward()
            plain_opt.step()
        else:
            x, y = next(stream)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

    names = ["non-private DDP", "DP-SGD"]
    for name in names:  # warm-up
        for _ in range(2):
            step(name)
    secs: dict[str, list[float]] = {name: [] for name in names}
    for _, name in harness.interleaved(names, cfg["rounds"]):
        dist.barrier()
        with harness.Stopwatch() as sw:
            for _ in range(cfg["steps"]):
                step(name)
        secs[name].append(sw.wall / cfg["steps"])

    size = sum(p.numel() for p in private.parameters())
    buf = torch.zeros(size + 4)
    noise = GaussianNoise(3)
    extra: dict[str, list[float]] = {"all-reduce": [], "noise share": []}
    for r in range(cfg["rounds"] + 1):
        dist.barrier()
        with harness.Stopwatch() as sw:
            for _ in range(cfg["steps"]):
                dist.all_reduce(buf)
        reduce_s = sw.wall / cfg["steps"]
        with harness.Stopwatch() as sw:
            for t in range(cfg["steps"]):
                noise.fill_(buf[:size], 1.0, t, shard=(rank, world_size))
        if r:  # the first round warms up
            extra["all-reduce"].append(reduce_s)
            extra["noise share"].append(sw.wall / cfg["steps"])
    return {"parameters": size, "seconds": {k: harness.summary(v) for k, v in {**secs, **extra}.items()}}


def timing_task(procs: int, cfg: dict[str, Any], threads: int) -> dict[str, Any]:
    """In a fresh process: start ``procs`` ranks and report rank 0's times."""
    from dpkit.distributed import run_processes

    per_process = max(1, threads // procs)
    out = run_processes(_rank_task, procs, (cfg,), timeout=3600.0, threads_per_process=per_process)[0]
    med = {k: v["median"] for k, v in out["seconds"].items()}
    return {
        "procs": procs,
        "threads_per_process": per_process,
        "parameters": out["parameters"],
        "seconds": out["seconds"],
        "private_over_nonprivate": harness.ratio(med["DP-SGD"], med["non-private DDP"]),
        "allreduce_share_of_private_step": harness.ratio(med["all-reduce"], med["DP-SGD"]),
        "noise_share_of_private_step": harness.ratio(med["noise share"], med["DP-SGD"]),
    }


def main(argv=None) -> None:
    if harness.child_main(argv, {"timing": timing_task}):
        return
    ap = harness.parser(__doc__, "W = 1 and 2, width 128, batch 64, 2 rounds of 3 steps (a smoke test)")
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2, 4], help="numbers of processes W")
    ap.add_argument("--width", type=int, default=512, help="hidden width of the MLP")
    ap.add_argument("--features", type=int, default=256)
    ap.add_argument("--batch", type=int, default=256, help="global (expected) batch size")
    ap.add_argument("--steps", type=int, default=10, help="steps per timed round")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians)")
    args = ap.parse_args(argv)
    if args.quick:
        args.procs, args.width, args.batch, args.steps, args.rounds = [1, 2], 128, 64, 3, 2
    cfg = {"width": args.width, "features": args.features, "batch": args.batch, "steps": args.steps,
           "rounds": args.rounds}  # fmt: skip
    run = harness.Run("distributed", args, __doc__)
    rows = []
    for procs in args.procs:
        harness.say(f"[distributed] W = {procs}: both steps in the same {procs} process(es)")
        task = {"kind": "timing", "procs": procs, "cfg": cfg, "threads": args.threads}
        res = harness.try_child(__file__, task, threads=args.threads)
        if res is None:
            continue
        rows.append(res)
        s = res["seconds"]
        harness.say(
            f"    DP-SGD {s['DP-SGD']['median'] * 1e3:.1f} ms/step, non-private DDP "
            f"{s['non-private DDP']['median'] * 1e3:.1f} ms/step ({res['private_over_nonprivate']:.2f}x); "
            f"all-reduce {s['all-reduce']['median'] * 1e3:.2f} ms, "
            f"noise share {s['noise share']['median'] * 1e3:.2f} ms"
        )
    run.finish(
        {"results": rows},
        settings={**cfg, "procs": args.procs, "model": "MLP", "backend": "gloo", "device": "cpu"},
    )


if __name__ == "__main__":
    sys.exit(main())
