"""The one error wrapper of every entry point, and the `ioi-superpose` console script that dispatches to them.

`user_facing_main` turns a `UserFacingError` — also one that jsonargparse wrapped while instantiating a class —
into `error: <message>` on stderr and exit status 1, without a traceback. Anything else is a bug and keeps its
traceback. Each `cli/` module's `main` carries it, so `python -m ioi_superpose.train …` and
`ioi-superpose train …` behave alike.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import ParamSpec, TypeVar

from ioi_superpose.errors import user_facing_cause

P = ParamSpec("P")
R = TypeVar("R")


def user_facing_main(main: Callable[P, R]) -> Callable[P, R]:
    """Wrap an entry point's `main`: a user's error is one line on stderr and exit 1; nothing else is caught."""

    @functools.wraps(main)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return main(*args, **kwargs)
        except Exception as error:
            user_error = user_facing_cause(error)  # jsonargparse wraps what a class raises while it instantiates
            if user_error is None:
                raise
            print(f"error: {user_error}", file=sys.stderr)
            sys.exit(1)

    return wrapped


COMMANDS = {
    "train": ("ioi_superpose.cli.train", "learn a head combination: train fit --config … (LightningCLI)"),
    "toy": ("ioi_superpose.cli.train_toy", "train an attention-only toy model: toy fit --config …"),
    "sweep": ("ioi_superpose.cli.sweep", "a grid of training runs: sweep --config … --out … --grid KEY=V1,V2"),
    "report": ("ioi_superpose.results.report", "the markdown report of runs and sweeps: report RUN … --out DIR"),
    "benchmark": ("ioi_superpose.cli.benchmark", "score the head-finding methods on the planted ground truth"),
    "train-batched": ("ioi_superpose.cli.train_batched", "points of a sweep trained together (the sweep runs it)"),
}
"""Subcommand → (module whose `main(args)` it runs, one line of help). Modules load only when their command runs."""


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return (
        "usage: ioi-superpose COMMAND [ARGS …]\n\nLearn sparse combinations of attention heads that carry a behaviour."
        "\n\ncommands:\n" + "\n".join(lines) + "\n\n`ioi-superpose COMMAND --help` shows a command's options; "
        "`ioi-superpose train …` is `python -m ioi_superpose.train …`."
    )


def main(args: Sequence[str] | None = None) -> None:
    """`ioi-superpose COMMAND ARGS…`: run COMMAND's `main(ARGS)`."""
    args = list(sys.argv[1:] if args is None else args)
    if not args or args[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if args else sys.stderr)
        sys.exit(0 if args else 2)
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}; choose one of {', '.join(COMMANDS)}.\n\n{usage()}", file=sys.stderr)
        sys.exit(2)
    importlib.import_module(COMMANDS[command][0]).main(rest)


if __name__ == "__main__":
    main()
