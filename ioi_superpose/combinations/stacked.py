"""K learnable combinations of one family as the K variants of one combination (one patched forward serves all K).

`engine.runs.patched_end_logits` folds a combination's variants into the batch (row `v * batch + b`); a stack
makes K members the K variants, so K settings train in one forward and backward (`training.system`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor, nn

from ioi_superpose.combinations.base import LearnedFamily
from ioi_superpose.combinations.scalar import ScalarCombination
from ioi_superpose.engine.patch import Combination, ZFunction, mix
from ioi_superpose.errors import ConfigError


class StackedCombination(Combination):
    """K learnable members of one family as the K variants of one combination: variant k is member k.

    `vectorise` (default: when every member is `scalar`) mixes all members' α in one `mix` call;
    otherwise each member's own forward runs on its variant's slice (any family, including ones added
    later, as long as its forward takes one variant).
    """

    def __init__(self, members: Sequence[LearnedFamily], vectorise: bool | None = None) -> None:
        super().__init__()
        if not members:
            raise ValueError("a stacked combination needs at least one member")
        families = sorted({type(member).__name__ for member in members})
        if len(families) != 1:
            raise ConfigError(f"the members of a batched fit must share one family, got {families}.")
        self.members = nn.ModuleList(members)
        scalar = all(isinstance(member, ScalarCombination) for member in members)
        if vectorise and not scalar:
            raise ValueError("the vectorised path mixes scalar α only; use vectorise=False for other families")
        self.vectorise = scalar if vectorise is None else vectorise

    @property
    def n_variants(self) -> int:
        return len(self.members)

    def select(self, rows: range) -> "StackedCombination":
        return StackedCombination(list(self.members)[rows.start : rows.stop], self.vectorise)

    def first_layer(self) -> int:
        return min(member.first_layer() for member in self.members)

    def bind(
        self, source_z: Float[Tensor, "layer batch pos head d_head"], roles: Tensor | None = None
    ) -> ZFunction:
        """Variant k of the folded rows is member k: the vectorised `mix` of every member's α, or each member's
        own bound function on its slice (any family, including ones added later)."""
        batch, members = source_z.shape[1], list(self.members)
        if self.vectorise:
            return Combination.bind(self, source_z, roles)
        member_fns = [member.bind(source_z, roles) for member in members]

        def z_fn(layer: int, z: Tensor) -> Tensor:
            if z.shape[0] != len(members) * batch:
                raise ValueError(f"z has {z.shape[0]} rows; this stack has {len(members)} members x {batch} prompts")
            return torch.cat([fn(layer, z[k * batch : (k + 1) * batch]) for k, fn in enumerate(member_fns)])

        return z_fn

    def forward(
        self,
        layer: int,
        z_base: Float[Tensor, "variants batch pos head d_head"],
        z_source: Float[Tensor, "batch pos head d_head"],
        roles: Tensor | None = None,
    ) -> Float[Tensor, "variants batch pos head d_head"]:
        """The vectorised path (scalar members): every member's α in one `mix`."""
        if z_base.shape[0] != len(self.members):
            raise ValueError(f"z_base has {z_base.shape[0]} variants; this stack has {len(self.members)} members")
        return mix(z_base, z_source, torch.stack([member.coefficients[layer] for member in self.members]))
