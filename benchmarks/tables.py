"""The benchmark tables, generated from ``benchmarks/results/<name>.json``.

    python benchmarks/tables.py                 # rewrite the generated blocks of benchmarks/README.md and README.md
    python benchmarks/tables.py --print audit   # print one benchmark's tables
    python benchmarks/tables.py --results /tmp/bench --readme /tmp/B.md --summary /tmp/R.md

A generated block sits between ``<!-- BEGIN GENERATED name -->`` and ``<!-- END GENERATED name -->``; its name is
a benchmark (``accountants``, ``training``, ``ldp``, ``heavy_hitters``, ``range_queries``, ``audit``,
``poisoning``, ``clipping_bias``, ``mf``, ``distributed``: the full tables, in benchmarks/README.md) or
``summary-<benchmark>`` (one short table, in README.md). A block whose results file is missing, or was written
with ``--quick`` (unless ``--allow-quick``), is left as it is and said so.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BENCHMARKS = (
    "accountants",
    "training",
    "ldp",
    "heavy_hitters",
    "range_queries",
    "audit",
    "poisoning",
    "clipping_bias",
    "mf",
    "distributed",
)


# ---------------------------------------------------------------------------------------------- formatting
def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def secs(s: float | None) -> str:
    if s is None:
        return "n/a"
    if s < 1e-3:
        return f"{s * 1e6:.3g} us"
    if s < 1:
        return f"{s * 1e3:.3g} ms"
    return f"{s:.3g} s"


def duration(s: float) -> str:
    """A long wall time in the unit that reads best: seconds, minutes or hours."""
    return f"{s:.2g} s" if s < 60 else f"{s / 60:.2g} min" if s < 3600 else f"{s / 3600:.2g} h"


def times(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.2f}x" if x < 10 else f"{x:.1f}x" if x < 100 else f"{x:,.0f}x"


def rate(x: float | None) -> str:
    if x is None:
        return "n/a"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}"


def mb(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.0f} MB" if abs(x) >= 10 else f"{x:.1f} MB"


def sci(x: float) -> str:
    """A count as 5.1e8 (plain below 1e4)."""
    if x < 1e4:
        return f"{x:g}"
    mantissa, exp = f"{x:.2g}".split("e")
    return f"{mantissa}e{int(exp)}"


def num(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}"


def med(xs: Iterable[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def provenance(doc: dict[str, Any], path: Path | None = None) -> str:
    """One line: when, where, under which load, with which code and command the numbers were measured."""
    m = doc["meta"]
    mach, git, v = m["machine"], m["git"], m["versions"]
    state = "dirty tree" if git.get("dirty") else "clean tree" if git.get("dirty") is not None else "tree unknown"
    if git.get("changed_during_run"):
        state += ", changed during the run"
    before = " / ".join(f"{x:.2f}" for x in m["load_average_before"])
    after = " / ".join(f"{x:.2f}" for x in m["load_average_after"])
    anchors = ", ".join(f"{a} {v.get(a)}" for a in m.get("anchors", []))
    source = f" Data: `{path.relative_to(ROOT) if path and path.is_relative_to(ROOT) else path}`." if path else ""
    quick = " **Quick (smoke-test) settings.**" if doc["settings"].get("quick") else ""
    return (
        f"_Measured {m['date'][:16].replace('T', ' ')} UTC on {mach['cpu_model']} ({mach['cores']} cores), "
        f"load average (1/5/15 min) {before} before and {after} after, {m['threads']['OMP_NUM_THREADS']} threads, "
        f"OMP_WAIT_POLICY={m['threads']['OMP_WAIT_POLICY']}; dpkit {(git.get('commit') or '?')[:10]} ({state}), "
        f"Python {v.get('python')}, numpy {v.get('numpy')}, torch {v.get('torch')}"
        + (f", {anchors}" if anchors else "")
        + f"; `{_short_command(m['command'])}`, {m['duration_s']:.0f} s.{quick}{source}_"
    )


def short_provenance(doc: dict[str, Any]) -> str:
    """The summaries' line: when, where, load and code; the full line is in benchmarks/README.md."""
    m = doc["meta"]
    git = m["git"]
    state = " (dirty tree)" if git.get("dirty") else ""
    if git.get("changed_during_run"):
        state += " (changed during the run)"
    quick = "; **quick (smoke-test) settings**" if doc["settings"].get("quick") else ""
    return (
        f"_Measured {m['date'][:10]} on {m['machine']['cpu_model']} ({m['machine']['cores']} cores), load average "
        f"{m['load_average_before'][0]:.2f} before and {m['load_average_after'][0]:.2f} after, dpkit "
        f"{(git.get('commit') or '?')[:10]}{state}{quick}; details in benchmarks/README.md._"
    )


