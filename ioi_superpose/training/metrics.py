"""What we measure at the END position, as torchmetrics (answer logits in, numbers out).

Every state is a sum, so a value is the same however the prompts are split into batches or ranks. The patching
metric handed to TransformerLens-style sweeps is the engine's (`engine.metric.LogitDiffMetric`).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor
from torchmetrics import MeanMetric, Metric

from ioi_superpose.engine.metric import logit_diff, normalised_recovery


class _DoubleMean(MeanMetric):
    """A `MeanMetric` that sums in float64 (float32 sums of thousands of logit differences drift)."""

    def __init__(self) -> None:
        super().__init__()
        self.set_dtype(torch.float64)


class MeanLogitDiff(_DoubleMean):
    """Mean of per-prompt logit differences (mean correct − mean incorrect answer logit: `engine.metric.logit_diff`)."""

    def update(  # type: ignore[override]
        self, answer_logits: Float[Tensor, "batch k"], weights: Float[Tensor, "batch k"] | None = None
    ) -> None:
        super().update(logit_diff(answer_logits, weights))


class IOAccuracy(_DoubleMean):
    """Fraction of prompts whose correct answers out-score the incorrect ones (IOI: IO over S) in the mean."""

    def update(  # type: ignore[override]
        self, answer_logits: Float[Tensor, "batch k"], weights: Float[Tensor, "batch k"] | None = None
    ) -> None:
        super().update((logit_diff(answer_logits, weights) > 0).to(torch.float64))


class NormalisedRecovery(Metric):
    """(patched − corrupted) / (clean − corrupted) of the mean logit differences over all prompts seen.

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
    ) -> None:
        self.patched += logit_diff(patched, weights).double().sum()
        self.clean += logit_diff(clean, weights).double().sum()
        self.corrupted += logit_diff(corrupted, weights).double().sum()

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
