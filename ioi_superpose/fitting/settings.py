"""Every setting of a learned combination, defined once: a typed field of a frozen dataclass, with its default, its
documentation (the docstring under it) and its check (the dataclass's `__post_init__`).

The groups are `FamilyConfig` (the family, its initial weight, and the family's own settings: a dataclass in the
family's file, `combinations.base.FamilySettings`), `OptimConfig`, `CacheConfig`, `PruneConfig`, and
`SuperpositionConfig` holding them. The settings the CLI, the LightningModule and the API take flat — `--model.l1`,
`HeadSuperposition(l1=…)`, `learn_combination(…, l1=…)` — are generated from these fields (`flat_settings`): their
names, types, defaults and help text. A family's own setting is null there by default (its family's default then
applies) and refused for another family; adding a family adds its flags.

An invalid value raises `SettingError` naming the field (`l1`), the name a Python user passes; the CLIs rename it to
the flag (`--model.l1`, `errors.cli_flag`) and the API to its own argument where it differs (`seed` for
`gate_seed`). Every float must be finite (`check_finite`, issue 19, item 9).
"""

from __future__ import annotations

import functools
import inspect
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional, get_type_hints

import docstring_parser
import torch

from ioi_superpose.combinations.base import BATCHABLE as BATCHABLE_FIELD
from ioi_superpose.combinations.base import FamilySettings, LearnedFamily, check_finite, check_init
from ioi_superpose.combinations.registry import REGISTRY, check_family, owners, refuse_foreign_setting
from ioi_superpose.data.splits import IN_DISTRIBUTION
from ioi_superpose.engine.ablations import ABLATIONS
from ioi_superpose.engine.rest import RESTS, Rest
from ioi_superpose.engine.vocabulary import DIRECTIONS, Direction
from ioi_superpose.errors import SettingError
from ioi_superpose.fitting.objectives import OBJECTIVES, ObjectiveName

CacheDType = Literal["float32", "bfloat16", "float16"]
CacheDevice = Literal["same", "cpu"]
CACHE_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _choice(name: str, value: object, allowed: Sequence[object]) -> None:
    if value not in allowed:
        shown = repr(value).replace("$", "$$")
        raise SettingError(name, f"${name} must be one of {list(allowed)}, got {shown}.")


@dataclass(frozen=True)
class FamilyConfig:
    """The combination family, the initial value of its weights, and the family's own settings."""

    combination: str = "scalar"
    """the family of the learned combination (`ioi_superpose.combinations`): {families}. `l1` weighs each family's
    own penalty."""
    init: float = field(default=1.0, metadata=BATCHABLE_FIELD)
    """initial value of every weight (1.0 starts from the full source run and prunes)."""
    own: FamilySettings | None = None
    """The family's own settings, an instance of its `Settings` (None: their defaults; `given_family` makes them
    from flat values)."""

    def __post_init__(self) -> None:
        family = check_family(self.combination)
        if self.own is None:
            object.__setattr__(self, "own", family.Settings())
        elif type(self.own) is not family.Settings:
            raise TypeError(f"{self.combination}'s own settings are a {family.Settings.__name__}, got "
                            f"{type(self.own).__name__}")  # fmt: skip
        check_finite("init", self.init)
        check_init(self.init, getattr(self.own, "bounded", True), self.combination)

    @classmethod
    def given_family(cls, combination: str, init: float, flat: Mapping[str, Any]) -> FamilyConfig:
        """The config of flat family settings (`family_settings()` names; None: unset). A setting of another family
        is refused, naming its families; a `SAME_FOR_OTHERS` one only when it differs from its default."""
        settings = check_family(combination).Settings
        own = {f.name for f in fields(settings)}
        given = {}
        for name, value in flat.items():
            if value is None or (_same_for_others(name) and value == _family_field(name).default):
                continue
            if name not in own:
                refuse_foreign_setting(combination, name, value)
            given[name] = value
        return cls(combination=combination, init=init, own=settings(**given))

    def build(self, n_layers: int, n_heads: int, d_head: int) -> LearnedFamily:
        """The learnable combination for a model of this shape."""
        return check_family(self.combination).build(n_layers, n_heads, d_head, self.init, self.own)


