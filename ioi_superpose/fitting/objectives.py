"""What a learned combination is trained to do: small named objectives on the patched END logits.

Each reads the patched run's END logits (the answer logits, weighed by the batch's answer weights through
`Reference.logit_diff`, or the whole vocabulary where
`full_vocab`) and the unpatched `Reference` runs, and returns one scalar to minimise.

None of them is a mean of per-prompt losses: `(1 − effect)²` and `−effect` are functions of the batch's
mean logit differences, KL is a batch mean. So each objective is split in two: `statistics` (sums over
the batch's prompts, and their count) and `from_statistics` (the loss of those sums). Summing the
statistics first — over the ranks of a DDP step (`across_ranks`), over the batches of an evaluation —
gives the loss of the whole global batch or set, whatever the split.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from ioi_superpose.engine.metric import normalised_recovery
from ioi_superpose.engine.runs import Reference

ObjectiveName = Literal["logit_diff", "kl", "maximize"]


def across_ranks(statistics: Float[Tensor, " k"]) -> Float[Tensor, " k"]:
    """The sum of `statistics` over every process of the default group (itself outside DDP), with gradients.

    Every rank must call it at the same step (training steps; evaluation ranks may have unequal batch
    counts, so evaluation never does). Gradient factor: each rank computes the same global loss L, and
    the backward of the autograd all-reduce sums the ranks' (equal) incoming gradients, so a rank's α
    gradient is N·∂L/∂α restricted to its own prompts; DDP's average over ranks then gives Σ_r ∂L/∂α|_r,
    the one-process gradient. The L1 term, computed on every rank outside this sum, is averaged by DDP
    to itself: counted once.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return statistics
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(statistics, op=dist.ReduceOp.SUM)


class Objective:
    name: str
    full_vocab: bool = False
    """True: needs the logits of the whole vocabulary at END, not only the answer pair."""
    n_statistics: int
    """Length of `statistics`."""

    def statistics(
        self, end_logits: Float[Tensor, "batch k"], answer_logits: Float[Tensor, "batch 2"], reference: Reference
    ) -> Float[Tensor, " n_statistics"]:
        """Sums over the batch's prompts (the last entry: their count); adding two batches' statistics
        gives those of the two batches together."""
        raise NotImplementedError

    def from_statistics(self, statistics: Float[Tensor, " n_statistics"]) -> Float[Tensor, ""]:
        raise NotImplementedError

    def __call__(
        self, end_logits: Float[Tensor, "batch k"], answer_logits: Float[Tensor, "batch 2"], reference: Reference
    ) -> Float[Tensor, ""]:
        """The objective on this batch alone."""
        return self.from_statistics(self.statistics(end_logits, answer_logits, reference))


class _EffectObjective(Objective):
    """Objectives of the normalised effect (patched − base) / (source − base) of the mean logit difference."""

    n_statistics = 4  # Σ patched, Σ base, Σ source logit differences, prompts

    def statistics(self, end_logits: Tensor, answer_logits: Tensor, reference: Reference) -> Tensor:
        count = torch.tensor(float(len(answer_logits)), device=answer_logits.device, dtype=answer_logits.dtype)
        return torch.stack([
            reference.measure(answer_logits).sum(),
            reference.measure(reference.base_answer_logits).sum().to(answer_logits.dtype),
            reference.measure(reference.source_answer_logits).sum().to(answer_logits.dtype),
            count,
        ])  # fmt: skip

    @staticmethod
    def effect(statistics: Tensor) -> Tensor:
        patched, base, source, count = statistics
        return normalised_recovery(patched / count, base / count, source / count)


class LogitDiffObjective(_EffectObjective):
    """(1 − effect)²: drive the patch's normalised effect on the mean logit difference to 1."""

    name = "logit_diff"

    def from_statistics(self, statistics: Tensor) -> Tensor:
        return (1.0 - self.effect(statistics)) ** 2


class MaximizeObjective(_EffectObjective):
    """−effect: push the normalised effect as high as it goes (can it beat the source run?)."""

    name = "maximize"

    def from_statistics(self, statistics: Tensor) -> Tensor:
        return -self.effect(statistics)


class KLObjective(Objective):
    """KL(source ‖ patched) of the next-token distribution at END, averaged over prompts. The source is the
    clean run when denoising and the corrupted run when noising: a noising patch is asked to make the clean
    prompt's distribution that of the corrupted one (see `runs.base_and_source`)."""

    name = "kl"
    full_vocab = True
    n_statistics = 2  # Σ per-prompt KL, prompts

    def statistics(self, end_logits: Tensor, answer_logits: Tensor, reference: Reference) -> Tensor:
        if reference.source_log_probs is None:
            raise ValueError("the kl objective needs reference runs made with source_log_probs=True")
        total = F.kl_div(end_logits.log_softmax(-1), reference.source_log_probs, log_target=True, reduction="sum")
        return torch.stack([total, torch.tensor(float(len(end_logits)), device=total.device, dtype=total.dtype)])

    def from_statistics(self, statistics: Tensor) -> Tensor:
        total, count = statistics
        return total / count


OBJECTIVES: dict[str, type[Objective]] = {cls.name: cls for cls in (LogitDiffObjective, KLObjective, MaximizeObjective)}
