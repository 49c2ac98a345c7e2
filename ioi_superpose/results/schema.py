"""The typed, versioned results on disk: a run's `summary.json` (`RunSummary`) and a sweep's `sweep.json`
(`SweepSummary`), as dataclasses with `to_dict` / `from_dict`.

Standard library only, so the report (a JSON-to-markdown tool) loads no torch, Lightning or TransformerLens.
Every file carries `schema_version`; reading a file of another version (or one written before files were
versioned) raises `SchemaError` naming the file and its version, instead of a `KeyError` deep in the report.
The JSON keeps the shape the writers always gave it (`to_dict` writes the keys in that order, after the
version), so committed reports and readers of older code see the same fields.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class Recovery:
    """(patched − corrupted) / (clean − corrupted) on validation and on every test set; None where the set's
    clean − corrupted gap is below `min_gap_for_recovery` (the ratio is then noise)."""

    val: float | None
    test: dict[str, float | None]

    def on(self, set_name: str) -> float | None:
        """The recovery on `set_name` (`val` or a test set's name); None for a set this run did not evaluate."""
        return self.val if set_name == "val" else self.test.get(set_name)


@dataclass(frozen=True)
class Unit:
    """One entry of `top_heads`: a head, a (head, role) pair or a mixing entry (target ← source), and its α."""

    layer: int
    head: int
    alpha: float
    role: str | None = None
    source_layer: int | None = None
    source_head: int | None = None

    @property
    def is_cross_head(self) -> bool:
        """A mixing entry that moves another head's difference into this one (an off-diagonal entry)."""
        return self.source_layer is not None and (self.layer, self.head) != (self.source_layer, self.source_head)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"layer": self.layer, "head": self.head}
        if self.role is not None:
            out["role"] = self.role
        if self.source_layer is not None:
            out["source_layer"], out["source_head"] = self.source_layer, self.source_head
        out["alpha"] = self.alpha
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> Unit:
        return cls(
            layer=_take(data, "layer", source), head=_take(data, "head", source), alpha=_take(data, "alpha", source),
            role=data.get("role"), source_layer=data.get("source_layer"), source_head=data.get("source_head"),
        )  # fmt: skip


@dataclass(frozen=True)
class Distribution:
    """The per-prompt recovery distribution of one set (`analysis.distribution`); the quantiles are absent
    (None) where no prompt had a finite recovery."""

    n_prompts: int
    mean: float | None
    median: float | None
    share_above_1: float | None
    q10: float | None = None
    q25: float | None = None
    q75: float | None = None
    q90: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "n_prompts": self.n_prompts, "mean": self.mean, "median": self.median, "share_above_1": self.share_above_1,
        }  # fmt: skip
        if self.q10 is not None:
            out.update(q10=self.q10, q25=self.q25, q75=self.q75, q90=self.q90)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Distribution:
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})


