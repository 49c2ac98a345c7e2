"""The settings of a learned combination as typed, validated dataclasses, shared by the LightningModule (its flat
`--model.*` arguments are these fields) and the Python API (`learn_combination(s)`).

Each dataclass checks itself in `__post_init__`; an invalid value raises `SettingError` naming the field. Its
message names settings by field (`l1`), the name a Python user passes; the CLIs rename them to their flags
(`--model.l1`, `errors.cli_flag`) and the API to its own arguments where they differ (`seed` for `gate_seed`).
Every float must be finite: YAML's `.nan` / `.inf` pass a range check written as `x < 0`, and a run then ends
with a meaningless α (issue 19, item 9).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import torch

from ioi_superpose.analyses.scrubbing.hypothesis import read_hypothesis
from ioi_superpose.combinations.base import LearnedFamily, check_init
from ioi_superpose.combinations.registry import (
    SUBSPACE_FAMILIES,
    build_combination,
    check_family,
    refuse_foreign_settings,
)
from ioi_superpose.engine.rest import RESTS, Rest
from ioi_superpose.engine.runs import DIRECTIONS, Direction
from ioi_superpose.errors import ConfigError, SettingError
from ioi_superpose.training.objectives import OBJECTIVES, ObjectiveName

IN_DISTRIBUTION = "in_distribution"
CacheDType = Literal["float32", "bfloat16", "float16"]
CacheDevice = Literal["same", "cpu"]
CACHE_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
BATCHABLE: tuple[str, ...] = ("l1", "init", "lr", "gate_seed")
"""Settings in which the members of one batched fit may differ (`HeadSuperposition.batched`)."""
DEFAULT_TEMPERATURE = 2 / 3
"""hard_concrete's temperature β when none is given (Louizos et al. 2018)."""
DEFAULT_ROTATION = {"rotation_temperature_start": 1.0, "rotation_temperature_end": 0.05, "rotation_target": 0.9}
"""rotation's settings when none are given: the mask's temperature annealed from 1 to 0.05 over the fit; its
dimension count is for effect 0.9."""
ABLATIONS = ("corrupted", "resample", "mean", "zero")
"""The sources of a noising patch (`results.circuit.ABLATIONS`)."""


def check_finite(name: str, value: float | None) -> None:
    """NaN and ±inf are refused for every float setting (None, where allowed, is checked by the caller)."""
    if value is not None and not math.isfinite(value):
        raise SettingError(name, f"${name}={value} is not a finite number; give a real value (YAML .nan / .inf "
                           "are refused).")  # fmt: skip


def _choice(name: str, value: object, allowed: Sequence[object]) -> None:
    if value not in allowed:
        shown = repr(value).replace("$", "$$")
        raise SettingError(name, f"${name} must be one of {list(allowed)}, got {shown}.")


@dataclass(frozen=True)
class FamilyConfig:
    """The combination family and its own settings (`combinations/registry.py`)."""

    combination: str = "scalar"
    bounded: bool = True
    init: float = 1.0
    temperature: float | None = None
    """hard_concrete only (None: `DEFAULT_TEMPERATURE`)."""
    gate_seed: int | None = None
    """hard_concrete only (None: 0)."""
    mixing_target: int | None = None
    """mixing only."""
    rotation_layers: tuple[int, ...] | None = None
    """rotation only: the layers with a learned rotation (None: all)."""
    rotation_temperature_start: float | None = None
    rotation_temperature_end: float | None = None
    rotation_target: float | None = None
    """rotation only (None: `DEFAULT_ROTATION`)."""
    rotation_joint: bool | None = None
    """rotation only: one R over all `rotation_layers` together, patched from fixed activations
    (`combinations/rotation_joint.py`, with its causal caveat). None: false, one R per layer."""

    def __post_init__(self) -> None:
        check_family(self.combination)
        for name in ("init", "temperature", "rotation_temperature_start", "rotation_temperature_end",
                     "rotation_target"):  # fmt: skip
            check_finite(name, getattr(self, name))
        # A setting of another family would be ignored: refused, naming its family (issue 19, item 8). `bounded`
        # counts as set when false (true is what every family's weights are by default, hard_concrete's gates too).
        given = {name: getattr(self, name) for name in ("temperature", "gate_seed", "mixing_target", "rotation_layers",
                 "rotation_temperature_start", "rotation_temperature_end", "rotation_target",
                 "rotation_joint")}  # fmt: skip
        given = {name: value for name, value in given.items() if value is not None}
        if not self.bounded:
            given["bounded"] = False
        refuse_foreign_settings(self.combination, given)
        check_init(self.init, self.bounded, self.combination)
        if self.temperature is not None and not self.temperature > 0:
            raise SettingError("temperature", f"$temperature must be > 0 (the hard-concrete temperature β), got "
                               f"{self.temperature}.")  # fmt: skip
        start, end = self.rotation("rotation_temperature_start"), self.rotation("rotation_temperature_end")
        if not 0 < end <= start:
            raise SettingError("rotation_temperature_end", f"$rotation_temperature_end={end} must be in (0, "
                               f"$rotation_temperature_start={start}] (the mask's temperature is annealed down).")
        if not 0.0 < self.rotation("rotation_target") <= 1.0:
            raise SettingError("rotation_target", f"$rotation_target must be in (0, 1], got {self.rotation_target}.")

    def rotation(self, name: str) -> float:
        """A rotation setting, its default where unset."""
        value = getattr(self, name)
        return DEFAULT_ROTATION[name] if value is None else value

    def build(self, n_layers: int, n_heads: int, d_head: int | None = None) -> LearnedFamily:
        """The learnable combination for a model of this shape."""
        temperature = DEFAULT_TEMPERATURE if self.temperature is None else self.temperature
        seed = 0 if self.gate_seed is None else self.gate_seed
        rotation = None
        if self.combination == "rotation":
            rotation = dict(layers=None if self.rotation_layers is None else list(self.rotation_layers),
                            temperature_start=self.rotation("rotation_temperature_start"),
                            temperature_end=self.rotation("rotation_temperature_end"),
                            joint=bool(self.rotation_joint))  # fmt: skip
        return build_combination(self.combination, n_layers, n_heads, self.bounded, self.init, temperature, seed,
                                 self.mixing_target, d_head=d_head, rotation=rotation)  # fmt: skip


