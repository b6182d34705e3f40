"""The ``dpkit`` command line: the application layer on top of the toolkit.

One module per command (group), imported only when that command runs, so ``dpkit --help`` and ``dpkit account``
start without loading torch, pandas or matplotlib:

* :mod:`dpkit.cli.account`: ``dpkit account`` and ``dpkit account-report``, with the report tables of
  :mod:`dpkit.cli.report`;
* :mod:`dpkit.cli.train_demo`: ``dpkit train-demo`` and the demo's model and training loop;
* :mod:`dpkit.cli.ldp`: ``dpkit ldp simulate``, ``dpkit ldp heavy-hitters`` (:mod:`dpkit.cli.ldp_heavy_hitters`) and
  ``dpkit ldp range`` (:mod:`dpkit.cli.ldp_range`), sharing :mod:`dpkit.cli.ldp_common`;
* :mod:`dpkit.cli.estimate`: ``dpkit estimate-eps`` and ``dpkit mia-run`` (the harness: :mod:`dpkit.cli.mia_harness`);
* :mod:`dpkit.cli.audit_ldp`: ``dpkit audit-ldp``;
* :mod:`dpkit.cli.poison`: ``dpkit poison``;
* :mod:`dpkit.cli.corn`: ``dpkit corn-dsgd``;
* :mod:`dpkit.cli.mf`: ``dpkit mf optimize`` and ``dpkit mf compare``;
* :mod:`dpkit.cli.options`: what every command shares: checked option types, output-path checks, option
  decorators, JSON output, progress bars, exit codes;
* :mod:`dpkit.cli.lazy_group`: the click group that imports a command when it runs.

Bad input ends with a one-line error that names the parameter and exit code 2 (click's usage-error code), never
a traceback. Output files (``--plot``, ``--csv``) are checked before any work. Every command's ``--help`` ends with
its exit codes.
"""

from __future__ import annotations

import click

from dpkit import __version__
from dpkit.cli.lazy_group import LazyGroup

# name -> ("module:attribute", short help shown by ``dpkit --help``; equal to the command's own short_help)
COMMANDS: dict[str, tuple[str, str]] = {
    "account": (
        "dpkit.cli.account:account",
        "Epsilon of a DP-SGD run, or the noise multiplier for a target epsilon.",
    ),
    "account-report": (
        "dpkit.cli.account:account_report",
        "Accounting report for a CIFAR-10-sized DP-SGD run.",
    ),
    "train-demo": (
        "dpkit.cli.train_demo:train_demo_command",
        "Train a small CNN on digits privately vs non-private; plot privacy vs utility.",
    ),
    "ldp": ("dpkit.cli.ldp:ldp", "Local differential privacy protocols."),
    "estimate-eps": (
        "dpkit.cli.estimate:estimate_eps",
        "Epsilon interval from membership-inference attack results.",
    ),
    "mia-run": (
        "dpkit.cli.estimate:mia_run",
        "Audit dpkit's DP-SGD with a membership-inference harness (experimental).",
    ),
    "audit-ldp": (
        "dpkit.cli.audit_ldp:audit_ldp",
        "Audit an LDP randomizer: an empirical lower bound on its epsilon.",
    ),
    "poison": ("dpkit.cli.poison:poison", "Measure a data-poisoning attack on an LDP frequency oracle."),
    "corn-dsgd": (
        "dpkit.cli.corn:corn_dsgd",
        "Noise variance after one gossip step: LDP vs DECOR vs CorN on a graph.",
    ),
    "mf": (
        "dpkit.cli.mf:mf",
        "Matrix-factorization (correlated-noise) strategies: optimize one, compare them all.",
    ),
}


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)
@click.version_option(__version__, "-V", "--version", prog_name="dpkit")
def main() -> None:
    """dpkit: a differential-privacy toolkit: privacy accounting, private training, local DP, audits.

    Exit status: 0 success, 2 usage error (a bad option value, an unreadable input, an unwritable output path);
    audit-ldp also exits 1 for a violation and 3 when the audited target fails. Each command's --help lists its own.
    """
