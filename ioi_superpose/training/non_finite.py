"""Why a training loss is NaN or infinite: the input that made it so, when one did (issue 19).

A non-finite loss has three causes with different fixes: a non-finite setting (λ, the initial α), a batch
whose clean and corrupted prompts give the same logit difference (the normalised effect divides by
their gap), or α diverging (the learning rate). Blaming the learning rate for the first two sends the
user the wrong way.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ioi_superpose.engine.runs import Reference
from ioi_superpose.fitting.settings import SuperpositionConfig

ZERO_GAP = 1e-6
"""|mean clean − mean corrupted logit difference| below this: the normalised effect is 0/0 or x/0."""


def non_finite_cause(
    settings: SuperpositionConfig,
    coefficients: Tensor,
    reference: Reference,
    step: int,
    option: Callable[[str], str],
) -> str:
    """The cause of a non-finite loss and its fix, naming each setting by `option(name)` (the CLI flag or
    the API argument)."""
    for name in ("l1", "lr"):
        value = float(getattr(settings.optim, name))
        if not math.isfinite(value):
            return f"{option(name)} is {value}; give a finite number."
    if not bool(torch.isfinite(coefficients).all()):
        if step == 0:
            return (
                f"α is not finite before any step: {option('init')} is {settings.family.init}; give a finite "
                "number (1.0 starts from the full patch)."
            )
        return (
            f"α became non-finite after {step} steps (it diverged). Lower {option('lr')}, or use "
            f"{option('bounded')} true."
        )
    clean, corrupted = reference.clean_and_corrupted()
    gap = float(reference.measure(clean).mean() - reference.measure(corrupted).mean())
    if settings.optim.objective != "kl" and abs(gap) < ZERO_GAP:
        return (
            f"the clean and corrupted prompts of this batch give the same mean logit difference (gap {gap:.3g}), "
            "and the objective divides by that gap. Check that each answer pair holds two different tokens "
            "(correct ≠ incorrect) and that the corrupted prompts differ from the clean ones where it matters."
        )
    return f"Lower {option('lr')}, or use {option('bounded')} true."
