"""The batch format a toy model trains on (`TokenBatch`): tokens, a label at labelled positions (`IGNORE_INDEX`
elsewhere), the group (feature) of each row. Clean/corrupted prompts of one feature, what the head-support search
patches, are a `data.batch.ContrastBatch` named after the feature (`skip_trigrams.feature_prompts`)."""

from __future__ import annotations

from typing import TypedDict

from jaxtyping import Int
from torch import Tensor

IGNORE_INDEX = -100
"""Label value of positions without a target (`torch.nn.functional.cross_entropy`'s default)."""


class TokenBatch(TypedDict):
    """One batch: tokens, a label at labelled positions (IGNORE_INDEX elsewhere), the group of each row."""

    tokens: Int[Tensor, "batch pos"]
    labels: Int[Tensor, "batch pos"]
    group: Int[Tensor, " batch"]
