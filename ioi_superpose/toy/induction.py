"""The toy induction task: [BOS] r1 … rL r1 … rL, the second copy labelled with the token that followed in the first.

A 2-layer attention-only model learns it with the textbook circuit (Olsson et al. 2022): a previous-token head in
layer 0 writes "the token before me" into each position, and an induction head in layer 1 attends from the current
token to the position after its earlier occurrence and copies that token. Tokens are the words `t0 … t{n-1}` of a
`WordTokenizer` stored in the checkpoint, so the `induction` task (`tasks/induction.py`) draws its prompts for the
model (`--data.task induction --model.model_name checkpoints/toy_induction.pt`).

Each batch has one length L, drawn from [min_length, max_length] by its own seed (fresh data every step,
reproducible): positions up to 2·max_length + 1 are all trained, so the task's longer and shorter test sets fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from ioi_superpose.errors import ConfigError
from ioi_superpose.models.word_tokenizer import BOS, PAD, WordTokenizer
from ioi_superpose.toy.batches import IGNORE_INDEX, TokenBatch


def induction_tokenizer(n_tokens: int) -> WordTokenizer:
    """BOS, PAD and the words t0 … t{n_tokens − 1}."""
    return WordTokenizer([BOS, PAD, *(f"t{i}" for i in range(n_tokens))])


def induction_batch(
    n: int, n_tokens: int, min_length: int, max_length: int, generator: torch.Generator
) -> TokenBatch:
    """`n` sequences [BOS] + L distinct random tokens + the same L again; labels on the second copy (its next token)."""
    length = int(torch.randint(min_length, max_length + 1, (), generator=generator))
    first = torch.rand(n, n_tokens, generator=generator).argsort(-1)[:, :length] + 2  # distinct; 0, 1: BOS, PAD
    tokens = torch.cat([torch.zeros(n, 1, dtype=torch.long), first, first], 1)
    labels = torch.full_like(tokens, IGNORE_INDEX)
    # Position 1 + L + i holds r(i+1) again; its next token is r(i+2) (the last position has none).
    labels[:, length + 1 : 2 * length] = first[:, 1:]
    return TokenBatch(tokens=tokens, labels=labels, group=torch.zeros(n, dtype=torch.long))


@dataclass
class _SeededInductionBatches(Dataset[TokenBatch]):
    n_batches: int
    batch_size: int
    n_tokens: int
    min_length: int
    max_length: int
    seed: int

    def __len__(self) -> int:
        return self.n_batches

    def __getitem__(self, index: int) -> TokenBatch:
        if not 0 <= index < self.n_batches:
            raise IndexError(index)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        return induction_batch(self.batch_size, self.n_tokens, self.min_length, self.max_length, generator)


class ToyInductionDataModule(L.LightningDataModule):
    """Repeated random sequences for training, validation and test (disjoint seed streams)."""

    def __init__(
        self,
        n_tokens: int = 48,
        min_length: int = 4,
        max_length: int = 16,
        batch_size: int = 128,
        train_batches: int = 1000,
        eval_batches: int = 4,
        seed: int = 0,
    ) -> None:
        """
        Args:
            n_tokens: ordinary tokens t0 … t{n_tokens − 1}.
            min_length: shortest first half L (≥ 2: the second copy must have a labelled position).
            max_length: longest first half (≤ n_tokens: its tokens are distinct); n_ctx is 2·max_length + 1.
            batch_size: sequences per batch.
            train_batches: batches per training epoch (each drawn fresh from its own seed).
            eval_batches: batches in the validation and in the test split.
            seed: seed of the three splits (disjoint streams).
        """
        super().__init__()
        if not 2 <= min_length <= max_length <= n_tokens:
            raise ConfigError(f"--data.init_args: need 2 <= min_length <= max_length <= n_tokens, got {min_length}, "
                              f"{max_length}, {n_tokens}.")  # fmt: skip
        self.n_tokens, self.min_length, self.max_length = n_tokens, min_length, max_length
        self.batch_size, self.train_batches, self.eval_batches = batch_size, train_batches, eval_batches
        self.seed = seed
        self.tokenizer = induction_tokenizer(n_tokens)
        self.save_hyperparameters()

    @property
    def d_vocab(self) -> int:
        return len(self.tokenizer)

    @property
    def n_ctx(self) -> int:
        return 2 * self.max_length + 1

    @property
    def group_names(self) -> list[str]:
        return ["induction"]

    def metadata(self) -> dict[str, object]:
        """What the checkpoint records: the task, its parameters and the tokenizer (what `load_tokenizer` reads)."""
        return {
            "task": "induction",
            "task_parameters": {"n_tokens": self.n_tokens, "min_length": self.min_length,
                                "max_length": self.max_length},  # fmt: skip
            "tokenizer": self.tokenizer.to_dict(),
            "group_names": self.group_names,
        }

    def evaluation_batch(self, n: int, seed: int) -> TokenBatch:
        generator = torch.Generator().manual_seed(seed)
        return induction_batch(n, self.n_tokens, self.min_length, self.max_length, generator)

    def _loader(self, n_batches: int, split: int) -> DataLoader:
        dataset = _SeededInductionBatches(n_batches, self.batch_size, self.n_tokens, self.min_length, self.max_length,
                                          self.seed * 16 + split)  # fmt: skip
        return DataLoader(dataset, batch_size=None)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_batches, 0)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.eval_batches, 1)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.eval_batches, 2)
