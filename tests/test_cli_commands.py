"""The commands built on dpkit's newer APIs (``ldp heavy-hitters``, ``ldp range``, ``corn-dsgd``, ``mf``), the exit
codes of ``audit-ldp``, progress bars and the accounting comparison line: each checked against the API it wraps."""

from __future__ import annotations

import json
import math
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from dpkit.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args), prog_name="dpkit")


def run_json(*args: str) -> dict:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# ------------------------------------------------------------------------------------------------ heavy hitters
def test_heavy_hitters_json_matches_the_api_on_file_data(tmp_path):
    from dpkit.mechanisms.heavy_hitters import PEM, f1_score, ncr, true_top_k

    rng = np.random.default_rng(5)
    heavy = rng.choice(2**16, size=5, replace=False)
    keys = np.concatenate([np.repeat(heavy, [4000, 3000, 2500, 2000, 1500]), rng.integers(0, 2**16, 7000)])
    path = tmp_path / "keys.csv"
    path.write_text("key\n" + "\n".join(map(str, rng.permutation(keys))))
    out = run_json(
        "ldp",
        "heavy-hitters",
        "--protocol",
        "pem",
        "--bits",
        "16",
        "--top",
        "5",
        "--epsilon",
        "3",
        "--distribution",
        f"{path}:key",
        "--seed",
        "2",
    )
    assert {"heavy_hitters", "f1", "ncr", "seconds", "users_per_second", "true_top_k"} <= out.keys()
    assert out["n"] == len(keys) and out["protocol"] == "PEM"
    file_keys = np.loadtxt(path, skiprows=1, dtype=np.int64)
    expected = PEM(16, 3.0, k=5).run(file_keys, np.random.default_rng(2))
    assert [h["value"] for h in out["heavy_hitters"]] == [int(v) for v in expected.values]
    assert [h["count"] for h in out["heavy_hitters"]] == pytest.approx(expected.counts.tolist())
    truth = true_top_k(file_keys, 5)
    assert out["true_top_k"] == [int(v) for v in truth] and set(out["true_top_k"]) == set(heavy.tolist())
    assert out["f1"] == f1_score(expected.values, truth) and out["ncr"] == ncr(expected.values, truth)
    assert out["f1"] == 1.0  # five keys far above the rest at epsilon 3 are all found


@pytest.mark.parametrize("protocol", ["pem", "sfp", "treehist", "tap"])
def test_heavy_hitters_every_protocol_finds_zipf_heads(protocol):
    out = run_json(
        "ldp",
        "heavy-hitters",
        "--protocol",
        protocol,
        "--bits",
        "12",
        "--top",
        "3",
        "--epsilon",
        "4",
        "--n",
        "1e5",
        "--seed",
        "1",
    )
    assert len(out["heavy_hitters"]) <= 3 and 0.0 <= out["ncr"] <= 1.0
    assert out["f1"] >= 2 / 3  # Zipf(1.1): the top 3 hold 25% of 1e5 users, far above the noise at epsilon 4
    text = run("ldp", "heavy-hitters", "--protocol", protocol, "--bits", "12", "--top", "3", "--epsilon", "4")
    assert text.exit_code == 0 and "F1" in text.output and "NCR" in text.output


def test_heavy_hitters_text_keys_are_hashed_and_labelled(tmp_path):
    path = tmp_path / "words.csv"
    words = ["apple"] * 3000 + ["pear"] * 2000 + [f"w{i}" for i in range(3000)]
    path.write_text("word\n" + "\n".join(words))
    out = run_json(
        "ldp", "heavy-hitters", "--bits", "24", "--top", "2", "--epsilon", "4", "--distribution", f"{path}:word"
    )
    assert {h["label"] for h in out["heavy_hitters"]} == {"apple", "pear"}


# ------------------------------------------------------------------------------------------------ range queries
def test_box_sums_match_brute_force():
    from dpkit.cli.ldp_range import _box_sums, _random_boxes

    rng = np.random.default_rng(0)
    for domains in ((13,), (5, 7), (3, 4, 2)):
        freq = rng.random(domains)
        boxes = _random_boxes(domains, 50, rng)
        brute = [freq[tuple(slice(a, b + 1) for a, b in box)].sum() for box in boxes]
        assert _box_sums(freq, boxes) == pytest.approx(brute)


