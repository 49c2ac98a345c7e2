"""What we measure at the END position: logit difference, normalised recovery, IO-over-S accuracy.

Two layers: plain functions on answer logits (used in losses and patching sweeps, stay on the device)
and `torchmetrics.Metric`s that accumulate sums, so they reduce correctly across batches and ranks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor
from torchmetrics import Metric

from ioi_superpose.models import HookedTransformer


def gather_end(
    activations: Float[Tensor, "batch pos *rest"], end_positions: Int[Tensor, " batch"]
) -> Float[Tensor, "batch *rest"]:
    """The activation at each prompt's END position (prompts are right-padded)."""
    return activations[torch.arange(activations.shape[0], device=activations.device), end_positions]


def unembed_at_end(
    model: HookedTransformer,
    final_residual: Float[Tensor, "batch pos d_model"],
    end_positions: Int[Tensor, " batch"],
    vocab_index: Int[Tensor, "batch k"] | None = None,
) -> Float[Tensor, "batch k"]:
    """Logits at END only, for `vocab_index` tokens only (all tokens when None).

    The unembedding of every position over 50k tokens costs about a third of a GPT-2-small forward;
    the metrics read two logits per prompt.
    """
    residual = gather_end(final_residual, end_positions)
    if hasattr(model, "ln_final"):  # models without normalisation have none
        residual = model.ln_final(residual[:, None, :])[:, 0, :]
    if vocab_index is None:
        return residual @ model.W_U + model.b_U
    unembed_columns = model.W_U.T[vocab_index]  # [batch, k, d_model]
    return torch.einsum("bd,bkd->bk", residual, unembed_columns) + model.b_U[vocab_index]


def logit_diff(answer_logits: Float[Tensor, "*batch 2"]) -> Float[Tensor, "*batch"]:
    """Correct-answer logit minus incorrect-answer logit, per prompt."""
    return answer_logits[..., 0] - answer_logits[..., 1]


def normalised_recovery(
    patched: Float[Tensor, "*any"], corrupted: float | Tensor, clean: float | Tensor
) -> Float[Tensor, "*any"]:
    """0 = the corrupted run, 1 = the clean run, >1 better than clean, <0 worse than corrupted."""
    return (patched - corrupted) / (clean - corrupted)


@dataclass
class LogitDiffMetric:
    """A patching metric: mean logit difference at END, normalised when both reference values are set.

    Usable as a generic `metric(logits)` callable (TransformerLens's patching API), and by our own
    patching code through `from_answer_logits`, which needs only the two answer logits at END.
    """

    answer_tokens: Int[Tensor, "batch 2"]
    end_positions: Int[Tensor, " batch"]
    corrupted_value: float | None = None
    clean_value: float | None = None

    def __call__(self, logits: Float[Tensor, "batch pos vocab"]) -> Float[Tensor, ""]:
        end_logits = gather_end(logits, self.end_positions.to(logits.device))
        return self.from_answer_logits(end_logits.gather(-1, self.answer_tokens.to(logits.device)))

    def from_answer_logits(self, answer_logits: Float[Tensor, "*variants batch 2"]) -> Float[Tensor, "*variants"]:
        mean_diff = logit_diff(answer_logits).mean(-1)
        if self.corrupted_value is None or self.clean_value is None:
            return mean_diff
        return normalised_recovery(mean_diff, self.corrupted_value, self.clean_value)


class MeanLogitDiff(Metric):
    """Mean of per-prompt logit differences."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, answer_logits: Float[Tensor, "batch 2"]) -> None:
        self.total += logit_diff(answer_logits).double().sum()
        self.count += answer_logits.shape[0]

    def compute(self) -> Tensor:
        return (self.total / self.count).float()


class IOAccuracy(Metric):
    """Fraction of prompts whose correct answer (IO) out-scores the incorrect one (S)."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("correct", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, answer_logits: Float[Tensor, "batch 2"]) -> None:
        self.correct += (logit_diff(answer_logits) > 0).sum()
        self.count += answer_logits.shape[0]

    def compute(self) -> Tensor:
        return self.correct.float() / self.count


class NormalisedRecovery(Metric):
    """(patched − corrupted) / (clean − corrupted) of the mean logit differences over all prompts seen.

    Ratios of means, not means of per-batch ratios: the states are sums, so the value is the same
    however the prompts are split into batches or ranks.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("patched", "clean", "corrupted"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(
        self,
        patched: Float[Tensor, "batch 2"],
        clean: Float[Tensor, "batch 2"],
        corrupted: Float[Tensor, "batch 2"],
    ) -> None:
        self.patched += logit_diff(patched).double().sum()
        self.clean += logit_diff(clean).double().sum()
        self.corrupted += logit_diff(corrupted).double().sum()

    def compute(self) -> Tensor:
        return normalised_recovery(self.patched, self.corrupted, self.clean).float()
