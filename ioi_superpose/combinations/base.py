"""Head combinations: modules with one verb, mix a layer's base and source head outputs z.

    z_patched = z_base + w ⊙ (z_source − z_base)

w = 0 is the base run, w = 1 everywhere the source run. A combination may hold several *variants*
(sets of weights) that `runs.patched_end_logits` folds into one batch: one-hot weights are single-head
activation patching, 0/1 weights subset patching, a learned α (one variant) the learned combination.
The `mixing` family (`combinations/mixing.py`) generalises w to a map across heads and layers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from ioi_superpose.errors import SettingError


def mix(
    z_base: Float[Tensor, "variants batch pos head d_head"],
    z_source: Float[Tensor, "batch pos head d_head"],
    weights: Float[Tensor, "variants head"],
) -> Float[Tensor, "variants batch pos head d_head"]:
    """z_base + w ⊙ (z_source − z_base), one weight per (variant, head)."""
    w = weights.to(z_base.dtype)[:, None, None, :, None]
    return z_base + w * (z_source[None] - z_base)


def check_init(init: float, bounded: bool, family: str) -> None:
    """The one check of a learnable family's initial weight: finite, and in [0, 1] when the weights are bounded."""
    if not math.isfinite(init):
        raise SettingError("init", f"$init={init} is not a finite number; give a value in [0, 1] (1.0 starts from the "
                           "full source run).")  # fmt: skip
    if bounded and not 0.0 <= init <= 1.0:
        fix = " (or set $bounded false)" if family != "hard_concrete" else " (a gate's initial value)"
        raise SettingError("init", f"$init={init} is outside [0, 1]; a bounded {family} combination needs "
                           f"0 <= init <= 1{fix}.")  # fmt: skip


ZFunction = Callable[[int, Float[Tensor, "rows pos head d_head"]], Float[Tensor, "rows pos head d_head"]]
"""One patched forward's replacement of each layer's z: (layer, z of the folded rows) -> z (the engine's only
hook protocol; the TransformerLens runner turns it into `hook_z` hooks once)."""


class Combination(nn.Module):
    """Base class. `forward(layer, z_base, z_source)` returns the patched z of `layer` per variant (with
    `reads_roles`, `forward(layer, z_base, z_source, roles)`); `bind(source_z, roles)` is that for one forward,
    with everything the forward needs held by the returned function, none by the module."""

    reads_roles: bool = False
    """Whether `forward` takes the batch's position roles (`per_position`)."""

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

    def bind(
        self, source_z: Float[Tensor, "layer batch pos head d_head"], roles: Int[Tensor, "batch pos"] | None = None
    ) -> ZFunction:
        """This combination's z function for one forward of its variants folded into the batch (row
        `v * batch + b`): the source run's z and the batch's position roles (`roles.batch_roles`; only
        `per_position` reads them) are bound here, not held by the module."""
        batch = source_z.shape[1]
        extra = (roles,) if self.reads_roles else ()

        def z_fn(layer: int, z: Tensor) -> Tensor:
            folded = z.reshape(-1, batch, *z.shape[1:])  # [variant, batch, pos, head, d_head]
            return self(layer, folded, source_z[layer], *extra).reshape(z.shape)

        return z_fn


class FixedVariants:
    """Mixin of the fixed-weight combinations: the variants are the rows of a `weights` buffer."""

    weights: Tensor

    @property
    def n_variants(self) -> int:
        return self.weights.shape[0]

    def select(self, rows: range) -> Combination:
        return self.with_weights(self.weights[rows.start : rows.stop])

    def with_weights(self, weights: Tensor) -> Combination:
        """The same kind of combination with other weights."""
        return type(self)(weights)  # type: ignore[call-arg]


class HeadWeights(FixedVariants, Combination):
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

    def first_layer(self) -> int:
        touched = (self.weights != 0).any(0).any(-1).nonzero()  # layers any variant changes
        return int(touched[0]) if len(touched) else self.weights.shape[1]

    def forward(self, layer: int, z_base: Tensor, z_source: Tensor) -> Tensor:
        return mix(z_base, z_source, self.weights[:, layer].to(z_base.device))



# --------------------------------------------------------------------------------------------------
# Combination families: one learnable module each, chosen by `--model.combination`.
#
# Every family exposes the same small surface, which the system, the API, the summary and the
# minimal-set step (`training/pruning.py`) read:
#   coefficients       the weights in the family's shape ([layer, head] or [layer, head, role]);
#   penalty()          its sparsity penalty;  project_()  after each optimiser step (no-op if unbounded);
#   l0(t), support(t)  the units (heads, or (head, role) pairs) whose weight exceeds t;
#   head_coefficients  a [layer, head] view (largest |weight| over roles) for heatmaps and baselines;
#   fixed(w)           fixed variants w[variants, *shape] of the same family (for batched evaluation);
#   mask_weights(mask) the weights that patch exactly the units in `mask` (weight 1, else 0; `mixing`
#                      keeps its learned values there), read by the minimal-set step;
#   set_mask_(mask)    make the combination patch exactly those weights.
# `mixing` (combinations/mixing.py) is a map M[layer, head, source_layer, source_head] across heads.


class LearnedFamily(Combination):
    """Base class of the learnable families (see the block comment above)."""

    family: str = ""
    settings: tuple[str, ...] = ("bounded", "init")
    """The family's own settings (`training.config.FamilyConfig` fields); any other family setting is refused."""
    coefficients: Tensor
    """The weights in the family's shape (a Parameter, or a property derived from one)."""

    def unit_names(self) -> tuple[str, ...]:
        return ("layer", "head")

    def penalty(self) -> Float[Tensor, ""]:
        raise NotImplementedError

    def l0(self, threshold: float) -> int:
        return int((self.coefficients.detach().abs() > threshold).sum())

    def support(self, threshold: float) -> list[tuple[int, ...]]:
        """Units whose |weight| exceeds `threshold`: (layer, head), or (layer, head, role) for per_position."""
        mask = self.coefficients.detach().abs() > threshold
        return [tuple(int(i) for i in unit) for unit in mask.nonzero().tolist()]

    def head_coefficients(self) -> Float[Tensor, "layer head"]:
        return self.coefficients.detach()

    def fixed(self, weights: Tensor) -> Combination:
        return HeadWeights(weights)

    def mask_weights(self, mask: Tensor) -> Tensor:
        """The weights (in the family's shape, any leading variant dims) that patch exactly `mask`: 1 inside."""
        return mask.float()

    @torch.no_grad()
    def project_(self) -> None:
        pass

    @torch.no_grad()
    def set_mask_(self, mask: Tensor) -> None:
        self.coefficients.copy_(self.mask_weights(mask).to(self.coefficients))
