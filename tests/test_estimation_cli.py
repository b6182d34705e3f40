"""``dpkit estimate-eps`` through click.testing.CliRunner on a throwaway group."""

from __future__ import annotations

import json
import math

import click
import numpy as np
import pytest
from click.testing import CliRunner

from dpkit.audits import AttackCounts, bayesian_interval, clopper_pearson
from dpkit.cli.estimate import estimate_eps

COUNTS = ["--tp", "487", "--fp", "512", "--tn", "1", "--fn", "0"]


@pytest.fixture(scope="module")
def group():
    g = click.Group("dpkit")
    g.add_command(estimate_eps)
    return g


def run(group, *args):
    return CliRunner().invoke(group, ["estimate-eps", *args], prog_name="dpkit")


def test_counts_json(group):
    res = run(group, *COUNTS, "--delta", "1e-5", "--alpha", "0.1", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert set(out) == {"bayes", "clopper-pearson", "jeffreys"}
    for v in out.values():
        assert set(v) == {"lower", "upper", "point"}
    assert out["bayes"]["lower"] == pytest.approx(0.1439, abs=2e-3)
    assert out["bayes"]["upper"] == pytest.approx(6.4156, abs=2e-3)
    assert out["clopper-pearson"]["upper"] == "inf" and float(out["clopper-pearson"]["upper"]) == math.inf


def test_counts_text_and_single_method(group):
    res = run(group, "--tp", "450", "--fp", "50", "--tn", "450", "--fn", "50", "--method", "clopper-pearson")
    assert res.exit_code == 0, res.output
    assert "clopper-pearson" in res.output and "bayes" not in res.output
    cp = clopper_pearson(AttackCounts(450, 50, 450, 50))
    assert f"{cp.lower:.4f}" in res.output


def test_plot(group, tmp_path):
    path = tmp_path / "post.png"
    res = run(group, *COUNTS, "--method", "bayes", "--plot", str(path))
    assert res.exit_code == 0, res.output
    assert path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"


def test_scores_csv(group, tmp_path):
    rng = np.random.default_rng(0)
    b = (rng.random(2000) < 0.5).astype(int)
    s = rng.normal(size=2000) + 2.0 * b
    path = tmp_path / "scores.csv"
    path.write_text("is_member,score\n" + "\n".join(f"{x},{y:.6f}" for x, y in zip(b, s, strict=True)))
    res = run(group, "--scores", str(path), "--json", "--method", "bayes")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert 0 < out["bayes"]["lower"] < out["bayes"]["point"] < out["bayes"]["upper"]
    res = run(group, "--scores", str(path), "--selection", "best", "--num-thresholds", "5")
    assert res.exit_code == 0, res.output
    assert "5 comparison(s)" in res.output


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--tp", "-1", "--fp", "1", "--tn", "1", "--fn", "1"], "'--tp'"),
        (["--tp", "1.5", "--fp", "1", "--tn", "1", "--fn", "1"], "'--tp'"),
        (["--tp", "1", "--fp", "1", "--tn", "1"], "--fn"),
        ([*COUNTS, "--alpha", "0"], "'--alpha'"),
        ([*COUNTS, "--alpha", "1.2"], "'--alpha'"),
        ([*COUNTS, "--delta", "1"], "'--delta'"),
        ([*COUNTS, "--delta", "-0.1"], "'--delta'"),
        ([*COUNTS, "--method", "magic"], "'--method'"),
        ([*COUNTS, "--max-eps", "0"], "'--max-eps'"),
    ],
)
def test_bad_input_exit_2(group, args, needle):
    res = run(group, *args)
    assert res.exit_code == 2, res.output
    error_lines = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1 and needle in error_lines[0], res.output


def test_bad_scores_files(group, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("member,score\n1,0.5\n")
    res = run(group, "--scores", str(bad))
    assert res.exit_code == 2 and "'--scores'" in res.output and "is_member" in res.output
    empty = tmp_path / "empty.csv"
    empty.write_text("is_member,score\n")
    assert run(group, "--scores", str(empty)).exit_code == 2
    labels = tmp_path / "labels.csv"
    labels.write_text("is_member,score\n1,0.5\n3,0.2\n")
    res = run(group, "--scores", str(labels))
    assert res.exit_code == 2 and "is_member must hold only 0/1" in res.output
    assert run(group, "--scores", str(tmp_path / "missing.csv")).exit_code == 2
    both = run(group, "--scores", str(labels), "--tp", "3")
    assert both.exit_code == 2 and "either --scores or counts" in both.output


def test_bayes_json_matches_api(group):
    res = run(group, "--tp", "80", "--fp", "20", "--tn", "70", "--fn", "30", "--method", "bayes", "--json")
    out = json.loads(res.output)["bayes"]
    est = bayesian_interval(AttackCounts(80, 20, 70, 30))
    assert (out["lower"], out["upper"], out["point"]) == (est.lower, est.upper, est.point)
