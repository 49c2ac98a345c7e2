"""The two batch formats of the toy tasks.

- `TokenBatch`: what a toy model trains on — tokens, a label at labelled positions (`IGNORE_INDEX`
  elsewhere), the group (feature) of each row.
- `FeaturePrompts`: clean/corrupted prompt pairs of one feature, what the head-support search patches.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass
class FeaturePrompts:
    """Clean/corrupted pairs for one feature: the clean run fires the feature, the corrupted one does not
    (for skip trigrams: the source replaced by a random filler, or by the other source)."""

    feature: str
    clean_tokens: Int[Tensor, "n pos"]
    corrupted_tokens: Int[Tensor, "n pos"]
    answer_tokens: Int[Tensor, "n 2"]
    """(clean answer, corrupted answer) per prompt."""
    end_positions: Int[Tensor, " n"]