def test_range_json_matches_the_api():
    from dpkit.cli.ldp_common import zipf_frequencies
    from dpkit.cli.ldp_range import _box_sums, _random_boxes
    from dpkit.mechanisms.range_queries import FlatRange

    out = run_json(
        "ldp",
        "range",
        "--protocol",
        "flat",
        "--domain",
        "32",
        "--epsilon",
        "1",
        "--n",
        "20000",
        "--queries",
        "40",
        "--seed",
        "4",
    )
    assert {"mse", "analytic_variance", "seconds", "users_per_second", "protocol", "domain"} <= out.keys()
    rng = np.random.default_rng(4)
    values = rng.choice(32, size=20000, p=zipf_frequencies(32))
    proto = FlatRange(32, 1.0)
    state = proto.perturb_aggregate(values, rng)
    boxes = _random_boxes((32,), 40, np.random.default_rng([4, 1]))
    f = np.bincount(values, minlength=32) / 20000
    mse = np.mean((proto.answer(state, boxes[:, 0]) - _box_sums(f, boxes)) ** 2)
    assert out["mse"] == pytest.approx(mse, rel=1e-12)
    assert out["analytic_variance"] == pytest.approx(np.mean(proto.variance(20000, boxes[:, 0], f=f)), rel=1e-12)


@pytest.mark.parametrize("protocol,domain", [("flat", "16"), ("hh", "64"), ("haar", "64"), ("hio", "8,4")])
def test_range_mse_agrees_with_the_analytic_variance(protocol, domain):
    """Over 24 seeds the MSE / analytic variance ratio averages 1 (the variance is exact for these populations, up
    to O(1/n^2)); within 5 standard errors of the runs' own spread (the answers of one run share its noise, so a
    single run's ratio varies a lot: sd 0.4 to 1.2 here)."""
    ratios = []
    for seed in range(24):
        out = run_json(
            "ldp",
            "range",
            "--protocol",
            protocol,
            "--domain",
            domain,
            "--epsilon",
            "1",
            "--n",
            "5000",
            "--queries",
            "100",
            "--seed",
            str(seed),
        )
        ratios.append(out["mse"] / out["analytic_variance"])
    assert abs(np.mean(ratios) - 1) < 5 * np.std(ratios, ddof=1) / math.sqrt(len(ratios))


# ------------------------------------------------------------------------------------------------ corn-dsgd
def test_corn_dsgd_json_matches_noise_variances():
    pytest.importorskip("cvxpy")
    from dpkit.distributed import noise_variances

    out = run_json(
        "corn-dsgd", "--topology", "erdos-renyi", "--agents", "5", "--epsilon", "1", "--rounds", "100", "--seed", "3"
    )
    api = noise_variances("erdos_renyi", 5, 1.0, rounds=100, seed=3)
    for key in ("ldp", "decor", "corn"):
        assert out[key] == pytest.approx(api[key], rel=1e-6)
    assert out["corn"] <= out["decor"] * (1 + 1e-6) and out["corn"] <= out["ldp"] * (1 + 1e-6)
    assert out["seconds"] > 0


def test_corn_dsgd_without_cvxpy_says_so(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "cvxpy" else real(name, *a))
    result = run("corn-dsgd", "--agents", "3", "--epsilon", "1")
    assert result.exit_code == 1 and "cvxpy" in result.output and "dpkit[corn]" in result.output
    assert "Traceback" not in result.output


# ------------------------------------------------------------------------------------------------ mf
@pytest.mark.parametrize(
    "family,registry,options",
    [
        ("identity", "dp-sgd", {}),
        ("sqrt", "sqrt", {}),
        ("nu", "nu-dp-ftrl", {"nu": 0.1}),
        ("banded", "banded-toeplitz", {"bands": 8}),
        ("banded-column", "banded", {"bands": 8}),
        ("blt", "blt", {"buffers": 2}),
        ("dense", "dense", {}),
    ],
)
def test_mf_optimize_matches_make_strategy(family, registry, options):
    from dpkit.mechanisms.matrix_factorization import FixedEpoch, make_strategy

    args = [f"--{k}={v}" for k, v in options.items()]
    out = run_json("mf", "optimize", "--strategy", family, "--n", "64", "--participations", "4", *args)
    assert {"rmse", "max_error", "sensitivity", "seconds", "max_rmse", "mean_error"} <= out.keys()
    assert out["family"] == family and out["registry_name"] == registry
    participation = FixedEpoch(4, 16)
    report = make_strategy(registry, 64, participation=participation, **options).evaluate(participation)
    assert out["rmse"] == pytest.approx(report.rmse, rel=1e-6)
    assert out["rmse"] == pytest.approx(math.sqrt(out["sensitivity"] ** 2 * out["mean_error"]), rel=1e-12)
    assert out["max_error"] == pytest.approx(report.max_error, rel=1e-6)


