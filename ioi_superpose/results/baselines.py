"""The baselines' records in summary.json: each computed result (`baselines/compute.py`) against the learned
combination (rank correlation, top-k overlap, the curves at the learned number of heads)."""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torchmetrics.functional import spearman_corrcoef

from ioi_superpose.baselines.compute import BaselineResult, CombinationCurves, HeadScores, learned_point
from ioi_superpose.data.splits import VAL_SET
from ioi_superpose.fitting.fitted import FittedCombination
from ioi_superpose.results.units import top_heads


def spearman(a: Tensor, b: Tensor) -> float | None:
    """Spearman rank correlation of two flattened tensors (average ranks for ties); None when either is
    constant (e.g. an all-zero α), where the correlation is undefined."""
    a, b = a.flatten().double(), b.flatten().double()
    if bool((a == a[0]).all()) or bool((b == b[0]).all()):
        return None
    return float(spearman_corrcoef(a, b))


def top_k_overlap(a: Tensor, b: Tensor, k: int) -> float:
    """Share of the k largest entries of `a` that are also among the k largest of `b`."""
    top_a = set(a.flatten().topk(k).indices.tolist())
    top_b = set(b.flatten().topk(k).indices.tolist())
    return len(top_a & top_b) / k


def baseline_summary(result: BaselineResult, fitted: FittedCombination) -> dict[str, Any]:
    """A baseline's record: a head score against the learned α (rank correlation, top-k overlap with k = the heads α
    uses, its top heads, its extras); the curves with the learned point and the curves' values at that k."""
    if isinstance(result, HeadScores):
        alpha = fitted.combination.head_coefficients().cpu()  # [layer, head] (largest over roles)
        k = max(len(fitted.heads()), 1)
        return {
            "spearman_abs_alpha_vs_abs_effect": spearman(alpha.abs(), result.effect.abs()),
            f"top_{k}_overlap": top_k_overlap(alpha.abs(), result.effect.abs(), k),
            "top_heads": top_heads(result.effect, k=5, key="value"),
            **result.extras,
        }
    return curves_summary(result, fitted)


def curves_summary(curves: CombinationCurves, fitted: FittedCombination) -> dict[str, Any]:
    l0, learned = learned_point(curves, fitted)
    val = curves.curves_by_set[VAL_SET]
    k = min(max(l0, 1), len(next(iter(val.values()))))
    return {
        "k": k,
        "learned_recovery": learned,
        "recovery_at_k": {name: curve[k - 1] for name, curve in val.items()},
        "curves_by_set": curves.curves_by_set,
        "prompts_by_set": curves.prompts_by_set,
        "top_heads_by_attention_to_io": top_heads(curves.attention, k=5, key="value"),
    }
