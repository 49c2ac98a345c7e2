"""The fitted combination: what everything downstream of training reads of a fit.

A `FittedCombination` is the learned module with the frozen model it patches and the settings it was fitted with
(its notion among them: direction, rest, ablation). The LightningModule makes one (`HeadSuperposition.fitted()`);
the analyses, the baselines' comparisons and the results take it, never the LightningModule, so they run the same
on a module from the CLI, the API or a checkpoint. It is a view, not a copy: the module's weights are shared (the
minimal-set step writes the kept set into them).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import torch
from jaxtyping import Float
from torch import Tensor

from ioi_superpose.combinations import LearnedFamily
from ioi_superpose.data.answer_metrics import answer_values
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.ablations import Ablation, notion_reference
from ioi_superpose.engine.rest import Rest
from ioi_superpose.engine.runs import Reference, notion_end_logits
from ioi_superpose.engine.vocabulary import Direction, Head
from ioi_superpose.fitting.objectives import OBJECTIVES
from ioi_superpose.fitting.settings import SuperpositionConfig
from ioi_superpose.models import HookedTransformer


@dataclass(frozen=True)
class FittedCombination:
    """A learned combination, the model it patches and the settings it was fitted with."""

    model: HookedTransformer
    combination: LearnedFamily
    settings: SuperpositionConfig

    @property
    def direction(self) -> Direction:
        return self.settings.optim.direction

    @property
    def rest(self) -> Rest:
        return self.settings.optim.rest

    @property
    def ablation(self) -> Ablation:
        return self.settings.optim.ablation  # type: ignore[return-value]

    @property
    def family(self) -> str:
        """The family's name (`--model.combination`)."""
        return self.settings.family.combination

    @property
    def l0_threshold(self) -> float:
        return self.settings.optim.l0_threshold

    @property
    def model_name(self) -> str:
        return self.settings.model_name

    @property
    def device(self) -> torch.device:
        return self.combination.coefficients.device

    def heads(self) -> list[Head]:
        """The heads of the combination's [layer, head] view above the L0 threshold (heads, not units: per_position's
        (head, role) pairs and mixing's map entries can outnumber the heads)."""
        mask = self.combination.head_coefficients().abs() > self.l0_threshold
        return [(int(layer), int(head)) for layer, head in mask.nonzero().tolist()]

    @contextmanager
    def evaluating(self) -> Iterator[FittedCombination]:
        """The combination in evaluation mode (hard-concrete gates deterministic), restored on exit."""
        was_training = self.combination.training
        self.combination.eval()
        try:
            yield self
        finally:
            self.combination.train(was_training)

    @torch.no_grad()
    def reference(self, batch: ContrastBatch) -> Reference:
        """The unpatched runs `batch` is measured against in this fit's notion (its direction, rest and ablation)."""
        return notion_reference(self.model, batch, self.direction, self.rest, self.ablation)

    def answer_logits(self, batch: ContrastBatch, reference: Reference) -> Float[Tensor, "batch 2"]:
        """The patched run's answer logits at END, read as the training objective reads them (an objective on the
        whole vocabulary unembeds it all, then takes the answer pair), under the caller's grad mode."""
        full_vocab = OBJECTIVES[self.settings.optim.objective].full_vocab
        logits = notion_end_logits(self.model, batch, reference, self.combination, self.rest,
                                   None if full_vocab else batch.answer_tokens)[0]  # fmt: skip
        return answer_values(batch.metric, logits, batch.answer_tokens) if full_vocab else logits

    @torch.no_grad()
    def recovery(self, batch: ContrastBatch) -> float:
        """Recovery of the combination as it is now (evaluation mode) on `batch`, in this fit's notion."""
        batch = batch.to(self.device)
        with self.evaluating():
            reference = self.reference(batch)
            return float(reference.recovery(self.answer_logits(batch, reference)))


class Fits(Protocol):
    """What yields a fitted combination (the LightningModule: `HeadSuperposition.fitted`)."""

    def fitted(self) -> FittedCombination: ...
