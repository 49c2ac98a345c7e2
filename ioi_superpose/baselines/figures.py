"""The baselines' figures (PNG files and TensorBoard images), keyed by file stem: drawn from a computed result
(`baselines/compute.py`), never computing one."""

from __future__ import annotations

from matplotlib.figure import Figure

from ioi_superpose.baselines.compute import BaselineResult, CombinationCurves, HeadScores, learned_point
from ioi_superpose.data.splits import VAL_SET
from ioi_superpose.fitting.fitted import FittedCombination
from ioi_superpose.plots import head_heatmap, line_plot, recovery_curves


def baseline_figures(result: BaselineResult, fitted: FittedCombination | None = None) -> dict[str, Figure]:
    """A result's figures: a head score's heatmap (and direct logit attribution's line plots); the curves' attention
    heatmap and, given a fitted combination, their validation curves with its point (the only α-dependent one)."""
    if isinstance(result, HeadScores):
        return head_score_figures(result)
    return curve_figures(result, fitted)


def head_score_figures(result: HeadScores) -> dict[str, Figure]:
    figures = {result.name: head_heatmap(result.effect, result.title)}
    attribution = result.logit_attribution
    if attribution is not None:
        figures[f"{result.name}_accumulated"] = line_plot(
            attribution.accumulated, attribution.accumulated_labels, "logit lens: accumulated residual",
            "logit difference",
        )  # fmt: skip
        figures[f"{result.name}_decomposed"] = line_plot(
            attribution.decomposed, attribution.decomposed_labels, "logit difference per component", "logit difference"
        )
    return figures


def curve_figures(result: CombinationCurves, fitted: FittedCombination | None = None) -> dict[str, Figure]:
    figures = {result.name: head_heatmap(result.attention, result.title)}
    if fitted is not None:
        figures[f"{result.name}_recovery"] = recovery_curves(
            result.curves_by_set[VAL_SET], {"learned α": learned_point(result, fitted)}
        )
    return figures