@dataclass(frozen=True)
class OptimConfig:
    """What is optimised and how: the objective, its direction, the sparsity penalty, Adam's step."""

    objective: ObjectiveName = "logit_diff"
    direction: Direction = "denoising"
    l1: float = 1e-3
    l1_warmup_steps: int = 0
    lr: float = 0.05
    l0_threshold: float = 0.05
    rest: Rest = "free"
    """A head set as a cut (`free`) or a circuit (`frozen`): `engine/rest.py`."""
    ablation: str = "corrupted"
    """The source of a noising patch (`results/circuit.py`); noising only."""

    def __post_init__(self) -> None:
        _choice("objective", self.objective, sorted(OBJECTIVES))
        _choice("direction", self.direction, DIRECTIONS)
        _choice("rest", self.rest, RESTS)
        _choice("ablation", self.ablation, ABLATIONS)
        if self.ablation != "corrupted" and self.direction != "noising":
            raise SettingError("ablation", f"$ablation {self.ablation} replaces the source of a noising patch (what a "
                               "necessary head is ablated to); denoising patches the clean run's heads in. Set "
                               "direction noising, or ablation corrupted.")  # fmt: skip
        if self.ablation != "corrupted" and self.rest != "free":
            # A circuit (rest frozen) runs on the source prompt and freezes heads at base-run values; an ablation
            # has no source prompt, so the run would mix ablated values into the corrupted run (a number, no meaning).
            raise SettingError("ablation", f"$ablation {self.ablation} has no source prompt for $rest {self.rest} "
                               "(a circuit runs on the source prompt). Set rest free (the circuit question under an "
                               "ablation is the noising cut of the set's complement), or ablation "
                               "corrupted.")  # fmt: skip
        for name in ("l1", "lr", "l0_threshold"):
            check_finite(name, getattr(self, name))
        if self.l1 < 0:
            raise SettingError("l1", f"$l1 must be >= 0 (it weighs the L1 sparsity penalty), got {self.l1}.")
        if self.lr <= 0:
            raise SettingError("lr", f"$lr must be > 0, got {self.lr}.")
        if self.l1_warmup_steps < 0:
            raise SettingError("l1_warmup_steps", f"$l1_warmup_steps must be >= 0, got {self.l1_warmup_steps}.")
        if self.l0_threshold < 0:
            raise SettingError("l0_threshold", f"$l0_threshold must be >= 0, got {self.l0_threshold}.")