def test_mf_defaults_and_participation_mapping():
    single = run_json("mf", "optimize", "--strategy", "banded", "--n", "100")
    assert single["participation"] == "single participation" and "bands=100" in single["strategy"]
    minsep = run_json(
        "mf", "optimize", "--strategy", "banded", "--n", "100", "--min-sep", "20", "--participations", "3"
    )
    assert "b=20" in minsep["participation"] and "bands=20" in minsep["strategy"]
    best = run_json("mf", "optimize", "--strategy", "nu", "--n", "100", "--participations", "4")
    for nu in (0.0, 0.5):  # the searched nu is at least as good as these
        other = run_json("mf", "optimize", "--strategy", "nu", "--n", "100", "--participations", "4", "--nu", str(nu))
        assert best["rmse"] <= other["rmse"] * (1 + 1e-12)


def test_mf_compare_lists_every_family():
    from dpkit.cli.mf import FAMILIES

    out = run_json("mf", "compare", "--n", "48", "--participations", "3")
    assert set(out["results"]) == set(FAMILIES) and out["skipped"] == {}
    rmse = {k: v["rmse"] for k, v in out["results"].items()}
    assert rmse["dense"] <= min(rmse.values()) * (1 + 1e-3)  # the dense optimum is the best factorization
    assert rmse["identity"] == max(rmse.values())
    text = run("mf", "compare", "--n", "48", "--min-sep", "12")
    assert text.exit_code == 0 and "dense" in text.output and "skipped" in text.output  # no dense for min-sep


