"""`--help` in a fraction of a second: the entry points' help texts, stored in the package.

Building the training parser imports torch, Lightning and TransformerLens (8 s on a quiet 2-core machine, 30 s
under load) only to print text that changes when a flag changes. The texts are generated from the live parsers
by `python -m ioi_superpose.cli.help_texts` into `cli/help/`, and a test regenerates them and compares (a changed
flag fails CI until they are regenerated), so the stored text cannot drift from what the parser would print.

Only a plain request is answered here — `COMMAND --help`, `COMMAND SUBCOMMAND --help` (`-h` alike); any other
command line (e.g. `fit --config run.yaml --help`, whose help shows the file's values) goes to the live parser.
This module imports nothing outside the standard library.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

HELP_DIR = Path(__file__).with_name("help")
HELP_FLAGS = ("-h", "--help")


def help_file(command: str, subcommand: str | None = None) -> Path:
    """Where `command [subcommand] --help`'s text is stored: `cli/help/train.txt`, `cli/help/train.fit.txt`, …"""
    return HELP_DIR / (f"{command}.{subcommand}.txt" if subcommand else f"{command}.txt")


def requested_help(args: Sequence[str], subcommands: Sequence[str] = ()) -> tuple[bool, str | None]:
    """(whether `args` is a plain help request, the subcommand whose help it asks for or None)."""
    if len(args) == 1 and args[0] in HELP_FLAGS:
        return True, None
    if len(args) == 2 and args[0] in subcommands and args[1] in HELP_FLAGS:
        return True, args[0]
    return False, None


def print_stored_help(command: str, args: Sequence[str], subcommands: Sequence[str] = ()) -> bool:
    """Print `command`'s stored help if `args` is a plain help request and its text is stored; True if printed."""
    is_help, subcommand = requested_help(args, subcommands)
    path = help_file(command, subcommand)
    if not is_help or not path.is_file():  # not installed with the package: the live parser answers
        return False
    sys.stdout.write(path.read_text(encoding="utf-8"))
    sys.stdout.flush()
    return True
