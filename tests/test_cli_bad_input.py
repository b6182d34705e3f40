"""Every option of every ``dpkit`` command, given bad values: a one-line usage error naming the option, never a
traceback.

The walk is generated from the commands themselves: each option's type says what is bad for it (whole-number
options: NaN, inf, 1.5, words, below the minimum, huge; real-number options: NaN, +-inf, words, -1; output files: a
missing folder, an unsupported extension, a folder, an unwritable place; input files: missing). Text options get
hand-written cases; ``test_every_option_is_walked`` fails when a new option has no bad-input case.
"""

from __future__ import annotations

import os

import click
import pytest
from click.testing import CliRunner

from dpkit.cli import main
from dpkit.cli.options import Count, OutputPath, Real

# a valid, small invocation of every command: a bad value that slipped through would run quickly
BASES: dict[str, list[str]] = {
    "account": ["-q", "0.01", "-s", "1", "--steps", "10", "-d", "1e-5", "-a", "rdp"],
    "account-report": ["--epochs", "0.01", "--dataset-size", "1000", "--batch-size", "100"],
    "audit-ldp": ["dpkit:GRR", "--epsilon", "1", "--k", "5", "--trials", "1000"],
    "corn-dsgd": ["--agents", "3", "--epsilon", "1", "--rounds", "10"],
    "estimate-eps": ["--tp", "40", "--fp", "10", "--tn", "40", "--fn", "10", "--method", "clopper-pearson"],
    "ldp heavy-hitters": ["--bits", "8", "--top", "3", "--epsilon", "2", "--n", "2000"],
    "ldp range": ["--protocol", "flat", "--domain", "16", "--epsilon", "1", "--n", "2000", "--queries", "10"],
    "ldp simulate": ["--k", "10", "--epsilon", "1", "--n", "1000"],
    "mf compare": ["--n", "16"],
    "mf optimize": ["--strategy", "sqrt", "--n", "16"],
    "mia-run": ["--epochs", "1", "--models", "4", "--shadow", "2", "--canaries", "2"],
    "poison": ["--protocol", "GRR", "--k", "10", "--epsilon", "1", "--targets", "2", "--n", "1000"],
    "train-demo": ["--epochs", "1", "--no-progress", "--plot", "/tmp/dpkit-bad-input/demo.png"],
}
# options whose values are swapped out by a case (they exclude another option of the base)
EXCLUSIVE = {("account", "--target-epsilon"): "-s", ("account", "--epochs"): "--steps"}

# hand-written bad values: (command, option) -> values the base arguments get for that option; the error must name
# the option. Text options (their type cannot say what is bad), and values bad only next to the base arguments.
BAD_VALUES: dict[tuple[str, str], list[str]] = {
    ("audit-ldp", "--epsilon"): ["abc", "-1", "nan", "inf", "1,2", ""],
    ("audit-ldp", "--k"): ["1", "2.5", "1e30", "x"],
    ("ldp simulate", "--distribution"): ["nofile.csv:col", "gauss"],
    ("ldp heavy-hitters", "--distribution"): ["uniform", "missing.csv:key"],
    ("ldp range", "--domain"): ["0", "abc", "1.5", "1e30", "8,8"],  # a list needs --protocol hio
    ("mf optimize", "--participations"): ["3"],  # 16 steps are not 3 epochs
    ("mf optimize", "--min-sep"): ["17"],
    ("mf compare", "--min-sep"): ["17"],
    ("account-report", "--batch-size"): ["2000"],
    ("account-report", "--epochs"): ["1e300"],
    ("mia-run", "--canaries"): ["5000"],
    ("poison", "--protocol"): ["XYZ"],
    ("poison", "--targets"): ["11"],  # more targets than items
    ("poison", "--target-items"): ["1,x", "10"],  # 10: outside [0, k)
    ("poison", "--distribution"): ["gauss", "missing.csv:col"],
}

