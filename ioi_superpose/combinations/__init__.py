"""Combination families: `nn.Module`s that mix a layer's base and source head outputs z, one family per file."""

from ioi_superpose.combinations.base import Combination, FixedVariants, HeadWeights, LearnedFamily, mix
from ioi_superpose.combinations.hard_concrete import HARD_CONCRETE_STRETCH, HardConcreteCombination
from ioi_superpose.combinations.mixing import MixingCombination, MixingRun, MixingWeights, allowed_entries, identity_map
from ioi_superpose.combinations.per_position import PerPositionCombination, PositionWeights, mix_by_role
from ioi_superpose.combinations.registry import FAMILIES, REGISTRY, SUBSPACE_FAMILIES, build_combination
from ioi_superpose.combinations.roles import ROLE_INDEX, ROLES, batch_roles, position_roles
from ioi_superpose.combinations.scalar import HeadCombination, ScalarCombination
from ioi_superpose.combinations.stacked import StackedCombination

__all__ = [
    "FAMILIES",
    "HARD_CONCRETE_STRETCH",
    "REGISTRY",
    "ROLES",
    "ROLE_INDEX",
    "SUBSPACE_FAMILIES",
    "Combination",
    "FixedVariants",
    "HardConcreteCombination",
    "HeadCombination",
    "HeadWeights",
    "LearnedFamily",
    "MixingCombination",
    "MixingRun",
    "MixingWeights",
    "PerPositionCombination",
    "PositionWeights",
    "ScalarCombination",
    "StackedCombination",
    "allowed_entries",
    "batch_roles",
    "build_combination",
    "identity_map",
    "mix",
    "mix_by_role",
    "position_roles",
]
