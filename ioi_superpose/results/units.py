"""The units of a weight or score tensor, largest first, as summary rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ioi_superpose.data.roles import ROLES


def top_heads(
    values: Tensor, k: int = 20, threshold: float = 0.0, key: str = "alpha", roles: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """The (at most k) units of largest |value| above `threshold`, largest first: heads of a
    [layer, head] tensor, (head, role) pairs of a [layer, head, role] one (role named from `roles`,
    default `data.roles.ROLES`), or (head, source head) entries of a `mixing` map [layer, head,
    source_layer, source_head] (layer, head: the target)."""
    flat = values.flatten()
    order = flat.abs().argsort(descending=True)[:k]
    rows = []
    for i in order:
        if abs(float(flat[i])) <= threshold:
            continue
        index = torch.unravel_index(i, values.shape)
        row: dict[str, Any] = {"layer": int(index[0]), "head": int(index[1])}
        if values.dim() == 3:
            row["role"] = (roles or ROLES)[int(index[2])]
        if values.dim() == 4:
            row["source_layer"], row["source_head"] = int(index[2]), int(index[3])
        row[key] = round(float(flat[i]), 4)
        rows.append(row)
    return rows
