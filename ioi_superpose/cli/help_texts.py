"""Generate the stored `--help` texts (`cli/help/*.txt`, printed by `cli/stored_help.py`) from the live parsers.

    python -m ioi_superpose.cli.help_texts           # rewrite every text
    python -m ioi_superpose.cli.help_texts --check   # exit 1 naming each stored text the live parser disagrees with

Each text is what `COMMAND [SUBCOMMAND] --help` prints at COLUMNS=100. A LightningCLI's help lists the "known
subclasses" of Callback, Logger, … — the ones imported so far — so each LightningCLI's texts are made in a fresh
process that imported only that command (as `python -m ioi_superpose.train fit --help` does); the argparse commands
list no classes and share the first process.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Sequence

from ioi_superpose.cli.entry import COMMANDS
from ioi_superpose.cli.stored_help import HELP_DIR, help_file

WIDTH = 100
"""Terminal width the texts are formatted for (argparse reads COLUMNS)."""
PROCESSES = (("train", "sweep", "report", "benchmark", "train-batched"), ("toy",))
"""The commands each generating process covers, in order; a LightningCLI command comes first in its process."""


def live_help(command: str, subcommand: str | None = None) -> str:
    """What the live parser prints for `command [subcommand] --help` in this process."""
    module = __import__(COMMANDS[command].module, fromlist=["main"])
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        try:
            module.main([subcommand, "--help"] if subcommand else ["--help"])
        except SystemExit:
            pass
    return buffer.getvalue()


def help_texts_of(commands: Sequence[str]) -> dict[str, str]:
    """File name → live help text of every (command, subcommand) of `commands`, made in this process."""
    texts = {}
    for command in commands:
        for subcommand in (None, *COMMANDS[command].subcommands):
            texts[help_file(command, subcommand).name] = live_help(command, subcommand)
    return texts


def generate() -> dict[str, str]:
    """Every text, each group of commands in its own fresh process."""
    texts: dict[str, str] = {}
    for commands in PROCESSES:
        environment = {**os.environ, "COLUMNS": str(WIDTH)}
        output = subprocess.run(
            [sys.executable, "-m", "ioi_superpose.cli.help_texts", "--print", *commands],
            capture_output=True, text=True, check=True, env=environment,
        ).stdout  # fmt: skip
        texts.update(json.loads(output))
    return texts


def differences(texts: dict[str, str]) -> list[str]:
    """The file names whose stored text is missing or differs from `texts`, and stored files `texts` lacks."""
    stored = {path.name for path in HELP_DIR.glob("*.txt")}
    changed = [name for name, text in texts.items() if name not in stored
               or (HELP_DIR / name).read_text(encoding="utf-8") != text]  # fmt: skip
    return sorted(changed + [name for name in stored if name not in texts])


def main(args: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if args is None else args)
    if args[:1] == ["--print"]:
        os.environ["COLUMNS"] = str(WIDTH)
        print(json.dumps(help_texts_of(args[1:])))
        return
    texts = generate()
    if args == ["--check"]:
        changed = differences(texts)
        if changed:
            print(f"stale help texts in {HELP_DIR}: {', '.join(changed)}. Regenerate them with "
                  "`python -m ioi_superpose.cli.help_texts`.", file=sys.stderr)  # fmt: skip
            sys.exit(1)
        print(f"{len(texts)} help texts match the live parsers")
        return
    HELP_DIR.mkdir(exist_ok=True)
    for stale in HELP_DIR.glob("*.txt"):
        if stale.name not in texts:
            stale.unlink()
    for name, text in texts.items():
        (HELP_DIR / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(texts)} help texts to {HELP_DIR}")


if __name__ == "__main__":
    main()
