"""The benchmark's ground truth for one case, split, direction and notion (`rest`), and its check at 144 heads.

The truth is exhaustive subset search over the case's candidate heads (`BenchCase.candidates`: every head
of a small model; a 144-head case's planted heads). That a search over the planted heads alone is the truth
of the whole model is a claim about the distractors, which `distractor_checks` measures in the same notion:
patching every distractor at once, and adding any single distractor to each minimal set, must move the
effect by less than `TOLERANCE` (the suite's own verification, `experiments/planted_gpt2_verify.py`, does
this for `rest="free"`; the frozen notion is checked here, not assumed equal).
"""

from __future__ import annotations

from typing import Any

import torch

from ioi_superpose.analyses.exhaustive import SubsetSearch, search_head_subsets, subset_effects
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.rest import Rest
from ioi_superpose.groundtruth.benchmark_cases import BenchCase

TOLERANCE = 0.01


def search_truth(
    case: BenchCase, prompts: ContrastBatch, direction: str, threshold: float, rest: Rest
) -> SubsetSearch:
    """Every smallest subset of the case's candidate heads reaching `threshold` on `prompts`."""
    return search_head_subsets(case.model, prompts, case.candidates, direction, threshold, rest=rest)


def _mask(heads, n_layers: int, n_heads: int) -> torch.Tensor:  # noqa: ANN001
    mask = torch.zeros(n_layers, n_heads, dtype=torch.bool)
    for head in heads:
        mask[tuple(head)] = True
    return mask


def distractor_checks(
    case: BenchCase, prompts: ContrastBatch, direction: str, rest: Rest, minimal_sets: list[list[tuple[int, int]]]
) -> dict[str, Any]:
    """|effect of all distractors at once| and the largest |effect(set + d) − effect(set)| over the minimal
    sets and every single distractor d, in `direction` and `rest`; `ok` when both are below `TOLERANCE`."""
    n_layers, n_heads = case.model.cfg.n_layers, case.model.cfg.n_heads
    if case.candidates is None:
        raise ValueError(f"case {case.name}: no distractors (its search runs over every head)")
    candidates = set(map(tuple, case.candidates))
    distractors = [(layer, head) for layer in range(n_layers) for head in range(n_heads)
                   if (layer, head) not in candidates]  # fmt: skip
    everyone = float(subset_effects(case.model, prompts, _mask(distractors, n_layers, n_heads)[None], direction,
                                    rest=rest)[0])  # fmt: skip
    largest = 0.0
    for minimal in minimal_sets:
        masks = torch.stack([_mask(minimal, n_layers, n_heads)]
                            + [_mask([*minimal, d], n_layers, n_heads) for d in distractors])  # fmt: skip
        effects = subset_effects(case.model, prompts, masks, direction, rest=rest)
        largest = max(largest, float((effects[1:] - effects[0]).abs().max()))
    return {"prompts": len(prompts.clean_tokens), "all_distractors": round(everyone, 5),
            "max_single_addition": round(largest, 5),
            "ok": abs(everyone) < TOLERANCE and largest < TOLERANCE}  # fmt: skip
