"""The dpkit command line and the accounting report behind ``dpkit account-report``."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from dpkit import __version__, accountants
from dpkit.cli import COMMANDS, main
from dpkit.cli.report import DpSgdSetting, epochs_to_steps, epsilon_table, format_table, noise_table

Q, SIGMA, STEPS, DELTA = 0.01, 1.0, 1000, 1e-5
BASE = ["account", "--sampling-rate", str(Q), "--steps", str(STEPS), "--delta", str(DELTA)]


def run(*args: str):
    return CliRunner().invoke(main, list(args), prog_name="dpkit")


def run_json(*args: str) -> dict:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return json.loads(lines[0])


def api_epsilon(name: str, sigma: float = SIGMA, q: float = Q, steps: int = STEPS, delta: float = DELTA) -> float:
    acc = accountants.create_accountant(name)
    acc.compose(accountants.dpsgd_event(sigma, q, steps))
    return acc.get_epsilon(delta)


# ------------------------------------------------------------ account: epsilon
@pytest.mark.parametrize("name", ["rdp", "pld"])
def test_account_json_single(name):
    out = run_json(*BASE, "--noise-multiplier", str(SIGMA), "--accountant", name)
    assert {"epsilon", "noise_multiplier", "accountant", "sampling_rate", "steps", "delta"} <= out.keys()
    assert out["accountant"] == name
    assert out["sampling_rate"] == Q and out["steps"] == STEPS and out["delta"] == DELTA
    assert out["noise_multiplier"] == SIGMA
    assert "target_epsilon" not in out
    assert isinstance(out["epsilon"], float)
    assert out["epsilon"] == api_epsilon(name)
    if name == "pld":
        assert out["epsilon_lower"] <= out["epsilon"]
        assert out["discretization_error"] == pytest.approx(out["epsilon"] - out["epsilon_lower"])
        assert out["discretization_error"] >= 0
    else:
        assert "epsilon_lower" not in out


def test_account_json_both():
    out = run_json(*BASE, "--noise-multiplier", str(SIGMA), "--accountant", "both")
    assert out["accountant"] == "both"
    assert out["noise_multiplier"] == SIGMA
    assert set(out["epsilon"]) == {"rdp", "pld"}
    assert out["epsilon"]["rdp"] == api_epsilon("rdp")
    assert out["epsilon"]["pld"] == api_epsilon("pld")
    assert out["epsilon"]["pld"] <= out["epsilon"]["rdp"]
    assert set(out["epsilon_lower"]) == {"pld"}
    assert out["epsilon_lower"]["pld"] <= out["epsilon"]["pld"]


def test_account_text_outputs():
    bare = run(*BASE, "--noise-multiplier", str(SIGMA), "--accountant", "pld")
    assert bare.exit_code == 0, bare.output
    assert float(bare.output.strip()) == pytest.approx(api_epsilon("pld"), rel=1e-5)
    both = run(*BASE, "--noise-multiplier", str(SIGMA))  # default: both
    assert both.exit_code == 0, both.output
    assert "RDP" in both.output and "PLD" in both.output and "lower bound" in both.output


def test_epochs_conversion():
    assert epochs_to_steps(100, 256 / 50000) == math.ceil(100 / (256 / 50000)) == 19532
    assert epochs_to_steps(3, 0.1) == 30  # 3 / 0.1 = 30.000000000000004 in floating point
    assert epochs_to_steps(0.5, 0.3) == 2
    out = run_json("account", "-q", "0.1", "--epochs", "3", "-d", "1e-5", "-s", "1.0", "-a", "rdp")
    assert out["steps"] == 30 and out["epochs"] == 3.0
    assert out["epsilon"] == api_epsilon("rdp", q=0.1, steps=30)


def test_neighbouring_relation_passes_through():
    out = run_json(*BASE, "-s", "2.0", "-a", "rdp", "--neighbouring-relation", "add_or_remove")
    assert out["neighbouring_relation"] == "add_or_remove"
    result = run(*BASE, "-s", "2.0", "-a", "rdp", "--neighbouring-relation", "replace_one", "--json")
    if result.exit_code == 0:  # supported: the CLI must agree with the API
        out = json.loads(result.output)
        acc = accountants.create_accountant("rdp", neighbouring_relation="replace_one")
        acc.compose(accountants.dpsgd_event(2.0, Q, STEPS))
        assert out["epsilon"] == acc.get_epsilon(DELTA)
    else:  # refused (fails closed): a clean usage error naming the option
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert "--neighbouring-relation" in result.output


# ------------------------------------------------------------ account: calibration
@pytest.mark.parametrize("name", ["rdp", "pld"])
def test_calibration_json_single(name):
    target = 3.0
    out = run_json(*BASE, "--target-epsilon", str(target), "--accountant", name)
    assert out["accountant"] == name and out["target_epsilon"] == target
    sigma = out["noise_multiplier"]
    assert isinstance(sigma, float) and sigma > 0
    assert sigma == pytest.approx(accountants.calibrate_noise_multiplier(target, DELTA, Q, STEPS, name))
    assert out["epsilon"] == api_epsilon(name, sigma=sigma)
    assert out["epsilon"] <= target
    assert api_epsilon(name, sigma=sigma * 0.99) > target  # tight


def test_calibration_json_both():
    target = 3.0
    out = run_json(*BASE, "--target-epsilon", str(target), "-a", "both")
    assert set(out["noise_multiplier"]) == {"rdp", "pld"} == set(out["epsilon"])
    for name in ("rdp", "pld"):
        assert api_epsilon(name, sigma=out["noise_multiplier"][name]) <= target
        assert out["epsilon"][name] <= target
    assert out["noise_multiplier"]["pld"] <= out["noise_multiplier"]["rdp"]


def test_calibration_text_both():
    result = run(*BASE, "--target-epsilon", "3")
    assert result.exit_code == 0, result.output
    assert "less noise" in result.output


# ------------------------------------------------------------ bad input
BAD_INPUTS = [
    # (arguments, a string the error must contain)
    (["-q", "1.5", "-s", "1", "--steps", "10", "-d", "1e-5"], "--sampling-rate"),
    (["-q", "0", "-s", "1", "--steps", "10", "-d", "1e-5"], "--sampling-rate"),
    (["-q", "nan", "-s", "1", "--steps", "10", "-d", "1e-5"], "--sampling-rate"),
    (["-q", "abc", "-s", "1", "--steps", "10", "-d", "1e-5"], "--sampling-rate"),
    (["-q", "0.01", "-s", "0", "--steps", "10", "-d", "1e-5"], "--noise-multiplier"),
    (["-q", "0.01", "-s", "-1", "--steps", "10", "-d", "1e-5"], "--noise-multiplier"),
    (["-q", "0.01", "-s", "inf", "--steps", "10", "-d", "1e-5"], "--noise-multiplier"),
    (["-q", "0.01", "-s", "1", "--steps", "-5", "-d", "1e-5"], "--steps"),
    (["-q", "0.01", "-s", "1", "--steps", "0", "-d", "1e-5"], "--steps"),
    (["-q", "0.01", "-s", "1", "--steps", "1.5", "-d", "1e-5"], "--steps"),
    (["-q", "0.01", "-s", "1", "--epochs", "-1", "-d", "1e-5"], "--epochs"),
    (["-q", "0.01", "-s", "1", "--steps", "10", "-d", "0"], "--delta"),
    (["-q", "0.01", "-s", "1", "--steps", "10", "-d", "1"], "--delta"),
    (["-q", "0.01", "-s", "1", "--steps", "10", "-d", "nan"], "--delta"),
    (["-q", "0.01", "--target-epsilon", "0", "--steps", "10", "-d", "1e-5"], "--target-epsilon"),
    (["-q", "0.01", "--target-epsilon", "-2", "--steps", "10", "-d", "1e-5"], "--target-epsilon"),
    (["-q", "0.01", "-s", "1", "--steps", "10", "-d", "1e-5", "-a", "prv"], "--accountant"),
    (
        ["-q", "0.01", "-s", "1", "--steps", "10", "-d", "1e-5", "--neighbouring-relation", "x"],
        "--neighbouring-relation",
    ),
    (["-q", "0.01", "-s", "1", "--target-epsilon", "3", "--steps", "10", "-d", "1e-5"], "--target-epsilon"),
    (["-q", "0.01", "--steps", "10", "-d", "1e-5"], "--noise-multiplier"),
    (["-q", "0.01", "-s", "1", "-d", "1e-5"], "--steps"),
    (["-q", "0.01", "-s", "1", "--steps", "10", "--epochs", "1", "-d", "1e-5"], "--epochs"),
    (["-s", "1", "--steps", "10", "-d", "1e-5"], "--sampling-rate"),
    (["-q", "0.01", "-s", "1", "--steps", "10"], "--delta"),
]


@pytest.mark.parametrize("args,name", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
@pytest.mark.parametrize("as_json", [False, True])
def test_bad_input_is_a_clean_usage_error(args, name, as_json):
    result = run("account", *args, *(["--json"] if as_json else []))
    assert result.exit_code == 2, result.output
    assert name in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # click's exit, not an uncaught exception


def test_errors_from_the_accountants_become_usage_errors():
    # No noise multiplier up to the search limit reaches this target: the accountants' ValueError, cleanly.
    result = run("account", "-q", "1", "--target-epsilon", "1e-9", "--steps", "1000000", "-d", "1e-9", "-a", "rdp")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "target_epsilon" in result.output


# ------------------------------------------------------------ help, version
@pytest.mark.parametrize(
    "args", [["--help"], ["account", "--help"], ["account-report", "--help"], ["train-demo", "--help"], ["-h"]]
)
def test_help(args):
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_unknown_command_is_a_usage_error():
    result = run("acount")
    assert result.exit_code == 2 and "No such command 'acount'" in result.output


# ------------------------------------------------------------ the lazy group and what a command imports
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_listed_command_loads_with_the_listed_short_help(name):
    target, short_help = COMMANDS[name]
    command = main.get_command(click.Context(main), name)
    assert isinstance(command, click.Command)
    assert command.callback is not None and command.callback.__module__ == target.partition(":")[0]
    assert command.name == name
    assert command.short_help == short_help
    assert name in run("--help").output


HEAVY = ("torch", "pandas", "matplotlib")


def imported_by(code: str) -> dict[str, list[str]]:
    """Run ``code`` in a fresh interpreter; which heavy packages and which dpkit.cli modules it imported."""
    probe = (
        "\nimport json, sys\n"
        f"heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "cli = sorted(m for m in sys.modules if m.startswith('dpkit.cli.'))\n"
        "print(json.dumps({'heavy': heavy, 'cli': cli}))"
    )
    out = subprocess.run([sys.executable, "-c", code + probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_main(*args: str) -> str:
    return (
        "from dpkit.cli import main\n"
        "try:\n"
        f"    main({list(args)!r}, prog_name='dpkit')\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
    )


@pytest.mark.multiprocess
@pytest.mark.parametrize("code", ["import dpkit", "import dpkit.cli", "import dpkit.accountants"])
def test_imports_leave_torch_pandas_matplotlib_out(code):
    assert imported_by(code)["heavy"] == []


@pytest.mark.multiprocess
def test_help_imports_no_command_module():
    assert imported_by(run_main("--help")) == {"heavy": [], "cli": ["dpkit.cli.lazy_group"]}


@pytest.mark.multiprocess
@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_account_imports_only_what_it_uses(accountant):
    code = run_main("account", "-q", "0.01", "-s", "1", "--steps", "10", "-d", "1e-5", "-a", accountant)
    assert imported_by(code) == {
        "heavy": [],
        "cli": ["dpkit.cli.account", "dpkit.cli.lazy_group", "dpkit.cli.options", "dpkit.cli.report"],
    }


@pytest.mark.multiprocess
def test_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "dpkit.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout


# ------------------------------------------------------------ the demo report
SMALL = DpSgdSetting(epochs=2)


def test_setting():
    assert SMALL.sampling_rate == 256 / 50000
    assert SMALL.steps == math.ceil(2 / (256 / 50000))
    assert DpSgdSetting().steps == 19532
    assert "50000" in SMALL.describe() and "delta=1e-05" in SMALL.describe()
    with pytest.raises(ValueError, match="batch_size"):
        DpSgdSetting(batch_size=0)
    with pytest.raises(ValueError, match="epochs"):
        DpSgdSetting(epochs=-1)


def test_epsilon_table_small():
    df = epsilon_table(SMALL, noise_multipliers=[0.8, 1.5])
    assert (
        list(df.columns)
        == "noise_multiplier eps_rdp eps_pld eps_pld_lower pld_saving_pct rdp_seconds pld_seconds".split()
    )
    assert list(df["noise_multiplier"]) == [0.8, 1.5]
    assert (df["eps_pld"] <= df["eps_rdp"]).all()
    assert (df["eps_pld_lower"] <= df["eps_pld"]).all()
    assert (df["eps_rdp"].diff().dropna() < 0).all()  # more noise, less epsilon
    assert (df[["rdp_seconds", "pld_seconds"]] >= 0).all().all()
    assert df["eps_pld"].iloc[0] == api_epsilon("pld", sigma=0.8, q=SMALL.sampling_rate, steps=SMALL.steps)
    assert "eps_pld_lower" in format_table(df)


def test_noise_table_small():
    df = noise_table(SMALL, target_epsilons=[1.0, 8.0])
    assert list(df.columns) == "target_epsilon sigma_rdp sigma_pld noise_saving_pct rdp_seconds pld_seconds".split()
    assert (df["sigma_pld"] <= df["sigma_rdp"]).all()
    assert (df["noise_saving_pct"] >= 0).all()
    assert df["sigma_rdp"].iloc[0] > df["sigma_rdp"].iloc[1]  # a smaller target needs more noise
    for _, row in df.iterrows():
        for name in ("rdp", "pld"):
            sigma = row[f"sigma_{name}"]
            assert api_epsilon(name, sigma=sigma, q=SMALL.sampling_rate, steps=SMALL.steps) <= row["target_epsilon"]


def test_demo_command_small():
    result = run("account-report", "--epochs", "1")
    assert result.exit_code == 0, result.output
    assert "N=50000" in result.output and "eps_rdp" in result.output and "sigma_pld" in result.output


def test_demo_bad_input():
    result = run("account-report", "--batch-size", "60000")
    assert result.exit_code == 2 and "--batch-size" in result.output
