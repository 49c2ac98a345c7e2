"""The patch protocol: what a patched forward asks of a combination, and the fixed-weight combinations.

    z_patched = z_base + w ⊙ (z_source − z_base)

w = 0 is the base run, w = 1 everywhere the source run. A `Combination` is an `nn.Module` with one verb: mix a
layer's base and source head outputs z. It may hold several *variants* (sets of weights) that
`runs.patched_end_logits` folds into one batch: one-hot `HeadWeights` are single-head activation patching, 0/1
weights subset patching, a learned α (a family of `ioi_superpose.combinations`) the learned combination. `bind`
turns a combination into what the runners call, a `ZFunction`. The `mixing` family generalises w to a map across
heads and layers (`combinations/mixing.py`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

ZFunction = Callable[[int, Float[Tensor, "rows pos head d_head"]], Float[Tensor, "rows pos head d_head"]]
"""One patched forward's replacement of each layer's z: (layer, z of the folded rows) -> z (the engine's only
hook protocol: the fast runner calls it where `blocks.{layer}.attn.hook_z` would fire; the TransformerLens runner
turns it into `hook_z` hooks once)."""


def mix(
    z_base: Float[Tensor, "variants batch pos head d_head"],
    z_source: Float[Tensor, "batch pos head d_head"],
    weights: Float[Tensor, "variants head"],
) -> Float[Tensor, "variants batch pos head d_head"]:
    """z_base + w ⊙ (z_source − z_base), one weight per (variant, head)."""
    w = weights.to(z_base.dtype)[:, None, None, :, None]
    return z_base + w * (z_source[None] - z_base)


def mix_by_role(
    z_base: Float[Tensor, "variants batch pos head d_head"],
    z_source: Float[Tensor, "batch pos head d_head"],
    weights: Float[Tensor, "variants head role"],
    roles: Tensor | None,
) -> Float[Tensor, "variants batch pos head d_head"]:
    """z_base + w[role(position)] ⊙ (z_source − z_base) (roles: `data.roles.batch_roles`)."""
    if roles is None:
        raise ValueError("a per_position combination needs the batch's position roles (bind(source_z, roles))")
    roles = roles[:, : z_base.shape[2]].to(z_base.device)
    w = weights.to(z_base.device, z_base.dtype)[:, :, roles]  # [variants, head, batch, pos]
    w = w.permute(0, 2, 3, 1)[..., None]  # [variants, batch, pos, head, 1]
    return z_base + w * (z_source[None] - z_base)


class Combination(nn.Module):
    """Base class. `forward(layer, z_base, z_source)` returns the patched z of `layer` per variant (with
    `reads_roles`, `forward(layer, z_base, z_source, roles)`); `bind(source_z, roles)` is that for one forward,
    with everything the forward needs held by the returned function, none by the module."""

    reads_roles: bool = False
    """Whether `forward` takes the batch's position roles (`per_position`)."""
    reads_base_z: bool = False
    """Whether `bind` also takes the unpatched base run's z of every layer (`base_z=`: a combination that patches
    from fixed activations, e.g. the joint rotation); `runs.patched_end_logits` records and passes it."""

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
        `v * batch + b`): the source run's z and the batch's position roles (`data.roles.batch_roles`; only
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