# hand-written cases of several arguments: (command, arguments to add or replace, the option the error must name)
MANUAL: list[tuple[str, list[str], str]] = [
    ("audit-ldp", ["--grid", "--k", "2,x"], "--k"),
    ("audit-ldp", ["--json", "--csv", "out.csv"], "--csv"),
    ("ldp range", ["--protocol", "hio", "--domain", "512,512"], "--domain"),  # product too large
    ("mf optimize", ["--strategy", "sqrt", "--bands", "4"], "--bands"),
    ("mf optimize", ["--strategy", "banded", "--buffers", "2"], "--buffers"),
    ("mf optimize", ["--strategy", "sqrt", "--nu", "0.5"], "--nu"),
    ("mf optimize", ["--strategy", "dense", "--error", "max"], "--error"),
    ("mf optimize", ["--strategy", "banded", "--bands", "17"], "--bands"),
    ("mf optimize", ["--strategy", "dense", "--n", "5000"], "--n"),
    ("account", ["--epochs", "1e300", "-q", "1e-300"], "--epochs"),  # more than 2^53 steps
    ("mia-run", ["--models", "3", "--shadow", "4"], "--models"),
    ("estimate-eps", ["--tp", "0", "--fp", "0", "--tn", "0", "--fn", "0"], "--tp"),  # no evidence
    ("estimate-eps", ["--tp", "9", "--fp", "7", "--tn", "0", "--fn", "0"], "--tp"),  # a constant test
    *((path, [option, value], option) for (path, option), values in BAD_VALUES.items() for value in values),
]

COMMAND_NAMES = sorted(BASES)


def command(path: str) -> click.Command:
    ctx = click.Context(main)
    cmd: click.Command | None = main
    for part in path.split():
        assert isinstance(cmd, click.Group)
        cmd = cmd.get_command(ctx, part)
    assert cmd is not None
    return cmd


def invoke(path: str, args: list[str]):
    return CliRunner().invoke(main, [*path.split(), *args], prog_name="dpkit")


def with_value(path: str, option: click.Option, value: str) -> list[str]:
    """The command's base arguments with ``option`` set to ``value`` (replaced if present, else added)."""
    args = list(BASES[path])
    longest = max(option.opts, key=len)
    dropped = EXCLUSIVE.get((path, longest))
    for name in (*option.opts, dropped):
        if name in args:
            i = args.index(name)
            del args[i : i + 2]
    return [*args, longest, value]


def bad_values(param: click.Parameter, tmp: str) -> list[str]:
    t = param.type
    if isinstance(t, Count):
        low = [str(t.minimum - 1)] if t.minimum > 0 else ["-1"]
        high = [str(t.maximum + 1), "1e30"] if t.maximum is not None else []
        return ["nan", "inf", "1.5", "abc", *low, *high]
    if isinstance(t, Real):
        return ["nan", "inf", "-inf", "abc", "-1", "1e400"]
    if isinstance(t, OutputPath):
        ext = t.extensions[0]
        return [
            os.path.join(tmp, "missing-folder", f"out.{ext}"),
            os.path.join(tmp, "out.unknown"),
            os.path.join(tmp, "out"),
            tmp,
            f"/proc/dpkit-cannot-write.{ext}",
        ]
    if isinstance(t, click.Path):
        return [os.path.join(tmp, "no-such-file.csv"), tmp]
    if isinstance(t, click.Choice):
        return ["not-a-choice"]
    return []


def generated_cases(tmp: str) -> list[tuple[str, list[str], str]]:
    cases = []
    for path in COMMAND_NAMES:
        for param in command(path).params:
            if not isinstance(param, click.Option) or param.is_flag:
                continue
            for value in bad_values(param, tmp):
                cases.append((path, with_value(path, param, value), max(param.opts, key=len)))
    return cases


TMP = "/tmp/dpkit-bad-input"  # the folder exists during the tests (fixture below); never written to


@pytest.fixture(scope="module", autouse=True)
def tmp_folder():
    os.makedirs(TMP, exist_ok=True)
    yield TMP


def manual_args(path: str, extra: list[str]) -> list[str]:
    args = list(BASES[path])
    for i in range(0, len(extra) - 1):
        name = extra[i]
        if name.startswith("--") and name in args and not extra[i + 1].startswith("--"):
            j = args.index(name)
            del args[j : j + 2]
    return [*args, *extra]


CASES = generated_cases(TMP) + [(p, manual_args(p, extra), opt) for p, extra, opt in MANUAL]


def assert_clean_usage_error(result, option: str) -> None:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # click's exit, not an uncaught error
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert option in result.output, result.output


@pytest.mark.parametrize(
    "path,args,option", CASES, ids=[f"{p} {' '.join(a[len(BASES[p]) - 2 :])}" for p, a, _ in CASES]
)
def test_bad_value_is_a_one_line_usage_error(path, args, option):
    assert_clean_usage_error(invoke(path, args), option)


