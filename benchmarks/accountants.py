"""Accountants side by side: dpkit vs dp_accounting and Opacus, in one process, interleaved.

For each (q, sigma, steps) of the grid, epsilon at delta = 1e-5 and seconds per query under every accountant; then
seconds per noise calibration (target epsilon 1, 3, 8 at q = 0.01, T = 1000). Each cell runs dpkit and the anchors
in turn, round after round, and reports the median time. Known-slow anchor cells (minutes each, measured in
../shared/specs) are skipped and marked; anchor errors are reported as such.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/accountants.py [--quick] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from dpkit import accountants  # noqa: E402

torch.set_num_threads(2)
warnings.filterwarnings("ignore")
DELTA = 1e-5


# ---------------------------------------------------------------------------------------------- contenders
def dpkit_rdp(q, s, t):
    return accountants.RDPAccountant().compose(accountants.dpsgd_event(s, q, t)).get_epsilon(DELTA)


def dpkit_pld(q, s, t):
    return accountants.PLDAccountant().compose(accountants.dpsgd_event(s, q, t)).get_epsilon(DELTA)


def opacus_rdp(q, s, t):
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(s, q, t)]
    return acc.get_epsilon(DELTA)


def opacus_prv(q, s, t):
    from opacus.accountants import PRVAccountant

    acc = PRVAccountant()
    acc.history = [(s, q, t)]
    return acc.get_epsilon(DELTA)


def _dp_event(q, s, t):
    import dp_accounting

    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(s)), t
    )


def dpacc_rdp(q, s, t):
    from dp_accounting import rdp

    return rdp.RdpAccountant().compose(_dp_event(q, s, t)).get_epsilon(DELTA)


def dpacc_pld(q, s, t):
    from dp_accounting import pld

    return pld.PLDAccountant().compose(_dp_event(q, s, t)).get_epsilon(DELTA)


QUERY = {
    "dpkit pld": dpkit_pld,
    "dpkit rdp": dpkit_rdp,
    "dp_accounting pld": dpacc_pld,
    "dp_accounting rdp": dpacc_rdp,
    "opacus prv": opacus_prv,
    "opacus rdp": opacus_rdp,
}
# Cells where an anchor takes minutes (../shared/specs/accounting_and_mf.md: PRV > 120 s at q=0.1, T=10000).
SLOW = {("opacus prv", 0.1, 10000), ("dp_accounting pld", 0.1, 10000)}


def dpkit_calibrate(kind):
    return lambda target, q, t: accountants.calibrate_noise_multiplier(target, DELTA, q, t, accountant=kind)


def opacus_calibrate(kind):
    def run(target, q, t):
        from opacus.accountants.utils import get_noise_multiplier

        return get_noise_multiplier(target_epsilon=target, target_delta=DELTA, sample_rate=q, steps=t, accountant=kind)

    return run


def dpacc_calibrate(kind):
    def run(target, q, t):
        from dp_accounting import mechanism_calibration, pld, rdp

        make = pld.PLDAccountant if kind == "pld" else rdp.RdpAccountant
        return mechanism_calibration.calibrate_dp_mechanism(
            make,
            lambda s: _dp_event(q, s, t),
            target,
            DELTA,
            mechanism_calibration.LowerEndpointAndGuess(0.1, 1.0),
        )

    return run


CALIBRATE = {
    "dpkit pld": dpkit_calibrate("pld"),
    "dpkit rdp": dpkit_calibrate("rdp"),
    "dp_accounting pld": dpacc_calibrate("pld"),
    "dp_accounting rdp": dpacc_calibrate("rdp"),
    "opacus prv": opacus_calibrate("prv"),
    "opacus rdp": opacus_calibrate("rdp"),
}


def clear_caches():
    """dpkit caches per-event results; a benchmark round must not profit from the previous one."""
    from dpkit.accountants import pld, rdp

    pld._composed.cache_clear()
    rdp._cached_atom_rdp.cache_clear()


def timed(fn, *args):
    clear_caches()
    t0 = time.perf_counter()
    try:
        value = fn(*args)
    except Exception as exc:  # an anchor failing is a result, not a crash of the benchmark
        return f"error: {type(exc).__name__}", time.perf_counter() - t0
    return value, time.perf_counter() - t0


def run_cells(table, cells, rounds, slow=frozenset()):
    rows = []
    for key, args in cells:
        values, times = {}, {name: [] for name in table}
        for r in range(rounds):
            for name, fn in table.items():  # interleaved: every contender once per round
                if (name, args[0], args[-1]) in slow or (r > 0 and isinstance(values.get(name), str)):
                    values[name] = values.get(name, "skipped (minutes)")
                    continue
                if r > 0 and times[name] and times[name][0] > 20:
                    continue  # one round is enough for a contender that takes > 20 s
                values[name], seconds = timed(fn, *args)
                times[name].append(seconds)
        for name in table:
            med = statistics.median(times[name]) if times[name] else float("nan")
            rows.append({**key, "accountant": name, "value": values[name], "seconds": med})
        print(pd.DataFrame(rows[-len(table) :]).to_string(index=False), flush=True)
    return pd.DataFrame(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small grid (a minute)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    qs, sigmas, steps = (0.001, 0.01, 0.1), (0.6, 1.0, 2.0), (100, 1000, 10000)
    if args.quick:
        qs, sigmas, steps = (0.01,), (1.0,), (1000,)
    cells = [({"q": q, "sigma": s, "steps": t}, (q, s, t)) for q in qs for s in sigmas for t in steps]
    print(f"== epsilon at delta={DELTA} and seconds per query ==", flush=True)
    queries = run_cells(QUERY, cells, args.rounds, SLOW)

    targets = (3.0,) if args.quick else (1.0, 3.0, 8.0)
    cal_cells = [({"target_epsilon": e, "q": 0.01, "steps": 1000}, (e, 0.01, 1000)) for e in targets]
    print("\n== noise multiplier and seconds per calibration ==", flush=True)
    calib = run_cells(CALIBRATE, cal_cells, 1)

    def wide(df, index):
        eps = df.pivot_table(index=index, columns="accountant", values="value", aggfunc="first")
        sec = df.pivot_table(index=index, columns="accountant", values="seconds", aggfunc="first")
        return eps, sec

    pd.set_option("display.width", 200)
    eps, sec = wide(queries, ["q", "sigma", "steps"])
    print("\n== summary: epsilon ==\n" + eps.to_string())
    print("\n== summary: seconds per query ==\n" + sec.round(3).to_string())
    ceps, csec = wide(calib, ["target_epsilon"])
    print("\n== summary: noise multiplier ==\n" + ceps.to_string())
    print("\n== summary: seconds per calibration ==\n" + csec.round(2).to_string())
    ratio = csec.drop(columns=["dpkit pld"]).div(csec["dpkit pld"], axis=0)
    print("\n== calibration time relative to dpkit pld (x slower) ==\n" + ratio.round(1).to_string())


if __name__ == "__main__":
    main()
