"""Skip-trigram tasks whose ground truth is known: the attention-head superposition toy.

After Anthropic's circuits updates (May and July 2023): sequences of random tokens in which a *source*
token [A] may occur, and whose last token is a query [B]; the label at the last position is [C], which
depends on both. The trigrams [A]…[B]→[C] of a task share their source token, so they are
OV-incoherent: a head that moves [A] writes the same vector whatever [B] asked for.

Token layout (`S` sources, `n` = `n_b_tokens`)::

    sources  0 .. S-1
    B        S .. S+n-1
    C        S+n .. S+n+S*n-1        C_s(B_i) = S + n + s*n + i
    BOS      S + n + S*n             (vocabulary = S*(n+1) + n + 1)

- `single_source` (S=1; default n=5 gives the 12-token vocabulary A=0, B=1..5, C=B+5, BOS=11): with
  probability `source_probability` an [A] sits somewhere before the last position and the label is
  C(B_i); without it the label is C(B_{i+1 mod n}), the next trigram's answer. That cyclic "absent"
  answer is what makes one head insufficient: moving [A] must raise C(B_i) over C(B_{i+1}) for every i
  at once, impossible around a cycle with one OV vector, so the heads have to divide the trigrams.
- `two_source_conjunction` (S=2; n=3 gives a 12-token vocabulary): every sequence holds exactly one of
  [A1], [A2]; the label is C_1(B) after [A1] and C_2(B) after [A2], so the answer is a conjunction of
  which source occurred and which query is asked.

A *feature* is one (source, B) trigram. Sequences without a source (single_source only) belong to a
*background group* per B; groups are what per-group accuracy is reported on (features first).
All sampling takes an explicit `torch.Generator` or seed; nothing touches the global RNG.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import lightning as L
import torch
from jaxtyping import Int
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.errors import ConfigError
from ioi_superpose.toy.batches import IGNORE_INDEX, TokenBatch

TaskKind = Literal["single_source", "two_source_conjunction"]


@dataclass(frozen=True)
class SkipTrigramTask:
    """A skip-trigram task: which tokens play which role and how sequences are drawn."""

    kind: TaskKind = "single_source"
    """`single_source`: one source, absent-source sequences answer the next trigram's C.
    `two_source_conjunction`: two sources, the answer depends on which one occurred."""
    n_b_tokens: int = 5
    """Number of query tokens [B]; every source makes one trigram with each, so
    features = sources × n_b_tokens."""
    n_positions: int = 11
    """Sequence length, BOS included; the query [B] is at the last position."""
    source_probability: float | None = None
    """Probability that a sequence contains a source (single_source only). None: 0.5 for single_source;
    two_source_conjunction always plants exactly one of its two sources."""

    def __post_init__(self) -> None:
        # Every message starts with the field's name: `SkipTrigramDataModule` prefixes it with the flag.
        if self.kind not in get_args(TaskKind):
            raise ConfigError(f"kind must be one of {get_args(TaskKind)}, got {self.kind!r}.")
        minimum_b = 2 if self.kind == "single_source" else 1
        if self.n_b_tokens < minimum_b:
            raise ConfigError(
                f"n_b_tokens must be >= {minimum_b} for {self.kind}, got {self.n_b_tokens}"
                + (
                    " (the absent-source answer is the next trigram's C, so it needs a second trigram)"
                    if self.kind == "single_source"
                    else ""
                )
                + "."
            )
        if self.n_positions < 3:
            raise ConfigError(f"n_positions must be >= 3 (BOS, a source, the query), got {self.n_positions}.")
        if self.kind == "two_source_conjunction" and self.source_probability is not None:
            raise ConfigError(
                "source_probability applies to kind=single_source only: two_source_conjunction always "
                f"plants exactly one of its two sources (got source_probability={self.source_probability})."
            )
        if self.source_probability is not None and not 0.0 < self.source_probability <= 1.0:
            raise ConfigError(f"source_probability must be in (0, 1], got {self.source_probability}.")

    # --- vocabulary layout -------------------------------------------------------------------------
    @property
    def n_sources(self) -> int:
        return 1 if self.kind == "single_source" else 2

    @property
    def p_source(self) -> float:
        if self.kind == "two_source_conjunction":
            return 1.0
        return 0.5 if self.source_probability is None else self.source_probability

    @property
    def b_tokens(self) -> Int[Tensor, " n_b"]:
        return torch.arange(self.n_b_tokens) + self.n_sources

    @property
    def bos(self) -> int:
        return self.n_sources * (self.n_b_tokens + 1) + self.n_b_tokens

    @property
    def d_vocab(self) -> int:
        return self.bos + 1

    @property
    def filler_tokens(self) -> Int[Tensor, " n_filler"]:
        """Everything but sources and BOS: the [B] and [C] tokens double as random context."""
        return torch.arange(self.n_sources, self.bos)

    def answer(self, source: int | Tensor, b_index: int | Tensor) -> int | Tensor:
        """C_source(B_{b_index})."""
        return self.n_sources + self.n_b_tokens + source * self.n_b_tokens + b_index

    def absent_answer(self, b_index: int | Tensor) -> int | Tensor:
        """single_source: the label when no source occurred, the next trigram's answer."""
        return self.answer(0, (b_index + 1) % self.n_b_tokens)

    # --- features and groups -----------------------------------------------------------------------
    @property
    def n_features(self) -> int:
        return self.n_sources * self.n_b_tokens

    @property
    def group_names(self) -> list[str]:
        """Feature names `A{source}_B{b}_C{c}` (token ids), then single_source's `none_B{b}_C{c}`."""
        names = [
            f"A{s}_B{self.n_sources + i}_C{self.answer(s, i)}"
            for s in range(self.n_sources)
            for i in range(self.n_b_tokens)
        ]
        if self.kind == "single_source":
            names += [f"none_B{self.n_sources + i}_C{self.absent_answer(i)}" for i in range(self.n_b_tokens)]
        return names

    def feature(self, index: int) -> tuple[int, int]:
        """(source, b_index) of feature `index`."""
        if not 0 <= index < self.n_features:
            raise ValueError(f"feature index must be in [0, {self.n_features}) for this task, got {index}")
        return divmod(index, self.n_b_tokens)


