"""`--model.scrub FILE`: after a fit, the learned head set scored under a hypothesis file's features
(`analyses.post_fit.after_fit` calls `scrub_fitted`); in Python, `scrub_fitted(fitted, hypothesis, prompt_sets)`
scores any fitted combination's head set under a file or a `Hypothesis`.

Each learned head takes the features the file gives it (its own `L.H` entry, else its layer's `L.*`); heads the file
names that were not learned are not scored. Every prompt set is scored in both versions (the treeified one only where
its tree fits the cap). What cannot be scored — a learned head the file does not cover, no learned head, a tree over
the cap, prompts whose fully resampled metric equals the clean one — is recorded with its reason, not raised: the fit
has finished by then (the file's format, heads and features were checked when the run started: `check_scrub_file`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ioi_superpose.analyses.scrubbing.hypothesis import Hypothesis, HypothesisFile, head_name, read_hypothesis
from ioi_superpose.analyses.scrubbing.sampling import DEFAULT_MAX_FORWARDS, check_tree_size
from ioi_superpose.analyses.scrubbing.score import DEFAULT_DRAWS, VERSIONS, scrub
from ioi_superpose.data.answer_metrics import MetricName
from ioi_superpose.engine.vocabulary import Head
from ioi_superpose.errors import ConfigError
from ioi_superpose.fitting.fitted import FittedCombination
from ioi_superpose.models import HookedTransformer
from ioi_superpose.tasks.base import TaskPrompts


def check_scrub_file(
    path: str | Path, model: HookedTransformer, feature_names: Sequence[str], task: str
) -> HypothesisFile:
    """The hypothesis file read and checked against the model's heads and the task's features (before a fit)."""
    parsed = read_hypothesis(path)
    parsed.check(model.cfg.n_layers, model.cfg.n_heads, feature_names, task)
    return parsed


def scrub_learned_set(
    model: HookedTransformer,
    hypothesis: str | Path | Hypothesis,
    heads: Sequence[Head],
    prompt_sets: Mapping[str, TaskPrompts],
    task: str | None,
    metric: MetricName = "logit_diff",
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
    max_forwards: int = DEFAULT_MAX_FORWARDS,
) -> dict[str, Any]:
    """`heads` each with the features `hypothesis` gives it (a file: its own entry, else its layer's; a
    `Hypothesis`: its claim), scored on every prompt set: {"file" (None for a `Hypothesis`), "heads", "draws",
    "seed", "hypothesis": {"L.H": [features]}, "sets": {set: {version: ScrubScore as a dict, or {"error": why}}}},
    or with "error" in place of the hypothesis when it cannot be formed."""
    path = None if isinstance(hypothesis, Hypothesis) else str(hypothesis)
    record: dict[str, Any] = {"file": path, "heads": [list(head) for head in heads], "draws": draws, "seed": seed}
    if not heads:
        return record | {"error": "the fit kept no head: there is no learned set to scrub."}
    try:
        feature_names = list(next(iter(prompt_sets.values())).features)
        claims = _claims_of(hypothesis, heads, model.cfg.n_layers, model.cfg.n_heads, feature_names, task)
    except ConfigError as error:
        return record | {"error": str(error)}
    record["hypothesis"] = claims.to_dict()
    versions, refused = list(VERSIONS), {}
    try:
        check_tree_size(claims, treeified=True, max_forwards=max_forwards)
    except ConfigError as error:
        versions.remove("treeified")
        refused["treeified"] = {"error": str(error)}
    record["sets"] = {}
    for name, prompts in prompt_sets.items():
        try:
            scores = scrub(model, claims, prompts, metric, versions, draws, seed, max_forwards, task=task)
            record["sets"][name] = {version: score.to_dict() for version, score in scores.items()} | refused
        except ConfigError as error:
            record["sets"][name] = {"error": str(error)}
    return record


def scrub_fitted(
    fitted: FittedCombination,
    hypothesis: str | Path | Hypothesis,
    prompt_sets: Mapping[str, TaskPrompts],
    task: str | None = None,
    metric: MetricName = "logit_diff",
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
    max_forwards: int = DEFAULT_MAX_FORWARDS,
) -> dict[str, Any]:
    """The fitted combination's head set (`FittedCombination.heads`: its [layer, head] view above the L0 threshold)
    under `hypothesis` (a file or a `Hypothesis` covering every learned head), on each prompt set with its features
    (`scrub_learned_set`'s record). What `--model.scrub` runs after a fit (`analyses.post_fit.after_fit`)."""
    return scrub_learned_set(fitted.model, hypothesis, fitted.heads(), prompt_sets, task, metric, draws, seed,
                             max_forwards)  # fmt: skip


def _claims_of(hypothesis: str | Path | Hypothesis, heads: Sequence[Head], n_layers: int, n_heads: int,
               feature_names: Sequence[str], task: str | None) -> Hypothesis:  # fmt: skip
    """`heads`, each with the features `hypothesis` gives it; a head it does not cover is refused, naming it."""
    if not isinstance(hypothesis, Hypothesis):
        return read_hypothesis(hypothesis).for_heads(heads, n_layers, n_heads, feature_names, task)
    missing = [head_name(head) for head in heads if head not in hypothesis.claims]
    if missing:
        raise ConfigError(f"The hypothesis gives no features for the learned head(s) {missing}; it names "
                          f"{[head_name(head) for head in hypothesis.heads]}.")  # fmt: skip
    return Hypothesis({head: hypothesis.features(head) for head in heads})
