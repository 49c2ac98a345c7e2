"""The combination families by name (`--model.combination`): one line per family, and the one constructor."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from ioi_superpose.combinations.base import LearnedFamily
from ioi_superpose.combinations.hard_concrete import HardConcreteCombination
from ioi_superpose.combinations.mixing import MixingCombination
from ioi_superpose.combinations.per_position import PerPositionCombination
from ioi_superpose.combinations.rotation import RotationCombination
from ioi_superpose.combinations.scalar import ScalarCombination
from ioi_superpose.errors import SettingError

REGISTRY: dict[str, type[LearnedFamily]] = {
    "scalar": ScalarCombination,
    "per_position": PerPositionCombination,
    "hard_concrete": HardConcreteCombination,
    "mixing": MixingCombination,
    "rotation": RotationCombination,
}
"""Each family's class, which carries its settings (`Settings`), its `build` and its description."""
ALL_FAMILIES: tuple[str, ...] = tuple(REGISTRY)
FAMILIES: tuple[str, ...] = tuple(name for name, family in REGISTRY.items() if family.units_are_heads)
"""The families whose units are heads (or head pairs / (head, role)s): the head-set benchmarks iterate over these."""
SUBSPACE_FAMILIES: tuple[str, ...] = tuple(name for name in ALL_FAMILIES if name not in FAMILIES)
"""Families whose units are directions of a learned basis of z (`ioi_superpose.combinations.rotation`), not heads."""


def check_family(family: str) -> type[LearnedFamily]:
    """The class of `family`, or an error listing the families."""
    if family not in REGISTRY:
        raise SettingError("combination", f"$combination must be one of {list(ALL_FAMILIES)}, got {_literal(family)}.")
    return REGISTRY[family]


def owners(name: str) -> list[str]:
    """The families whose own settings include the setting `name`, in registry order."""
    return [family for family, cls in REGISTRY.items() if name in {f.name for f in fields(cls.Settings)}]


def refuse_foreign_setting(family: str, name: str, value: object) -> None:
    """A family setting given to a family without it is refused (it would be ignored), naming its families."""
    if family not in owners(name):
        families = owners(name)
        raise SettingError(
            name,
            f"${name}={_literal(value)} only applies to $combination {' or '.join(families)} (got "
            f"{_literal(family)}): set the combination to {families[0]}, or leave {name} unset.",
        )


def _literal(value: object) -> str:
    """`value` for a message template (a `$` in a user's string is not a placeholder)."""
    return repr(value).replace("$", "$$")


def build_combination(
    family: str, n_layers: int, n_heads: int, d_head: int | None = None, init: float = 1.0, **settings: Any
) -> LearnedFamily:
    """The learnable combination of `family` for a model of this shape: `init` and the family's own settings by name
    (`bounded=False`, `gate_seed=3`, `rotation_layers=[1]`, …; those of other families are not read — the run's
    settings refuse them when a user sets them, `fitting.settings`). `d_head`: the model's, for `rotation`."""
    cls = check_family(family)
    own = cls.Settings(**{f.name: settings[f.name] for f in fields(cls.Settings) if f.name in settings})
    if d_head is None and not cls.units_are_heads:
        raise ValueError(f"the {family} family needs the model's d_head")
    return cls.build(n_layers, n_heads, d_head or 0, init, own)
