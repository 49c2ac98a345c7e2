"""A batch of contrasting prompt pairs: what every patching method and the learned combination read, and the one
type of clean/corrupted prompts in the package (IOI prompts, a toy task's feature prompts, a benchmark split)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import TypeVar

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ioi_superpose.data.answer_metrics import MetricName, check_metric
from ioi_superpose.errors import ConfigError

B = TypeVar("B", bound="ContrastBatch")


@dataclass
class ContrastBatch:
    """Clean and corrupted prompts, right-padded, with the answers read at each prompt's END.

    Clean and corrupted prompts have the same length. `answer_tokens` are (correct, incorrect) for the
    clean prompt and are read at `end_pos` in every run. A task whose answers are sets (greater-than: every
    year above YY is correct) gives `answer_tokens` [batch, k] with `answer_weights` [batch, k]: +1/|correct|
    on each correct token, −1/|incorrect| on each incorrect one, 0 on padding, so the logit difference
    mean(correct) − mean(incorrect) is Σ weights · logits (`data.answer_metrics`). Without weights the pair
    is weighted (+1, −1), as every caller that reads `answer_tokens[:, 0] − answer_tokens[:, 1]` assumes.
    """

    clean_tokens: Int[Tensor, "batch pos"]
    corrupted_tokens: Int[Tensor, "batch pos"]
    answer_tokens: Int[Tensor, "batch k"]
    end_pos: Int[Tensor, " batch"]
    index: Int[Tensor, " batch"]
    """Row of each prompt in the set it was drawn from (keys the per-prompt caches of a run)."""
    answer_weights: Float[Tensor, "batch k"] | None = field(default=None, kw_only=True)
    """Weight of each answer token (see the class docstring); None: the pair (correct, incorrect), (+1, −1)."""
    name: str = field(default="", kw_only=True)
    """What the prompts are of, for records and messages (a toy task's feature, a benchmark split); may be empty."""
    metric: MetricName = field(default="logit_diff", kw_only=True)
    """The task's metric (`data.answer_metrics`): what every method reads at END and measures these prompts by."""

    def __post_init__(self) -> None:
        check_metric(self.metric)
        if self.clean_tokens.shape != self.corrupted_tokens.shape:
            raise ConfigError(
                f"Clean tokens {tuple(self.clean_tokens.shape)} and corrupted tokens "
                f"{tuple(self.corrupted_tokens.shape)} must have the same shape [batch, pos]."
            )
        if self.answer_weights is None:
            expected = (*self.clean_tokens.shape[:-1], 2)
            if tuple(self.answer_tokens.shape) != expected:
                raise ConfigError(
                    f"answer_tokens must be [batch, 2] = {list(expected)} (correct, incorrect), "
                    f"got {list(self.answer_tokens.shape)}; answer sets need answer_weights [batch, k]."
                )
            return
        if self.answer_tokens.shape[:-1] != self.clean_tokens.shape[:-1] or self.answer_tokens.dim() < 1:
            raise ConfigError(
                f"answer_tokens {list(self.answer_tokens.shape)} must be [batch, k] with the tokens' batch "
                f"{list(self.clean_tokens.shape[:-1])}."
            )
        if self.answer_weights.shape != self.answer_tokens.shape or not self.answer_weights.is_floating_point():
            raise ConfigError(
                f"answer_weights must be floats of the answer_tokens' shape {list(self.answer_tokens.shape)}, got "
                f"{self.answer_weights.dtype} {list(self.answer_weights.shape)}."
            )

    def __len__(self) -> int:
        return self.clean_tokens.shape[0]

    def tensors(self) -> dict[str, Tensor | None]:
        """Every per-prompt field (all but `name` and `metric`) by field name; None where an optional one is unset."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("name", "metric")}

    def __getitem__(self: B, index: int | slice | Tensor) -> B:
        return replace(self, **{name: None if v is None else v[index] for name, v in self.tensors().items()})

    def to(self: B, device: torch.device | str) -> B:
        return replace(self, **{name: None if v is None else v.to(device) for name, v in self.tensors().items()})

    @property
    def weights(self) -> Float[Tensor, "batch k"]:
        """`answer_weights`, or (+1, −1) for every (correct, incorrect) pair when none are set."""
        if self.answer_weights is not None:
            return self.answer_weights
        pair = torch.tensor([1.0, -1.0], device=self.answer_tokens.device)
        return pair.expand(*self.answer_tokens.shape[:-1], 2)

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
    rows = examples[0].tensors()
    stacked = {name: None if value is None else torch.stack([example.tensors()[name] for example in examples])
               for name, value in rows.items()}  # fmt: skip
    return replace(examples[0], **stacked).trimmed()


class PromptDataset(torch.utils.data.Dataset):
    """Indexable view of a batch of prompts, one prompt per item (pair with `collate`)."""

    def __init__(self, prompts: ContrastBatch) -> None:
        self.prompts = prompts

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, index: int) -> ContrastBatch:
        return self.prompts[index]
