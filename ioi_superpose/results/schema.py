"""The typed, versioned results on disk: a run's `summary.json` (`RunSummary`) and a sweep's `sweep.json`
(`SweepSummary`), as dataclasses with `to_dict` / `from_dict`.

Standard library only, so the report (a JSON-to-markdown tool) loads no torch, Lightning or TransformerLens.
Every file carries `schema_version`; reading a file of another version (or one written before files were
versioned) raises `SchemaError` naming the file and its version, instead of a `KeyError` deep in the report.
Every section is a dataclass whose fields are its JSON keys, in order; one generic pair (`Record.to_dict`,
`Record.from_dict`) writes and reads them all, nested sections, lists and dicts of them included: no field is named
twice. A field with a default may be absent from a file (an older summary: its default); one without is required
(`SchemaError` naming it); a field marked `OMIT_NONE` is left out of the file while None, as the writers always did,
so committed reports and readers of older code see the same fields.

Reading also validates (issue 24): `_decode` checks every value against its field's type (a count written as text, a
list where an object goes), and a record's `check` its values (a direction that does not exist, a negative head
index); a failure is a `SchemaError` naming the file and the field, so a hand-edited or damaged file is refused
instead of being shown as if valid.
"""

from __future__ import annotations

import json
import types
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from ioi_superpose.errors import UserFacingError

SCHEMA_VERSION = 1
"""The version `to_dict` writes and `from_dict` reads. Raise it when a field changes meaning or goes away."""


class SchemaError(UserFacingError, ValueError):
    """A results file of another schema version, or one that lacks a field its version has."""


def _require_version(data: Mapping[str, Any], source: str) -> None:
    version = data.get("schema_version")
    if version is None:
        raise SchemaError(
            f"{source} has no schema_version: it was written by an older ioi_superpose (before results were "
            f"versioned; this one reads version {SCHEMA_VERSION}). Run it again with this version."
        )
    if version != SCHEMA_VERSION:
        raise SchemaError(
            f"{source} has schema_version {version!r}; this ioi_superpose reads version {SCHEMA_VERSION}. Read it "
            "with the version that wrote it, or run it again with this one."
        )


def _take(data: Mapping[str, Any], key: str, source: str) -> Any:
    try:
        return data[key]
    except KeyError:
        raise SchemaError(
            f"{source} lacks the field {key!r} that schema_version {SCHEMA_VERSION} has: the file is damaged or "
            "was edited by hand. Run it again."
        ) from None


def _read_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SchemaError(f"{path} is not valid JSON ({error}): a damaged file; run it again.") from None
    if not isinstance(data, dict):
        raise SchemaError(f"{path} holds a JSON {type(data).__name__}, not an object: not a results file.")
    return data


Head = tuple[int, int]
R = TypeVar("R", bound="Record")
OMIT_NONE: dict[str, Any] = {"omit_none": True}
"""Field metadata: the key is left out of the file while the value is None."""

SUMMARY_CHOICES: dict[str, tuple[str, ...]] = {
    "direction": ("denoising", "noising"),
    "objective": ("logit_diff", "kl", "maximize"),
    "rest": ("free", "frozen"),
    "combination": ("scalar", "per_position", "hard_concrete", "mixing", "rotation"),
}
"""The values a summary's named fields can hold: the engine's `DIRECTIONS`, `OBJECTIVES`, `RESTS` and the family
`REGISTRY`, spelled out because this module loads no torch (tests/test_user_files.py keeps them equal)."""


def _refuse(source: str, name: str, value: Any, expected: str) -> SchemaError:
    return SchemaError(
        f"{source}: {name} is {value!r}, not {expected}: the file was edited by hand or damaged. Run that run (or "
        "sweep) again to rewrite it, or leave it out."
    )


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_choice(source: str, name: str, value: Any) -> None:
    if value not in SUMMARY_CHOICES[name]:
        raise _refuse(source, name, value, f"one of {list(SUMMARY_CHOICES[name])}")


def _check_counts(source: str, name: str, value: Any) -> None:
    if not _count(value):
        raise _refuse(source, name, value, "a whole number >= 0")


def _check_heads(source: str, name: str, entries: list[list[int]]) -> None:
    """Entries [layer, head, …]: each index a whole number >= 0 (the types are `_decode`'s)."""
    for entry in entries:
        if len(entry) < 2 or not all(_count(index) for index in entry):
            raise _refuse(source, name, entry, "an entry [layer, head, …] of whole numbers >= 0")