def _short_command(cmd: str) -> str:
    """The recorded command with the interpreter's path shortened to ``python``."""
    head, _, rest = cmd.partition(" ")
    return ("python " + rest) if "python" in Path(head).name else cmd


# ---------------------------------------------------------------------------------------------- accountants
SHOWN = {"pld": "PLD", "rdp": "RDP", "prv": "PRV", "opacus": "Opacus"}


def shown(name: str) -> str:
    """``dp_accounting pld`` -> ``dp_accounting PLD``."""
    return " ".join(SHOWN.get(w, w) for w in name.split())


def _acc_cells(doc, table):
    """{cell key: {accountant: {"value", "status", "seconds": [pair medians], "x": ratio or None}}}."""
    keys = ("q", "sigma", "steps") if table == "queries" else ("target_epsilon", "q", "steps")
    cells: dict[tuple, dict[str, dict]] = {}
    for r in doc["pairs"][table]:
        cell = cells.setdefault(tuple(r[k] for k in keys), {})
        d = cell.setdefault(r["dpkit"], {"value": r["dpkit_value"], "status": r["dpkit_status"], "seconds": []})
        if r["dpkit_seconds"] and r["dpkit_seconds"]["median"] is not None:
            d["seconds"].append(r["dpkit_seconds"]["median"])
        cell[r["anchor"]] = {
            "value": r["anchor_value"],
            "status": r["anchor_status"],
            "seconds": [r["anchor_seconds"]["median"]] if r["anchor_seconds"] and r["anchor_seconds"]["n"] else [],
            "x": r["x_anchor_time"],
        }
    return keys, cells


def _acc_value(entry, digits=6) -> str:
    if entry is None:
        return ""
    return num(entry["value"], digits) if entry["status"] == "ok" else entry["status"]


def _acc_memory(doc, table, name):
    return [r["extra_peak_mb"] for r in doc.get("memory", {}).get(table, []) if r["accountant"] == name]


def accountants_full(doc) -> str:
    names = doc["accountants"]
    out = []
    keys, cells = _acc_cells(doc, "queries")
    out.append(f"Epsilon at delta = {doc['delta']:g}:\n")
    out.append(
        md_table([*keys, *map(shown, names)], [[*c, *(_acc_value(v.get(n)) for n in names)] for c, v in cells.items()])
    )

    def timing(entry):
        if entry is None or not entry["seconds"]:
            return "n/a" if entry is None else entry["status"]
        x = entry.get("x")
        return secs(med(entry["seconds"])) + (f" ({times(x)})" if x is not None else "")

    out.append("\nSeconds per query; in brackets the anchor's time over dpkit's, measured in the same process:\n")
    out.append(
        md_table([*keys, *map(shown, names)], [[*c, *(timing(v.get(n)) for n in names)] for c, v in cells.items()])
    )
    ckeys, ccells = _acc_cells(doc, "calibrations")
    out.append(
        "\nNoise multiplier for a target epsilon; seconds per calibration (anchor time over dpkit's, same process):\n"
    )
    out.append(
        md_table(
            [*ckeys, *map(shown, names)],
            [[*c, *(f"{_acc_value(v.get(n))}; {timing(v.get(n))}" for n in names)] for c, v in ccells.items()],
        )
    )
    if doc.get("memory", {}).get("queries"):
        out.append("\nExtra peak memory of one query or calibration (median and max over the cells):\n")
        rows = []
        for n in names:
            q, c = _acc_memory(doc, "queries", n), _acc_memory(doc, "calibrations", n)
            mx = [x for x in q if x is not None]
            cx = [x for x in c if x is not None]
            rows.append([shown(n), mb(med(q)), mb(max(mx)) if mx else "n/a", mb(med(c)), mb(max(cx)) if cx else "n/a"])
        out.append(md_table(["accountant", "query median", "query max", "calibration median", "calibration max"], rows))
    return "\n".join(out)


def accountants_summary(doc) -> str:
    names = doc["accountants"]
    _, cells = _acc_cells(doc, "queries")
    _, ccells = _acc_cells(doc, "calibrations")
    rows = []
    for n in names:
        qs = [med(c[n]["seconds"]) for c in cells.values() if n in c and c[n]["seconds"]]
        qx = [c[n].get("x") for c in cells.values() if n in c]
        cs = [med(c[n]["seconds"]) for c in ccells.values() if n in c and c[n]["seconds"]]
        cx = [c[n].get("x") for c in ccells.values() if n in c]
        mem = [x for x in _acc_memory(doc, "queries", n) + _acc_memory(doc, "calibrations", n) if x is not None]
        dpk = n.startswith("dpkit")
        rows.append(
            [
                shown(n),
                f"{secs(med(qs))} ({len(qs)} cell{'s' if len(qs) != 1 else ''})",
                "1" if dpk else times(med(qx)),
                secs(med(cs)),
                "1" if dpk else times(med(cx)),
                mb(max(mem)) if mem else "n/a",
            ]
        )
    header = [
        "accountant",
        "seconds per query (median over the grid)",
        "time / dpkit's (PLD, PRV: dpkit PLD; RDP: dpkit RDP)",
        "seconds per calibration (median over targets)",
        "time / dpkit's",
        "extra peak memory (max)",
    ]
    return md_table(header, rows)


