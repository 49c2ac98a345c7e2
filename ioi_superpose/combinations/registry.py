"""The combination families by name (`--model.combination`), and the one constructor that builds them."""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from ioi_superpose.combinations.base import LearnedFamily
from ioi_superpose.combinations.hard_concrete import HardConcreteCombination
from ioi_superpose.combinations.mixing import MixingCombination
from ioi_superpose.combinations.per_position import PerPositionCombination
from ioi_superpose.combinations.scalar import ScalarCombination
from ioi_superpose.errors import SettingError

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
ALL_FAMILIES: tuple[str, ...] = FAMILIES + SUBSPACE_FAMILIES
_SUBSPACE_MODULES = {"rotation": ("ioi_superpose.combinations.rotation", "RotationCombination")}
"""Imported on first use: `rotation` imports this package."""


def check_family(family: str) -> type[LearnedFamily]:
    """The class of `family`, or an error listing the families."""
    if family in REGISTRY:
        return REGISTRY[family]
    if family in _SUBSPACE_MODULES:
        module, name = _SUBSPACE_MODULES[family]
        return getattr(importlib.import_module(module), name)
    raise SettingError("combination", f"$combination must be one of {list(ALL_FAMILIES)}, got {_literal(family)}.")


def refuse_foreign_settings(family: str, given: Mapping[str, object]) -> None:
    """A family setting given to a family without it is refused (it would be ignored), naming the families it
    belongs to. `given`: the settings the caller set (not left at their default)."""
    own = check_family(family).settings
    for name, value in given.items():
        if name not in own:
            owners = [other for other in ALL_FAMILIES if name in check_family(other).settings]
            raise SettingError(
                name,
                f"${name}={_literal(value)} only applies to $combination {' or '.join(owners)} (got "
                f"{_literal(family)}): set the combination to {owners[0]}, or leave {name} unset.",
            )


def _literal(value: object) -> str:
    """`value` for a message template (a `$` in a user's string is not a placeholder)."""
    return repr(value).replace("$", "$$")


def build_combination(
    family: str, n_layers: int, n_heads: int, bounded: bool = True, init: float = 1.0,
    temperature: float = 2 / 3, seed: int = 0, mixing_target: int | None = None,
    d_head: int | None = None, rotation: dict | None = None,
) -> LearnedFamily:  # fmt: skip
    """The learnable combination of `family` (`--model.combination`) with its own settings (the others are
    not read: `training.config.FamilyConfig` refuses them when a user sets them); `d_head` and `rotation`
    (`RotationCombination`'s layers / temperature_start / temperature_end, and joint: one R over all of them,
    `JointRotationCombination`) are `rotation`'s."""
    check_family(family)
    if mixing_target is not None:
        refuse_foreign_settings(family, {"mixing_target": mixing_target})
    if family == "scalar":
        return ScalarCombination(n_layers, n_heads, bounded, init)
    if family == "per_position":
        return PerPositionCombination(n_layers, n_heads, bounded, init)
    if family == "hard_concrete":
        return HardConcreteCombination(n_layers, n_heads, init, temperature, seed)
    if family == "mixing":
        return MixingCombination(n_layers, n_heads, bounded, init, mixing_target)
    if d_head is None:
        raise ValueError("the rotation family needs the model's d_head")
    settings = dict(rotation or {})
    if settings.pop("joint", False):  # one R over all selected layers (rotation_joint)
        from ioi_superpose.combinations.rotation_joint import JointRotationCombination

        return JointRotationCombination(n_layers, n_heads, d_head, init=init, seed=seed, **settings)
    return check_family("rotation")(n_layers, n_heads, d_head, init=init, seed=seed, **settings)
