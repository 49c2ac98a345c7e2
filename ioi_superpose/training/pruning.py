"""The minimal-set step: shrink a learned combination's support while it still carries the behaviour.

After training, the units (heads, or (head, role) pairs for `per_position`) with |weight| above the
L0 threshold are patched with weight **1** and every other unit with 0. Each round evaluates every
"support minus one unit" candidate in ONE folded run (the family's `fixed` variants through
`runs.patched_end_logits`), drops the unit whose removal hurts least, and repeats while the effect on
the given prompts stays ≥ `target`; it stops when no remaining unit can be dropped.

The **effect** is the patch's normalised move from the base run (0) to the source run (1)
(`Reference.effect`, pooled over all prompts): for denoising it is the recovery of the clean logit
difference, for noising 1 − recovery (a noising set is kept while it still destroys ≥ `target` of the
behaviour, i.e. recovery ≤ 1 − target).

Why weight 1 and not the learned weights: the minimal set is a *set of heads*; its effect is then that
of patching exactly those heads, the quantity exhaustive subset search (`groundtruth.exhaustive`) measures and
every baseline's subsets are scored by, so "L0 = minimal L0 with effect ≥ R" is a claim one can check.
Fractional weights would mix two questions (which heads, and how far to move them) — an OR pair learned
at 0.65/0.65 is two half-patches, not a set. The price: if the binarised support does not reach `target`
(weights learned far from 1), nothing is pruned and the result says so (`reached` false).

`mixing` is the exception (`LearnedFamily.mask_weights`): its units are entries of a map across heads,
signed off the diagonal, so kept entries keep their learned values — weight 1 would flip negative entries,
and an off-diagonal entry at 1 is no set of heads. Its minimal set is the smallest support of the learned map.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ioi_superpose.combinations import LearnedFamily, batch_roles
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.runs import (
    DEFAULT_MAX_ROWS,
    BaseRun,
    Direction,
    base_and_source,
    logit_diff,
    patched_end_logits,
    reference_runs,
)
from ioi_superpose.models import HookedTransformer


@dataclass
class PruneResult:
    """What the minimal-set step kept, and how each round went."""

    mask: Tensor
    """Bool, in the family's shape: the units kept (patched with weight 1)."""
    support: list[tuple[int, ...]]
    effect: float
    """Effect of the kept set on the pruning prompts (recovery for denoising, 1 − recovery for noising)."""
    start_effect: float
    """Effect of the binarised learned support before any unit was dropped."""
    reached: bool
    """Whether the kept set reaches `target` (false only when the binarised start already did not)."""
    target: float
    dropped: list[dict[str, Any]] = field(default_factory=list)
    """Per round: the unit dropped and the effect after dropping it."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "support": [list(u) for u in self.support], "l0": len(self.support),
            "effect": round(self.effect, 5), "start_effect": round(self.start_effect, 5),
            "reached": self.reached, "dropped": self.dropped,
        }  # fmt: skip


@torch.no_grad()
def mask_effects(
    model: HookedTransformer,
    batches: Sequence[ContrastBatch],
    direction: Direction,
    family: LearnedFamily,
    masks: Bool[Tensor, "variants *shape"],
    max_rows: int = DEFAULT_MAX_ROWS,
) -> Float[Tensor, " variants"]:
    """Effect of patching each mask (weight 1 inside, 0 outside) on all `batches`, pooled over prompts:
    one folded run per batch for all variants."""
    device = model.cfg.device
    patched_sum = torch.zeros(masks.shape[0], device=device)
    base_sum = source_sum = 0.0
    for batch in batches:
        batch = batch.to(device)
        reference = reference_runs(
            model, batch.clean_tokens, batch.corrupted_tokens, batch.end_pos, batch.answer_tokens, direction
        )
        base_tokens, _ = base_and_source(batch.clean_tokens, batch.corrupted_tokens, direction)
        base = BaseRun.prepare(model, base_tokens, prefixes=masks.shape[0] > 1)
        variants = family.fixed(family.mask_weights(masks.to(device)))
        logits = patched_end_logits(base, reference.source_z, variants, batch.end_pos, batch.answer_tokens,
                                    roles=batch_roles(batch), max_rows=max_rows)  # fmt: skip
        patched_sum += logit_diff(logits).sum(-1)
        base_sum += float(logit_diff(reference.base_answer_logits).sum())
        source_sum += float(logit_diff(reference.source_answer_logits).sum())
    denominator = source_sum - base_sum
    if abs(denominator) < 1e-9:
        raise ValueError("the base and source runs have the same mean logit difference: the effect is undefined")
    return ((patched_sum - base_sum) / denominator).cpu()


def _units(mask: Tensor) -> list[tuple[int, ...]]:
    return [tuple(int(i) for i in unit) for unit in mask.nonzero().tolist()]


@torch.no_grad()
def minimal_set(
    model: HookedTransformer,
    batches: Sequence[ContrastBatch],
    direction: Direction,
    family: LearnedFamily,
    target: float,
    l0_threshold: float,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> PruneResult:
    """Greedy backward elimination from the learned support (see the module docstring)."""
    mask = family.coefficients.detach().abs().cpu() > l0_threshold
    effect = start = float(mask_effects(model, batches, direction, family, mask[None], max_rows)[0])
    dropped: list[dict[str, Any]] = []
    if start >= target:
        while mask.any():
            units = _units(mask)
            candidates = mask[None].repeat(len(units), *([1] * mask.dim()))
            for row, unit in enumerate(units):
                candidates[(row, *unit)] = False
            effects = mask_effects(model, batches, direction, family, candidates, max_rows)
            best = int(effects.argmax())
            if float(effects[best]) < target:
                break
            mask, effect = candidates[best], float(effects[best])
            dropped.append({"unit": list(units[best]), "effect": round(effect, 5)})
    return PruneResult(mask=mask, support=_units(mask), effect=effect, start_effect=start,
                       reached=effect >= target, target=target, dropped=dropped)  # fmt: skip
