"""Head combinations: modules with one verb, mix a layer's base and source head outputs z.

    z_patched = z_base + w ⊙ (z_source − z_base)

w = 0 is the base run, w = 1 everywhere the source run. A combination may hold several *variants*
(sets of weights) that `runs.patched_end_logits` folds into one batch: one-hot weights are single-head
activation patching, 0/1 weights subset patching, a learned α (one variant) the learned combination.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn

from ioi_superpose.errors import ConfigError


def mix(
    z_base: Float[Tensor, "variants batch pos head d_head"],
    z_source: Float[Tensor, "batch pos head d_head"],
    weights: Float[Tensor, "variants head"],
) -> Float[Tensor, "variants batch pos head d_head"]:
    """z_base + w ⊙ (z_source − z_base), one weight per (variant, head)."""
    w = weights.to(z_base.dtype)[:, None, None, :, None]
    return z_base + w * (z_source[None] - z_base)


class Combination(nn.Module):
    """Base class. `forward(layer, z_base, z_source)` returns the patched z of `layer` per variant."""

    @property
    def n_variants(self) -> int:
        return 1

    def select(self, rows: range) -> "Combination":
        """The variants `rows` as a combination of their own (for chunked runs)."""
        if rows != range(self.n_variants):
            raise ValueError(f"{type(self).__name__} has {self.n_variants} variant(s); cannot select {rows}")
        return self

    def first_layer(self) -> int:
        """The earliest layer this combination can change: runs start there from the base prefix."""
        return 0

    def forward(
        self,
        layer: int,
        z_base: Float[Tensor, "variants batch pos head d_head"],
        z_source: Float[Tensor, "batch pos head d_head"],
    ) -> Float[Tensor, "variants batch pos head d_head"]:
        raise NotImplementedError


class HeadWeights(Combination):
    """Fixed weights w[variant, layer, head]: patching of single heads (one-hot) or head subsets (0/1),
    or the value of any given α. Not trained (a buffer)."""

    def __init__(self, weights: Float[Tensor, "variants layer head"]) -> None:
        super().__init__()
        if weights.dim() == 2:
            weights = weights[None]
        if weights.dim() != 3:
            raise ValueError(f"weights must be [variants, layer, head] or [layer, head], got {tuple(weights.shape)}")
        self.register_buffer("weights", weights.detach().float())

    @classmethod
    def single_heads(cls, n_layers: int, n_heads: int) -> "HeadWeights":
        """One variant per head, in (layer, head) row-major order, each patching that head alone."""
        return cls(torch.eye(n_layers * n_heads).view(n_layers * n_heads, n_layers, n_heads))

    @property
    def n_variants(self) -> int:
        return self.weights.shape[0]

    def select(self, rows: range) -> "HeadWeights":
        return HeadWeights(self.weights[rows.start : rows.stop])

    def first_layer(self) -> int:
        touched = (self.weights != 0).any(0).any(-1).nonzero()  # layers any variant changes
        return int(touched[0]) if len(touched) else self.weights.shape[1]

    def forward(self, layer: int, z_base: Tensor, z_source: Tensor) -> Tensor:
        return mix(z_base, z_source, self.weights[:, layer].to(z_base.device))


class HeadCombination(Combination):
    """Learnable α[layer, head], one weight per head output (all positions).

    With `bounded`, α lives in [0, 1]: call `project_()` after each optimiser step (a projected
    gradient step, which, with an L1 penalty, sets unneeded heads to exactly zero rather than merely
    small, as a sigmoid parametrisation would).
    """

    def __init__(self, n_layers: int, n_heads: int, bounded: bool = True, init: float = 1.0) -> None:
        super().__init__()
        if bounded and not 0.0 <= init <= 1.0:
            raise ConfigError(
                f"--model.init={init} is outside [0, 1]; a bounded combination needs 0 <= init <= 1 "
                "(or set --model.bounded false)."
            )
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