# ---------------------------------------------------------------------------------------------- training
def _train_rows(doc):
    return [r for r in doc["rows"]]


def _train_by_model(doc) -> dict[str, tuple[float | None, dict[str, dict]]]:
    """{model: (the non-private step's median over its pair processes, {contender: row})}."""
    by_model: dict[str, dict[str, dict]] = {}
    for r in _train_rows(doc):
        by_model.setdefault(r["model"], {})[r["contender"]] = r
    return {
        m: (med(r["nonprivate_s"]["median"] for r in rs.values() if "nonprivate_s" in r), rs)
        for m, rs in by_model.items()
    }


def _train_cell(r, mem=True) -> str:
    if "error" in r:
        return "fails: " + r["error"]
    s = times(r["x_time"])
    if mem and r.get("x_mem") is not None:
        s += f", {times(r['x_mem'])}"
    return s


def training_full(doc) -> str:
    labels = doc["labels"]
    contenders = [c for c in doc["settings"]["contenders"]]
    rows = []
    for m, (base, rs) in _train_by_model(doc).items():
        rows.append([doc["models"][m], secs(base), *(_train_cell(rs[c]) if c in rs else "" for c in contenders)])
    mem_note = " and extra peak memory" if doc["settings"]["memory_repeats"] else ""
    out = [
        f"Step time{mem_note} over the non-private step's (non-private: median over the pair processes):\n",
        md_table(["model", "non-private step", *(labels[c] for c in contenders)], rows),
        "\nEvery pair: medians of its own process (non-private and contender, interleaved), CPU-time ratio, the "
        "ratio of the fastest steps, and the extra peak RSS (median over fresh processes):\n",
    ]
    detail = []
    for r in _train_rows(doc):
        if "error" in r:
            detail.append([r["model"], labels[r["contender"]], "fails: " + r["error"], "", "", "", "", ""])
            continue
        memv = r.get("extra_peak_mb", {}).get("median") if r.get("extra_peak_mb") else None
        notes = ", ".join(f"{k}={v}" for k, v in (r.get("notes") or {}).items())
        detail.append(
            [
                r["model"],
                labels[r["contender"]] + (f" ({notes})" if notes else ""),
                secs(r["nonprivate_s"]["median"]),
                secs(r["contender_s"]["median"]),
                times(r["x_time"]),
                times(r["x_cpu"]),
                times(r["x_time_min"]),
                mb(memv),
            ]
        )
    out.append(
        md_table(
            ["model", "contender", "non-private", "contender", "time", "CPU time", "fastest steps", "extra peak"],
            detail,
        )
    )
    return "\n".join(out)


def _opacus_none(rs) -> str:
    """The fastest-Opacus cell when no Opacus mode ran: say whether they all failed."""
    tried = [r for c, r in rs.items() if c.startswith("opacus")]
    return "every mode fails (see benchmarks/README.md)" if tried else ""


def training_summary(doc) -> str:
    rows = []
    for m, (base, rs) in _train_by_model(doc).items():
        ok_opacus = [r for c, r in rs.items() if c.startswith("opacus") and "error" not in r]
        best = min(ok_opacus, key=lambda r: r["x_time"]) if ok_opacus else None
        rows.append(
            [
                doc["models"][m],
                secs(base),
                _train_cell(rs["dpkit"]) if "dpkit" in rs else "",
                f"{_train_cell(best)} ({best['contender'].split('_', 1)[1]})" if best else _opacus_none(rs),
                _train_cell(rs["noise_floor"], mem=False) if "noise_floor" in rs else "",
            ]
        )
    return md_table(
        ["model", "non-private step", "dpkit: time, memory", "fastest Opacus mode", "noise floor (time)"], rows
    )


