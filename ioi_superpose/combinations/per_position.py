"""`per_position`: one learnable weight per head and position role; `PositionWeights` its fixed variants."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn

from ioi_superpose.combinations.base import Combination, FixedVariants, LearnedFamily, check_init
from ioi_superpose.combinations.roles import ROLES


class PositionWeights(FixedVariants, Combination):
    """Fixed weights w[variant, layer, head, role]; each position takes its role's weight (`roles` [batch, pos])."""

    reads_roles = True

    def __init__(self, weights: Float[Tensor, "variants layer head role"]) -> None:
        super().__init__()
        if weights.dim() == 3:
            weights = weights[None]
        if weights.dim() != 4:
            raise ValueError(f"weights must be [variants, layer, head, role], got {tuple(weights.shape)}")
        self.register_buffer("weights", weights.detach().float())

    def first_layer(self) -> int:
        touched = (self.weights != 0).flatten(2).any(-1).any(0).nonzero()
        return int(touched[0]) if len(touched) else self.weights.shape[1]

    def forward(self, layer: int, z_base: Tensor, z_source: Tensor, roles: Tensor | None = None) -> Tensor:
        return mix_by_role(z_base, z_source, self.weights[:, layer], roles)


def mix_by_role(
    z_base: Float[Tensor, "variants batch pos head d_head"],
    z_source: Float[Tensor, "batch pos head d_head"],
    weights: Float[Tensor, "variants head role"],
    roles: Tensor | None,
) -> Float[Tensor, "variants batch pos head d_head"]:
    """z_base + w[role(position)] ⊙ (z_source − z_base)."""
    if roles is None:
        raise ValueError("a per_position combination needs the batch's position roles (bind(source_z, roles))")
    roles = roles[:, : z_base.shape[2]].to(z_base.device)
    w = weights.to(z_base.device, z_base.dtype)[:, :, roles]  # [variants, head, batch, pos]
    w = w.permute(0, 2, 3, 1)[..., None]  # [variants, batch, pos, head, 1]
    return z_base + w * (z_source[None] - z_base)


class PerPositionCombination(LearnedFamily):
    """`per_position`: α[layer, head, role], one weight per head and position role (`ROLES`), ‖α‖₁;
    bounded to [0, 1] by `project_()` like `scalar`."""

    family = "per_position"
    reads_roles = True

    def __init__(self, n_layers: int, n_heads: int, bounded: bool = True, init: float = 1.0) -> None:
        super().__init__()
        check_init(init, bounded, "per_position")
        self.bounded = bounded
        self.coefficients = nn.Parameter(torch.full((n_layers, n_heads, len(ROLES)), float(init)))

    def unit_names(self) -> tuple[str, ...]:
        return ("layer", "head", "role")

    def forward(self, layer: int, z_base: Tensor, z_source: Tensor, roles: Tensor | None = None) -> Tensor:
        return mix_by_role(z_base, z_source, self.coefficients[layer][None], roles)

    def penalty(self) -> Tensor:
        return self.coefficients.abs().sum()

    def head_coefficients(self) -> Tensor:
        return self.coefficients.detach().abs().amax(-1)

    def fixed(self, weights: Tensor) -> Combination:
        return PositionWeights(weights)

    @torch.no_grad()
    def project_(self) -> None:
        if self.bounded:
            self.coefficients.clamp_(0.0, 1.0)