# ------------------------------------------------------------------------------------------------ audit-ldp exits
def test_audit_ldp_exit_codes(tmp_path, monkeypatch):
    (tmp_path / "targets_c13.py").write_text(
        textwrap.dedent("""
        import random

        def crashes(value):
            if random.random() < 0.01:
                raise RuntimeError("sensor offline")
            return value

        def leaks(value):
            return value
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    crash = run("audit-ldp", "targets_c13:crashes", "--epsilon", "1", "--k", "5", "--trials", "5000")
    assert crash.exit_code == 3, crash.output
    assert "RuntimeError: sensor offline" in crash.output and "targets_c13.py" in crash.output
    assert "Traceback" not in crash.output
    leak = run("audit-ldp", "targets_c13:leaks", "--epsilon", "1", "--k", "5", "--trials", "5000")
    assert leak.exit_code == 1 and "violation" in leak.output.lower()
    ok = run("audit-ldp", "dpkit:GRR", "--epsilon", "1", "--k", "5", "--trials", "5000")
    assert ok.exit_code == 0
    help_text = run("audit-ldp", "--help").output
    for line in ("0  no violation", "1  a violation", "2  usage error", "3  the audited target"):
        assert line in help_text


# ------------------------------------------------------------------------------------------------ accounting
def test_noise_comparison_reads_correctly():
    from dpkit.cli.report import compare_noise

    assert compare_noise(1.26258, 1.26258) == "PLD and RDP need the same noise (within the 0.1% calibration tolerance)"
    assert compare_noise(1.0, 0.9) == "PLD needs 10.0% less noise than RDP"
    assert compare_noise(1.0, 1.25) == "PLD needs 25.0% more noise than RDP"
    result = run("account", "-q", "0.01", "-e", "3", "--steps", "1000", "-d", "1e-14")
    assert result.exit_code == 0, result.output
    assert "-" not in result.output.splitlines()[-1] and "need" in result.output.splitlines()[-1]


def test_progress_goes_to_stderr_and_json_stays_clean():
    result = run("account", "-q", "0.01", "-s", "1", "--steps", "100", "-d", "1e-5", "--json", "--progress")
    assert result.exit_code == 0
    json.loads(result.stdout)  # one JSON document, nothing else on stdout
    assert "accounting" in result.stderr
    quiet = run("account", "-q", "0.01", "-s", "1", "--steps", "100", "-d", "1e-5", "--json")
    assert quiet.stderr == ""  # short work, stderr not a terminal: no bar


def test_account_hooks_reach_the_accountants(monkeypatch):
    import dpkit.cli.options as cli_options

    seen: list[float] = []

    class Recorder:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return lambda fraction, message: seen.append(fraction)

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(cli_options, "progress_bar", Recorder)
    result = run("account", "-q", "0.01", "-e", "2", "--steps", "1000", "-d", "1e-5")
    assert result.exit_code == 0, result.output
    assert seen and seen == sorted(seen) and seen[-1] == pytest.approx(1.0) and seen[0] >= 0.0


def test_simulate_runs_in_chunks_with_progress(monkeypatch):
    import dpkit.cli.ldp as ldp_cli
    import dpkit.cli.ldp_common as common

    seen: list[str] = []
    real = common.simulate_chunks

    def small_chunks(n, sample, aggregate, observe, rng, progress, chunk=common.CHUNK):
        return real(n, sample, aggregate, observe, rng, lambda f, m: (seen.append(m), progress(f, m)), chunk=1000)

    monkeypatch.setattr(ldp_cli, "simulate_chunks", small_chunks)
    out = run_json("ldp", "simulate", "--protocol", "GRR", "--k", "10", "--epsilon", "2", "--n", "5500")
    assert seen == [f"{m:,} of 5,500 users" for m in (1000, 2000, 3000, 4000, 5000, 5500)]
    assert out["n"] == 5500 and out["mse"] < 20 * out["analytic_variance"]


def test_estimate_eps_no_evidence_is_named():
    result = run("estimate-eps", "--tp", "0", "--fp", "0", "--tn", "0", "--fn", "0")
    assert result.exit_code == 2 and "no evidence about epsilon" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("protocol", ["AGRR", "ASUE", "ABLH", "AOLH", "GM", "AGM"])
def test_simulate_approximate_oracles_at_their_delta(protocol):
    from dpkit.mechanisms import make_oracle

    args = ("ldp", "simulate", "--protocol", protocol, "--k", "8", "--epsilon", "1", "--delta", "1e-4")
    out = run_json(*args, "--n", "20000", "--seed", "3")
    assert out["protocol"] == protocol and out["delta"] == 1e-4 and out["epsilon"] == 1.0
    # the oracle the command ran is the API's at that delta: same analytic variance of the true frequencies
    oracle = make_oracle(protocol, 8, 1.0, delta=1e-4)
    assert out["analytic_variance"] > 0 and out["mse"] < 3 * out["analytic_variance"]
    assert math.isclose(out["analytic_variance"], oracle.mean_variance(20000, _simulated_frequencies(20000, 3, 8)))


def _simulated_frequencies(n, seed, k):
    """The true frequencies ``ldp simulate`` draws (zipf, one chunk), to recompute its analytic variance."""
    from dpkit.cli.ldp_common import zipf_frequencies

    values = np.random.default_rng(seed).choice(k, size=n, p=zipf_frequencies(k))
    return np.bincount(values, minlength=k) / n


def test_simulate_pure_protocols_keep_their_json_keys():
    out = run_json("ldp", "simulate", "--protocol", "OUE", "--k", "8", "--epsilon", "1", "--n", "2000")
    keys = {"protocol", "n", "k", "epsilon", "mse", "analytic_variance", "seconds", "users_per_second"}
    assert set(out) == keys  # delta (0) is added for the approximate protocols only
    out = run_json(
        "ldp", "simulate", "--protocol", "AOLH", "--k", "8", "--epsilon", "1", "--delta", "0.01", "--n", "2000"
    )
    assert set(out) == keys | {"delta"} and out["delta"] == 0.01


@pytest.mark.parametrize(
    "args,words",
    [
        (["--protocol", "OLH", "--delta", "1e-5"], ["must be 0 for --protocol OLH", "AGRR"]),
        (["--protocol", "ADP", "--delta", "0.1"], ["must be 0 for --protocol ADP"]),
        (["--protocol", "AGRR"], ["AGRR is (epsilon, delta)-LDP: give its delta"]),
        (["--protocol", "agm", "--delta", "0"], ["AGM is (epsilon, delta)-LDP"]),
    ],
)
def test_simulate_delta_must_fit_the_protocol(args, words):
    result = run("ldp", "simulate", "--k", "8", "--epsilon", "1", "--n", "1000", *args)
    assert result.exit_code == 2, result.output
    assert "'--delta'" in result.output and "Traceback" not in result.output
    for word in words:
        assert word in result.output
