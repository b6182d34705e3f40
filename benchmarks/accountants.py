"""Accountants side by side: dpkit against dp_accounting and Opacus, one (dpkit, anchor) pair per process.

Queries: for each (q, sigma, steps) of the grid, epsilon at delta = 1e-5 and seconds per query. Calibrations: the
noise multiplier for a target epsilon (1, 3, 8) at q = 0.01, steps = 1000, and seconds per calibration. dpkit's PLD
is paired with dp_accounting's PLD and with Opacus' PRV accountant, dpkit's RDP with dp_accounting's RDP and
Opacus' RDP; each pair runs in a fresh process over every cell, the two in interleaved rounds (order reversed
every round, ``--rounds`` per query cell, ``--calibration-rounds`` per target; dpkit's per-event caches cleared
before every call), and the ratio is the anchor's median time over dpkit's in that process. A contender whose
first call takes over 20 s is timed once in that cell. Cells where an anchor is known to take many minutes (Opacus
PRV and dp_accounting PLD at q = 0.1, steps = 10000) are skipped and marked; anchor errors are reported as such.

Memory: every (accountant, cell) in a fresh process of its own: after a warm-up query (imports), the extra peak RSS
of one query or calibration over the RSS just before it. These processes run two at a time (peak RSS does not
depend on what else runs; no timing is taken then).

    python benchmarks/accountants.py                       # the full grid, 3 rounds per cell
    python benchmarks/accountants.py --quick --out-dir /tmp/bench
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import harness

DELTA = 1e-5
ACCOUNTANTS = ("dpkit pld", "dpkit rdp", "dp_accounting pld", "dp_accounting rdp", "opacus prv", "opacus rdp")
PAIRS = (
    ("dpkit pld", "dp_accounting pld"),
    ("dpkit pld", "opacus prv"),
    ("dpkit rdp", "dp_accounting rdp"),
    ("dpkit rdp", "opacus rdp"),
)
# Cells where an anchor takes many minutes (PRV > 120 s at q = 0.1, T = 10000).
SLOW = {("opacus prv", 0.1, 10000), ("dp_accounting pld", 0.1, 10000)}
ONE_ROUND_AFTER_S = 20.0


# ---------------------------------------------------------------------------------------------- contenders
def _dpkit_event(q, s, t):
    from dpkit import accountants

    return accountants.dpsgd_event(s, q, t)


def _dpacc_event(q, s, t):
    import dp_accounting

    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(s)), t
    )


def query(name: str, q: float, s: float, t: int) -> float:
    """Epsilon at DELTA for ``steps`` Poisson-subsampled Gaussian steps under accountant ``name``."""
    if name.startswith("dpkit"):
        from dpkit import accountants

        make = accountants.PLDAccountant if name == "dpkit pld" else accountants.RDPAccountant
        return make().compose(_dpkit_event(q, s, t)).get_epsilon(DELTA)
    if name.startswith("opacus"):
        from opacus.accountants import PRVAccountant, RDPAccountant

        acc = PRVAccountant() if name == "opacus prv" else RDPAccountant()
        acc.history = [(s, q, t)]
        return acc.get_epsilon(DELTA)
    from dp_accounting import pld, rdp

    make = pld.PLDAccountant if name == "dp_accounting pld" else rdp.RdpAccountant
    return make().compose(_dpacc_event(q, s, t)).get_epsilon(DELTA)


def calibrate(name: str, target: float, q: float, t: int) -> float:
    """The noise multiplier reaching ``target`` epsilon at DELTA under accountant ``name``."""
    kind = name.split()[1]
    if name.startswith("dpkit"):
        from dpkit import accountants

        return accountants.calibrate_noise_multiplier(target, DELTA, q, t, accountant=kind)
    if name.startswith("opacus"):
        from opacus.accountants.utils import get_noise_multiplier

        return get_noise_multiplier(target_epsilon=target, target_delta=DELTA, sample_rate=q, steps=t, accountant=kind)
    from dp_accounting import mechanism_calibration, pld, rdp

    make = pld.PLDAccountant if kind == "pld" else rdp.RdpAccountant
    return mechanism_calibration.calibrate_dp_mechanism(
        make, lambda s: _dpacc_event(q, s, t), target, DELTA, mechanism_calibration.LowerEndpointAndGuess(0.1, 1.0)
    )


def clear_caches() -> None:
    """dpkit caches per-event results; a timed call must not profit from the previous one."""
    for mod_name, mod in list(sys.modules.items()):
        if mod_name.startswith("dpkit.accountants") and mod is not None:
            for obj in vars(mod).values():
                if callable(getattr(obj, "cache_clear", None)) and getattr(obj, "__module__", "") == mod_name:
                    obj.cache_clear()


def warm_up(name: str) -> None:
    """Imports and first-use set-up of ``name``'s query and calibration code, outside any measurement."""
    if name.startswith("dpkit"):
        import dpkit.accountants  # noqa: F401
    elif name.startswith("opacus"):
        import opacus.accountants.utils  # noqa: F401
    else:
        import dp_accounting.mechanism_calibration  # noqa: F401
    query(name, 0.5, 1.0, 3)
    clear_caches()


