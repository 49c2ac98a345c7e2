"""`per_position`: one learnable weight per head and position role (fixed variants: `engine.patch.PositionWeights`)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ioi_superpose.combinations.base import BoundedSettings, LearnedFamily, check_init
from ioi_superpose.data.roles import ROLES
from ioi_superpose.engine.patch import Combination, PositionWeights, mix_by_role


class PerPositionCombination(LearnedFamily):
    """`per_position`: α[layer, head, role], one weight per head and position role (`ROLES`), ‖α‖₁;
    bounded to [0, 1] by `project_()` like `scalar`."""

    family = "per_position"
    Settings = BoundedSettings
    description = ("α[layer, head, role] with roles IO, S1, S1+1, S2, END, other (IOI batches; other tasks only "
                   "END/other) (L1)")  # fmt: skip
    reads_roles = True

    def __init__(self, n_layers: int, n_heads: int, bounded: bool = True, init: float = 1.0) -> None:
        super().__init__()
        check_init(init, bounded, "per_position")
        self.bounded = bounded
        self.coefficients = nn.Parameter(torch.full((n_layers, n_heads, len(ROLES)), float(init)))

    @classmethod
    def build(
        cls, n_layers: int, n_heads: int, d_head: int, init: float, settings: BoundedSettings
    ) -> "PerPositionCombination":
        return cls(n_layers, n_heads, settings.bounded, init)

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
