"""``dpkit poison``: the JSON keys, the table over every protocol and attack, FILE:COLUMN data, clear errors that
name the option, and laziness (the command imports the toolkit only when it runs)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from dpkit.cli import COMMANDS, main

BASE = ["poison", "--k", "50", "--epsilon", "1", "--n", "20000", "--targets", "5"]


def run(*args):
    return CliRunner().invoke(main, [*BASE, *args])


def test_json_keys_and_gain():
    res = run("--protocol", "OUE", "--attack", "mga", "--fake-fraction", "0.05", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    for key in ("gain", "analytic_gain", "target_frequency_before", "target_frequency_after", "detected_fraction",
                "gain_std", "n_fake", "beta", "targets"):  # fmt: skip
        assert key in out
    assert out["detected_fraction"] is None and len(out["targets"]) == 5
    assert abs(out["gain"] - out["analytic_gain"]) < 5 * out["gain_std"]
    assert out["target_frequency_after"] - out["target_frequency_before"] == pytest.approx(out["gain"])


def test_defense_detect_and_text_output():
    res = run("--protocol", "SUE", "--defense", "detect", "--json")
    out = json.loads(res.output)
    assert out["defense"] == "detect" and out["detected_fraction"] > 0.99 and out["false_positive_rate"] < 0.01
    text = run("--protocol", "OUE", "--defense", "detect")
    assert text.exit_code == 0 and "of fake users flagged" in text.output and "closed form" in text.output
    norm = json.loads(run("--protocol", "GRR", "--defense", "normalize", "--json").output)
    assert norm["defense"] == "normalize" and norm["target_frequency_after"] <= 1 + 1e-9


def test_table_over_all_protocols_and_attacks():
    from dpkit.mechanisms.frequency_oracles import FREQUENCY_ORACLES

    res = CliRunner().invoke(main, ["poison", "--protocol", "all", "--attack", "all", "--k", "16", "--epsilon", "2",
                                    "--n", "4000", "--targets", "3", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)["rows"]
    assert {(r["protocol"], r["attack"]) for r in rows} == {
        (p, a) for p in FREQUENCY_ORACLES for a in ("rpa", "ria", "mga")
    }
    text = CliRunner().invoke(main, ["poison", "--protocol", "GRR", "--attack", "all", "--k", "16", "--epsilon", "2",
                                     "--n", "4000", "--targets", "3"])  # fmt: skip
    assert text.exit_code == 0 and text.output.count("GRR") == 3


def test_distribution_file_and_target_items(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("city\n" + "\n".join(["a", "b", "c", "c", "d"] * 400))
    res = CliRunner().invoke(main, ["poison", "--protocol", "GRR", "--epsilon", "1", "--distribution",
                                    f"{path}:city", "--target-items", "0,3", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["k"] == 4 and out["targets"] == [0, 3] and out["n_genuine"] == 2000


@pytest.mark.parametrize(
    "args, option, text",
    [
        (["--fake-fraction", "1"], "--fake-fraction", "must be in [0, 1)"),
        (["--fake-fraction", "-0.2"], "--fake-fraction", "must be in [0, 1)"),
        (["--targets", "51"], "--targets", "in [1, 50]"),
        (["--targets", "0"], "--targets", ">= 1"),
        (["--target-items", "3,50"], "--target-items", "items in [0, 50)"),
        (["--target-items", "3,x"], "--target-items", "comma-separated integers"),
        (["--target-items", "3,3"], "--target-items", "distinct"),
        (["--epsilon", "0"], "--epsilon", "must be in (0, inf)"),
        (["--protocol", "XYZ"], "--protocol", "must be one of GRR"),
        (["--attack", "boom"], "--attack", "boom"),
        (["--n", "0"], "--n", "in [1, "),
    ],
)
def test_bad_input_names_the_option(args, option, text):
    res = run(*args)
    assert res.exit_code == 2
    assert option in res.output and text in res.output, res.output
    assert "Traceback" not in res.output


def test_missing_k_and_no_detector():
    res = CliRunner().invoke(main, ["poison", "--epsilon", "1"])
    assert res.exit_code == 2 and "'--k'" in res.output
    res = run("--protocol", "GRR", "--defense", "detect")
    assert res.exit_code == 2 and "GRR has no fake-user detector" in res.output


@pytest.mark.multiprocess
def test_lazy():
    assert COMMANDS["poison"][0] == "dpkit.cli.poison:poison"
    code = "import sys, dpkit.cli.poison; print('dpkit.audits.poisoning' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
