"""Each prompt's recovery under a trained module's current combination (needs the LightningModule)."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.runs import logit_diff
from ioi_superpose.results.analysis import per_prompt_recovery
from ioi_superpose.training.system import HeadSuperposition


@torch.no_grad()
def per_prompt_recoveries(
    system: HeadSuperposition, prompts: ContrastBatch, batch_size: int = 64
) -> Float[Tensor, " n"]:
    """Each prompt's recovery under the system's current α (on the device the system is on)."""
    values = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size].trimmed().to(system.device)
        reference = system.reference(batch)
        patched = system.loss_terms(batch, reference)["answer_logits"]
        clean, corrupted = reference.clean_and_corrupted()
        values.append(per_prompt_recovery(logit_diff(patched), logit_diff(clean), logit_diff(corrupted)).cpu())
    return torch.cat(values)