def _call(table: str, name: str, cell: dict[str, Any]) -> Any:
    if table == "queries":
        return query(name, cell["q"], cell["sigma"], cell["steps"])
    return calibrate(name, cell["target_epsilon"], cell["q"], cell["steps"])


def _slow(name: str, cell: dict[str, Any]) -> bool:
    return (name, cell["q"], cell["steps"]) in SLOW


# ---------------------------------------------------------------------------------------------- children
def pair_task(
    dpkit: str, anchor: str, cells: dict[str, list[dict]], rounds: dict[str, int], threads: int
) -> dict[str, Any]:
    """In a fresh process: ``dpkit`` and ``anchor`` over every cell, interleaved rounds; seconds per call."""
    warnings.filterwarnings("ignore")
    warm_up(dpkit)
    warm_up(anchor)
    out: dict[str, list[dict]] = {}
    for table, table_cells in cells.items():
        out[table] = []
        for cell in table_cells:
            record: dict[str, Any] = {"cell": cell}
            times: dict[str, list[float]] = {dpkit: [], anchor: []}
            for _, name in harness.interleaved([dpkit, anchor], rounds[table]):
                if _slow(name, cell):
                    record[name] = {"status": "skipped (takes minutes)"}
                    continue
                if record.get(name, {}).get("status", "ok") != "ok":
                    continue
                if times[name] and times[name][0] > ONE_ROUND_AFTER_S:
                    continue
                clear_caches()
                try:
                    with harness.Stopwatch() as sw:
                        value = _call(table, name, cell)
                except Exception as exc:  # an anchor failing is a result, not a crash of the benchmark
                    record[name] = {"status": "error: " + harness.error_text(exc)}
                    continue
                times[name].append(sw.wall)
                record[name] = {"status": "ok", "value": float(value)}
            for name in (dpkit, anchor):
                record[name]["seconds"] = harness.summary(times[name])
            out[table].append(record)
    return out


def memory_task(accountant: str, table: str, cell: dict[str, Any], threads: int) -> dict[str, Any]:
    """In a fresh process: extra peak RSS of one query or calibration (after a warm-up)."""
    warnings.filterwarnings("ignore")
    warm_up(accountant)
    with harness.PeakMemory() as m:
        _call(table, accountant, cell)
    return {**m.to_dict(), "method": m.method}


# ---------------------------------------------------------------------------------------------- parent
def grid(quick: bool) -> dict[str, list[dict]]:
    qs, sigmas, steps = (
        ((0.01,), (1.0,), (1000,)) if quick else ((0.001, 0.01, 0.1), (0.6, 1.0, 2.0), (100, 1000, 10000))
    )
    targets = (3.0,) if quick else (1.0, 3.0, 8.0)
    return {
        "queries": [{"q": q, "sigma": s, "steps": t} for q in qs for s in sigmas for t in steps],
        "calibrations": [{"target_epsilon": e, "q": 0.01, "steps": 1000} for e in targets],
    }