class Record:
    """A dataclass written to and read from JSON field by field (the module docstring)."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            out[f.name] = _encode(value)
        return out

    @classmethod
    def from_dict(cls: type[R], data: Mapping[str, Any], source: str = "the summary", name: str = "") -> R:
        """`source` names the file in errors, `name` this record's place in it (`recovery`, `top_heads`)."""
        if not isinstance(data, Mapping):
            raise _refuse(source, name or cls.__name__, data, "an object")
        hints = get_type_hints(cls)
        values = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name in data:
                values[f.name] = _decode(hints[f.name], data[f.name], source, f"{name}.{f.name}" if name else f.name)
            elif f.default is MISSING and f.default_factory is MISSING:
                values[f.name] = _take(data, f.name, source)  # raises: a required field is missing
        record = cls(**values)
        record.check(source, name)
        return record

    def check(self, source: str, name: str) -> None:
        """The checks of this record's values beyond their types (`_decode`); a `SchemaError` naming the field."""


def _encode(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_encode(item) for item in value]
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    return value


_SCALARS: dict[Any, tuple[Callable[[Any], bool], str]] = {
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number"),
    float: (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    str: (lambda v: isinstance(v, str), "a string"),
    bool: (lambda v: isinstance(v, bool), "true or false"),
}


def _decode(hint: Any, value: Any, source: str, name: str) -> Any:
    """`value` (from JSON) as `hint` says: a record, or a list or dict of them, or a scalar of the hint's type
    (`_SCALARS`); `name` is its place in the file, for the error that refuses any other value."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise _refuse(source, name, value, "a value")
        options = [arg for arg in args if arg is not type(None)]
        if len(options) == 1:
            return _decode(options[0], value, source, name)
        if all(option in _SCALARS for option in options):
            if any(_SCALARS[option][0](value) for option in options):
                return value
            raise _refuse(source, name, value, " or ".join(_SCALARS[option][1] for option in options))
        return value
    if value is None and hint is not Any:
        raise _refuse(source, name, value, "a value")
    if isinstance(hint, type) and is_dataclass(hint) and issubclass(hint, Record):
        return hint.from_dict(value, source, name)
    if origin is list:
        if not isinstance(value, (list, tuple)):  # JSON gives lists; a record made in memory may hold tuples
            raise _refuse(source, name, value, "a list")
        return [_decode(args[0], item, source, name) for item in value] if args else list(value)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _refuse(source, name, value, "an object")
        return {key: _decode(args[1], item, source, f"{name}.{key}") for key, item in value.items()} if args else dict(
            value
        )
    if hint in _SCALARS and not _SCALARS[hint][0](value):
        raise _refuse(source, name, value, _SCALARS[hint][1])
    return value


@dataclass(frozen=True)
class Recovery(Record):
    """(patched − corrupted) / (clean − corrupted) on validation and on every test set; None where the set's
    clean − corrupted gap is below `min_gap_for_recovery` (the ratio is then noise)."""

    val: float | None
    test: dict[str, float | None]

    def on(self, set_name: str) -> float | None:
        """The recovery on `set_name` (`val` or a test set's name); None for a set this run did not evaluate."""
        return self.val if set_name == "val" else self.test.get(set_name)


@dataclass(frozen=True, kw_only=True)
class Unit(Record):
    """One entry of `top_heads`: a head, a (head, role) pair or a mixing entry (target ← source), and its α."""

    layer: int
    head: int
    role: str | None = field(default=None, metadata=OMIT_NONE)
    source_layer: int | None = field(default=None, metadata=OMIT_NONE)
    source_head: int | None = field(default=None, metadata=OMIT_NONE)
    alpha: float

    def check(self, source: str, name: str) -> None:
        for part in ("layer", "head", "source_layer", "source_head"):
            if getattr(self, part) is not None:
                _check_counts(source, f"{name} {part}", getattr(self, part))

    @property
    def is_cross_head(self) -> bool:
        """A mixing entry that moves another head's difference into this one (an off-diagonal entry)."""
        return self.source_layer is not None and (self.layer, self.head) != (self.source_layer, self.source_head)


@dataclass(frozen=True)
class Distribution(Record):
    """The per-prompt recovery distribution of one set (`analysis.distribution`); the quantiles are absent
    (None) where no prompt had a finite recovery."""

    n_prompts: int
    mean: float | None
    median: float | None
    share_above_1: float | None
    q10: float | None = field(default=None, metadata=OMIT_NONE)
    q25: float | None = field(default=None, metadata=OMIT_NONE)
    q75: float | None = field(default=None, metadata=OMIT_NONE)
    q90: float | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class IOICircuit(Record):
    """How a GPT-2 small run's heads compare with the IOI paper's 26 (`baselines.ioi_heads`)."""

    precision: float | None
    recall: float
    recall_by_class: dict[str, float]
    selected_outside_circuit: list[list[int]] = field(default_factory=list)


@dataclass(kw_only=True)
class RunSummary(Record):
    """A finished run's `summary.json`. `config` is the run's full training configuration as LightningCLI
    saved it (read through `setting`); `baselines` and `prune` are the baselines' and pruning's own records."""

    schema_version: int = SCHEMA_VERSION
    model_name: str
    direction: str
    objective: str
    alpha: str | None = field(default=None, metadata=OMIT_NONE)
    """`learned (N steps)` or `initial (no steps taken)` (`caveats.alpha_state`); None in a summary written
    before it was recorded."""
    steps: int | None = field(default=None, metadata=OMIT_NONE)
    recovery: Recovery
    min_gap_for_recovery: float
    metric: str | None = field(default=None, metadata=OMIT_NONE)
    """The task's metric when it is not the logit difference (`prob_diff`): the `*_logit_diff` figures then hold that
    metric's means (`data.answer_metrics`). Written only then, so logit-difference summaries keep their shape."""
    clean_logit_diff: float | None
    corrupted_logit_diff: float | None
    patched_logit_diff: float | None
    clean_accuracy: float | None
    patched_accuracy: float | None
    l0: int
    l0_threshold: float
    n_heads_total: int
    top_heads: list[Unit]
    combination: str
    rest: str = "free"
    """A head set as a cut (`free`) or a circuit (`frozen`), `engine/rest.py`."""
    support: list[list[int]]
    """Units above the L0 threshold: [layer, head], [layer, head, role] or [layer, head, source_layer, source_head]."""
    prune: dict[str, Any] | None
    rotation: dict[str, Any] | None = None
    """`rotation` runs: the dimension count and head loadings (`analyses.rotation.rotation_dimensions`)."""
    circuit: dict[str, Any] | None = None
    """`circuit_criteria` runs: the IOI paper's criteria under every ablation (`analyses/circuit.py`)."""
    head_types: dict[str, Any] | None = field(default=None, metadata=OMIT_NONE)
    """`head_types` runs: {"prompts": n, "heads": the learned heads [[layer, head], …], "scores": {type: [layer][head]}}
    (`analyses/head_types.py`; every head scored, the learned ones listed), or {"error": why, "heads": …}. Written
    only when present, so summaries without it keep their shape."""
    scrub: dict[str, Any] | None = field(default=None, metadata=OMIT_NONE)
    """`scrub` runs: the learned head set under a hypothesis file, by causal scrubbing (`analyses/scrubbing/learned.py`:
    {"file", "heads", "draws", "seed", "hypothesis", "sets": {set: {version: score or {"error"}}}} or with {"error":
    why}). Written only when present."""
    val: dict[str, float]
    test: dict[str, dict[str, float]]
    per_prompt_recovery: dict[str, Distribution]
    baselines: dict[str, dict[str, Any]]
    ioi_circuit: IOICircuit | None
    config: dict[str, Any]

    def check(self, source: str, name: str) -> None:
        for choice in ("direction", "objective", "combination", "rest"):
            _check_choice(source, choice, getattr(self, choice))
        for count in ("l0", "n_heads_total") + (("steps",) if self.steps is not None else ()):
            _check_counts(source, count, getattr(self, count))
        if self.n_heads_total < 1:
            raise _refuse(source, "n_heads_total", self.n_heads_total, "a whole number >= 1")
        _check_heads(source, "support", self.support)

    def setting(self, section: str, name: str, default: Any = None) -> Any:
        """A training option as the run was configured, e.g. `setting("model", "l1")` for `--model.l1`."""
        return (self.config.get(section) or {}).get(name, default)

    @property
    def family(self) -> str:
        """The combination family (`--model.combination`); scalar when the config does not say."""
        value = self.setting("model", "combination") or self.combination or "scalar"
        if isinstance(value, Mapping):  # a class_path/init_args entry
            value = str(value.get("class_path", value)).rsplit(".", 1)[-1]
        return str(value)

    @property
    def n_heads(self) -> int:
        """Heads the learned α patches: distinct (layer, head) of its support — per_position counts a head
        once whatever its roles, mixing counts the target heads it writes (not the source heads it reads)."""
        return len({tuple(unit[:2]) for unit in self.support})

    @property
    def cross_head_support(self) -> list[list[int]]:
        """A mixing run's support entries whose source is another head (empty for the other families)."""
        return [unit for unit in self.support if len(unit) == 4 and tuple(unit[:2]) != tuple(unit[2:])]

    @property
    def curves_by_set(self) -> dict[str, dict[str, list[float | None]]]:
        """The top-k baseline curves per evaluation set (`baselines.callbacks.CombinationBaselines`), if run."""
        return self.baselines.get("combinations", {}).get("curves_by_set", {})

    @property
    def prompts_by_set(self) -> dict[str, int]:
        """How many prompts of each set the top-k curves were evaluated on."""
        return self.baselines.get("combinations", {}).get("prompts_by_set", {})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "the summary", name: str = "") -> RunSummary:
        """`source` names the file in errors; a file of another schema version is refused, any other is validated
        (`Record.from_dict`)."""
        _require_version(data, source)
        return super().from_dict(data, source, name)

    @classmethod
    def read(cls, path: str | Path) -> RunSummary:
        """A run's summary.json (`path`: the file or its run directory)."""
        path = Path(path)
        if path.is_dir():
            path = path / "summary.json"
        return cls.from_dict(_read_json(path), str(path))


@dataclass(frozen=True)
class SweepPoint(Record):
    """One finished point of a sweep: its grid settings, run directory and what it found."""

    point: str
    settings: dict[str, Any]
    run_dir: str
    """The point's run directory relative to the sweep's (its point name); older sweeps wrote an absolute path
    (`directory` reads both)."""
    val_recovery: float | None
    test_recovery: dict[str, float | None]
    l0: int
    heads: list[list[int]]
    alpha_digest: str | None = field(default=None, metadata=OMIT_NONE)
    """A hash of the learned α's values (`coefficients.pt`): equal digests are identical runs, which no stability
    or agreement figure may compare. None in a sweep.json written before it was recorded."""

    def check(self, source: str, name: str) -> None:
        _check_counts(source, f"{name}.l0", self.l0)
        _check_heads(source, f"{name}.heads", self.heads)

    def directory(self, sweep_dir: str | Path) -> Path:
        """The run directory of this point, in the sweep directory where it is now (a copied or moved sweep is read
        where it lies, never from the place it was written in)."""
        run_dir = Path(self.run_dir)
        if not run_dir.is_absolute():
            return Path(sweep_dir) / run_dir
        inside = Path(sweep_dir) / run_dir.name  # an older, absolute run_dir: the point's directory is OUT/<point>/
        return inside if inside.is_dir() or not run_dir.is_dir() else run_dir


@dataclass(frozen=True)
class Stability(Record):
    """One setting run with several seeds/inits (`analysis.stability`)."""

    setting: str
    runs: list[str]
    heads_in_every_run: list[list[int]]
    heads_in_any_run: list[list[int]]
    intersection_over_union: float | None
    mean_pairwise_iou: float | None


@dataclass(frozen=True)
class DirectionComparison(Record):
    """Noising against denoising for one setting (`analysis.compare_directions`)."""

    setting: str
    denoising_heads: list[list[int]]
    noising_heads: list[list[int]]
    both: list[list[int]]
    only_denoising: list[list[int]]
    only_noising: list[list[int]]
    iou: float | None


@dataclass(kw_only=True)
class SweepSummary(Record):
    """A sweep's `sweep.json`: every finished point, stability across seeds, noising against denoising, the points
    that learned identical α, and the points not finished."""

    schema_version: int = SCHEMA_VERSION
    n_points: int
    n_finished: int
    missing: list[str] | None = field(default=None, metadata=OMIT_NONE)
    """The points not finished (no summary.json); None in a sweep.json written before it was recorded."""
    points: list[SweepPoint]
    stability: list[Stability]
    noising_vs_denoising: list[DirectionComparison]
    identical_alpha: list[list[str]] | None = field(default=None, metadata=OMIT_NONE)
    """Groups of finished points whose α are identical (`alpha_digest`): counted once by stability and agreement.
    None in a sweep.json written before it was recorded."""

    def check(self, source: str, name: str) -> None:
        _check_counts(source, "n_points", self.n_points)
        _check_counts(source, "n_finished", self.n_finished)
        if self.n_finished > self.n_points:
            raise _refuse(source, "n_finished", self.n_finished, "at most n_points")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "the sweep summary", name: str = "") -> SweepSummary:
        _require_version(data, source)
        return super().from_dict(data, source, name)

    @classmethod
    def read(cls, path: str | Path) -> SweepSummary:
        """A sweep's sweep.json (`path`: the file or the sweep directory)."""
        path = Path(path)
        if path.is_dir():
            path = path / "sweep.json"
        return cls.from_dict(_read_json(path), str(path))
