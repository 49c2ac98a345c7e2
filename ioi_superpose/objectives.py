"""What a learned combination is trained to do: small named objectives on the patched END logits.

Each reads the patched run's END logits (the two answer logits, or the whole vocabulary where
`full_vocab`) and the unpatched `Reference` runs, and returns one scalar to minimise.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from ioi_superpose.runs import Reference

ObjectiveName = Literal["logit_diff", "kl", "maximize"]


class Objective:
    name: str
    full_vocab: bool = False
    """True: needs the logits of the whole vocabulary at END, not only the answer pair."""

    def __call__(self, end_logits: Float[Tensor, "batch k"], answer_logits: Float[Tensor, "batch 2"],
                 reference: Reference) -> Float[Tensor, ""]:
        raise NotImplementedError


class LogitDiffObjective(Objective):
    """(1 − effect)²: drive the patch's normalised effect on the mean logit difference to 1."""

    name = "logit_diff"

    def __call__(self, end_logits: Tensor, answer_logits: Tensor, reference: Reference) -> Tensor:
        return (1.0 - reference.effect(answer_logits)) ** 2


class MaximizeObjective(Objective):
    """−effect: push the normalised effect as high as it goes (can it beat the source run?)."""

    name = "maximize"

    def __call__(self, end_logits: Tensor, answer_logits: Tensor, reference: Reference) -> Tensor:
        return -reference.effect(answer_logits)


class KLObjective(Objective):
    """KL(source ‖ patched) of the next-token distribution at END."""

    name = "kl"
    full_vocab = True

    def __call__(self, end_logits: Tensor, answer_logits: Tensor, reference: Reference) -> Tensor:
        if reference.source_log_probs is None:
            raise ValueError("the kl objective needs reference runs made with source_log_probs=True")
        return F.kl_div(end_logits.log_softmax(-1), reference.source_log_probs, log_target=True, reduction="batchmean")


OBJECTIVES: dict[str, type[Objective]] = {cls.name: cls for cls in (LogitDiffObjective, KLObjective, MaximizeObjective)}
