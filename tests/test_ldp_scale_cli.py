"""Streaming in constant memory, the Dask backend, and the ``ldp simulate`` command."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from dpkit.cli.ldp import ldp
from dpkit.mechanisms import GRR, OLH, OUE, SupportCounts
from dpkit.mechanisms.longitudinal import LOLOHA


def test_streaming_memory_is_bounded_by_one_chunk():
    """Aggregating 40 chunks holds one chunk at a time: peak memory does not grow with the number of chunks."""
    o = OUE(100, 1.0)

    def chunks(count, rng):
        for _ in range(count):
            yield o.perturb(rng.integers(0, 100, size=5_000), rng)

    peaks = []
    for count in (4, 40):
        rng = np.random.default_rng(0)
        tracemalloc.start()
        state = o.aggregate_stream(chunks(count, rng))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert state.n == 5_000 * count
    assert peaks[1] < 1.5 * peaks[0]


def test_perturb_aggregate_chunked_is_memory_bounded_and_unbiased():
    o = GRR(10, 1.0)
    values = np.repeat(np.arange(10), 30_000)
    state = o.perturb_aggregate(values, np.random.default_rng(1), chunk_size=7_000)
    assert state.n == len(values)
    z = (o.estimate(state) - 0.1) / np.sqrt(o.variance(len(values), np.full(10, 0.1)))
    assert np.abs(z).max() < 5


dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")


@pytest.mark.parametrize("proto", [GRR(30, 1.0), OUE(30, 1.0), OLH(30, 1.0), LOLOHA(30, 2.0, 1.0)])
def test_dask_array_aggregation_equals_one_shot(proto):
    from dpkit.mechanisms.dask_backend import aggregate_dask

    rng = np.random.default_rng(3)
    reports = proto.perturb(rng.integers(0, 30, size=12_345), rng)
    chunks = (2_000,) + (() if reports.ndim == 1 else (reports.shape[1],))
    state = aggregate_dask(proto, da.from_array(reports, chunks=chunks), scheduler="synchronous")
    assert state == proto.aggregate(reports)


def test_dask_dataframe_and_local_cluster():
    distributed = pytest.importorskip("distributed")
    dd = pytest.importorskip("dask.dataframe")
    from dpkit.mechanisms.dask_backend import aggregate_dask, simulate_dask

    o = OLH(40, 1.0)
    rng = np.random.default_rng(4)
    reports = o.perturb(rng.integers(0, 40, size=6_000), rng)
    frame = dd.from_pandas(pd.DataFrame(reports, columns=["a", "b", "y"]), npartitions=5)
    with distributed.LocalCluster(n_workers=1, processes=False, threads_per_worker=1, dashboard_address=None) as lc:
        with distributed.Client(lc):
            assert aggregate_dask(o, frame) == o.aggregate(reports)
            g = GRR(10, 1.0)
            values = da.from_array(np.repeat(np.arange(10), 5_000), chunks=10_000)
            s1 = simulate_dask(g, values, seed=7)
            s2 = simulate_dask(g, values, seed=7)
    assert isinstance(s1, SupportCounts) and s1 == s2 and s1.n == 50_000


def run(*args):
    return CliRunner().invoke(ldp, list(args), prog_name="dpkit ldp")


def test_cli_json_keys_and_values():
    result = run("simulate", "--protocol", "OLH", "--k", "100", "--epsilon", "1", "--n", "20000", "--json")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert set(out) == {"protocol", "n", "k", "epsilon", "mse", "analytic_variance", "seconds", "users_per_second"}
    assert out["protocol"] == "OLH" and out["n"] == 20000 and out["k"] == 100 and out["epsilon"] == 1.0
    assert out["analytic_variance"] == pytest.approx(OLH(100, 1.0).variance(20000), rel=0.05)
    assert out["users_per_second"] > 0


def test_cli_text_file_column_and_plot(tmp_path):
    result = run(
        "simulate",
        "--protocol",
        "grr",
        "--k",
        "10",
        "--epsilon",
        "2",
        "--n",
        "5000",
        "--distribution",
        "uniform",
        "--postprocess",
        "norm-sub",
    )
    assert result.exit_code == 0, result.output
    assert "MSE" in result.output and "analytic variance" in result.output
    csv = tmp_path / "d.csv"
    pd.DataFrame({"city": np.random.default_rng(0).choice(["Oslo", "Rome", "Lima"], 3000)}).to_csv(csv, index=False)
    plot = tmp_path / "p.png"
    result = run(
        "simulate", "--protocol", "ADP", "--epsilon", "1", "--distribution", f"{csv}:city", "--plot", str(plot)
    )
    assert result.exit_code == 0, result.output
    assert "Oslo" in result.output and plot.exists()


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--k", "10", "--epsilon", "0"], "--epsilon"),
        (["--k", "10", "--epsilon", "nan"], "--epsilon"),
        (["--k", "1", "--epsilon", "1"], "--k"),
        (["--epsilon", "1"], "--k"),
        (["--k", "10", "--epsilon", "1", "--protocol", "XYZ"], "--protocol"),
        (["--k", "10", "--epsilon", "1", "--distribution", "nofile.csv:col"], "--distribution"),
    ],
)
def test_cli_bad_input(args, fragment):
    result = run("simulate", *args)
    assert result.exit_code == 2
    assert fragment in result.output
    assert "Traceback" not in result.output
