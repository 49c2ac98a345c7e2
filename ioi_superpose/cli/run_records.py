"""A fit's figures beyond the α heatmap and its exhaustive ground truth, made when the run is written
(`cli.train.write_results`): α over training, the per-prompt recovery histograms, the learned heads by layer, and —
on models with at most `run_figures.EXHAUSTIVE_MAX_HEADS` heads — the best recovery of every head-set size over every
subset on the validation prompts, with the minimal sets reaching the target (`exhaustive.json`), drawn on the
validation Pareto front (`pareto_val.png`) and read back by the report."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from matplotlib.figure import Figure
from torch import Tensor

from ioi_superpose.analyses.exhaustive import search_subsets
from ioi_superpose.callbacks.coefficients import CoefficientPlots
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.data.splits import VAL_SET
from ioi_superpose.fitting.fitted import FittedCombination
from ioi_superpose.results.pareto import pareto_figure
from ioi_superpose.results.run_figures import (
    EXHAUSTIVE_FILE,
    EXHAUSTIVE_MAX_HEADS,
    EXHAUSTIVE_PROMPTS,
    ExhaustiveFront,
    alpha_over_training,
    learned_heads_graph,
    per_prompt_histograms,
)
from ioi_superpose.results.schema import RunSummary

DEFAULT_TARGET = 0.9
"""The recovery the exhaustive minimal sets must reach when the run sets no `--model.prune_target`."""


def exhaustive_front(
    fitted: FittedCombination, prompts: ContrastBatch, set_name: str = VAL_SET
) -> ExhaustiveFront | None:
    """Every head subset patched on `prompts` in the run's direction, notion and patch source; None where the model
    has more than `EXHAUSTIVE_MAX_HEADS` heads (2^heads subsets) or the prompts have no clean/corrupted gap."""
    cfg = fitted.model.cfg
    if cfg.n_layers * cfg.n_heads > EXHAUSTIVE_MAX_HEADS:
        return None
    target = fitted.settings.prune.prune_target or DEFAULT_TARGET
    direction = fitted.direction
    try:
        search = search_subsets(fitted.model, prompts.to(fitted.device), direction, threshold=target,
                                max_heads=EXHAUSTIVE_MAX_HEADS, rest=fitted.rest, ablation=fitted.ablation)  # fmt: skip
    except ValueError:  # the clean and corrupted runs have the same logit difference: no recovery to rank by
        return None
    return ExhaustiveFront.from_effects(search.subset_effect, search.minimal_sets, set_name, direction, fitted.rest,
                                        len(prompts), target)  # fmt: skip


def run_figures(
    trainer: L.Trainer, fitted: FittedCombination, summary: RunSummary, recoveries: Mapping[str, Tensor],
    val_prompts: ContrastBatch,
) -> tuple[dict[str, Figure], dict[str, Any]]:  # fmt: skip
    """(figures by file stem, JSON records by file name) for the run directory."""
    direction, family = summary.direction, summary.combination
    threshold = fitted.l0_threshold
    figures: dict[str, Figure] = {}
    history = next((c.history for c in trainer.callbacks if isinstance(c, CoefficientPlots)), None)
    if history is not None and len(history[0]) > 1:
        steps, alphas = history
        l1 = fitted.settings.optim.l1
        figures["alpha_over_training"] = alpha_over_training(
            steps, alphas, threshold, f"α over training: {direction}, {family}, λ = {l1} (each head's [layer, head] α)"
        )
    figures["per_prompt_recovery"] = per_prompt_histograms(
        recoveries, direction, {VAL_SET: summary.recovery.val, **summary.recovery.test}
    )
    figures["learned_heads"] = learned_heads_graph(
        fitted.combination.head_coefficients().detach().cpu(), threshold,
        f"The learned heads by layer ({Path(summary.model_name).name})\n{direction}, {family}, L0 = {summary.l0}, "
        f"val recovery {_fmt(summary.recovery.val)}",
    )  # fmt: skip
    files: dict[str, Any] = {}
    front = exhaustive_front(fitted, val_prompts[:EXHAUSTIVE_PROMPTS])
    if front is not None:
        files[EXHAUSTIVE_FILE] = front.to_dict()
    figures[f"pareto_{VAL_SET}"] = pareto_figure([summary], VAL_SET, fronts=[front] if front else [])
    return figures, files


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"