@dataclass(frozen=True)
class IOICircuit:
    """How a GPT-2 small run's heads compare with the IOI paper's 26 (`baselines.ioi_heads`)."""

    precision: float | None
    recall: float
    recall_by_class: dict[str, float]
    selected_outside_circuit: list[list[int]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision, "recall": self.recall, "recall_by_class": self.recall_by_class,
            "selected_outside_circuit": self.selected_outside_circuit,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> IOICircuit:
        return cls(
            precision=_take(data, "precision", source), recall=_take(data, "recall", source),
            recall_by_class=_take(data, "recall_by_class", source),
            selected_outside_circuit=[list(h) for h in data.get("selected_outside_circuit", [])],
        )  # fmt: skip


@dataclass
class RunSummary:
    """A finished run's `summary.json`. `config` is the run's full training configuration as LightningCLI
    saved it (read through `setting`); `baselines` and `prune` are the baselines' and pruning's own records."""

    model_name: str
    direction: str
    objective: str
    recovery: Recovery
    min_gap_for_recovery: float
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
    support: list[list[int]]
    """Units above the L0 threshold: [layer, head], [layer, head, role] or [layer, head, source_layer, source_head]."""
    prune: dict[str, Any] | None
    val: dict[str, float]
    test: dict[str, dict[str, float]]
    per_prompt_recovery: dict[str, Distribution]
    baselines: dict[str, dict[str, Any]]
    ioi_circuit: IOICircuit | None
    config: dict[str, Any]
    alpha: str | None = None
    """`learned (N steps)` or `initial (no steps taken)` (`caveats.alpha_state`); None in a summary written
    before it was recorded."""
    steps: int | None = None
    rest: str = "free"
    """A head set as a cut (`free`) or a circuit (`frozen`), `engine/rest.py`."""
    rotation: dict[str, Any] | None = None
    """`rotation` runs: the dimension count and head loadings (`RotationCombination.analyse`)."""
    circuit: dict[str, Any] | None = None
    """`circuit_criteria` runs: the IOI paper's criteria under every ablation (`results/circuit.py`)."""
    head_types: dict[str, Any] | None = None
    """`head_types` runs: {"prompts": n, "heads": the learned heads [[layer, head], …], "scores": {type: [layer][head]}}
    (`results/head_types.py`; every head scored, the learned ones listed), or {"error": why, "heads": …}. Written
    only when present, so summaries without it keep their shape."""
    scrub: dict[str, Any] | None = None
    """`scrub` runs: the learned head set under a hypothesis file, by causal scrubbing (`analyses/scrubbing/learned.py`:
    {"file", "heads", "hypothesis", "sets": {set: {version: score or {"error"}}}} or {"error": why}). Written only when
    present."""
    schema_version: int = SCHEMA_VERSION

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

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "model_name": self.model_name,
            "direction": self.direction,
            "objective": self.objective,
            **({} if self.steps is None else {"alpha": self.alpha, "steps": self.steps}),
            "recovery": {"val": self.recovery.val, "test": dict(self.recovery.test)},
            "min_gap_for_recovery": self.min_gap_for_recovery,
            "clean_logit_diff": self.clean_logit_diff,
            "corrupted_logit_diff": self.corrupted_logit_diff,
            "patched_logit_diff": self.patched_logit_diff,
            "clean_accuracy": self.clean_accuracy,
            "patched_accuracy": self.patched_accuracy,
            "l0": self.l0,
            "l0_threshold": self.l0_threshold,
            "n_heads_total": self.n_heads_total,
            "top_heads": [unit.to_dict() for unit in self.top_heads],
            "combination": self.combination,
            "rest": self.rest,
            "support": [list(unit) for unit in self.support],
            "prune": self.prune,
            "rotation": self.rotation,
            "circuit": self.circuit,
            **({} if self.head_types is None else {"head_types": self.head_types}),
            **({} if self.scrub is None else {"scrub": self.scrub}),
            "val": self.val,
            "test": self.test,
            "per_prompt_recovery": {name: d.to_dict() for name, d in self.per_prompt_recovery.items()},
            "baselines": self.baselines,
            "ioi_circuit": None if self.ioi_circuit is None else self.ioi_circuit.to_dict(),
            "config": self.config,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "the summary") -> RunSummary:
        """`source` names the file in errors."""
        _require_version(data, source)
        recovery = _take(data, "recovery", source)
        circuit = _take(data, "ioi_circuit", source)
        scalars = {
            name: _take(data, name, source)
            for name in (
                "model_name", "direction", "objective", "min_gap_for_recovery", "clean_logit_diff",
                "corrupted_logit_diff", "patched_logit_diff", "clean_accuracy", "patched_accuracy", "l0",
                "l0_threshold", "n_heads_total", "combination", "prune", "val", "test", "baselines", "config",
            )
        }  # fmt: skip
        return cls(
            **scalars,
            recovery=Recovery(val=_take(recovery, "val", source), test=dict(_take(recovery, "test", source))),
            top_heads=[Unit.from_dict(unit, source) for unit in _take(data, "top_heads", source)],
            support=[list(unit) for unit in _take(data, "support", source)],
            per_prompt_recovery={
                name: Distribution.from_dict(d) for name, d in _take(data, "per_prompt_recovery", source).items()
            },
            ioi_circuit=None if circuit is None else IOICircuit.from_dict(circuit, source),
            alpha=data.get("alpha"), steps=data.get("steps"), rest=data.get("rest", "free"),
            rotation=data.get("rotation"), circuit=data.get("circuit"), head_types=data.get("head_types"),
            scrub=data.get("scrub"),
            schema_version=data["schema_version"],
        )

    @classmethod
    def read(cls, path: str | Path) -> RunSummary:
        """A run's summary.json (`path`: the file or its run directory)."""
        path = Path(path)
        if path.is_dir():
            path = path / "summary.json"
        return cls.from_dict(_read_json(path), str(path))


