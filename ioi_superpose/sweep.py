"""`python -m ioi_superpose.sweep`: the sweep runner (`cli/sweep.py`);
kept so the documented command works. A plain `--help` is printed from the stored text, without
loading torch or Lightning (`cli/stored_help.py`)."""

from __future__ import annotations

from collections.abc import Sequence

from ioi_superpose.cli.entry import run


def main(args: Sequence[str] | None = None) -> None:
    run("sweep", args)


if __name__ == "__main__":
    main()
