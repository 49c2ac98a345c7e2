"""`scalar`: one learnable weight α[layer, head] per head output, at all positions."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn

from ioi_superpose.combinations.base import BoundedSettings, LearnedFamily, check_init
from ioi_superpose.engine.patch import Combination, mix


class HeadCombination(Combination):
    """Learnable α[layer, head], one weight per head output (all positions).

    With `bounded`, α lives in [0, 1]: call `project_()` after each optimiser step (a projected
    gradient step, which, with an L1 penalty, sets unneeded heads to exactly zero rather than merely
    small, as a sigmoid parametrisation would).
    """

    def __init__(self, n_layers: int, n_heads: int, bounded: bool = True, init: float = 1.0) -> None:
        super().__init__()
        check_init(init, bounded, "scalar")
        self.bounded = bounded
        self.coefficients = nn.Parameter(torch.full((n_layers, n_heads), float(init)))

    def forward(self, layer: int, z_base: Tensor, z_source: Tensor) -> Tensor:
        return mix(z_base, z_source, self.coefficients[layer][None])

    def penalty(self) -> Float[Tensor, ""]:
        """The sparsity penalty: ‖α‖₁."""
        return self.coefficients.abs().sum()

    def l0(self, threshold: float) -> int:
        """Number of heads whose |α| exceeds `threshold`."""
        return int((self.coefficients.detach().abs() > threshold).sum())

    @torch.no_grad()
    def project_(self) -> None:
        if self.bounded:
            self.coefficients.clamp_(0.0, 1.0)



class ScalarCombination(HeadCombination, LearnedFamily):
    """`scalar`: today's α[layer, head] (`HeadCombination`), one weight per head at all positions, ‖α‖₁."""

    family = "scalar"
    Settings = BoundedSettings
    description = "α[layer, head] at all positions (L1)"

    def __init__(self, n_layers: int, n_heads: int, bounded: bool = True, init: float = 1.0) -> None:
        HeadCombination.__init__(self, n_layers, n_heads, bounded, init)

    @classmethod
    def build(
        cls, n_layers: int, n_heads: int, d_head: int, init: float, settings: BoundedSettings
    ) -> "ScalarCombination":
        return cls(n_layers, n_heads, settings.bounded, init)

    @torch.no_grad()
    def project_(self) -> None:
        HeadCombination.project_(self)