@dataclass(frozen=True)
class SweepPoint:
    """One finished point of a sweep: its grid settings, run directory and what it found."""

    point: str
    settings: dict[str, Any]
    run_dir: str
    val_recovery: float | None
    test_recovery: dict[str, float | None]
    l0: int
    heads: list[list[int]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "point": self.point, "settings": self.settings, "run_dir": self.run_dir, "val_recovery": self.val_recovery,
            "test_recovery": self.test_recovery, "l0": self.l0, "heads": self.heads,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> SweepPoint:
        return cls(**{f.name: _take(data, f.name, source) for f in fields(cls)})


@dataclass(frozen=True)
class Stability:
    """One setting run with several seeds/inits (`analysis.stability`)."""

    setting: str
    runs: list[str]
    heads_in_every_run: list[list[int]]
    heads_in_any_run: list[list[int]]
    intersection_over_union: float | None
    mean_pairwise_iou: float | None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> Stability:
        return cls(**{f.name: _take(data, f.name, source) for f in fields(cls)})


@dataclass(frozen=True)
class DirectionComparison:
    """Noising against denoising for one setting (`analysis.compare_directions`)."""

    setting: str
    denoising_heads: list[list[int]]
    noising_heads: list[list[int]]
    both: list[list[int]]
    only_denoising: list[list[int]]
    only_noising: list[list[int]]
    iou: float | None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> DirectionComparison:
        return cls(**{f.name: _take(data, f.name, source) for f in fields(cls)})


@dataclass
class SweepSummary:
    """A sweep's `sweep.json`: every finished point, stability across seeds, noising against denoising."""

    n_points: int
    n_finished: int
    points: list[SweepPoint]
    stability: list[Stability] = field(default_factory=list)
    noising_vs_denoising: list[DirectionComparison] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "n_points": self.n_points,
            "n_finished": self.n_finished,
            "points": [point.to_dict() for point in self.points],
            "stability": [row.to_dict() for row in self.stability],
            "noising_vs_denoising": [row.to_dict() for row in self.noising_vs_denoising],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "the sweep summary") -> SweepSummary:
        _require_version(data, source)
        return cls(
            n_points=_take(data, "n_points", source),
            n_finished=_take(data, "n_finished", source),
            points=[SweepPoint.from_dict(row, source) for row in _take(data, "points", source)],
            stability=[Stability.from_dict(row, source) for row in _take(data, "stability", source)],
            noising_vs_denoising=[
                DirectionComparison.from_dict(row, source) for row in _take(data, "noising_vs_denoising", source)
            ],
            schema_version=data["schema_version"],
        )

    @classmethod
    def read(cls, path: str | Path) -> SweepSummary:
        """A sweep's sweep.json (`path`: the file or the sweep directory)."""
        path = Path(path)
        if path.is_dir():
            path = path / "sweep.json"
        return cls.from_dict(_read_json(path), str(path))