# ---------------------------------------------------------------------------------------------- ldp
def _ldp_cells(doc):
    cells: dict[tuple, dict[str, dict]] = {}
    for r in doc["timing"]:
        lib = cells.setdefault((r["protocol"], r["k"]), {}).setdefault(r["library"], {"rates": [], "mse": []})
        lib["rates"].append(r["users_per_s"])
        lib["mse"].append(r["mse_over_variance"]["median"])
        lib["n"] = r["n"]
        if "dpkit_speedup" in r:
            lib["speedup"] = r["dpkit_speedup"]
    for r in doc.get("memory", []):
        lib = cells.setdefault((r["protocol"], r["k"]), {}).setdefault(r["library"], {"rates": [], "mse": []})
        lib["memory"] = r["extra_peak_mb"]["median"]
        lib.setdefault("n", r["n"])
    return cells


def _ldp_anchor_cell(e: dict | None, memory: bool) -> str:
    if not e:
        return ""
    s = f"{rate(med(e['rates']))}" + (f" ({times(e.get('speedup'))})" if e.get("speedup") is not None else "")
    return s + (f", {mb(e['memory'])}" if memory and "memory" in e else "")


def ldp_full(doc) -> str:
    anchors = doc["settings"]["anchors"]
    cells = _ldp_cells(doc)
    rows = []
    for (p, k), libs in cells.items():
        d = libs.get("dpkit", {})
        row = [p, k, f"{rate(med(d.get('rates', [])))}", mb(d.get("memory")), num(med(d.get("mse", [])), 3)]
        for a in anchors:
            e = libs.get(a, {})
            row += [
                f"{rate(med(e.get('rates', [])))} ({rate(e.get('n'))} users)",
                times(e.get("speedup")),
                mb(e.get("memory")),
                num(med(e.get("mse", [])), 3),
            ]
        rows.append(row)
    header = ["protocol", "k", "dpkit users/s", "dpkit extra peak", "dpkit MSE / variance"]
    for a in anchors:
        header += [f"{a} users/s", "dpkit speed-up", f"{a} extra peak", f"{a} MSE / variance"]
    s = doc["settings"]
    return (
        f"epsilon = {s['epsilon']:g}, {s['data']} data, end to end; dpkit on {rate(s['n'])} users; "
        f"{s['rounds']} interleaved round(s) per cell; speed-up = dpkit's users/s over the anchor's, same process:\n\n"
        + md_table(header, rows)
    )


def ldp_summary(doc) -> str:
    anchors = doc["settings"]["anchors"]
    rows = []
    for (p, k), libs in _ldp_cells(doc).items():
        d = libs.get("dpkit", {})
        rows.append(
            [
                p,
                k,
                rate(med(d.get("rates", []))),
                mb(d.get("memory")),
                *(_ldp_anchor_cell(libs.get(a), memory=False) for a in anchors),
            ]
        )
    header = ["protocol", "k", "dpkit users/s", "dpkit extra peak", *(f"{a} users/s (dpkit speed-up)" for a in anchors)]
    return md_table(header, rows)


# ---------------------------------------------------------------------------------------------- audit
def _audit_pairs(doc):
    cells: dict[tuple, dict[str, dict]] = {}
    for r in doc.get("pairs", []):
        lib = cells.setdefault((r["protocol"], r["k"]), {}).setdefault(r["library"], {"rates": []})
        lib["rates"].append(r["calls_per_s"])
        if "dpkit_speedup" in r:
            lib["speedup"] = r["dpkit_speedup"]
    for r in doc.get("memory", []):
        cells.setdefault((r["protocol"], r["k"]), {}).setdefault(r["library"], {"rates": []})["memory"] = r[
            "extra_peak_mb"
        ]
    return cells


def _anchor_names(doc):
    return sorted({r["library"] for r in doc.get("pairs", []) if r["library"] != "dpkit"})


def _grid_line(doc) -> str:
    g, s = doc["grid"], doc["settings"]
    return (
        f"Grid: {g['settings']} settings ({len(s['protocols'])} protocols x k in {s['k']} x epsilon in "
        f"{s['epsilons']}), {sci(g['trials'])} trials per input, {sci(g['randomizer_calls'])} randomizer calls in "
        f"{g['wall_s']:.3g} s wall on {g['workers']} worker(s) ({g['cpu_s']:.3g} s CPU: "
        f"{rate(g['calls_per_cpu_s'])} calls per CPU second); {g['violations']} violation(s) at confidence "
        f"{s.get('confidence', 0.99):g}{_joint(s)}; largest worker's peak RSS {mb(g['max_worker_peak_rss_mb'])}."
    )


def _joint(settings) -> str:
    """How the grid's confidence is spread over its settings (older results: 0.99 per setting)."""
    per = settings.get("confidence_per_setting")
    return " per setting" if per is None else f" jointly over the grid (each setting at {per:.6g})"


