"""Combination families: learnable `nn.Module`s that mix a layer's base and source head outputs z (the engine's patch
protocol, `ioi_superpose.engine.patch`), one family per file."""

from ioi_superpose.combinations.base import LearnedFamily
from ioi_superpose.combinations.hard_concrete import HARD_CONCRETE_STRETCH, HardConcreteCombination
from ioi_superpose.combinations.mixing import MixingCombination, MixingRun, MixingWeights, allowed_entries, identity_map
from ioi_superpose.combinations.per_position import PerPositionCombination
from ioi_superpose.combinations.registry import FAMILIES, REGISTRY, SUBSPACE_FAMILIES, build_combination
from ioi_superpose.combinations.scalar import HeadCombination, ScalarCombination
from ioi_superpose.combinations.stacked import StackedCombination

__all__ = [
    "FAMILIES",
    "HARD_CONCRETE_STRETCH",
    "REGISTRY",
    "SUBSPACE_FAMILIES",
    "HardConcreteCombination",
    "HeadCombination",
    "LearnedFamily",
    "MixingCombination",
    "MixingRun",
    "MixingWeights",
    "PerPositionCombination",
    "ScalarCombination",
    "StackedCombination",
    "allowed_entries",
    "build_combination",
    "identity_map",
]
