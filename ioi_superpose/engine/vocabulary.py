"""The engine's shared vocabulary: heads, directions, TransformerLens hook names, and the base/source mapping.

- **base run**: the run we intervene on; **source run**: where patched values come from. Denoising
  (TransformerLens's convention) = base corrupted, source clean; noising = base clean, source corrupted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeVar, get_args

from torch import Tensor

from ioi_superpose.errors import ConfigError
from ioi_superpose.models import HookedTransformer

Head = tuple[int, int]
"""(layer, head)."""
Direction = Literal["denoising", "noising"]
DIRECTIONS: tuple[Direction, ...] = get_args(Direction)
Hook = tuple[str, Callable[..., Tensor | None]]
T = TypeVar("T")

_HOOK_NAMES: dict[str, str] = {
    "z": "blocks.{}.attn.hook_z",
    "q": "blocks.{}.attn.hook_q",
    "k": "blocks.{}.attn.hook_k",
    "v": "blocks.{}.attn.hook_v",
    "pattern": "blocks.{}.attn.hook_pattern",
    "resid_pre": "blocks.{}.hook_resid_pre",
    "resid_mid": "blocks.{}.hook_resid_mid",
    "resid_post": "blocks.{}.hook_resid_post",
    "attn_out": "blocks.{}.hook_attn_out",
    "mlp_out": "blocks.{}.hook_mlp_out",
}


# --------------------------------------------------------------------------------------------------
# Names and the base/source mapping.


def hook_name(activation: str, layer: int) -> str:
    """TransformerLens hook name, e.g. `hook_name("z", 3) == "blocks.3.attn.hook_z"`."""
    if activation not in _HOOK_NAMES:
        raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(_HOOK_NAMES)}")
    return _HOOK_NAMES[activation].format(layer)


def layer_of(name: str) -> int:
    """The layer of a `blocks.{layer}.…` hook name."""
    return int(name.split(".")[1])


def z_names(model: HookedTransformer) -> list[str]:
    return [hook_name("z", layer) for layer in range(model.cfg.n_layers)]


def check_direction(direction: str, option: str = "direction") -> Direction:
    if direction not in DIRECTIONS:
        raise ConfigError(f"{option} must be 'denoising' or 'noising', got {direction!r}.")
    return direction  # type: ignore[return-value]


def base_and_source(clean: T, corrupted: T, direction: Direction) -> tuple[T, T]:
    """(base, source) for a direction: denoising patches clean into corrupted. Works on tokens,
    logits or anything else that comes in a clean/corrupted pair."""
    check_direction(direction)
    return (corrupted, clean) if direction == "denoising" else (clean, corrupted)


def clean_and_corrupted(base: T, source: T, direction: Direction) -> tuple[T, T]:
    """The inverse of `base_and_source`."""
    check_direction(direction)
    return (source, base) if direction == "denoising" else (base, source)