def _extrapolated(doc, cells, anchor: str) -> str:
    """Time one core would need for one protocol's 32 settings at 1e6 trials through ``anchor``'s client alone,
    per protocol measured (the median calls/s over its k's)."""
    per_protocol: dict[str, list[float]] = {}
    for (p, _), libs in cells.items():
        per_protocol.setdefault(p, []).extend(libs.get(anchor, {}).get("rates", []))
    calls = doc["settings"]["full_grid_calls_per_protocol"]
    parts = [f"{p} ~{duration(calls / r)}" for p, rs in per_protocol.items() if (r := med(rs))]
    return ", ".join(parts) if parts else "n/a"


def audit_full(doc) -> str:
    out = [_grid_line(doc)]
    rows = doc["grid"]["rows"]
    if rows:
        eps = sorted({r["epsilon"] for r in rows})
        keyed = {(r["protocol"], r["k"], r["epsilon"]): r for r in rows}
        pk = sorted(
            {(r["protocol"], r["k"]) for r in rows}, key=lambda x: (doc["settings"]["protocols"].index(x[0]), x[1])
        )
        out.append(
            "\nEpsilon lower bound (the larger of the LR and family tests, confidence 0.99) per claimed epsilon:\n"
        )
        out.append(
            md_table(
                ["protocol", "k", *(f"{e:g}" for e in eps)],
                [
                    [p, k, *(num(keyed[(p, k, e)]["eps_lb"], 3) if (p, k, e) in keyed else "" for e in eps)]
                    for p, k in pk
                ],
            )
        )
    anchors = _anchor_names(doc)
    cells = _audit_pairs(doc)
    if cells:
        out.append(
            f"\nSide by side at epsilon = {doc['settings']['pair_epsilon']:g}: randomizer calls per second, dpkit's "
            f"whole audit ({sci(doc['settings']['pair_trials'])} trials per input, both tests) against the anchors' "
            f"clients alone ({sci(doc['settings']['anchor_calls'])} calls); in brackets dpkit's speed-up, same "
            "process; extra peak memory of one run in a fresh process:\n"
        )
        table_rows = []
        for (p, k), libs in cells.items():
            d = libs.get("dpkit", {})
            row = [p, k, rate(med(d.get("rates", []))), mb(d.get("memory"))]
            for a in anchors:
                e = libs.get(a, {})
                row += [_ldp_anchor_cell(e, memory=False) or "n/a", mb(e.get("memory"))]
            table_rows.append(row)
        header = ["protocol", "k", "dpkit calls/s", "dpkit extra peak"]
        for a in anchors:
            header += [f"{a} calls/s", f"{a} extra peak"]
        out.append(md_table(header, table_rows))
        out.append(
            "\nThe full grid at 1e6 trials per input through the anchors' clients alone (no attack), extrapolated from "
            "the calls/s above: one core, per protocol: "
            + "; ".join(f"{a}: {_extrapolated(doc, cells, a)}" for a in anchors)
            + "."
        )
    if doc.get("findings"):
        out.append("\n" + findings_table(doc))
    return "\n".join(out)


def findings_table(doc) -> str:
    f = doc["findings"]
    head = f"Broken randomizers ({sci(f[0]['trials'])} trials per input, confidence 0.99):\n\n"
    return head + md_table(
        ["broken randomizer", "claimed epsilon", "true epsilon", "dpkit's lower bound", "flagged"],
        [
            [
                r["randomizer"],
                f"{r['claimed']:g}",
                num(r["true"], 4),
                num(r["lower_bound"], 3),
                "yes" if r["violation"] else "**no**",
            ]
            for r in f
        ],  # fmt: skip
    )


def audit_summary(doc) -> str:
    anchors = _anchor_names(doc)
    cells = _audit_pairs(doc)
    g = doc["grid"]
    rows = []
    for (p, k), libs in cells.items():
        rows.append(
            [f"randomizer calls/s, {p} k={k}", rate(med(libs.get("dpkit", {}).get("rates", [])))]
            + [_ldp_anchor_cell(libs.get(a), memory=False) or "n/a" for a in anchors]
        )
    rows.append(
        [
            f"LDP-Auditor grid, {sci(g['randomizer_calls'])} calls",
            f"{g['wall_s']:.0f} s on {g['workers']} cores, {g['violations']} violations",
            *(f"{_extrapolated(doc, cells, a)} per protocol on one core (extrapolated)" for a in anchors),
        ]
    )
    return md_table(["", "dpkit (whole audit)", *(f"{a} (client alone)" for a in anchors)], rows)