def _random_context(
    task: SkipTrigramTask, n: int, generator: torch.Generator
) -> tuple[Int[Tensor, "n pos"], Int[Tensor, " n"], Int[Tensor, " n"]]:
    """BOS + random fillers + a random query; returns (tokens, b_index, a source position)."""
    fillers = task.filler_tokens
    tokens = fillers[torch.randint(len(fillers), (n, task.n_positions), generator=generator)]
    tokens[:, 0] = task.bos
    b_index = torch.randint(task.n_b_tokens, (n,), generator=generator)
    tokens[:, -1] = task.b_tokens[b_index]
    source_position = torch.randint(1, task.n_positions - 1, (n,), generator=generator)
    return tokens, b_index, source_position


def sample_batch(task: SkipTrigramTask, n: int, generator: torch.Generator) -> TokenBatch:
    """`n` training sequences, labelled at the last position."""
    tokens, b_index, source_position = _random_context(task, n, generator)
    has_source = torch.rand(n, generator=generator) < task.p_source
    source = torch.randint(task.n_sources, (n,), generator=generator)
    rows = torch.arange(n)
    tokens[rows[has_source], source_position[has_source]] = source[has_source]
    labels = torch.full_like(tokens, IGNORE_INDEX)
    if task.kind == "single_source":
        labels[:, -1] = torch.where(has_source, task.answer(source, b_index), task.absent_answer(b_index))
        group = torch.where(has_source, source * task.n_b_tokens + b_index, task.n_features + b_index)
    else:
        labels[:, -1] = task.answer(source, b_index)
        group = source * task.n_b_tokens + b_index
    return TokenBatch(tokens=tokens, labels=labels, group=group)


def feature_prompts(task: SkipTrigramTask, feature: int, n: int, seed: int) -> ContrastBatch:
    """`n` seeded clean/corrupted prompt pairs for feature index `feature` (see `task.group_names`)."""
    source, b_index = task.feature(feature)
    generator = torch.Generator().manual_seed(seed)
    clean, _, source_position = _random_context(task, n, generator)
    clean[:, -1] = task.b_tokens[b_index]
    rows = torch.arange(n)
    clean[rows, source_position] = source
    corrupted = clean.clone()
    if task.kind == "single_source":
        fillers = task.filler_tokens
        corrupted[rows, source_position] = fillers[torch.randint(len(fillers), (n,), generator=generator)]
        wrong = task.absent_answer(b_index)
    else:
        corrupted[rows, source_position] = 1 - source
        wrong = task.answer(1 - source, b_index)
    answers = torch.tensor([[task.answer(source, b_index), wrong]]).expand(n, 2).clone()
    return ContrastBatch.from_tokens(
        clean, corrupted, answers, torch.full((n,), task.n_positions - 1), name=task.group_names[feature]
    )


