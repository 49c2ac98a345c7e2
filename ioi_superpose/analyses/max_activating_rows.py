"""Ranking max-activating rows by the prompt's own recovery, without torch (the report reads the rows from JSON)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def worst_recovered(rows: Sequence[Any], direction: str, k: int) -> list[Any]:
    """`rows` (`max_activating.Example`s, or their JSON dicts) that have a recovery, the k on which the patch fails
    most first: the lowest recovery for denoising (it restores least of the prompt's own clean − corrupted gap), the
    highest for noising (it destroys least; a noising patch should drive recovery to 0)."""

    def recovery(row: Any) -> float:
        return row["recovery"] if isinstance(row, dict) else row.recovery

    defined = [row for row in rows if (row["recovery"] if isinstance(row, dict) else row.recovery) is not None]
    return sorted(defined, key=recovery, reverse=direction == "noising")[:k]