# ---------------------------------------------------------------------------------------------- heavy hitters
def _hh_rows(doc):
    pairs = {(r["protocol"], r["library"]): r for r in doc.get("pairs", [])}
    scale = {(r["protocol"], r.get("fragment_oracle")): r for r in doc.get("scale", [])}
    memory = {r["protocol"]: r["extra_peak_mb"] for r in doc.get("memory", [])}
    rows = []
    for p in doc["settings"]["protocols"]:
        dp, an = pairs.get((p, "dpkit")), pairs.get((p, "pure-ldp"))
        big = scale.get((p, "OLH" if p == "SFP" else None))
        f1 = lambda r: "n/a" if r is None else f"{r['f1']['median']:.2f}"  # noqa: E731
        ups = lambda r: rate(None if r is None else r["users_per_s"])  # noqa: E731
        at_scale = times(None if big is None or an is None else big["users_per_s"] / an["users_per_s"])
        rows.append([p, f"{ups(dp)} (F1 {f1(dp)})", f"{ups(an)} (F1 {f1(an)})", times(dp and dp.get("speedup")),
                     f"{ups(big)} (F1 {f1(big)})", at_scale, mb(memory.get(p))])  # fmt: skip
    hr = scale.get(("SFP", "HR"))
    if hr is not None:
        rows.append(["SFP, HR fragments (dpkit's default)", "", "", "", f"{rate(hr['users_per_s'])} (F1 "
                     f"{hr['f1']['median']:.2f})", "", ""])  # fmt: skip
    return rows


def heavy_hitters_full(doc) -> str:
    s = doc["settings"]
    header = ["protocol", f"dpkit users/s, {rate(s['anchor_n'])} users", f"pure-LDP users/s, {rate(s['anchor_n'])}",
              "speed-up, same data", f"dpkit users/s, {rate(s['n'])} users", "speed-up per user",
              "dpkit extra peak"]  # fmt: skip
    return (
        f"{s['bits']}-bit keys, top {s['k']}, epsilon = {s['epsilon']:g}, {s['data']}; F1 of the top {s['k']} and "
        f"users per second end to end, medians of {s['rounds']} interleaved round(s); the per-user speed-up divides "
        "dpkit's throughput at scale by pure-LDP's:\n\n" + md_table(header, _hh_rows(doc))
    )


def heavy_hitters_summary(doc) -> str:
    rows = [r[:6] for r in _hh_rows(doc) if r[1]]
    return md_table(["protocol", "dpkit (same data)", "pure-LDP", "speed-up", "dpkit at scale", "per user"], rows)


# ---------------------------------------------------------------------------------------------- range queries
def _range_cells(doc):
    return {(c["protocol"], c["epsilon"]): c for c in doc.get("cells", [])}


RANGE_LABELS = {"flat": "flat", "hh": "HH", "haar": "HaarHRR"}


def range_queries_full(doc) -> str:
    s = doc["settings"]
    cells = _range_cells(doc)
    memory = {r["protocol"]: r["extra_peak_mb"] for r in doc.get("memory", [])}
    eps = s["epsilons"]
    rows = [[RANGE_LABELS[p], *(rate(cells[(p, e)]["users_per_s"]) if (p, e) in cells else "n/a" for e in eps),
             mb(memory.get(p))] for p in s["protocols"]]  # fmt: skip
    speed = md_table(["protocol", *(f"users/s, eps {e:g}" for e in eps), "extra peak (eps 1)"], rows)
    some = next(iter(cells.values()), None)
    if some is None:
        return speed
    lengths = some["lengths"]
    shown = [i for i, r in enumerate(lengths) if r in (1, 16, 64, 256, lengths[-1])]
    mse_rows = []
    for e in eps:
        for p in s["protocols"]:
            c = cells.get((p, e))
            if c is not None:
                mse_rows.append([f"{e:g}", RANGE_LABELS[p], *(f"{c['mse'][i]:.2e}" for i in shown)])
    mse = md_table(["epsilon", "protocol", *(f"MSE, length {lengths[i]}" for i in shown)], mse_rows)
    return (
        f"Domain {s['domain']}, {rate(s['n'])} users, {s['data']}; users per second of `perturb_aggregate` (median "
        f"of {s['rounds']} collection(s)); MSE over {s['queries']} random ranges per length and the collections. "
        f"Figure: `benchmarks/results/{doc.get('figure', 'range_queries.png')}`.\n\n" + speed + "\n\n" + mse
    )


def range_queries_summary(doc) -> str:
    s = doc["settings"]
    cells = _range_cells(doc)
    rows = [[RANGE_LABELS[p], *(rate(cells[(p, e)]["users_per_s"]) if (p, e) in cells else "n/a"
             for e in s["epsilons"])] for p in s["protocols"]]  # fmt: skip
    return md_table(["protocol", *(f"users/s, eps {e:g}" for e in s["epsilons"])], rows)


# ---------------------------------------------------------------------------------------------- poisoning
POISON_COLUMNS = ("fake rpa", "fake ria", "fake mga", "genuine", "simulate")


