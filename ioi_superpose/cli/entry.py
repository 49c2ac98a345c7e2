"""The `ioi-superpose` console script: one subcommand per entry point.

Every entry point's `main` carries the one error wrapper, `errors.user_facing_main`: a `UserFacingError` (also one
that jsonargparse wrapped while instantiating a class) becomes `error: <message>` on stderr, settings named by their
`--model.*` flags, and exit status 1; anything else is a bug and keeps its traceback. So `python -m
ioi_superpose.train …` and `ioi-superpose train …` behave alike.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

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
