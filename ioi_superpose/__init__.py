"""ioi_superpose: learn sparse combinations of attention heads that carry a behaviour."""

from ioi_superpose.api import LearnedCombination, learn_combination, learn_combinations, recovery_of

__all__ = ["LearnedCombination", "learn_combination", "learn_combinations", "recovery_of"]
