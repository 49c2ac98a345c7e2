"""A head-level hypothesis for causal scrubbing: the heads that matter, and per head the prompt features its output is
claimed to depend on (`docs/causal_scrubbing.md`).

In Python, `Hypothesis({(0, 0): ("io", "s"), (1, 2): ("template_id", "order")})`. In a YAML file
(`read_hypothesis(path)`, a `HypothesisFile`):

    task: ioi              # optional: the task whose features are named (then checked against it)
    heads:                 # "layer.head", or "layer.*" for every head of the layer: the features that head reads
      0.*: [io, s]
      1.2: [template_id, order]

A head key is read as written (YAML itself would read `0.10` as the number 0.1): `0.10` is layer 0, head 10. A head
named both by itself and by its layer's `L.*` takes its own entry (the more specific one). The features are the
task's (`Task.feature_names`, the keys of `TaskPrompts.features`; IOI: io, s, template_id, order).

Refused, naming the file, the line and the key: a file that is not such a mapping, an unknown top-level key, a
malformed head key, a head or layer outside the model, the same head twice, a feature listed twice, an empty feature
list (a head that reads nothing is a head outside the hypothesis: leave it out), a feature the task does not have,
and a file that names no head. In Python the same checks name the head.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from ioi_superpose.engine.vocabulary import Head
from ioi_superpose.errors import ConfigError
from ioi_superpose.tasks.registry import TASKS

FILE_KEYS = ("task", "heads")
_HEAD_KEY = re.compile(r"^(\d+)\.(\d+|\*)$")


def head_name(head: Head) -> str:
    return f"{head[0]}.{head[1]}"


def _check_features(features: Any, where: str) -> tuple[str, ...]:
    """A head's features as a tuple of distinct non-empty strings, in the order given."""
    if isinstance(features, str) or not isinstance(features, Iterable):
        raise ConfigError(f"{where}: the features must be a list of feature names, got {features!r}.")
    features = tuple(features)
    if not features:
        raise ConfigError(
            f"{where} has no features: list the prompt features its output depends on, or leave the head out of the "
            "hypothesis (a head outside it takes its z from a random other prompt)."
        )
    bad = [f for f in features if not isinstance(f, str) or not f]
    if bad:
        raise ConfigError(f"{where}: feature names must be non-empty strings, got {bad}.")
    repeated = sorted({f for f in features if features.count(f) > 1})
    if repeated:
        raise ConfigError(f"{where} lists the feature(s) {repeated} more than once; list each once.")
    return features


def check_feature_names(features: Sequence[str], known: Sequence[str], task: str | None, where: str) -> None:
    """Every feature must be one the prompts have; refused naming the task's features."""
    unknown = [f for f in features if f not in known]
    if unknown:
        owner = f"task {task!r}" if task else "these prompts"
        raise ConfigError(
            f"{where}: {unknown} {'is not a feature' if len(unknown) == 1 else 'are not features'} of {owner}; its "
            f"features are {list(known)}."
        )


def check_head(head: Head, n_layers: int, n_heads: int, where: str) -> None:
    layer, index = head
    if not (0 <= layer < n_layers and 0 <= index < n_heads):
        raise ConfigError(
            f"{where}: head {head_name(head)} is outside this model ({n_layers} layers × {n_heads} heads: layers "
            f"0–{n_layers - 1}, heads 0–{n_heads - 1})."
        )


