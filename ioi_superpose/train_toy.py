"""`python -m ioi_superpose.train_toy`: the toy-model training CLI (`cli/train_toy.py`);
kept so the documented command works. A plain `--help` is printed from the stored text, without
loading torch or Lightning (`cli/stored_help.py`)."""

from __future__ import annotations

from collections.abc import Sequence

from ioi_superpose.cli.entry import run


def main(args: Sequence[str] | None = None) -> None:
    run("toy", args)


if __name__ == "__main__":
    main()
