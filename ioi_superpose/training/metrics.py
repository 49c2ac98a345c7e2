"""What we measure at the END position, as torchmetrics (answer logits in, numbers out).

Every state is a sum, so a value is the same however the prompts are split into batches or ranks. The patching
metric handed to TransformerLens-style sweeps is the engine's (`engine.metric.ContrastMetric`).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor
from torchmetrics import MeanMetric, Metric

from ioi_superpose.data.answer_metrics import MetricName
from ioi_superpose.engine.metric import answer_metric, normalised_recovery


class _DoubleMean(MeanMetric):
    """A `MeanMetric` that sums in float64 (float32 sums of thousands of logit differences drift)."""

    def __init__(self) -> None:
        super().__init__()
        self.set_dtype(torch.float64)


class MeanLogitDiff(_DoubleMean):
    """Mean of the task's per-prompt metric (`engine.metric.answer_metric`): the logit difference, mean correct − mean
    incorrect answer logit, or for a `prob_diff` task P(correct) − P(incorrect). Logged under `logit_diff` for both."""

    def update(  # type: ignore[override]
        self,
        answer_logits: Float[Tensor, "batch k"],
        weights: Float[Tensor, "batch k"] | None = None,
        metric: MetricName = "logit_diff",
    ) -> None:
        super().update(answer_metric(answer_logits, weights, metric))


class IOAccuracy(_DoubleMean):
    """Fraction of prompts whose correct answers out-score the incorrect ones (IOI: IO over S) in the mean."""

    def update(  # type: ignore[override]
        self,
        answer_logits: Float[Tensor, "batch k"],
        weights: Float[Tensor, "batch k"] | None = None,
        metric: MetricName = "logit_diff",
    ) -> None:
        super().update((answer_metric(answer_logits, weights, metric) > 0).to(torch.float64))


class NormalisedRecovery(Metric):
    """(patched − corrupted) / (clean − corrupted) of the mean metric (`engine.metric.answer_metric`) over all prompts
    seen.

    Ratios of means, not means of per-batch ratios: the states are sums.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("patched", "clean", "corrupted"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(
        self,
        patched: Float[Tensor, "batch k"],
        clean: Float[Tensor, "batch k"],
        corrupted: Float[Tensor, "batch k"],
        weights: Float[Tensor, "batch k"] | None = None,
        metric: MetricName = "logit_diff",
    ) -> None:
        self.patched += answer_metric(patched, weights, metric).double().sum()
        self.clean += answer_metric(clean, weights, metric).double().sum()
        self.corrupted += answer_metric(corrupted, weights, metric).double().sum()

    def compute(self) -> Tensor:
        return normalised_recovery(self.patched, self.corrupted, self.clean).float()


class ObjectiveLoss(Metric):
    """The loss of a whole evaluation set as if it were one batch: the objective of the summed per-batch
    statistics (`Objective.statistics`) plus the L1 term. Sum states, so independent of the batching and
    of the number of ranks — unlike a mean of per-batch losses, which for these objectives is not."""

    full_state_update = False

    def __init__(self, objective: "Objective") -> None:  # noqa: F821 (objectives import this module's users)
        super().__init__()
        self.objective = objective
        self.add_state(
            "statistics", default=torch.zeros(objective.n_statistics, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("penalty", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, statistics: Float[Tensor, " k"], penalty: Float[Tensor, ""] | float, count: int) -> None:
        """`penalty`: λ·‖α‖₁ at this batch (the same for every batch of one evaluation), weighed by `count` prompts."""
        self.statistics += statistics.detach().to(torch.float64)
        self.penalty += float(penalty) * count
        self.count += count

    def compute(self) -> Tensor:
        return (self.objective.from_statistics(self.statistics) + self.penalty / self.count).float()