@dataclass(frozen=True)
class Hypothesis:
    """Heads and, per head, the prompt features its z is claimed to depend on. Heads not named are claimed not to
    matter (they are resampled from a random other prompt). The empty hypothesis is the fully resampled model."""

    claims: Mapping[Head, Sequence[str]] = field(default_factory=dict)
    """(layer, head) → the features that head reads (non-empty, distinct)."""

    def __post_init__(self) -> None:
        if not isinstance(self.claims, Mapping):
            raise ConfigError(
                f"Hypothesis: claims must map (layer, head) to features, got {type(self.claims).__name__}."
            )
        normal: dict[Head, tuple[str, ...]] = {}
        for head, features in self.claims.items():
            if not (isinstance(head, tuple) and len(head) == 2 and all(isinstance(i, int) and i >= 0 for i in head)):
                raise ConfigError(f"Hypothesis: {head!r} is not a head; name heads as (layer, head) pairs of ints "
                                  ">= 0.")  # fmt: skip
            normal[head] = _check_features(features, f"Hypothesis: head {head_name(head)}")
        object.__setattr__(self, "claims", MappingProxyType(dict(sorted(normal.items()))))

    @property
    def heads(self) -> list[Head]:
        """The heads of the hypothesis, in (layer, head) order."""
        return list(self.claims)

    def features(self, head: Head) -> tuple[str, ...]:
        return tuple(self.claims[head])

    def check(self, n_layers: int, n_heads: int, feature_names: Sequence[str], task: str | None = None) -> None:
        """Refuse heads outside an n_layers × n_heads model and features the prompts do not have."""
        for head, features in self.claims.items():
            check_head(head, n_layers, n_heads, "Hypothesis")
            check_feature_names(features, feature_names, task, f"Hypothesis: head {head_name(head)}")

    def to_dict(self) -> dict[str, list[str]]:
        """{"layer.head": [features]} (JSON-ready; `from_dict` reads it back)."""
        return {head_name(head): list(features) for head, features in self.claims.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[str]]) -> "Hypothesis":
        claims = {}
        for key, features in data.items():
            match = _HEAD_KEY.match(str(key))
            if match is None or match.group(2) == "*":
                raise ConfigError(f"Hypothesis: {key!r} is not a head; write heads as 'layer.head'.")
            claims[(int(match.group(1)), int(match.group(2)))] = features
        return cls(claims)

    def describe(self) -> str:
        """'0.0: io, s; 1.2: order' (or 'no head' for the empty hypothesis)."""
        return "; ".join(f"{head_name(h)}: {', '.join(f)}" for h, f in self.claims.items()) or "no head"


@dataclass(frozen=True)
class HeadEntry:
    """One `heads:` entry of a hypothesis file: a head (`head` set) or every head of a layer (`head` None)."""

    layer: int
    head: int | None
    features: tuple[str, ...]
    key: str
    line: int


@dataclass(frozen=True)
class HypothesisFile:
    """A hypothesis file as read (`read_hypothesis`): its entries, to be resolved against a model's shape and the
    prompts' features — every head it names (`hypothesis`), or features for a given head set (`for_heads`)."""

    path: str
    task: str | None
    entries: tuple[HeadEntry, ...]

    def where(self, entry: HeadEntry) -> str:
        return f"{self.path}, line {entry.line}, key {entry.key!r}"

    def check(self, n_layers: int, n_heads: int, feature_names: Sequence[str], task: str | None = None) -> None:
        """Refuse layers and heads outside the model, features the prompts do not have, and a task other than the
        file's (when both are known)."""
        if self.task is not None and task is not None and self.task != task:
            raise ConfigError(
                f"{self.path} is a hypothesis about task {self.task!r}; these prompts are task {task!r}. Use a "
                f"hypothesis written for {task!r} (or remove its task: line)."
            )
        for entry in self.entries:
            if not 0 <= entry.layer < n_layers:
                raise ConfigError(f"{self.where(entry)}: layer {entry.layer} is outside this model (layers "
                                  f"0–{n_layers - 1}).")  # fmt: skip
            if entry.head is not None:
                check_head((entry.layer, entry.head), n_layers, n_heads, self.where(entry))
            check_feature_names(entry.features, feature_names, task or self.task, self.where(entry))

    def hypothesis(self, n_layers: int, n_heads: int, feature_names: Sequence[str],
                   task: str | None = None) -> Hypothesis:  # fmt: skip
        """Every head the file names (a layer's `L.*` expanded to its n_heads heads), checked."""
        self.check(n_layers, n_heads, feature_names, task)
        heads = {(e.layer, h) for e in self.entries for h in ([e.head] if e.head is not None else range(n_heads))}
        return Hypothesis({head: self._entry_of(head).features for head in sorted(heads)})  # type: ignore[union-attr]

    def for_heads(self, heads: Iterable[Head], n_layers: int, n_heads: int, feature_names: Sequence[str],
                  task: str | None = None) -> Hypothesis:  # fmt: skip
        """`heads` (e.g. a learned set), each with the features the file gives it (its own entry, else its
        layer's); a head the file does not cover is refused, naming it."""
        self.check(n_layers, n_heads, feature_names, task)
        claims = {}
        for head in heads:
            entry = self._entry_of(head)
            if entry is None:
                raise ConfigError(
                    f"{self.path} gives no features for head {head_name(head)}: add '{head_name(head)}: [...]' or "
                    f"'{head[0]}.*: [...]' under heads:."
                )
            claims[head] = entry.features
        return Hypothesis(claims)

    def _entry_of(self, head: Head) -> HeadEntry | None:
        own = [e for e in self.entries if (e.layer, e.head) == head]
        layer = [e for e in self.entries if e.layer == head[0] and e.head is None]
        return (own or layer or [None])[0]