@dataclass(frozen=True)
class OptimConfig:
    """What is optimised and how: the objective, its direction, the sparsity penalty, Adam's step, the notion."""

    direction: Direction = "denoising"
    """`denoising` runs the corrupted prompts and patches in the clean ones' head outputs (finds heads sufficient for
    the behaviour); `noising` runs the clean prompts and patches in the corrupted ones (finds heads necessary for
    it)."""
    objective: ObjectiveName = "logit_diff"
    """`logit_diff` drives the normalised effect of the patch to 1 (for denoising: the recovery of the clean logit
    difference); `kl` matches the source run's next-token distribution at END, KL(source ‖ patched): the clean run's
    when denoising, the corrupted run's when noising; `maximize` pushes the effect as high as it goes (can exceed
    1)."""
    l1: float = field(default=1e-3, metadata=BATCHABLE_FIELD)
    """weight λ of the sparsity penalty (L1; hard_concrete: expected L0; rotation: Σ mask). Must be >= 0."""
    l1_warmup_steps: int = 0
    """λ rises linearly from 0 to `l1` over this many steps (0: no warm-up). Training and validation losses use the
    same, current λ."""
    lr: float = field(default=0.05, metadata=BATCHABLE_FIELD)
    """Adam learning rate of the weights. Must be > 0."""
    l0_threshold: float = 0.05
    """a unit counts towards L0 and the support when |weight| exceeds this."""
    rest: Rest = "free"
    """what the heads outside the set do (`ioi_superpose.engine.rest`): `free` (a cut: the base run with the set's z
    moved towards the source run, everything else recomputes) or `frozen` (a circuit, as ACDC / subnetwork probing
    / Edge Pruning: the source run with every head's z at z_base + α (z_current − z_base), so α = 0 freezes a head
    at its base-run value). Training, evaluation and the minimal-set step all use it."""
    ablation: str = "corrupted"
    """the source of a noising patch (`ioi_superpose.engine.ablations`): `corrupted` (the paired corrupted prompt),
    `resample` (another clean prompt of the batch, a seeded derangement, aligned at END), `mean` (the batch's mean
    z per position role), `zero`. The reference "corrupted" run is then the clean prompts with every head so
    ablated (recovery 0), the intact model recovery 1. Noising only."""

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
class PruneConfig:
    """What runs after the fit (`analyses.post_fit`): the minimal-set step, the criteria, the head types, the scrub."""

    prune_target: float | None = None
    """after fit, shrink the support to a minimal set (`ioi_superpose.analyses.pruning`): drop units in blocks (with
    back-off) while the effect on the training prompts stays >= this (denoising: recovery >= R; noising: recovery
    <= 1 - R), then a 1-minimality pass. Kept units get weight 1. A target the learned support misses leaves α as
    learned (a warning; `reached: false`). Null: no pruning."""
    prune_prompts: int = 256
    """training prompts (the first ones) that the work after the fit reads."""
    circuit_criteria: bool = False
    """after fit (and pruning), score the learned head set (the heads of the combination's [layer, head] view above
    `l0_threshold`) with the IOI paper's faithfulness, completeness and minimality under every ablation
    (`ioi_superpose.analyses.circuit`) on the first `prune_prompts` training prompts; in summary.json under
    `circuit`. Not for `rotation` (its units are directions)."""
    head_types: bool = False
    """after fit (and pruning), score every head's type (previous-token, duplicate-token, induction, copying,
    attention from END to IO/S1/S2: `ioi_superpose.analyses.head_types`) on the first 64 of the first
    `prune_prompts` training prompts, and list the learned heads (the [layer, head] view above `l0_threshold`); in
    summary.json under `head_types`. IOI prompts only (other prompts: the reason is recorded)."""
    scrub: str | None = None
    """a hypothesis file (YAML: heads "L.H" or "L.*" and the prompt features each reads; docs/causal_scrubbing.md,
    experiments/scrub_hypothesis.yaml): after fit (and pruning), the learned head set (the [layer, head] view above
    `l0_threshold`), each head with the features the file gives it, is scored by causal scrubbing
    (`ioi_superpose.analyses.scrubbing`), flat and treeified, on the first `prune_prompts` training prompts and on the
    validation prompts (32 draws, seed 0); in summary.json under `scrub`. The training CLI checks the file's format,
    heads and features before training. Not for `rotation` (its units are directions)."""

    def __post_init__(self) -> None:
        if self.scrub is not None and not Path(self.scrub).is_file():
            raise SettingError("scrub", f"$scrub: the hypothesis file {self.scrub} does not exist; give the path of a "
                               "YAML file (docs/causal_scrubbing.md).")  # fmt: skip
        check_finite("prune_target", self.prune_target)
        if self.prune_target is not None and not 0.0 < self.prune_target <= 1.0:
            raise SettingError("prune_target", f"$prune_target must be in (0, 1] (the effect to keep) or null, got "
                               f"{self.prune_target}.")  # fmt: skip
        if self.prune_prompts < 1:
            raise SettingError("prune_prompts", f"$prune_prompts must be >= 1, got {self.prune_prompts}.")


