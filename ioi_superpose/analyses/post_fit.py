"""The work that follows a fit, asked for by its settings: rotation's dimension count, the minimal-set step
(`prune_target`), the learned head set's circuit criteria (`circuit_criteria`), every head's type (`head_types`) and
the learned head set under a hypothesis by causal scrubbing (`scrub`).

`after_fit` is the one function the CLI (`cli/train.py::write_results`) and the API (`api.learn_combination(s)`)
call once a fit has ended, before the combination is evaluated: the LightningModule only trains and evaluates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ioi_superpose.analyses.circuit import circuit_scores
from ioi_superpose.analyses.head_types import detector_head_types, head_types
from ioi_superpose.analyses.pruning import PruneResult, prune_fitted
from ioi_superpose.analyses.rotation import rotation_dimensions
from ioi_superpose.analyses.scrubbing.learned import scrub_fitted
from ioi_superpose.combinations.rotation import RotationCombination
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.ablations import ABLATIONS
from ioi_superpose.errors import ConfigError
from ioi_superpose.fitting.fitted import FittedCombination
from ioi_superpose.tasks.base import TaskPrompts

HEAD_TYPE_PROMPTS = 64
"""`head_types`: the training prompts the head types are scored on (the detectors loop in Python per prompt)."""


@dataclass(frozen=True)
class AfterFit:
    """What `after_fit` found; each part None unless the fit's settings asked for it."""

    prune: PruneResult | None = None
    """The minimal-set step's result (`prune_target`)."""
    rotation: dict[str, Any] | None = None
    """rotation only: the dimension count and head loadings (`analyses.rotation.rotation_dimensions`)."""
    circuit: dict[str, Any] | None = None
    """`circuit_criteria`: {ablation: the criteria (`circuit.CircuitScores.to_dict`) or {"error": why}}."""
    head_types: dict[str, Any] | None = None
    """`head_types`: the head-type scores with the learned heads listed (`learned_head_types`)."""
    scrub: dict[str, Any] | None = None
    """`scrub`: the learned head set under the hypothesis file (`analyses.scrubbing.learned.scrub_fitted`'s record)."""


def pruning_batches(prompts: ContrastBatch, batch_size: int) -> list[ContrastBatch]:
    """`prompts` in batches of `batch_size`, each trimmed: what the minimal-set step and rotation's count read."""
    return [prompts[start : start + batch_size].trimmed() for start in range(0, len(prompts), batch_size)]


@torch.no_grad()
def after_fit(
    fitted: FittedCombination,
    train_prompts: ContrastBatch,
    batch_size: int,
    name: Callable[[str], str] = str,
    scrub_sets: Mapping[str, TaskPrompts] | None = None,
    task: str | None = None,
) -> AfterFit:
    """On the first `prune_prompts` training prompts (in batches of `batch_size`; every process takes the same ones),
    in this order: rotation's dimension count, the minimal-set step (which writes the kept set into the combination),
    then the criteria and head types of the resulting head set, and its scrub. `name`: how warnings name a setting.
    `scrub_sets`: the prompt sets, with each prompt's features, that `scrub` scores the learned set on (the training
    CLI: the first `prune_prompts` training prompts and the validation prompts, `IOIDataModule.features`), of the
    task `task`; None: `scrub` records that there are no features to group the prompts by."""
    settings = fitted.settings
    prompts = train_prompts[: settings.prune.prune_prompts]
    batches = [batch.to(fitted.device) for batch in pruning_batches(prompts, batch_size)]
    rotation = prune = circuit = types = scrub = None
    if isinstance(fitted.combination, RotationCombination):
        with fitted.evaluating():
            rotation = rotation_dimensions(fitted.model, fitted.combination, batches, fitted.direction,
                                           float(settings.family.own.rotation_target))  # fmt: skip
    if settings.prune.prune_target is not None:
        prune = prune_fitted(fitted, batches, name)
    if settings.prune.circuit_criteria or settings.prune.head_types:
        whole = prompts.trimmed()  # one batch of the first prune_prompts rows
        if settings.prune.circuit_criteria:
            circuit = learned_circuit_scores(fitted, whole)
        if settings.prune.head_types:
            types = learned_head_types(fitted, whole[:HEAD_TYPE_PROMPTS].trimmed())
    if settings.prune.scrub is not None:
        scrub = (scrub_fitted(fitted, settings.prune.scrub, scrub_sets, task) if scrub_sets else
                 {"file": settings.prune.scrub, "error": "no prompt features were given (the IOI datamodule's "
                  "`features`): nothing to group the prompts by."})  # fmt: skip
    return AfterFit(prune=prune, rotation=rotation, circuit=circuit, head_types=types, scrub=scrub)


@torch.no_grad()
def learned_circuit_scores(fitted: FittedCombination, prompts: ContrastBatch) -> dict[str, Any]:
    """The circuit criteria of the learned head set on `prompts` under every ablation (`analyses.circuit`); an
    ablation the prompts cannot support (resample with a single prompt) is recorded with its reason."""
    heads = fitted.heads()
    result: dict[str, Any] = {}
    for ablation in ABLATIONS:
        try:
            result[ablation] = circuit_scores(fitted.model, heads, prompts.to(fitted.device), ablation).to_dict()
        except ConfigError as error:
            result[ablation] = {"error": str(error)}
    return result


@torch.no_grad()
def learned_head_types(fitted: FittedCombination, prompts: ContrastBatch) -> dict[str, Any]:
    """Every head's type scores on `prompts` (`analyses.head_types`), with the learned heads listed; prompts without
    IOI roles get the types any prompts show (previous-token, duplicate-token, induction), the reason recorded."""
    result: dict[str, Any] = {"prompts": len(prompts), "heads": [list(head) for head in fitted.heads()]}
    prompts = prompts.to(fitted.device)
    try:
        scores = head_types(fitted.model, prompts)  # type: ignore[arg-type]
    except ConfigError as error:
        result["error"] = f"IOI types left out: {error}"
        scores = detector_head_types(fitted.model, prompts)
    result["scores"] = {name: [[round(float(v), 4) for v in row] for row in value.tolist()]
                        for name, value in scores.items()}  # fmt: skip
    return result
