"""What a model does at END on clean IOI prompts: IO-over-S accuracy, logit difference, top-1 accuracy."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ioi_superpose.data.ioi import IOIBatch
from ioi_superpose.engine.metric import logit_diff
from ioi_superpose.engine.runs import end_logits
from ioi_superpose.models import HookedTransformer


@dataclass
class IOIMetrics:
    """What a model does at END on clean IOI prompts."""

    io_over_s_accuracy: float
    """Share of prompts whose IO logit exceeds the S logit."""
    mean_logit_diff: float
    """Mean of logit(IO) − logit(S)."""
    top1_accuracy: float
    """Share of prompts whose highest logit over the whole vocabulary is the IO."""
    n_prompts: int


@torch.no_grad()
def ioi_metrics(model: HookedTransformer, prompts: IOIBatch) -> IOIMetrics:
    """IO-over-S accuracy, mean logit difference and top-1 accuracy of `model` on `prompts`."""
    prompts = prompts.trimmed()
    logits = end_logits(model, prompts.clean_tokens, prompts.end_pos)
    differences = logit_diff(logits.gather(-1, prompts.answer_tokens))
    return IOIMetrics(
        io_over_s_accuracy=round(float((differences > 0).float().mean()), 5),
        mean_logit_diff=round(float(differences.mean()), 4),
        top1_accuracy=round(float((logits.argmax(-1) == prompts.answer_tokens[:, 0]).float().mean()), 5),
        n_prompts=len(prompts),
    )
