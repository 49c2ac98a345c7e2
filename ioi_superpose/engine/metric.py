"""The logit-difference metric: correct − incorrect answer logit at END, and recovery, its normalisation between
two reference runs. `LogitDiffMetric` is the patching metric handed to TransformerLens-style sweeps."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ioi_superpose.data.answer_metrics import answer_logit_diff

MIN_GAP = 0.5
"""Below this clean − corrupted gap in mean logit difference the model does not tell the two prompts apart,
and recovery (a ratio over that gap) is noise: reported as null, with the gap."""


def gather_end(
    activations: Float[Tensor, "batch pos *rest"], end_positions: Int[Tensor, " batch"]
) -> Float[Tensor, "batch *rest"]:
    """The activation at each prompt's END position (prompts are right-padded)."""
    rows = torch.arange(activations.shape[0], device=activations.device)
    return activations[rows, end_positions.to(activations.device)]


def logit_diff(
    answer_logits: Float[Tensor, "*variants batch k"], weights: Float[Tensor, "batch k"] | None = None
) -> Float[Tensor, "*variants batch"]:
    """The task's logit difference per prompt: mean(correct) − mean(incorrect) answer logit.

    `weights` None: the pair (correct, incorrect), computed as `logits[0] − logits[1]` (bit for bit today's);
    otherwise a batch's `answer_weights`, Σ weights · logits (`data.answer_metrics.answer_logit_diff`).
    """
    if weights is None:
        return answer_logits[..., 0] - answer_logits[..., 1]
    return answer_logit_diff(answer_logits, weights)


def normalised_recovery(
    patched: Float[Tensor, "*any"], corrupted: float | Tensor, clean: float | Tensor
) -> Float[Tensor, "*any"]:
    """0 = the corrupted run, 1 = the clean run, >1 better than clean, <0 worse than corrupted."""
    return (patched - corrupted) / (clean - corrupted)


def has_gap(clean_logit_diff: float, corrupted_logit_diff: float) -> bool:
    """Whether the model tells a set's clean prompts from its corrupted ones (recovery is then defined)."""
    return abs(clean_logit_diff - corrupted_logit_diff) >= MIN_GAP


@dataclass
class LogitDiffMetric:
    """A patching metric: mean logit difference at END, normalised when both reference values are set.

    Usable as a generic `metric(logits)` callable (TransformerLens's patching API), and by our own
    patching code through `from_answer_logits`, which needs only the two answer logits at END.
    """

    answer_tokens: Int[Tensor, "batch k"]
    end_positions: Int[Tensor, " batch"]
    corrupted_value: float | None = None
    clean_value: float | None = None
    answer_weights: Float[Tensor, "batch k"] | None = None
    """The batch's answer weights (None: the pair); see `logit_diff`."""

    def __call__(self, logits: Float[Tensor, "batch pos vocab"]) -> Float[Tensor, ""]:
        end_logits = gather_end(logits, self.end_positions)
        return self.from_answer_logits(end_logits.gather(-1, self.answer_tokens.to(logits.device)))

    def from_answer_logits(self, answer_logits: Float[Tensor, "*variants batch k"]) -> Float[Tensor, "*variants"]:
        mean_diff = logit_diff(answer_logits, self.answer_weights).mean(-1)
        if self.corrupted_value is None or self.clean_value is None:
            return mean_diff
        return normalised_recovery(mean_diff, self.corrupted_value, self.clean_value)