def measure(cells, rounds, memory, threads) -> dict[str, Any]:
    rows: dict[str, list[dict]] = {table: [] for table in cells}
    for dpkit, anchor in PAIRS:
        harness.say(f"[accountants] pair process: {dpkit} / {anchor}")
        task = {"kind": "pair", "dpkit": dpkit, "anchor": anchor, "cells": cells, "rounds": rounds, "threads": threads}
        try:
            res = harness.run_child(__file__, task, threads=threads)
        except harness.ChildFailed as exc:
            res = {table: [{"cell": c, dpkit: {"status": f"error: {exc}"}, anchor: {"status": f"error: {exc}"}}
                           for c in cells[table]] for table in cells}  # fmt: skip
        for table, records in res.items():
            for rec in records:
                d, a = rec[dpkit], rec[anchor]
                d_med = (d.get("seconds") or {}).get("median")
                a_med = (a.get("seconds") or {}).get("median")
                rows[table].append(
                    {
                        **rec["cell"],
                        "dpkit": dpkit,
                        "anchor": anchor,
                        "dpkit_value": d.get("value"),
                        "anchor_value": a.get("value"),
                        "dpkit_status": d["status"],
                        "anchor_status": a["status"],
                        "dpkit_seconds": d.get("seconds"),
                        "anchor_seconds": a.get("seconds"),
                        "x_anchor_time": harness.ratio(a_med, d_med),
                    }
                )
                harness.say(
                    f"    {rec['cell']}: {dpkit} {d.get('value')} in {d_med}, {anchor} {a.get('value', a['status'])}"
                    f" in {a_med}"
                )
    memory_rows: dict[str, list[dict]] = {table: [] for table in cells}
    if memory:
        jobs = [
            (table, cell, name)
            for table in cells
            for cell in cells[table]
            for name in ACCOUNTANTS
            if not _slow(name, cell)
        ]
        harness.say(f"[accountants] memory: {len(jobs)} fresh processes, {threads} at a time")
        tasks = [{"kind": "memory", "accountant": n, "table": t, "cell": c, "threads": threads} for t, c, n in jobs]
        for (table, cell, name), res in zip(jobs, harness.run_children(__file__, tasks, threads=threads), strict=True):
            mb = None if isinstance(res, harness.ChildFailed) else res["extra_peak_mb"]
            if mb is None:
                harness.say(f"    memory {name} {cell} failed: {res}")
            memory_rows[table].append({**cell, "accountant": name, "extra_peak_mb": mb})
    return {"pairs": rows, "memory": memory_rows}


def main(argv=None) -> None:
    if harness.child_main(argv, {"pair": pair_task, "memory": memory_task}):
        return
    p = harness.parser(__doc__, "one query cell (q=0.01, sigma=1, T=1000) and one calibration (target 3)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per query cell")
    p.add_argument("--calibration-rounds", type=int, default=3, help="interleaved rounds per calibration")
    p.add_argument("--no-memory", action="store_true", help="skip the memory processes")
    args = p.parse_args(argv)
    cells = grid(args.quick)
    run = harness.Run("accountants", args, __doc__, anchors=("opacus", "dp-accounting"))
    rounds = {"queries": args.rounds, "calibrations": args.calibration_rounds}
    results = measure(cells, rounds, not args.no_memory, args.threads)
    run.finish(
        {"delta": DELTA, "accountants": list(ACCOUNTANTS), **results},
        settings={
            "rounds": rounds,
            "memory": not args.no_memory,
            "pairs": [list(pair) for pair in PAIRS],
            "skipped_slow_cells": sorted([list(s) for s in SLOW]),
            "one_round_after_s": ONE_ROUND_AFTER_S,
            "grid": cells,
        },
    )


if __name__ == "__main__":
    sys.exit(main())