def read_hypothesis(path: str | Path) -> HypothesisFile:
    """Read and check the format of a hypothesis file (module docstring); heads and features are checked against a
    model and a task by `HypothesisFile.check` (or `hypothesis` / `for_heads`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"Hypothesis file {path} does not exist; give the path of a YAML file (docs/causal_scrubbing.md)."
        )
    try:
        root = yaml.compose(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}".replace("\n", " ")) from None
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{path} must be a mapping with the keys {list(FILE_KEYS)} (a 'heads:' mapping at least).")
    top = _mapping(root, path, "the file")
    unknown = [key for key in top if key not in FILE_KEYS]
    if unknown:
        line = top[unknown[0]][0].start_mark.line + 1
        raise ConfigError(f"{path}, line {line}: unknown key {unknown[0]!r}; a hypothesis file has {list(FILE_KEYS)}.")
    task = None
    if "task" in top:
        node = top["task"][1]
        if not isinstance(node, yaml.ScalarNode) or not node.value:
            raise ConfigError(f"{path}, line {node.start_mark.line + 1}: task must be a task name (e.g. ioi).")
        task = node.value
        if task not in TASKS:
            raise ConfigError(
                f"{path}, line {node.start_mark.line + 1}: unknown task {task!r}; tasks are {list(TASKS)}."
            )
    if "heads" not in top:
        raise ConfigError(f"{path} has no 'heads:' mapping (\"layer.head\": [features]); nothing to test.")
    heads_node = top["heads"][1]
    if not isinstance(heads_node, yaml.MappingNode) or not heads_node.value:
        raise ConfigError(
            f"{path}, line {heads_node.start_mark.line + 1}: 'heads:' must map at least one \"layer.head\" (or "
            '"layer.*") to a list of features.'
        )
    entries: list[HeadEntry] = []
    seen: dict[tuple[int, int | None], HeadEntry] = {}
    for key, (key_node, value_node) in _mapping(heads_node, path, "heads:").items():
        line = key_node.start_mark.line + 1
        match = _HEAD_KEY.match(key)
        if match is None:
            raise ConfigError(
                f"{path}, line {line}: {key!r} is not a head; write 'layer.head' (e.g. 0.1) or 'layer.*'."
            )
        layer, head = int(match.group(1)), None if match.group(2) == "*" else int(match.group(2))
        where = f"{path}, line {line}, key {key!r}"
        if not isinstance(value_node, yaml.SequenceNode) or not all(
            isinstance(item, yaml.ScalarNode) for item in value_node.value
        ):
            raise ConfigError(f"{where}: the features must be a list of names, e.g. [io, s].")
        entry = HeadEntry(layer, head, _check_features([item.value for item in value_node.value], where), key, line)
        if (layer, head) in seen:
            first = seen[(layer, head)]
            raise ConfigError(f"{where}: this head is already given on line {first.line} (as {first.key!r}); give "
                              "each head once.")  # fmt: skip
        seen[(layer, head)] = entry
        entries.append(entry)
    hypothesis_file = HypothesisFile(str(path), task, tuple(entries))
    if task is not None:
        for entry in entries:
            check_feature_names(entry.features, TASKS[task].feature_names, task, hypothesis_file.where(entry))
    return hypothesis_file


def _mapping(node: yaml.MappingNode, path: Path, what: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    """A mapping node's entries by key text; a repeated key (PyYAML would keep the last silently) is refused."""
    entries: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise ConfigError(f"{path}, line {key_node.start_mark.line + 1}: keys of {what} must be plain text.")
        key = key_node.value
        if key in entries:
            first = entries[key][0].start_mark.line + 1
            raise ConfigError(f"{path}, line {key_node.start_mark.line + 1}: {key!r} is given twice in {what} (first "
                              f"on line {first}); give it once.")  # fmt: skip
        entries[key] = (key_node, value_node)
    return entries