def _poison_cells(doc) -> dict[tuple, dict[str, Any]]:
    cells: dict[tuple, dict[str, Any]] = {}
    for r in doc["timing"]:
        cells.setdefault((r["protocol"], r["k"]), {})[r["what"]] = r["users_per_s"]
    for r in doc.get("memory", []):
        cells.setdefault((r["protocol"], r["k"]), {})["memory"] = r["extra_peak_mb"]
    return cells


def poisoning_full(doc) -> str:
    s = doc["settings"]
    rows = [
        [p, k, *(rate(c.get(col)) for col in POISON_COLUMNS), mb(c.get("memory"))]
        for (p, k), c in _poison_cells(doc).items()
    ]
    header = ["protocol", "k", "fake RPA users/s", "fake RIA users/s", "fake MGA users/s", "genuine users/s",
              "simulate users/s", "simulate extra peak"]  # fmt: skip
    return (
        f"epsilon = {s['epsilon']:g}, {s['targets']} targets, {s['data']} data; fake users/s: crafting "
        f"{rate(s['m'])} reports and aggregating them; genuine: perturb_aggregate of {rate(s['n'])} users; simulate: "
        f"MGA at beta = {s['beta']:g} end to end; medians of {s['rounds']} round(s):\n\n" + md_table(header, rows)
    )


def poisoning_summary(doc) -> str:
    rows = [[p, k, rate(c.get("fake mga")), rate(c.get("genuine")), rate(c.get("simulate"))]
            for (p, k), c in _poison_cells(doc).items()]  # fmt: skip
    return md_table(["protocol", "k", "fake MGA users/s", "genuine users/s", "simulate users/s"], rows)


# ---------------------------------------------------------------------------------------------- clipping bias
def _mean_std(stat: dict[str, float], digits: int = 3) -> str:
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def clipping_bias_full(doc) -> str:
    s, ref = doc["settings"], doc["reference"]
    labels = {"dpsgd": "DP-SGD", "adaptive": "adaptive clipping", "dicesgd": "DiceSGD (C2 = C1)"}
    rows = [
        [f"{c['c1']:g}", labels.get(c["method"], c["method"]), _mean_std(c["test_accuracy"]),
         _mean_std(c["distance"], 2), _mean_std(c["train_loss"])]
        for c in doc["cells"]
    ]  # fmt: skip
    return (
        f"Digits, logistic regression, epsilon = {s['epsilon']:g} at delta = {s['delta']:g} (DiceSGD: the authors' "
        f"claim), {s['epochs']} epochs, Poisson batches of {s['batch_size']}, SGD lr {s['lr']:g}, weight decay "
        f"{s['weight_decay']:g}; mean ± standard deviation over {s['seeds']} seed(s). Non-private optimum theta*: "
        f"test accuracy {ref['test_accuracy']:.3f}, regularised training loss {ref['train_loss']:.3f}"
        + (f", norm {ref['theta_norm']:.2f} (the distance from the zero start)" if "theta_norm" in ref else "")
        + ".\n\n"
        + md_table(["C1", "method", "test accuracy", "distance to theta*", "training loss"], rows)
    )


# ---------------------------------------------------------------------------------------------- mf
def mf_full(doc) -> str:
    s = doc["settings"]
    rows = []
    for r in doc["optimization"]:
        other = r.get("jax_privacy") or {}
        ratio = r.get("rmse_ratio")
        ok = "" if ratio is None else ("yes" if ratio <= s["target_rmse_ratio"] else "NO")
        rows.append([r["family"], r["n"], r["param"], r["participation"], num(r["dpkit"]["rmse"]),
                     secs(r["dpkit"]["seconds"]), num(other.get("rmse")), secs(other.get("seconds")),
                     num(ratio), ok])  # fmt: skip
    header = ["family", "n", "k or bands", "participation", "dpkit RMSE", "dpkit time", "jax-privacy RMSE",
              "jax-privacy time", "RMSE ratio", "within 0.2%"]  # fmt: skip
    nz = doc["noise_stream"]
    return (
        "Optimized RMSE (prefix sums, mean error, scored by dpkit for both) and optimization time (jax-privacy's "
        "includes JIT compilation):\n\n"
        + md_table(header, rows)
        + f"\n\nNoise of one training step, {rate(nz['dim'])} float32 parameters: DP-SGD "
        f"{secs(nz['dp_sgd']['median'])}, BLT with {nz['buffers']} buffers {secs(nz['mf']['median'])} "
        f"(overhead {nz['overhead']:+.0%} of DP-SGD's noise cost; medians of {s['rounds']} rounds)."
    )


