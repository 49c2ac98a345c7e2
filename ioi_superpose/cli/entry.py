"""The `ioi-superpose` console script: one subcommand per entry point.

Every entry point's `main` carries the one error wrapper, `errors.user_facing_main`: a `UserFacingError` (also one
that jsonargparse wrapped while instantiating a class) becomes `error: <message>` on stderr, settings named by their
`--model.*` flags, and exit status 1; anything else is a bug and keeps its traceback. So `python -m
ioi_superpose.train …` and `ioi-superpose train …` behave alike.

This module imports nothing heavy: `--help` is printed from the help texts stored in the package
(`cli/stored_help.py`) without loading torch or Lightning, and a command's module loads only when it runs.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Sequence
from typing import NamedTuple

from ioi_superpose.arguments import CONSOLE_NAMES, shown_as
from ioi_superpose.cli.stored_help import print_stored_help


class Command(NamedTuple):
    module: str
    """The module whose `main(args)` runs the command."""
    summary: str
    """One line of help."""
    shim: str
    """The `python -m` module of the command (`ioi_superpose/<name>.py`)."""
    subcommands: tuple[str, ...] = ()
    """LightningCLI's subcommands, each with its own `--help`."""


TRAINER_SUBCOMMANDS = ("fit", "validate", "test", "predict")
COMMANDS = {
    "train": Command("ioi_superpose.cli.train", "learn a head combination: train fit --config … (LightningCLI)",
                     "ioi_superpose.train", TRAINER_SUBCOMMANDS),
    "toy": Command("ioi_superpose.cli.train_toy", "train an attention-only toy model: toy fit --config …",
                   "ioi_superpose.train_toy", TRAINER_SUBCOMMANDS),
    "sweep": Command("ioi_superpose.cli.sweep", "a grid of training runs: sweep --config … --out … --grid KEY=V1,V2",
                     "ioi_superpose.sweep"),
    "report": Command("ioi_superpose.results.report", "the markdown report of runs and sweeps: report RUN … --out DIR",
                      "ioi_superpose.report"),
    "benchmark": Command("ioi_superpose.cli.benchmark", "score the head-finding methods on the planted ground truth",
                         "ioi_superpose.benchmark"),
    "train-batched": Command("ioi_superpose.cli.train_batched",
                             "points of a sweep trained together (the sweep runs it)", "ioi_superpose.train_batched"),
}  # fmt: skip
"""Subcommand → its `Command`. Modules load only when their command runs."""



def invocation(command: str) -> str:
    """How the user started `command`: `ioi-superpose train` or `python -m ioi_superpose.train`."""
    return shown_as(f"python -m {COMMANDS[command].shim}")


def help_command(command: str, args: Sequence[str] = ()) -> str:
    """The `--help` command that lists the options `args` were given to: the subcommand's, if one is named."""
    subcommand = next((arg for arg in args if arg in COMMANDS[command].subcommands), None)
    return " ".join(filter(None, [invocation(command), subcommand, "--help"]))


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    return (
        "usage: ioi-superpose COMMAND [ARGS …]\n\nLearn sparse combinations of attention heads that carry a behaviour."
        "\n\ncommands:\n" + "\n".join(lines) + "\n\n`ioi-superpose COMMAND --help` shows a command's options; "
        "`ioi-superpose train …` is `python -m ioi_superpose.train …`."
    )


def run(command: str, args: Sequence[str] | None = None) -> None:
    """Run `command` with `args` (None: this process's command line): its stored help for a plain `--help`,
    else its module's `main`."""
    given = list(sys.argv[1:] if args is None else args)
    if print_stored_help(command, given, COMMANDS[command].subcommands):
        sys.exit(0)
    # None, not the list: LightningCLI warns when it is given args while sys.argv has arguments too.
    importlib.import_module(COMMANDS[command].module).main(None if args is None else list(args))


def main(args: Sequence[str] | None = None) -> None:
    """`ioi-superpose COMMAND ARGS…`: run COMMAND's `main(ARGS)`."""
    args = list(sys.argv[1:] if args is None else args)
    if not args or args[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if args else sys.stderr)
        sys.exit(0 if args else 1)
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, COMMANDS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        print(f"error: unknown command {command!r}{hint}; choose one of {', '.join(COMMANDS)}. See `ioi-superpose "
              "--help`.", file=sys.stderr)  # fmt: skip
        sys.exit(1)
    names = {f"python -m {c.shim}": f"ioi-superpose {name}" for name, c in COMMANDS.items()}
    CONSOLE_NAMES.update(names)  # errors name `ioi-superpose COMMAND --help`, for this call only
    try:
        run(command, rest)
    finally:
        for key in names:
            CONSOLE_NAMES.pop(key, None)


if __name__ == "__main__":
    main()
