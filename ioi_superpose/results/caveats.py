"""What a result must say about itself so that it is not read as something it is not (issue 19).

One place for the lines the console, `summary.json` and the report share: whether α was trained at all,
and whether the minimal-set step reached its target.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

INITIAL_ALPHA = "initial (no steps taken)"
"""`summary["alpha"]` of a run that reached the end of fit without one optimisation step."""
INITIAL_PRUNED_ALPHA = "initial, pruned to a minimal set (no steps taken)"
"""`summary["alpha"]` of a run without a step whose initial α the minimal-set step then pruned: neither the initial
α nor a learned one."""


def alpha_state(steps: int, pruned: bool = False) -> str:
    """`summary["alpha"]`: "learned (N steps)", or, when no step was taken, `INITIAL_ALPHA` (the numbers are those of
    `--model.init`, not of a learned combination) or `INITIAL_PRUNED_ALPHA` (the minimal set pruned from it)."""
    if steps >= 1:
        return f"learned ({steps} steps)"
    return INITIAL_PRUNED_ALPHA if pruned else INITIAL_ALPHA


def is_initial(alpha: str | None) -> bool:
    """Whether a summary's `alpha` is of a run that took no optimisation step (pruned or not)."""
    return alpha in (INITIAL_ALPHA, INITIAL_PRUNED_ALPHA)


def alpha_headline(steps: int, pruned: bool) -> str:
    """What the console calls the α whose numbers follow."""
    if steps:
        return "Learned α"
    if pruned:
        return ("Initial α pruned to a minimal set by --model.prune_target (no optimisation step taken: the step "
                "started from every weight at --model.init)")  # fmt: skip
    return "Initial α (no optimisation step taken: every weight is --model.init, not learned)"


def prune_caveat(prune: Mapping[str, Any] | None, option: str = "--model.prune_target") -> str | None:
    """A warning line when the minimal-set step missed its target, or reached it with no unit at all (None when it
    reached it with a set, or did not run).

    `option` names the setting as the reader set it: the CLI flag, or the API argument `prune_target`.
    """
    if not prune:
        return None
    if prune.get("reached", True):
        if prune.get("l0") == 0:
            return (
                f"warning: the minimal-set step kept no unit: patching nothing already has effect "
                f"{prune.get('effect')} ≥ {option} {prune.get('target')} on the pruning prompts (recovery; 1 − "
                f"recovery for noising), so the target asks for no head. Raise {option} (e.g. 0.9)."
            )
        return None
    best = max(value for value in (prune.get("start_effect"), prune.get("effect")) if value is not None)
    return (
        f"warning: the minimal-set step did not reach {option} {prune.get('target')}: the best effect on the "
        f"pruning prompts was {best:.3f} (recovery; 1 − recovery for noising), so no set of these units meets "
        f"the target. Lower {option} to at most {best:.3f}, or learn a combination that reaches it first."
    )