# ---------------------------------------------------------------------------------------------- distributed
def distributed_full(doc) -> str:
    s = doc["settings"]
    rows = []
    for r in doc["results"]:
        t = r["seconds"]
        rows.append([r["procs"], r["threads_per_process"], secs(t["non-private DDP"]["median"]),
                     secs(t["DP-SGD"]["median"]), times(r["private_over_nonprivate"]), secs(t["all-reduce"]["median"]),
                     secs(t["noise share"]["median"])])  # fmt: skip
    header = ["processes", "threads each", "non-private DDP step", "DP-SGD step", "DP-SGD / DDP",
              "all-reduce (model size)", "noise share"]  # fmt: skip
    return (
        f"MLP of width {s['width']} on {s['features']} features, global batch {s['batch']} (expected, for DP-SGD), "
        f"{s['backend']} on {s['device']}; rank 0's medians of {s['rounds']} interleaved rounds of {s['steps']} "
        "steps:\n\n" + md_table(header, rows)
    )


# ---------------------------------------------------------------------------------------------- blocks
RENDER: dict[str, tuple[str, Callable[[dict], str]]] = {
    "accountants": ("accountants", accountants_full),
    "training": ("training", training_full),
    "ldp": ("ldp", ldp_full),
    "heavy_hitters": ("heavy_hitters", heavy_hitters_full),
    "range_queries": ("range_queries", range_queries_full),
    "audit": ("audit", audit_full),
    "poisoning": ("poisoning", poisoning_full),
    "clipping_bias": ("clipping_bias", clipping_bias_full),
    "mf": ("mf", mf_full),
    "distributed": ("distributed", distributed_full),
    "summary-accountants": ("accountants", accountants_summary),
    "summary-training": ("training", training_summary),
    "summary-ldp": ("ldp", ldp_summary),
    "summary-heavy_hitters": ("heavy_hitters", heavy_hitters_summary),
    "summary-range_queries": ("range_queries", range_queries_summary),
    "summary-audit": ("audit", audit_summary),
    "summary-poisoning": ("poisoning", poisoning_summary),
    "summary-clipping_bias": ("clipping_bias", clipping_bias_full),
}
BLOCK = re.compile(
    r"(<!-- BEGIN GENERATED (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- END GENERATED (?P=name) -->)", re.S
)


def load(results: Path, name: str) -> tuple[dict | None, Path]:
    path = results / f"{name}.json"
    return (json.loads(path.read_text()) if path.exists() else None), path


def render_block(block: str, results: Path) -> tuple[str | None, Path]:
    bench, fn = RENDER[block]
    doc, path = load(results, bench)
    if doc is None:
        return None, path
    head = short_provenance(doc) if block.startswith("summary-") else provenance(doc, path)
    return head + "\n\n" + fn(doc) + "\n", path


def render_file(path: str | Path) -> str:
    """Every full table of one results file (the scripts print this at the end)."""
    path = Path(path)
    doc = json.loads(path.read_text())
    return provenance(doc, path) + "\n\n" + RENDER[doc["benchmark"]][1](doc) + "\n"


def rewrite(md_path: Path, results: Path, allow_quick: bool) -> list[str]:
    text = md_path.read_text()
    notes = []

    def sub(m: re.Match) -> str:
        name = m.group("name")
        if name not in RENDER:
            notes.append(f"{md_path.name}: unknown block {name!r}, kept")
            return m.group(0)
        bench = RENDER[name][0]
        doc, path = load(results, bench)
        if doc is None:
            notes.append(f"{md_path.name}: {name} kept (no {path})")
            return m.group(0)
        if doc["settings"].get("quick") and not allow_quick:
            notes.append(f"{md_path.name}: {name} kept ({path} has --quick results; --allow-quick to use them)")
            return m.group(0)
        body, _ = render_block(name, results)
        notes.append(f"{md_path.name}: {name} from {path}")
        return m.group(1) + body + m.group(4)

    new = BLOCK.sub(sub, text)
    if new != text:
        md_path.write_text(new)
    return notes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=str(HERE / "results"), help="folder of the <name>.json files")
    ap.add_argument("--readme", default=str(HERE / "README.md"), help="the full tables' file")
    ap.add_argument("--summary", default=str(ROOT / "README.md"), help="the summary tables' file")
    ap.add_argument("--print", dest="show", choices=BENCHMARKS, help="print one benchmark's tables and stop")
    ap.add_argument("--allow-quick", action="store_true", help="also use results written with --quick")
    a = ap.parse_args(argv)
    results = Path(a.results)
    if a.show:
        doc, path = load(results, a.show)
        if doc is None:
            print(f"no {path}", file=sys.stderr)
            return 1
        print(render_file(path))
        return 0
    for md in (Path(a.readme), Path(a.summary)):
        for note in rewrite(md, results, a.allow_quick):
            print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
