"""The combination families by name (`--model.combination`), and the one constructor that builds them."""

from __future__ import annotations

from ioi_superpose.combinations.base import LearnedFamily
from ioi_superpose.combinations.hard_concrete import HardConcreteCombination
from ioi_superpose.combinations.mixing import MixingCombination
from ioi_superpose.combinations.per_position import PerPositionCombination
from ioi_superpose.combinations.scalar import ScalarCombination
from ioi_superpose.errors import ConfigError

REGISTRY: dict[str, type[LearnedFamily]] = {
    "scalar": ScalarCombination,
    "per_position": PerPositionCombination,
    "hard_concrete": HardConcreteCombination,
    "mixing": MixingCombination,
}
FAMILIES: tuple[str, ...] = tuple(REGISTRY)
"""The families whose units are heads (or head pairs / (head, role)s): the head-set benchmarks iterate over these."""
SUBSPACE_FAMILIES: tuple[str, ...] = ("rotation",)
"""Families whose units are directions of a learned basis of z (`ioi_superpose.combinations.rotation`), not heads."""


def build_combination(
    family: str, n_layers: int, n_heads: int, bounded: bool = True, init: float = 1.0,
    temperature: float = 2 / 3, seed: int = 0, mixing_target: int | None = None,
    d_head: int | None = None, rotation: dict | None = None,
) -> LearnedFamily:  # fmt: skip
    """The learnable combination of `family` (`--model.combination`); `mixing_target` is `mixing`'s only,
    `d_head` and `rotation` (`RotationCombination`'s layers / temperature_start / temperature_end) `rotation`'s."""
    if mixing_target is not None and family != "mixing":
        raise ConfigError(
            f"--model.mixing_target={mixing_target} only applies to --model.combination mixing (got {family!r}): "
            "set the combination to mixing, or leave mixing_target null."
        )
    if family == "scalar":
        return ScalarCombination(n_layers, n_heads, bounded, init)
    if family == "per_position":
        return PerPositionCombination(n_layers, n_heads, bounded, init)
    if family == "hard_concrete":
        return HardConcreteCombination(n_layers, n_heads, init, temperature, seed)
    if family == "mixing":
        return MixingCombination(n_layers, n_heads, bounded, init, mixing_target)
    if family == "rotation":
        from ioi_superpose.combinations.rotation import RotationCombination  # imports this package: built on demand

        if d_head is None:
            raise ValueError("the rotation family needs the model's d_head")
        return RotationCombination(n_layers, n_heads, d_head, init=init, seed=seed, **(rotation or {}))
    raise ConfigError(f"--model.combination must be one of {list(FAMILIES + SUBSPACE_FAMILIES)}, got {family!r}.")
