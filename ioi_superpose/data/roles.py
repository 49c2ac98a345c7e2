"""Position roles (IO, S1, S1+1, S2, END, other) of a batch's tokens; the `per_position` family reads them."""

from __future__ import annotations

import torch
from torch import Tensor

ROLES: tuple[str, ...] = ("IO", "S1", "S1+1", "S2", "END", "other")
"""Roles of a position for `per_position`. IOI batches (`data.ioi.IOIBatch`) fill all of them; any other
`ContrastBatch` only END (its `end_pos`) and other (every other position)."""
ROLE_INDEX = {name: index for index, name in enumerate(ROLES)}


def position_roles(
    length: int,
    end_pos: Tensor,
    io_pos: Tensor | None = None,
    s1_pos: Tensor | None = None,
    s2_pos: Tensor | None = None,
) -> Tensor:
    """Role index (into `ROLES`) of every position, [batch, length]; later roles override earlier ones
    (S1+1, S1, IO, S2, END). Positions after END (padding) are `other`: they never reach END's logits."""
    batch = end_pos.shape[0]
    roles = torch.full((batch, length), ROLE_INDEX["other"], dtype=torch.long, device=end_pos.device)
    rows = torch.arange(batch, device=end_pos.device)
    if s1_pos is not None:
        roles[rows, (s1_pos + 1).clamp(max=length - 1)] = ROLE_INDEX["S1+1"]
    for name, pos in (("S1", s1_pos), ("IO", io_pos), ("S2", s2_pos), ("END", end_pos)):
        if pos is not None:
            roles[rows, pos] = ROLE_INDEX[name]
    return roles


def batch_roles(batch: object) -> Tensor:
    """`position_roles` of a `ContrastBatch` (IOI roles where the batch has them)."""
    return position_roles(
        batch.clean_tokens.shape[1], batch.end_pos,  # type: ignore[attr-defined]
        getattr(batch, "io_pos", None), getattr(batch, "s1_pos", None), getattr(batch, "s2_pos", None),
    )  # fmt: skip
