"""The baselines' figures (PNG files and TensorBoard images), keyed by file stem: drawn from a computed result
(`baselines/compute.py`), never computing one."""

from __future__ import annotations

from matplotlib.figure import Figure

from ioi_superpose.baselines.compute import BaselineResult, CombinationCurves, HeadScores, learned_point
from ioi_superpose.data.splits import VAL_SET
from ioi_superpose.fitting.fitted import FittedCombination
from ioi_superpose.plots import component_bars, head_heatmap, logit_lens_figure, recovery_curves


def baseline_figures(result: BaselineResult, fitted: FittedCombination | None = None) -> dict[str, Figure]:
    """A result's figures: a head score's heatmap (and direct logit attribution's line plots); the curves' attention
    heatmap and, given a fitted combination, their validation curves with its point (the only α-dependent one)."""
    if isinstance(result, HeadScores):
        return head_score_figures(result)
    return curve_figures(result, fitted)


def head_score_figures(result: HeadScores) -> dict[str, Figure]:
    figures = {result.name: head_heatmap(result.effect, result.title, label=result.label)}
    attribution = result.logit_attribution
    if attribution is not None:
        prompts = f"clean validation prompts ({result.n_prompts})"
        figures[f"{result.name}_accumulated"] = logit_lens_figure(
            attribution.accumulated, attribution.accumulated_labels, f"Logit lens at END by depth, {prompts}"
        )
        figures[f"{result.name}_decomposed"] = component_bars(
            attribution.decomposed, attribution.decomposed_labels, f"Each component's direct effect at END, {prompts}"
        )
    return figures


def curve_figures(result: CombinationCurves, fitted: FittedCombination | None = None) -> dict[str, Figure]:
    """The attention heatmap (`attention_to_io.png`: what it shows) and, given a fitted combination, the validation
    curves with its learned point."""
    n = len(result.val_batch)
    figures = {"attention_to_io": head_heatmap(
        result.attention, f"Attention from END to IO, mean over {n} clean validation prompts", diverging=False,
        label="attention probability",
    )}  # fmt: skip
    if fitted is not None:
        figures[f"{result.name}_recovery"] = recovery_curves(
            result.curves_by_set[VAL_SET], {"learned α": learned_point(result, fitted)},
            f"Top-k head combinations and the learned α: {result.direction}, validation ({n} prompts)",
        )  # fmt: skip
    return figures