def test_every_option_is_walked():
    covered = {(path, option) for path, _, option in CASES}
    for path in COMMAND_NAMES:
        for param in command(path).params:
            if isinstance(param, click.Option) and not param.is_flag:
                assert (path, max(param.opts, key=len)) in covered, (path, param.opts)


def test_every_command_is_walked():
    ctx = click.Context(main)

    def leaves(cmd: click.Command, prefix: list[str]):
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None
                yield from leaves(sub, [*prefix, name])
        else:
            yield " ".join(prefix)

    assert set(leaves(main, [])) == set(BASES)


@pytest.mark.parametrize("path", COMMAND_NAMES)
def test_help_lists_the_exit_codes(path):
    result = invoke(path, ["--help"])
    assert result.exit_code == 0, result.output
    assert "Exit status:" in result.output and "2  usage error" in result.output and "0  " in result.output


@pytest.mark.parametrize(
    "path,args",
    [
        ("audit-ldp", ["--trials", "1e3"]),
        ("audit-ldp", ["--trials", "1_000"]),
        ("ldp simulate", ["--n", "1e3"]),
        ("account", ["--steps", "1e1"]),
        ("estimate-eps", ["--tp", "4e1"]),
    ],
)
def test_counts_written_like_the_help_prints_them_are_accepted(path, args):
    result = invoke(path, manual_args(path, args))
    assert result.exit_code == 0, result.output


def test_a_float_count_is_refused_with_its_range():
    result = invoke("audit-ldp", manual_args("audit-ldp", ["--trials", "1.5e3"]))
    assert result.exit_code == 0  # 1500 is a whole number
    result = invoke("audit-ldp", manual_args("audit-ldp", ["--trials", "1.5"]))
    assert_clean_usage_error(result, "--trials")
    assert "whole number in [1, 1000000000000]" in result.output and "1.5" in result.output


def test_unknown_extension_lists_the_allowed_ones(tmp_path):
    result = invoke("ldp simulate", manual_args("ldp simulate", ["--plot", str(tmp_path / "bars.bmp")]))
    assert_clean_usage_error(result, "--plot")
    assert ".png" in result.output and ".pdf" in result.output and ".svg" in result.output and ".bmp" in result.output


def test_output_paths_are_checked_before_any_work(monkeypatch, tmp_path):
    import dpkit.cli.audit_ldp as audit_cli

    def fail(*args, **kwargs):
        raise AssertionError("the audit ran before the output path was checked")

    monkeypatch.setattr(audit_cli, "audit", fail)
    monkeypatch.setattr(audit_cli, "run_grid", fail)
    for option, name in (("--plot", "x.png"), ("--csv", "x.csv")):
        result = invoke("audit-ldp", [*BASES["audit-ldp"], option, str(tmp_path / "missing" / name)])
        assert_clean_usage_error(result, option)
    assert list(tmp_path.iterdir()) == []  # the check leaves nothing behind


def test_a_csv_without_the_column_or_with_garbage(tmp_path):
    good = tmp_path / "d.csv"
    good.write_text("city\nOslo\nRome\n")
    empty = tmp_path / "e.csv"
    empty.write_text("city\n\n")
    garbage = tmp_path / "g.csv"
    garbage.write_bytes(b"\x00\xff\xfe\x00garbage")
    for spec in (f"{good}:country", f"{empty}:city", f"{garbage}:city", f"{tmp_path}:city"):
        result = invoke("ldp simulate", ["--epsilon", "1", "--distribution", spec])
        assert_clean_usage_error(result, "--distribution")
    negative = tmp_path / "n.csv"
    negative.write_text("key\n-3\n5\n")
    result = invoke("ldp heavy-hitters", ["--epsilon", "1", "--bits", "8", "--distribution", f"{negative}:key"])
    assert_clean_usage_error(result, "--distribution")


def test_too_few_users_for_the_protocol_is_a_usage_error():
    result = invoke("ldp heavy-hitters", ["--protocol", "pem", "--bits", "32", "--epsilon", "1", "--n", "3"])
    assert result.exit_code == 2 and "Traceback" not in result.output and "--n" in result.output
    result = invoke("ldp range", ["--protocol", "hh", "--domain", "1024", "--epsilon", "1", "--n", "2"])
    assert result.exit_code == 2 and "Traceback" not in result.output and "--n" in result.output
