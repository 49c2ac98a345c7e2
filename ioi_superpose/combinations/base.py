"""What every learnable combination family shares: `LearnedFamily` (the surface the system, the API, the summary
and the minimal-set step read), `FamilySettings` (the base of a family's own settings) and the check of a family's
initial weight. The patch protocol the families implement (`Combination`, fixed variants) is the engine's
(`ioi_superpose.engine.patch`).

**Adding a family** is one file and one line: the file defines the module (a `LearnedFamily`), its settings (a
frozen `FamilySettings` dataclass, one documented field per setting, checked in `__post_init__`) and `build`; the
line registers the class by name in `registry.REGISTRY`. Its settings then are `--model.*` flags, keyword arguments
of the LightningModule and the API, and fields of the run's config (`fitting.settings`), refused for other families.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from jaxtyping import Float
from torch import Tensor

from ioi_superpose.engine.patch import Combination, HeadWeights
from ioi_superpose.errors import SettingError


def check_finite(name: str, value: float | None) -> None:
    """NaN and ±inf are refused for every float setting (None, where allowed, is checked by the caller): YAML's
    `.nan` / `.inf` pass a range check written as `x < 0`, and a run then ends with a meaningless α (issue 19)."""
    if value is not None and not math.isfinite(value):
        raise SettingError(name, f"${name}={value} is not a finite number; give a real value (YAML .nan / .inf "
                           "are refused).")  # fmt: skip


def check_init(init: float, bounded: bool, family: str) -> None:
    """The one check of a learnable family's initial weight: finite, and in [0, 1] when the weights are bounded."""
    if not math.isfinite(init):
        raise SettingError("init", f"$init={init} is not a finite number; give a value in [0, 1] (1.0 starts from the "
                           "full source run).")  # fmt: skip
    if bounded and not 0.0 <= init <= 1.0:
        fix = " (or set $bounded false)" if family != "hard_concrete" else " (a gate's initial value)"
        raise SettingError("init", f"$init={init} is outside [0, 1]; a bounded {family} combination needs "
                           f"0 <= init <= 1{fix}.")  # fmt: skip


SAME_FOR_OTHERS: dict[str, Any] = {"same_for_others": True}
"""Field metadata of a family setting whose default holds for every family that lacks the setting (`bounded`: the
other families' weights are in [0, 1] anyway): its flag keeps that default, not null, and only another value is
refused for those families."""
BATCHABLE: dict[str, Any] = {"batchable": True}
"""Field metadata of a setting in which the members of one batched fit may differ (`fitting.settings.BATCHABLE`)."""


@dataclass(frozen=True)
class FamilySettings:
    """A family's own settings: the base of one frozen dataclass per family, named by its `LearnedFamily.Settings`.

    Each field is one flat setting (`--model.<field>`, a keyword of the LightningModule and of the API:
    `fitting.settings.flat_settings`). There it is null by default, meaning this default, and a value given for a
    family whose settings lack the field is refused (`SAME_FOR_OTHERS` fields excepted). Checks go in
    `__post_init__`, raising `errors.SettingError` named by the field."""


@dataclass(frozen=True)
class BoundedSettings(FamilySettings):
    """Settings of the families whose weights may leave [0, 1]."""

    bounded: bool = field(default=True, metadata=SAME_FOR_OTHERS)
    """keep every weight in [0, 1], projected after each optimiser step (with the L1 penalty, unneeded weights become
    exactly 0); false lets them take any real value."""


@dataclass(frozen=True)
class SeededSettings(FamilySettings):
    """Settings of the families that draw random numbers of their own."""

    gate_seed: int = field(default=0, metadata=BATCHABLE)
    """seed of the family's own generator (hard_concrete: the gates' noise; rotation: R's random start)."""


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
    Settings: ClassVar[type[FamilySettings]] = FamilySettings
    """The family's own settings, registered with it (`registry.REGISTRY`): any other family's setting is refused."""
    description: ClassVar[str] = ""
    """What the family learns, in a few words: the `--model.combination` help lists it."""
    units_are_heads: ClassVar[bool] = True
    """False for a family whose units are directions of a learned basis, not heads (`rotation`): it has no head set
    to score (circuit criteria), no head weights to rank corpus positions by, and no batched fit."""
    coefficients: Tensor
    """The weights in the family's shape (a Parameter, or a property derived from one)."""

    @classmethod
    def build(cls, n_layers: int, n_heads: int, d_head: int, init: float, settings: Any) -> LearnedFamily:
        """The family for a model of this shape, from its initial weight and its own settings (`Settings`)."""
        raise NotImplementedError

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
