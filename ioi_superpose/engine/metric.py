"""The task's metric at END and recovery, its normalisation between two reference runs: the one place where the
engine measures a run. `ContrastMetric` is the patching metric handed to TransformerLens-style sweeps.

The engine reads per prompt the *answer values* of the task's metric (`data.answer_metrics.answer_values`): the answer
logits for `logit_diff`, the answer log-probabilities (logit − logsumexp over the vocabulary at END) for `prob_diff`.
`answer_metric` makes the metric of them; for `logit_diff` it is `logit_diff`, bit for bit as before tasks had
metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ioi_superpose.data.answer_metrics import MetricName, answer_logit_diff, answer_values, metric_of_values

MIN_GAP = 0.5
"""Below this clean − corrupted gap in mean logit difference the model does not tell the two prompts apart,
and recovery (a ratio over that gap) is noise: reported as null, with the gap."""
MIN_GAPS: dict[MetricName, float] = {"logit_diff": MIN_GAP, "prob_diff": 0.05}
"""`MIN_GAP` of each metric. prob_diff is in [−1, 1]: a gap under 5 points of probability is the same noise (a logit
gap of 0.5 moves a probability near ½ by about 0.12, one near 0.05 by about 0.02)."""


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


def answer_metric(
    answer_values: Float[Tensor, "*variants batch k"],
    weights: Float[Tensor, "batch k"] | None = None,
    metric: MetricName = "logit_diff",
) -> Float[Tensor, "*variants batch"]:
    """The task's metric per prompt from what the engine read at END (`data.answer_metrics.answer_values`): the logit
    difference (`logit_diff`, bit for bit), or P(correct set) − P(incorrect set) (`prob_diff`). `weights` None: the
    pair (correct, incorrect)."""
    if metric == "logit_diff":
        return logit_diff(answer_values, weights)
    if weights is None:
        weights = torch.tensor([1.0, -1.0], device=answer_values.device).expand(*answer_values.shape[-2:-1], 2)
    return metric_of_values(metric, answer_values, weights)


def normalised_recovery(
    patched: Float[Tensor, "*any"], corrupted: float | Tensor, clean: float | Tensor
) -> Float[Tensor, "*any"]:
    """0 = the corrupted run, 1 = the clean run, >1 better than clean, <0 worse than corrupted."""
    return (patched - corrupted) / (clean - corrupted)


def has_gap(clean_value: float, corrupted_value: float, metric: MetricName = "logit_diff") -> bool:
    """Whether the model tells a set's clean prompts from its corrupted ones under the task's metric (recovery is then
    defined): |clean − corrupted| of the mean metric at least `MIN_GAPS[metric]`."""
    return abs(clean_value - corrupted_value) >= MIN_GAPS[metric]


@dataclass
class ContrastMetric:
    """A patching metric: the task's mean metric at END (`answer_metric`), normalised when both reference values are
    set.

    Usable as a generic `metric(logits)` callable (TransformerLens's patching API), and by our own
    patching code through `from_answer_logits`, which needs only the answer values at END (`metric`'s:
    `data.answer_metrics.answer_values`).
    """

    answer_tokens: Int[Tensor, "batch k"]
    end_positions: Int[Tensor, " batch"]
    corrupted_value: float | None = None
    clean_value: float | None = None
    answer_weights: Float[Tensor, "batch k"] | None = None
    """The batch's answer weights (None: the pair); see `logit_diff`."""
    metric: MetricName = "logit_diff"
    """The task's metric (`ContrastBatch.metric`)."""

    def __call__(self, logits: Float[Tensor, "batch pos vocab"]) -> Float[Tensor, ""]:
        end_logits = gather_end(logits, self.end_positions)
        return self.from_answer_logits(answer_values(self.metric, end_logits, self.answer_tokens))

    def from_answer_logits(self, answer_logits: Float[Tensor, "*variants batch k"]) -> Float[Tensor, "*variants"]:
        """The (normalised) mean metric of the answer values at END (`metric`'s: logits, or log-probabilities)."""
        mean_diff = answer_metric(answer_logits, self.answer_weights, self.metric).mean(-1)
        if self.corrupted_value is None or self.clean_value is None:
            return mean_diff
        return normalised_recovery(mean_diff, self.corrupted_value, self.clean_value)
