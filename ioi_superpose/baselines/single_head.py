"""Each head's single-head activation patching effect under a contrast task's metric (`data.answer_metrics`:
the logit or probability difference over answer sets), as a share of the clean − corrupted gap."""

from __future__ import annotations

from dataclasses import replace

import torch
from jaxtyping import Float

from ioi_superpose.baselines.scorers import activation_patching
from ioi_superpose.data.answer_metrics import MetricName
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.runs import Direction
from ioi_superpose.models import HookedTransformer


@torch.no_grad()
def single_head_effects(
    model: HookedTransformer, batch: ContrastBatch, metric: MetricName, direction: Direction
) -> Float[torch.Tensor, "layer head"]:
    """Each head's single-head activation patching effect (z at all positions, `scorers.activation_patching`) under
    `metric`, as a share of the clean − corrupted gap: 0 = the base run, 1 = the source run."""
    batch = replace(batch.trimmed(), metric=metric).to(model.cfg.device)
    return activation_patching(model, batch, direction)
