"""What a result must say about itself so that it is not read as something it is not (issue 19).

One place for the lines the console, `summary.json` and the report share: whether α was trained at all,
and whether the minimal-set step reached its target.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

INITIAL_ALPHA = "initial (no steps taken)"
"""`summary["alpha"]` of a run that reached the end of fit without one optimisation step."""


def alpha_state(steps: int) -> str:
    """`summary["alpha"]`: "learned (N steps)", or `INITIAL_ALPHA` when no step was taken (then the numbers
    are those of `--model.init`, not of a learned combination)."""
    return INITIAL_ALPHA if steps < 1 else f"learned ({steps} steps)"


def prune_shortfall(prune: Mapping[str, Any] | None, option: str = "--model.prune_target") -> str | None:
    """A warning line when the minimal-set step missed its target (None when it reached it or did not run).

    `option` names the setting as the reader set it: the CLI flag, or the API argument `prune_target`.
    """
    if not prune or prune.get("reached", True):
        return None
    best = max(value for value in (prune.get("start_effect"), prune.get("effect")) if value is not None)
    return (
        f"warning: the minimal-set step did not reach {option} {prune.get('target')}: the best effect on the "
        f"pruning prompts was {best:.3f} (recovery; 1 − recovery for noising), so no set of these units meets "
        f"the target. Lower {option} to at most {best:.3f}, or learn a combination that reaches it first."
    )
