"""Dask backend: aggregate reports (or simulate clients) partition by partition and merge the states.

Each partition becomes one server state (``protocol.aggregate``), states are merged pairwise in a tree, and only
the final state (k numbers) comes back to the client. The same code runs on the synchronous scheduler, a
``distributed.LocalCluster`` or a real cluster. Requires ``dask[array,dataframe]`` (``distributed`` for clusters).
"""

from __future__ import annotations

import numpy as np

from dpkit.mechanisms._validation import check_seed

__all__ = ["aggregate_dask", "simulate_dask"]


def _tree_merge(states):
    import dask

    states = list(states)
    if not states:
        raise ValueError("reports must have at least one partition")
    while len(states) > 1:
        merged = [dask.delayed(_add)(states[i], states[i + 1]) for i in range(0, len(states) - 1, 2)]
        if len(states) % 2:
            merged.append(states[-1])
        states = merged
    return states[0]


def _add(a, b):
    return a + b


def _aggregate_part(protocol, part):
    return protocol.aggregate(np.asarray(part))


def _partitions(reports):
    import dask.array as da

    try:
        import dask.dataframe as dd
    except ImportError:  # pragma: no cover - dataframe extra missing
        dd = None  # type: ignore[assignment]
    if dd is not None and isinstance(reports, (dd.DataFrame, dd.Series)):
        return [d for d in reports.to_delayed()], True
    if isinstance(reports, da.Array):
        if reports.ndim == 2:
            reports = reports.rechunk({1: -1})  # whole rows per partition
        elif reports.ndim != 1:
            raise ValueError(f"reports must be a 1-d or 2-d dask array, got {reports.ndim} dimensions")
        return list(reports.to_delayed().ravel()), False
    raise TypeError(f"reports must be a dask array or dask dataframe, got {type(reports).__name__}")


def aggregate_dask(protocol, reports, scheduler=None):
    """The server state of a dask array (rows = users) or dask dataframe (columns = report columns) of reports.

    Equivalent to ``protocol.aggregate(all_reports)``; never materializes more than one partition per worker.
    """
    import dask

    parts, is_frame = _partitions(reports)
    if is_frame:
        states = [dask.delayed(lambda p, proto=protocol: proto.aggregate(p.to_numpy()))(p) for p in parts]
    else:
        states = [dask.delayed(_aggregate_part)(protocol, p) for p in parts]
    return _tree_merge(states).compute(scheduler=scheduler)


def _simulate_part(protocol, values, seed_seq):
    rng = np.random.default_rng(seed_seq)
    return protocol.perturb_aggregate(np.asarray(values), rng)


def simulate_dask(protocol, values, seed: int, scheduler=None):
    """Run the clients and the server on a dask array of users' values (one independent RNG stream per chunk)."""
    import dask
    import dask.array as da

    seed = check_seed("seed", seed)
    if not isinstance(values, da.Array) or values.ndim != 1:
        raise TypeError("values must be a 1-d dask array")
    parts = list(values.to_delayed().ravel())
    seeds = np.random.SeedSequence(seed).spawn(len(parts))
    states = [dask.delayed(_simulate_part)(protocol, p, s) for p, s in zip(parts, seeds, strict=False)]
    return _tree_merge(states).compute(scheduler=scheduler)
