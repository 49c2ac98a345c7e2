"""A task's prompts (`TaskPrompts`): a `ContrastBatch` plus the named positions of its roles and each prompt's feature
values. What a task hands back (`tasks.base.Task.splits`), and what methods that group prompts by what they contain
read (causal scrubbing, `analyses.scrubbing`); here, below both, so that either may take it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from ioi_superpose.data.batch import ContrastBatch


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
