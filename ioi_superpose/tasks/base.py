"""What a task is: how to make contrast pairs for a tokenizer (`Task`), and what it hands back (`TaskPrompts`).

A task's prompts are a `ContrastBatch` (clean and corrupted tokens, answer sets with weights, END) plus, beside
it, the named positions of its roles (IOI: IO, S1, S2) and per-prompt feature values (IOI: the IO and S names,
the template, the order ABBA/BABA), for methods that group prompts by what they contain (causal scrubbing).

Splits are seeded per set: a set's prompts are a function of (seed, set name) only (`data.datamodule.set_seed`),
so a set stays the same when other sets are added or removed. A generated task draws each set fresh
(`GeneratedTask.prompts`); a file task partitions its records (`tasks.file`).

Helpers here turn text pieces into tokens the way the IOI generator does (slot by slot, so every piece's
position is known) and refuse, naming the word, a tokenizer that cannot express a task.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from jaxtyping import Int
from torch import Tensor

from ioi_superpose.data.answer_metrics import MetricName, set_weights
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.data.datamodule import set_seed
from ioi_superpose.data.ioi import TextEncoder
from ioi_superpose.errors import ConfigError, UnknownWordError

CORE_SETS: tuple[str, ...] = ("train", "val", "in_distribution")
"""The sets every task has: training, validation and the in-distribution test set."""


@dataclass
class TaskPrompts:
    """A task's prompts: the contrast batch, its roles' positions and each prompt's feature values."""

    batch: ContrastBatch
    roles: dict[str, Int[Tensor, " batch"]] = field(default_factory=dict)
    """Named positions per prompt (END is `batch.end_pos`); empty for a task without roles."""
    features: dict[str, list[Any]] = field(default_factory=dict)
    """Per-prompt values (JSON-ready: strings, ints), one list per feature, in row order."""

    def __post_init__(self) -> None:
        n = len(self.batch)
        bad = [name for name, values in [*self.roles.items(), *self.features.items()] if len(values) != n]
        if bad:
            raise ValueError(f"roles/features {bad} do not have one entry per prompt ({n})")

    def __len__(self) -> int:
        return len(self.batch)

    def __getitem__(self, index: int | slice | Sequence[int] | Tensor) -> "TaskPrompts":
        rows = torch.arange(len(self))[index].reshape(-1) if not isinstance(index, Tensor) else index.reshape(-1)
        if rows.dtype == torch.bool:
            rows = rows.nonzero().flatten()
        keep = rows.tolist()
        return TaskPrompts(
            batch=self.batch[rows],
            roles={name: positions[rows] for name, positions in self.roles.items()},
            features={name: [values[i] for i in keep] for name, values in self.features.items()},
        )


class Task(ABC):
    """How to make contrast pairs for a tokenizer. One small module per task, registered in `tasks/registry.py`.

    Class attributes say what the task is: its `metric` (`logit_diff` or `prob_diff`), the names of its roles
    and features, and `off_distribution`, the names of its off-distribution test sets.
    """

    name: ClassVar[str]
    metric: ClassVar[MetricName] = "logit_diff"
    role_names: ClassVar[tuple[str, ...]] = ()
    feature_names: ClassVar[tuple[str, ...]] = ()

    @property
    def off_distribution(self) -> tuple[str, ...]:
        """Names of the task's off-distribution test sets (none by default)."""
        return ()

    @property
    def set_names(self) -> tuple[str, ...]:
        return (*CORE_SETS, *self.off_distribution)

    @abstractmethod
    def splits(self, encoder: TextEncoder, sizes: Mapping[str, int], seed: int) -> dict[str, TaskPrompts]:
        """`sizes[set]` prompts of each named set (`set_names`), seeded by `seed`."""

    def words(self) -> list[str]:
        """Every word the task's prompts and answers can hold (what a word-level vocabulary must contain), in a
        fixed order; empty for a task that draws arbitrary tokens (induction)."""
        return []

    def check_set_names(self, names: Sequence[str]) -> None:
        unknown = [name for name in names if name not in self.set_names]
        if unknown:
            raise ConfigError(f"Task {self.name!r} has no prompt set {unknown}; its sets are {list(self.set_names)}.")


class GeneratedTask(Task):
    """A task that draws any number of fresh prompts of each set from a seed."""

    @abstractmethod
    def prompts(self, encoder: TextEncoder, set_name: str, n: int, seed: int) -> TaskPrompts:
        """`n` prompts of the set `set_name`, a function of (`seed`, `set_name`) only."""

    def splits(self, encoder: TextEncoder, sizes: Mapping[str, int], seed: int) -> dict[str, TaskPrompts]:
        self.check_set_names(list(sizes))
        return {name: self.prompts(encoder, name, n, seed) for name, n in sizes.items()}

    def _check_request(self, set_name: str, n: int) -> None:
        self.check_set_names([set_name])
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"Task {self.name!r}: the number of prompts must be a positive integer, got {n!r}.")

    @staticmethod
    def set_rng_seed(seed: int, set_name: str) -> int:
        """The seed of one named set (train, val and the in-distribution test set each get their own)."""
        return set_seed(seed, set_name)


