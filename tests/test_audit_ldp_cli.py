"""``audit-ldp`` through click's CliRunner on a throwaway group (the lead registers it on ``dpkit``)."""

from __future__ import annotations

import json
import textwrap

import click
import pytest
from click.testing import CliRunner

from dpkit.audits.ldp import audit_targets, resolve
from dpkit.audits.ldp.targets import CLIENT_NAMES
from dpkit.cli.audit_ldp import audit_ldp
from dpkit.mechanisms.heavy_hitters import PEM, SFP, TreeHist
from dpkit.mechanisms.range_queries import HH

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


# ------------------------------------------------------------------------------ heavy-hitter and range-query clients
COMPOSED = {"SFP[fragment]", "SFP[whole-key]", "TreeHist[prefix]", "TreeHist[whole-key]"}


@pytest.mark.parametrize("name", CLIENT_NAMES)
def test_every_client_with_an_audit_target_runs_from_the_command_line(group, name):
    r = run(group, f"dpkit:{name}", "--epsilon", "1", "--k", "16", "--trials", "20000", "--json", "--seed", "5")
    assert r.exit_code == 0, r.output
    obj = json.loads(r.stdout)
    # the composed protocols' families are audited at their share, epsilon / 2 (basic composition)
    claimed = 0.5 if name in COMPOSED else 1.0
    assert obj["epsilon_claimed"] == claimed and obj["violation"] is False
    assert 0.7 * claimed < obj["epsilon_lower_bound"] <= claimed  # the tests have power on the real client
    base = {"CandidateHashing": "OLH-candidates"}.get(name, name.split("[")[0])  # the client's own name
    assert obj["target"].startswith(f"dpkit:{base}")


def test_client_target_is_the_registered_one():
    # the TARGET string gives the same target audit_targets gives for the protocol object
    for spec, proto, family in [
        ("dpkit:TreeHist[whole-key]", TreeHist(4, 1.0, k=10), 1),
        ("dpkit:SFP[fragment]", SFP(4, 1.0, k=10, fragment_bits=4), 0),
        ("dpkit:PEM", PEM(4, 1.0, k=10), 0),
        ("dpkit:HH", HH(16, 1.0), 0),
    ]:
        target, expected = resolve(spec, k=16, epsilon=1.0), audit_targets(proto)[family]
        assert (target.name, target.epsilon, target.v1, target.v2) == (
            expected.name,
            expected.epsilon,
            expected.v1,
            expected.v2,
        )
        assert target.params() == expected.params()


def test_client_options_reach_the_protocol(group):
    r = run(group, "dpkit:PEM", "--epsilon", "2", "--k", "5", "--bits", "12", "--trials", "5000", "--json")
    assert r.exit_code == 0, r.output
    obj = json.loads(r.stdout)
    assert obj["k"] == 4096 and "bits=12" in obj["params"]["protocol"] and obj["params"]["v2"] == 4095
    r = run(group, "dpkit:PEM", "--epsilon", "2", "--k", "5", "--trials", "5000", "--json")  # keys [0, 5): 3 bits
    assert json.loads(r.stdout)["params"]["v2"] == 7
    args = ["--epsilon", "1", "--k", "9", "--d", "2", "--branching", "3", "--trials", "5000", "--json"]
    obj = json.loads(run(group, "dpkit:HIO[OUE]", *args).stdout)
    assert "domains=(9, 9)" in obj["params"]["protocol"] and "branching=3" in obj["params"]["protocol"]
    assert "oracle='OUE'" in obj["params"]["protocol"] and obj["params"]["v2"] == [8, 8]
    obj = json.loads(run(group, "dpkit:HH[OLH]", *args).stdout)
    assert "branching=3" in obj["params"]["protocol"] and "oracle='OLH'" in obj["params"]["protocol"]


def test_client_grid_runs_every_setting(group):
    args = ["--grid", "--epsilon", "0.5,2", "--k", "8,32", "--trials", "5000", "--json", "--no-progress"]
    r = run(group, "dpkit:HaarHRR", *args)
    assert r.exit_code == 0, r.output
    objs = json.loads(r.stdout)
    assert [(o["k"], o["epsilon_claimed"]) for o in objs] == [(8, 0.5), (8, 2.0), (32, 0.5), (32, 2.0)]
    assert not any(o["violation"] for o in objs)


@pytest.mark.parametrize(
    "args,words",
    [
        (["dpkit:TreeHist"], ["dpkit:TreeHist[prefix]", "dpkit:TreeHist[whole-key]"]),  # name the family
        (["dpkit:SFP[word]"], ["dpkit:SFP[fragment]", "dpkit:SFP[whole-key]", "[word]"]),
        (["dpkit:PEM[OLH]"], ["PEM takes no"]),
        (["dpkit:Flat", "--branching", "4"], ["Flat has no branching", "HH, HIO"]),
        (["dpkit:HIO", "--scope", "attribute"], ["scope must be 'tuple' for HIO"]),
        (["dpkit:HaarLevel", "--k", "9"], ["k must be even"]),
        (["dpkit:PEM", "--delta", "1e-5"], ["delta=1e-05", "epsilon-LDP"]),
    ],
)
def test_bad_client_targets_are_usage_errors(group, args, words):
    r = run(group, *args[:1], "--epsilon", "1", "--k", "16", *args[1:])
    assert r.exit_code == 2, r.output
    assert "TARGET" in r.output and "Traceback" not in r.output
    for word in words:
        assert word in r.output


def test_anchor_target_refuses_a_nonzero_delta_before_any_work(group, monkeypatch):
    from dpkit.audits.ldp.targets import AnchorTarget

    def no_client(self):
        raise AssertionError("the library's client was built")

    monkeypatch.setattr(AnchorTarget, "_make_client", no_client)
    for library in ("multi-freq-ldpy", "pure-ldp"):
        r = run(group, f"{library}:GRR", "--epsilon", "1", "--k", "4", "--delta", "0.001")
        assert r.exit_code == 2, r.output
        assert f"delta must be 0 for {library}:GRR, got 0.001" in r.output and "Traceback" not in r.output
        r = run(group, f"{library}:GRR", "--grid", "--epsilon", "1", "--k", "4", "--delta", "0.001")
        assert r.exit_code == 2 and "delta must be 0" in r.output