@dataclass(frozen=True)
class CacheConfig:
    """The reference cache of the training prompts' source activations (`training.cache.ReferenceCache`)."""

    cache_source_activations: bool = True
    """keep each training prompt's source head outputs after first use (the model is frozen, so they never change):
    one forward+backward per step instead of two forwards and a backward, at the cost of memory for
    n_layers×pos×d_model per prompt (590 KB for GPT-2 small at 16 tokens in float32). The run prints the cache's
    size once the first epoch has filled it."""
    cache_dtype: CacheDType = "float32"
    """dtype the cached activations are stored in (`bfloat16` / `float16` halve the memory; rows are cast back to
    the model's dtype when used, so training is close to, not exactly, float32's)."""
    cache_device: CacheDevice = "same"
    """`same`: the cache lives where the model does; `cpu`: in host memory (rows are copied to the model's device at
    each step)."""
    cache_max_mb: float | None = None
    """at most this many MB of cached activations (null: no cap). Rows beyond it are not cached: their batches are
    recomputed, with the same result, and the run says so once."""

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
class SuperpositionConfig:
    """Every setting of one learned combination, grouped; `from_settings` takes them flat (`flat_settings`)."""

    model_name: str = "gpt2-small"
    """TransformerLens model name (gpt2-small, …), a directory holding a Hugging Face GPT-2 checkpoint, or a toy
    checkpoint file (.pt) made by `ioi_superpose.cli.train_toy`."""
    family: FamilyConfig = field(default_factory=FamilyConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    test_sets: Sequence[str] = (IN_DISTRIBUTION,)
    """names of the test dataloaders, in order (the CLI links them from the datamodule)."""

    GROUPS: ClassVar[tuple[str, ...]] = ("optim", "prune", "cache")
    """The groups whose fields are flat settings as they are (the family's are `FamilyConfig.given_family`'s)."""

    @classmethod
    def from_settings(cls, **settings: Any) -> SuperpositionConfig:
        """The config of flat settings (`l1=…, combination=…`; `flat_settings` names them); each group validates
        its own fields. An unknown name is a `TypeError`, as Python's for an unexpected keyword argument."""
        unknown = sorted(set(settings) - {setting.name for setting in flat_settings()})
        if unknown:
            raise TypeError(f"unknown settings {unknown}")
        value = {setting.name: settings.get(setting.name, setting.default) for setting in flat_settings()}
        family = FamilyConfig.given_family(value["combination"], value["init"],
                                           {name: value[name] for name in family_settings()})  # fmt: skip
        groups = {group: _group_class(group)(**{f.name: value[f.name] for f in fields(_group_class(group))})
                  for group in cls.GROUPS}  # fmt: skip
        return cls(model_name=value["model_name"], family=family, test_sets=tuple(value["test_sets"]), **groups)

    def __post_init__(self) -> None:
        if getattr(self.family.own, "rotation_joint", False) and self.optim.rest == "frozen":
            raise SettingError("rotation_joint", "$rotation_joint patches every selected layer from the unpatched "
                               "base and source runs (a cut); $rest frozen runs the source tokens instead: set "
                               "$rest free, or $rotation_joint false.")  # fmt: skip
        if self.prune.circuit_criteria and not check_family(self.family.combination).units_are_heads:
            raise SettingError("circuit_criteria", f"$circuit_criteria scores head sets; $combination "
                               f"{self.family.combination} learns directions, not heads: set circuit_criteria "
                               "false, or use a head family (scalar, per_position, …).")  # fmt: skip
        if self.prune.scrub is not None and not check_family(self.family.combination).units_are_heads:
            raise SettingError("scrub", f"$scrub scores the learned head set; $combination {self.family.combination} "
                               "learns directions, not heads: leave scrub unset, or use a head family (scalar, "
                               "per_position, …).")  # fmt: skip

    def settings(self) -> dict[str, Any]:
        """Flat settings that make this config again (the family's own as its values, other families' unset)."""
        flat: dict[str, Any] = {"model_name": self.model_name, "test_sets": tuple(self.test_sets),
                                "combination": self.family.combination, "init": self.family.init}  # fmt: skip
        for group in self.GROUPS:
            flat.update({f.name: getattr(getattr(self, group), f.name) for f in fields(getattr(self, group))})
        own = {f.name: getattr(self.family.own, f.name) for f in fields(self.family.own)}
        flat.update({name: own.get(name, setting.default) for name, setting in family_settings().items()})
        return flat


def _group_class(group: str) -> type:
    return {"optim": OptimConfig, "prune": PruneConfig, "cache": CacheConfig}[group]


# --------------------------------------------------------------------------------------------------
# The flat settings, generated from the dataclasses above and the registered families' own settings.


@dataclass(frozen=True)
class FlatSetting:
    """One flat setting: a `--model.*` flag, a keyword of the LightningModule and of the API."""

    name: str
    annotation: Any
    default: Any
    doc: str
    batchable: bool = False
    """Whether the members of one batched fit may differ in it (`BATCHABLE`)."""

    def parameter(self) -> inspect.Parameter:
        return inspect.Parameter(self.name, inspect.Parameter.KEYWORD_ONLY, default=self.default,
                                 annotation=self.annotation)  # fmt: skip


def _docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a dataclass's fields (its own and its bases'), as one line each."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is not object and klass.__module__.startswith("ioi_superpose"):
            parsed = docstring_parser.parse_from_object(klass)
            docs.update({p.arg_name: " ".join((p.description or "").split()) for p in parsed.params})
    return docs


