"""``audit-ldp`` through click's CliRunner on a throwaway group (the lead registers it on ``dpkit``)."""

from __future__ import annotations

import json
import textwrap

import click
import pytest
from click.testing import CliRunner

from dpkit.cli.audit_ldp import audit_ldp

KEYS = {"target", "epsilon_claimed", "epsilon_lower_bound", "cap", "trials", "confidence", "violation"}


@pytest.fixture
def group():
    @click.group()
    def g():
        pass

    g.add_command(audit_ldp)
    return g


def run(group, *args):
    return CliRunner().invoke(group, ["audit-ldp", *args])


def test_text_output_pass(group):
    r = run(group, "dpkit:OUE", "--epsilon", "1", "--k", "10", "--trials", "20000")
    assert r.exit_code == 0, r.output
    for word in ("claimed epsilon", "epsilon >=", "cap", "verdict", "pass", "confidence 0.99"):
        assert word in r.output


def test_json_keys_and_values(group):
    r = run(group, "dpkit:GRR", "--epsilon", "2", "--k", "5", "--trials", "50000", "--json", "--confidence", "0.95")
    assert r.exit_code == 0, r.output
    obj = json.loads(r.stdout)
    assert KEYS <= set(obj)
    assert obj["target"] == "dpkit:GRR" and obj["epsilon_claimed"] == 2.0 and obj["trials"] == 50000
    assert obj["confidence"] == 0.95 and obj["violation"] is False
    assert 1.5 < obj["epsilon_lower_bound"] <= 2.0 < obj["cap"]


def test_grid_json_list_csv_and_plot(group, tmp_path):
    csv, png = tmp_path / "out.csv", tmp_path / "out.png"
    r = run(
        group,
        "dpkit:OLH",
        "--grid",
        "--epsilon",
        "0.5,2",
        "--k",
        "2,8",
        "--trials",
        "5000",
        "--json",
        "--plot",
        str(png),
    )
    assert r.exit_code == 0, r.output
    objs = json.loads(r.stdout)
    assert isinstance(objs, list) and len(objs) == 4 and all(KEYS <= set(o) for o in objs)
    assert sorted({(o["k"], o["epsilon_claimed"]) for o in objs}) == [(2, 0.5), (2, 2.0), (8, 0.5), (8, 2.0)]
    assert png.stat().st_size > 1000
    r = run(group, "dpkit:GRR", "--grid", "--epsilon", "1", "--k", "2,3", "--trials", "2000", "--csv", str(csv))
    assert r.exit_code == 0 and "no violation" in r.output
    import pandas as pd

    frame = pd.read_csv(csv)
    assert len(frame) == 2 and KEYS <= set(frame.columns)


def test_violation_exit_status_1_with_a_user_callable(group, tmp_path, monkeypatch):
    (tmp_path / "my_ldp.py").write_text(
        textwrap.dedent("""
        import random

        def leaky_grr(value, k=5, p=0.9):  # claims epsilon = 1 (p should be e/(e + 4) = 0.405)
            if random.random() < p:
                return value
            other = random.randrange(k - 1)
            return other + (other >= value)
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    r = run(group, "my_ldp:leaky_grr", "--epsilon", "1", "--k", "5", "--trials", "20000", "--json")
    assert r.exit_code == 1, r.output
    obj = json.loads(r.stdout)
    assert obj["violation"] is True and obj["epsilon_lower_bound"] > 2.5  # true ln(0.9 / 0.025) = 3.58
    ok = run(group, "my_ldp:leaky_grr", "--epsilon", "4", "--k", "5", "--trials", "20000")
    assert ok.exit_code == 0, ok.output


def test_fixture_violation_text(group):
    r = run(group, "dpkit.audits.ldp.broken:LeakyTrueBitOUE", "--epsilon", "1", "--k", "5", "--trials", "1000")
    # a class is callable but is not a function of one value returning a report: a usage error, not a traceback
    assert r.exit_code == 2 and "TARGET" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize(
    "args,option",
    [
        (["dpkit:GRR", "--epsilon", "1", "--k", "1"], "--k"),
        (["dpkit:GRR", "--epsilon", "-1", "--k", "5"], "--epsilon"),
        (["dpkit:GRR", "--epsilon", "abc", "--k", "5"], "--epsilon"),
        (["dpkit:GRR", "--k", "5"], "--epsilon"),
        (["dpkit:GRR", "--epsilon", "1", "--k", "5", "--confidence", "1.5"], "--confidence"),
        (["dpkit:GRR", "--epsilon", "1", "--k", "5", "--trials", "0"], "--trials"),
        (["dpkit:GRR", "--epsilon", "1", "--k", "5", "--delta", "1"], "--delta"),
        (["dpkit:GRR", "--epsilon", "1,2", "--k", "5"], "--epsilon"),
        (["dpkit:GRR", "--epsilon", "1", "--k", "5", "--json", "--csv", "x.csv"], "--csv"),
        (["dpkit:NOPE", "--epsilon", "1", "--k", "5"], "TARGET"),
        (["nosuchmodule_xyz:f", "--epsilon", "1", "--k", "5"], "TARGET"),
        (["pure-ldp:SS", "--epsilon", "1", "--k", "5"], "TARGET"),
        (["dpkit:L-GRR", "--epsilon", "1", "--k", "5", "--eps-1", "2"], "TARGET"),
    ],
)
def test_bad_input_exit_2_names_the_option(group, args, option):
    r = run(group, *args)
    assert r.exit_code == 2, r.output
    assert option in r.output and "Traceback" not in r.output
