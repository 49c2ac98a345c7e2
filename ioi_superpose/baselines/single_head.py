"""Each head's single-head activation patching effect under a contrast task's metric (`data.answer_metrics`:
the logit or probability difference over answer sets), as a share of the clean − corrupted gap."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ioi_superpose.baselines.activation_patching import activation_patch
from ioi_superpose.data.answer_metrics import MetricName, contrast_metric
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.runs import Direction, base_and_source, end_logits, gather_end
from ioi_superpose.models import HookedTransformer


@dataclass
class ContrastPatchingMetric:
    """A task's metric as a patching metric on full logits (`baselines.patching`'s generic `metric(logits)`):
    the mean over prompts, normalised so that the base run reads 0 and the source run 1."""

    metric: MetricName
    answer_tokens: Int[Tensor, "batch k"]
    weights: Float[Tensor, "batch k"]
    end_positions: Int[Tensor, " batch"]
    base_value: float
    source_value: float

    def __call__(self, logits: Float[Tensor, "batch pos vocab"]) -> Float[Tensor, ""]:
        values = contrast_metric(self.metric, gather_end(logits, self.end_positions), self.answer_tokens, self.weights)
        return (values.mean() - self.base_value) / (self.source_value - self.base_value)


@torch.no_grad()
def single_head_effects(
    model: HookedTransformer, batch: ContrastBatch, metric: MetricName, direction: Direction
) -> Float[Tensor, "layer head"]:
    """Each head's single-head activation patching effect (z at all positions, the project's `activation_patch`)
    under the task's metric, as a share of the clean − corrupted gap: 0 = the base run, 1 = the source run."""
    batch = batch.trimmed().to(model.cfg.device)
    base_tokens, source_tokens = base_and_source(batch.clean_tokens, batch.corrupted_tokens, direction)
    values = [float(contrast_metric(metric, end_logits(model, tokens, batch.end_pos), batch.answer_tokens,
                                    batch.weights).mean()) for tokens in (base_tokens, source_tokens)]  # fmt: skip
    patching_metric = ContrastPatchingMetric(metric, batch.answer_tokens, batch.weights, batch.end_pos, *values)
    return activation_patch(model, base_tokens, source_tokens, patching_metric)
