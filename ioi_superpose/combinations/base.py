"""What every learnable combination family shares: `LearnedFamily` (the surface the system, the API, the summary
and the minimal-set step read) and the check of a family's initial weight. The patch protocol the families
implement (`Combination`, fixed variants) is the engine's (`ioi_superpose.engine.patch`)."""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor

from ioi_superpose.engine.patch import Combination, HeadWeights
from ioi_superpose.errors import SettingError


def check_init(init: float, bounded: bool, family: str) -> None:
    """The one check of a learnable family's initial weight: finite, and in [0, 1] when the weights are bounded."""
    if not math.isfinite(init):
        raise SettingError("init", f"$init={init} is not a finite number; give a value in [0, 1] (1.0 starts from the "
                           "full source run).")  # fmt: skip
    if bounded and not 0.0 <= init <= 1.0:
        fix = " (or set $bounded false)" if family != "hard_concrete" else " (a gate's initial value)"
        raise SettingError("init", f"$init={init} is outside [0, 1]; a bounded {family} combination needs "
                           f"0 <= init <= 1{fix}.")  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Combination families: one learnable module each, chosen by `--model.combination`.
#
# Every family exposes the same small surface, which the system, the API, the summary and the
# minimal-set step (`analyses/pruning.py`) read:
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