def _derived_seed(seed: int, split: int, index: int) -> int:
    # Disjoint streams per (seed, split, batch): batch i is the same whatever was drawn before it.
    return (seed * 16 + split) * 1_000_003 + index


@dataclass
class SeededBatches(Dataset[TokenBatch]):
    """`n_batches` batches, batch i drawn from its own seed: fresh data every step, reproducible,
    no tensor of the whole dataset in memory. Use with `DataLoader(batch_size=None)`."""

    task: SkipTrigramTask
    batch_size: int
    n_batches: int
    seed: int
    split: int = 0

    def __len__(self) -> int:
        return self.n_batches

    def __getitem__(self, index: int) -> TokenBatch:
        if not 0 <= index < self.n_batches:
            raise IndexError(index)
        generator = torch.Generator().manual_seed(_derived_seed(self.seed, self.split, index))
        return sample_batch(self.task, self.batch_size, generator)


class SkipTrigramDataModule(L.LightningDataModule):
    """Skip-trigram sequences for training, validation and test, each split from its own seed stream.

    Exposes what the training entry links into the model (`d_vocab`, `n_ctx`, `group_names`) and what
    the export callback needs (`metadata`, `evaluation_batch`, `n_features`, `feature_prompts`).
    """

    def __init__(
        self,
        kind: TaskKind = "single_source",
        n_b_tokens: int = 5,
        n_positions: int = 11,
        source_probability: float | None = None,
        batch_size: int = 256,
        train_batches: int = 1000,
        eval_batches: int = 8,
        seed: int = 0,
    ) -> None:
        """
        Args:
            kind: `single_source` (one shared source, cyclic absent answer) or `two_source_conjunction`
                (the answer depends on which of two sources occurred).
            n_b_tokens: number of query tokens [B]; features = sources × n_b_tokens.
            n_positions: sequence length including BOS; the query is the last token.
            source_probability: chance that a single_source sequence holds the source (None: 0.5).
                Must be None for two_source_conjunction.
            batch_size: sequences per batch.
            train_batches: batches per training epoch (each drawn fresh from its own seed).
            eval_batches: batches in the validation and in the test split.
            seed: seed of all three splits (they use disjoint streams).
        """
        super().__init__()
        try:
            self.task = SkipTrigramTask(kind, n_b_tokens, n_positions, source_probability)
        except ConfigError as error:  # its message starts with the option's name
            raise ConfigError(f"--data.init_args.{error}") from None
        for name, value in dict(batch_size=batch_size, train_batches=train_batches, eval_batches=eval_batches).items():
            if value < 1:
                raise ConfigError(f"--data.init_args.{name} must be >= 1, got {value}.")
        self.batch_size = batch_size
        self.train_batches = train_batches
        self.eval_batches = eval_batches
        self.seed = seed
        self.save_hyperparameters()

    @property
    def d_vocab(self) -> int:
        return self.task.d_vocab

    @property
    def n_ctx(self) -> int:
        return self.task.n_positions

    @property
    def group_names(self) -> list[str]:
        return self.task.group_names

    @property
    def n_features(self) -> int:
        return self.task.n_features

    def metadata(self) -> dict[str, object]:
        """What a checkpoint records about its task (JSON-serialisable)."""
        return {
            "task": f"skip_trigrams.{self.task.kind}",
            "task_parameters": {
                "kind": self.task.kind,
                "n_b_tokens": self.task.n_b_tokens,
                "n_positions": self.task.n_positions,
                "source_probability": self.task.source_probability,
            },
            "group_names": self.group_names,
            "n_features": self.n_features,
        }

    def evaluation_batch(self, n: int, seed: int) -> TokenBatch:
        return sample_batch(self.task, n, torch.Generator().manual_seed(seed))

    def feature_prompts(self, feature: int, n: int, seed: int) -> ContrastBatch:
        return feature_prompts(self.task, feature, n, seed)

    def setup(self, stage: str | None = None) -> None:
        self.train_set = SeededBatches(self.task, self.batch_size, self.train_batches, self.seed, split=0)
        self.val_set = SeededBatches(self.task, self.batch_size, self.eval_batches, self.seed, split=1)
        self.test_set = SeededBatches(self.task, self.batch_size, self.eval_batches, self.seed, split=2)

    def train_dataloader(self) -> DataLoader:
        # batch_size=None: the dataset yields whole batches; batch order is irrelevant (iid draws).
        return DataLoader(self.train_set, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=None)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=None)