# --------------------------------------------------------------------------------------------------
# Tokens from text pieces, and refusals that name the word.


def encode_words(encoder: TextEncoder, text: str, task: str) -> list[int]:
    """`encoder.encode(text)` without special tokens; a word outside a closed vocabulary is a ConfigError."""
    try:
        return list(encoder.encode(text, add_special_tokens=False))
    except UnknownWordError as error:
        raise ConfigError(
            f"Task {task!r}: this tokenizer cannot express {text.strip()!r}: {error}. Use a tokenizer whose "
            "vocabulary holds the task's words (the task's `words()`)."
        ) from None


def single_token(encoder: TextEncoder, text: str, task: str, what: str) -> int:
    """The one token of `text`; refused, naming the word and its tokens, when it is not exactly one."""
    tokens = encode_words(encoder, text, task)
    if len(tokens) != 1:
        shown = [encoder.decode([t]) for t in tokens] if hasattr(encoder, "decode") else tokens
        raise ConfigError(
            f"Task {task!r}: the {what} {text!r} is {len(tokens)} tokens for this tokenizer ({shown}), not one. "
            f"Each {what} must be a single token so that clean and corrupted prompts align and an answer is one logit."
        )
    return tokens[0]


def encode_pieces(encoder: TextEncoder, pieces: Sequence[str], task: str) -> tuple[list[int], list[int]]:
    """Tokens of the prompt (BOS first when the tokenizer has one) and the position of each piece's first token."""
    tokens: list[int] = [encoder.bos_token_id] if encoder.bos_token_id is not None else []
    starts = []
    for piece in pieces:
        starts.append(len(tokens))
        tokens += encode_words(encoder, piece, task)
    return tokens, starts


def pad_id(encoder: TextEncoder) -> int:
    # Padding sits after END and causal attention never reads it: any valid id works.
    return encoder.pad_token_id if encoder.pad_token_id is not None else 0


@dataclass
class Row:
    """One generated prompt pair before stacking."""

    clean: list[int]
    corrupted: list[int]
    correct: list[int]
    incorrect: list[int]
    roles: dict[str, int] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)


def stack_rows(rows: Sequence[Row], pad_token_id: int, role_names: Sequence[str] = (),
               feature_names: Sequence[str] = (), metric: MetricName = "logit_diff") -> TaskPrompts:  # fmt: skip
    """Right-pad the rows into one `TaskPrompts`; END is each row's last token; the batch carries the task's `metric`.

    Answers: a batch where every prompt has one correct and one incorrect answer keeps today's pair
    (`answer_tokens` [batch, 2], no weights); otherwise the sets are padded to the widest prompt with weight 0
    (`data.answer_metrics.set_weights`).
    """
    if not rows:
        raise ValueError("no rows to stack")
    for row in rows:
        if len(row.clean) != len(row.corrupted):
            raise ValueError(f"clean and corrupted prompts differ in length: {len(row.clean)} vs {len(row.corrupted)}")
    length = max(len(row.clean) for row in rows)

    def padded(tokens: list[int]) -> list[int]:
        return tokens + [pad_token_id] * (length - len(tokens))

    pairs = all(len(row.correct) == 1 and len(row.incorrect) == 1 for row in rows)
    width = max(len(row.correct) + len(row.incorrect) for row in rows)
    answers = [padded_answers(row.correct + row.incorrect, width) for row in rows]
    batch = ContrastBatch(
        clean_tokens=torch.tensor([padded(row.clean) for row in rows]),
        corrupted_tokens=torch.tensor([padded(row.corrupted) for row in rows]),
        answer_tokens=torch.tensor(answers),
        end_pos=torch.tensor([len(row.clean) - 1 for row in rows]),
        index=torch.arange(len(rows)),
        answer_weights=None if pairs else torch.tensor(
            [set_weights(len(row.correct), len(row.incorrect), width) for row in rows]
        ),
        metric=metric,
    )  # fmt: skip
    return TaskPrompts(
        batch=batch,
        roles={name: torch.tensor([row.roles[name] for row in rows]) for name in role_names},
        features={name: [row.features[name] for row in rows] for name in feature_names},
    )


def padded_answers(tokens: list[int], width: int) -> list[int]:
    """Answer tokens padded with token 0 (weight 0: never read) up to `width`."""
    return tokens + [0] * (width - len(tokens))


def one_token_words(encoder: TextEncoder, words: Sequence[str]) -> list[str]:
    """The words that are one token with a leading space for this tokenizer (words it cannot express dropped)."""
    kept = []
    for word in words:
        try:
            if len(encoder.encode(" " + word, add_special_tokens=False)) == 1:
                kept.append(word)
        except UnknownWordError:
            continue
    return kept
