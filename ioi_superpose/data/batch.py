"""A batch of contrasting prompt pairs: what every patching method and the learned combination read, and the one
type of clean/corrupted prompts in the package (IOI prompts, a toy task's feature prompts, a benchmark split)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import TypeVar

import torch
from jaxtyping import Int
from torch import Tensor

from ioi_superpose.errors import ConfigError

B = TypeVar("B", bound="ContrastBatch")


@dataclass
class ContrastBatch:
    """Clean and corrupted prompts, right-padded, with the answer pair read at each prompt's END.

    Clean and corrupted prompts have the same length. `answer_tokens` are (correct, incorrect) for the
    clean prompt and are read at `end_pos` in every run.
    """

    clean_tokens: Int[Tensor, "batch pos"]
    corrupted_tokens: Int[Tensor, "batch pos"]
    answer_tokens: Int[Tensor, "batch 2"]
    end_pos: Int[Tensor, " batch"]
    index: Int[Tensor, " batch"]
    """Row of each prompt in the set it was drawn from (keys the per-prompt caches of a run)."""
    name: str = field(default="", kw_only=True)
    """What the prompts are of, for records and messages (a toy task's feature, a benchmark split); may be empty."""

    def __post_init__(self) -> None:
        if self.clean_tokens.shape != self.corrupted_tokens.shape:
            raise ConfigError(
                f"Clean tokens {tuple(self.clean_tokens.shape)} and corrupted tokens "
                f"{tuple(self.corrupted_tokens.shape)} must have the same shape [batch, pos]."
            )
        expected = (*self.clean_tokens.shape[:-1], 2)
        if tuple(self.answer_tokens.shape) != expected:
            raise ConfigError(
                f"answer_tokens must be [batch, 2] = {list(expected)} (correct, incorrect), "
                f"got {list(self.answer_tokens.shape)}."
            )

    def __len__(self) -> int:
        return self.clean_tokens.shape[0]

    def tensors(self) -> dict[str, Tensor]:
        """Every per-prompt field (all but `name`), by field name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"}

    def __getitem__(self: B, index: int | slice | Tensor) -> B:
        return replace(self, **{name: value[index] for name, value in self.tensors().items()})

    def to(self: B, device: torch.device | str) -> B:
        return replace(self, **{name: value.to(device) for name, value in self.tensors().items()})

    def trimmed(self: B) -> B:
        """Without the padding columns that no prompt in the batch reaches."""
        length = int(self.end_pos.max()) + 1
        return replace(
            self, clean_tokens=self.clean_tokens[:, :length], corrupted_tokens=self.corrupted_tokens[:, :length]
        )

    @classmethod
    def from_tokens(
        cls,
        clean_tokens: Int[Tensor, "batch pos"],
        corrupted_tokens: Int[Tensor, "batch pos"],
        answer_tokens: Int[Tensor, "batch 2"],
        end_pos: Int[Tensor, " batch"] | None = None,
        name: str = "",
    ) -> "ContrastBatch":
        """Prompts numbered 0 … n − 1 in `index`; their answers are read at `end_pos` (None: the last position, for
        equal-length prompts)."""
        batch_size, length = clean_tokens.shape
        return ContrastBatch(
            clean_tokens=clean_tokens,
            corrupted_tokens=corrupted_tokens,
            answer_tokens=answer_tokens,
            end_pos=torch.full((batch_size,), length - 1) if end_pos is None else end_pos,
            index=torch.arange(batch_size),
            name=name,
        )


def collate(examples: list[B]) -> B:
    """Stack single-prompt batches (as a `PromptDataset` yields them) into one, trimmed."""
    if len(examples[0].clean_tokens.shape) != 1:
        raise ConfigError("collate expects single prompts (rows of a batch).")
    stacked = {name: torch.stack([example.tensors()[name] for example in examples]) for name in examples[0].tensors()}
    return replace(examples[0], **stacked).trimmed()


class PromptDataset(torch.utils.data.Dataset):
    """Indexable view of a batch of prompts, one prompt per item (pair with `collate`)."""

    def __init__(self, prompts: ContrastBatch) -> None:
        self.prompts = prompts

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, index: int) -> ContrastBatch:
        return self.prompts[index]
