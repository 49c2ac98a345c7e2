"""The LightningCLIs' (`train`, `toy`) side of one-line parser errors (`ioi_superpose.arguments`)."""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any, ClassVar

from ioi_superpose.arguments import one_line_error
from ioi_superpose.cli.entry import COMMANDS, help_command


def lightning_parser_kwargs(command: str, description: str | None = None) -> dict[str, Any]:
    """LightningCLI `parser_kwargs` for `command`: its `python -m` program name (the usage lines then name a
    command that exists, whatever started the process) and parser mistakes raised, not printed with the usage."""
    kwargs: dict[str, Any] = {"prog": f"python -m {COMMANDS[command].shim}", "exit_on_error": False}
    if description:
        kwargs["description"] = description
    kwargs.update({subcommand: {"exit_on_error": False} for subcommand in COMMANDS[command].subcommands})
    return kwargs


class OneLineParseErrors:
    """Mixin for a `LightningCLI` subclass built with `lightning_parser_kwargs(command)`: a mistake on the command
    line is a one-line `ConfigError`, and LightningCLI's warning about `args` given while `sys.argv` has arguments
    (the console script passes its own) is not shown."""

    command: ClassVar[str]
    """The `cli.entry.COMMANDS` name of the CLI."""

    def parse_arguments(self, parser: Any, args: Any) -> None:
        given = list(sys.argv[1:] if args is None else args) if isinstance(args, (list, tuple, type(None))) else []
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter is intended")
            try:
                super().parse_arguments(parser, args)  # type: ignore[misc]
            except argparse.ArgumentError as error:
                subcommand = next((arg for arg in given if arg in COMMANDS[self.command].subcommands), None)
                parsers = getattr(self, "_subcommand_parsers", {})
                options = getattr(parsers.get(subcommand, parser), "_option_string_actions", {})
                raise one_line_error(str(error), options, help_command(self.command, given)) from None
