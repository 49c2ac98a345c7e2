"""GPT-2 small's IOI circuit as found by Wang et al. (2022): head classes, as (layer, head)."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

IOI_HEAD_CLASSES: dict[str, tuple[tuple[int, int], ...]] = {
    "name_mover": ((9, 9), (9, 6), (10, 0)),
    "negative_name_mover": ((10, 7), (11, 10)),
    "backup_name_mover": ((10, 10), (10, 6), (10, 2), (10, 1), (11, 2), (9, 7), (9, 0), (11, 9)),
    "s_inhibition": ((7, 3), (7, 9), (8, 6), (8, 10)),
    "induction": ((5, 5), (5, 8), (5, 9), (6, 9)),
    "duplicate_token": ((0, 1), (0, 10), (3, 0)),
    "previous_token": ((2, 2), (4, 11)),
}
IOI_CIRCUIT: frozenset[tuple[int, int]] = frozenset(h for heads in IOI_HEAD_CLASSES.values() for h in heads)


def has_gpt2_small_shape(n_layers: int, n_heads: int, d_model: int, d_vocab: int) -> bool:
    """GPT-2 small's architecture, however it was loaded (by name, from a local directory, …): the
    paper's head indices only mean something on it. Its weights are not checked."""
    return (n_layers, n_heads, d_model, d_vocab) == (12, 12, 768, 50257)


def circuit_precision_recall(alpha: Float[Tensor, "12 12"], threshold: float) -> dict:
    """How the heads with |α| > threshold compare with the paper's 26-head circuit."""
    selected = {(int(layer), int(head)) for layer, head in torch.nonzero(alpha.abs() > threshold).tolist()}
    hits = selected & IOI_CIRCUIT
    return {
        "precision": len(hits) / len(selected) if selected else None,
        "recall": len(hits) / len(IOI_CIRCUIT),
        "recall_by_class": {name: len(selected & set(heads)) / len(heads) for name, heads in IOI_HEAD_CLASSES.items()},
        "selected_outside_circuit": sorted(selected - IOI_CIRCUIT),
    }