def flat_fields(cls: type, names: Sequence[str] | None = None) -> list[FlatSetting]:
    """A dataclass's fields (or `names` of them, in that order) as flat settings, typed, defaulted and documented as
    declared (the attribute docstrings)."""
    hints, docs = get_type_hints(cls), _docs(cls)
    by_name = {f.name: f for f in fields(cls)}
    return [
        FlatSetting(name, hints[name], _default(by_name[name]), docs.get(name, ""),
                    bool(by_name[name].metadata.get("batchable")))
        for name in (names or list(by_name))
    ]  # fmt: skip


def _default(f: Field) -> Any:
    return f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]


def _family_field(name: str) -> Field:
    family = check_family(owners(name)[0])
    return {f.name: f for f in fields(family.Settings)}[name]


def _same_for_others(name: str) -> bool:
    return bool(_family_field(name).metadata.get("same_for_others"))


@functools.cache
def family_settings() -> dict[str, FlatSetting]:
    """Every registered family's own settings, flat, in registry order: null by default (the family's default
    applies), documented with the families they belong to; a `SAME_FOR_OTHERS` one keeps its default."""
    settings: dict[str, FlatSetting] = {}
    for family in REGISTRY.values():
        for own in flat_fields(family.Settings):
            if own.name in settings:
                continue
            belongs = " or ".join(owners(own.name))
            if _same_for_others(own.name):
                settings[own.name] = FlatSetting(own.name, own.annotation, own.default, f"{belongs} only: {own.doc}",
                                                 own.batchable)  # fmt: skip
                continue
            shown = f"{own.default:.4g}" if isinstance(own.default, float) else repr(own.default)
            unset = "" if own.default is None else f" Null: {shown}."
            annotation = own.annotation if _allows_none(own.annotation) else Optional[own.annotation]  # noqa: UP045
            settings[own.name] = FlatSetting(own.name, annotation, None, f"{belongs} only: {own.doc}{unset}",
                                             own.batchable)  # fmt: skip
    return settings


def _allows_none(annotation: Any) -> bool:
    return type(None) in getattr(annotation, "__args__", ())


@functools.cache
def flat_settings() -> tuple[FlatSetting, ...]:
    """Every setting of a learned combination as the CLI, the LightningModule and the API take it, in order: the
    model, the family and its initial weight, every family's own settings, then the optimisation, the work after the
    fit, the cache, and the test sets (`SuperpositionConfig.from_settings` takes them back)."""
    model_name, test_sets = flat_fields(SuperpositionConfig, ["model_name", "test_sets"])
    combination, init = flat_fields(FamilyConfig, ["combination", "init"])
    described = "; ".join(f"`{name}` {family.description}" for name, family in REGISTRY.items())
    combination = FlatSetting(combination.name, combination.annotation, combination.default,
                              combination.doc.replace("{families}", described))  # fmt: skip
    groups = [setting for group in SuperpositionConfig.GROUPS for setting in flat_fields(_group_class(group))]
    return (model_name, combination, init, *family_settings().values(), *groups, test_sets)


def settings_doc(settings: Sequence[FlatSetting], indent: str = "    ") -> str:
    """An `Args:` section documenting `settings` (the help text the CLI and `help()` show)."""
    lines = ["Args:"]
    for setting in settings:
        lines += textwrap.wrap(f"{setting.name}: {setting.doc}", 116, initial_indent=indent,
                               subsequent_indent=indent * 2)  # fmt: skip
    return "\n".join(lines)


BATCHABLE: tuple[str, ...] = tuple(setting.name for setting in flat_settings() if setting.batchable)
"""Settings in which the members of one batched fit may differ (`HeadSuperposition.batched`): λ, init, lr, and the
families' seed (fields marked `combinations.base.BATCHABLE`)."""
