"""A click group that imports a subcommand's module only when that subcommand runs.

``dpkit --help`` lists every command from a table of names, import paths and short help, so it imports none of
the command modules (and none of torch, pandas, matplotlib or scipy behind them); ``dpkit account ...`` imports
the accounting command alone.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

import click


class LazyGroup(click.Group):
    """A :class:`click.Group` whose subcommands are given as ``{name: ("package.module:attribute", short_help)}``.

    The command object is imported on first use (running it, or its own ``--help``) and then kept like a command
    added with :meth:`add_command`. The group's help page shows ``short_help`` from the table, which must equal
    the command's own ``short_help`` (tests/test_cli.py checks it).
    """

    def __init__(self, *args, lazy_commands: Mapping[str, tuple[str, str]] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands: dict[str, tuple[str, str]] = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in self.lazy_commands:
            command = self.load(cmd_name)
        return command

    def load(self, cmd_name: str) -> click.Command:
        """Import the command registered as ``cmd_name`` and add it to the group."""
        target, _ = self.lazy_commands[cmd_name]
        module_name, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} (command {cmd_name!r}) is a {type(command).__name__}, not a click command")
        self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The "Commands" section of the help page, without importing a command that is not loaded yet."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            command = self.commands.get(name)
            if command is None:
                rows.append((name, self.lazy_commands[name][1]))
            elif not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)