@dataclass(frozen=True)
class CacheConfig:
    """The reference cache of the training prompts' source activations (`cache.ReferenceCache`)."""

    cache_source_activations: bool = True
    cache_dtype: CacheDType = "float32"
    cache_device: CacheDevice = "same"
    cache_max_mb: float | None = None

    def __post_init__(self) -> None:
        _choice("cache_dtype", self.cache_dtype, sorted(CACHE_DTYPES))
        _choice("cache_device", self.cache_device, ["same", "cpu"])
        check_finite("cache_max_mb", self.cache_max_mb)
        if self.cache_max_mb is not None and self.cache_max_mb < 0:
            raise SettingError("cache_max_mb", f"$cache_max_mb must be >= 0 (or null: no cap), got "
                               f"{self.cache_max_mb}.")  # fmt: skip

    @property
    def dtype(self) -> torch.dtype:
        return CACHE_DTYPES[self.cache_dtype]

    @property
    def device(self) -> str | None:
        """None: wherever the module is."""
        return None if self.cache_device == "same" else self.cache_device

    @property
    def max_bytes(self) -> float | None:
        return None if self.cache_max_mb is None else self.cache_max_mb * 2**20


@dataclass(frozen=True)
class PruneConfig:
    """The minimal-set step after fit (`training/pruning.py`)."""

    prune_target: float | None = None
    prune_prompts: int = 256
    circuit_criteria: bool = False
    """After fit (and pruning): the IOI paper's criteria of the learned head set (`results/circuit.py`)."""
    head_types: bool = False
    """After fit (and pruning): every head's type scores (`results/head_types.py`), the learned heads listed."""
    scrub: str | None = None
    """After fit (and pruning): a hypothesis file; the learned head set is scored under its features by causal
    scrubbing (`analyses/scrubbing`). Its format is checked here, its heads and features when the model is loaded."""

    def __post_init__(self) -> None:
        if self.scrub is not None:
            try:
                read_hypothesis(self.scrub)
            except ConfigError as error:
                raise SettingError("scrub", "$scrub: " + str(error).replace("$", "$$")) from None
        check_finite("prune_target", self.prune_target)
        if self.prune_target is not None and not 0.0 < self.prune_target <= 1.0:
            raise SettingError("prune_target", f"$prune_target must be in (0, 1] (the effect to keep) or null, got "
                               f"{self.prune_target}.")  # fmt: skip
        if self.prune_prompts < 1:
            raise SettingError("prune_prompts", f"$prune_prompts must be >= 1, got {self.prune_prompts}.")


@dataclass(frozen=True)
class SuperpositionConfig:
    """Every setting of one learned combination, grouped; `from_settings` takes them flat, as the CLI and the
    LightningModule's constructor name them."""

    model_name: str = "gpt2-small"
    family: FamilyConfig = field(default_factory=FamilyConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    test_sets: tuple[str, ...] = (IN_DISTRIBUTION,)

    GROUPS = ("family", "optim", "cache", "prune")

    @classmethod
    def from_settings(cls, **settings: Any) -> "SuperpositionConfig":
        """The config of flat settings (`l1=…, combination=…`); each group validates its own fields."""
        groups: dict[str, Any] = {}
        for group, group_cls in (("family", FamilyConfig), ("optim", OptimConfig), ("cache", CacheConfig),
                                 ("prune", PruneConfig)):  # fmt: skip
            names = [f.name for f in fields(group_cls)]
            groups[group] = group_cls(**{name: settings.pop(name) for name in names if name in settings})
        model_name = settings.pop("model_name", cls.model_name)
        test_sets = tuple(settings.pop("test_sets", (IN_DISTRIBUTION,)))
        if settings:
            raise TypeError(f"unknown settings {sorted(settings)}")
        return cls(model_name=model_name, test_sets=test_sets, **groups)

    def __post_init__(self) -> None:
        if self.family.rotation_joint and self.optim.rest == "frozen":
            raise SettingError("rotation_joint", "$rotation_joint patches every selected layer from the unpatched "
                               "base and source runs (a cut); $rest frozen runs the source tokens instead: set "
                               "$rest free, or $rotation_joint false.")  # fmt: skip
        if self.prune.scrub is not None and self.family.combination in SUBSPACE_FAMILIES:
            raise SettingError("scrub", f"$scrub scores the learned head set; $combination {self.family.combination} "
                               "learns directions, not heads: leave scrub unset, or use a head family (scalar, "
                               "per_position, …).")  # fmt: skip
        if self.prune.circuit_criteria and self.family.combination in SUBSPACE_FAMILIES:
            raise SettingError("circuit_criteria", f"$circuit_criteria scores head sets; $combination "
                               f"{self.family.combination} learns directions, not heads: set circuit_criteria "
                               "false, or use a head family (scalar, per_position, …).")  # fmt: skip

    def settings(self) -> dict[str, Any]:
        """The flat settings (the inverse of `from_settings`)."""
        flat: dict[str, Any] = {"model_name": self.model_name, "test_sets": self.test_sets}
        for group in self.GROUPS:
            value = getattr(self, group)
            flat.update({f.name: getattr(value, f.name) for f in fields(value)})
        return flat
