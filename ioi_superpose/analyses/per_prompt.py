"""Each prompt's recovery under a fitted combination as it is now."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.metric import normalised_recovery
from ioi_superpose.fitting.fitted import FittedCombination


@torch.no_grad()
def per_prompt_recoveries(
    fitted: FittedCombination, prompts: ContrastBatch, batch_size: int = 64
) -> Float[Tensor, " n"]:
    """(patched − corrupted) / (clean − corrupted) of each prompt's own logit differences, in the fit's notion (on
    the device the combination is on; the combination's mode is the caller's)."""
    values = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size].trimmed().to(fitted.device)
        reference = fitted.reference(batch)
        patched = fitted.answer_logits(batch, reference)
        clean, corrupted = reference.clean_and_corrupted()
        diffs = [reference.measure(logits) for logits in (patched, corrupted, clean)]
        values.append(normalised_recovery(*diffs).cpu())
    return torch.cat(values)
