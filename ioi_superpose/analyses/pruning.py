"""The minimal-set step: shrink a learned combination's support while it still carries the behaviour.

After training, the units (heads, or (head, role) pairs for `per_position`) with |weight| above the
L0 threshold are patched with weight **1** and every other unit with 0, and units are removed while the
effect on the given prompts stays ≥ `target`, until no single remaining unit can be removed (the kept set
is *1-minimal* on those prompts).

**How (it scales with the support S).** The reference runs (source z, base and source answer logits) and
the base run's residual prefixes are computed once (`MaskEffects`). Candidates are tried in order of
importance, least first: |weight| ascending (the learned ordering), or a caller's `order` score (e.g. an
attribution score). They are removed in *blocks with back-off*: try removing the next block; if the effect
stays ≥ target the block goes and the next block is twice as large; otherwise the block is bisected
(binary back-off: each half is tried, a failing half bisected again, down to single units, which are kept)
and the next block is half as large. A final pass evaluates every "kept set minus one unit" in one folded
run and drops the best while one reaches the target, so the result is 1-minimal even where effects are not
monotone. Rows (prompts × variants) then grow about as F·log(S/F) + S/B for F kept units, not as the
S²/2 of greedy best-first elimination (the step before this one: prompts × (1 + Σ s), 7,936 rows for S = 8,
F = 4 on 256 prompts, with the reference runs redone each round). The rows are counted in the result.

The **effect** is the patch's normalised move from the base run (0) to the source run (1)
(`Reference.effect`, pooled over all prompts): for denoising it is the recovery of the clean logit
difference, for noising 1 − recovery (a noising set is kept while it still destroys ≥ `target` of the
behaviour, i.e. recovery ≤ 1 − target). `rest` picks what the heads outside the set do (`ioi_superpose.engine.rest`:
"free", a cut, or "frozen", a circuit).

**When the start does not reach the target** (the binarised support's effect < target, e.g. weights
learned far from 1): nothing is pruned, the result says `reached: false` with the best effect seen, and
`prune_fitted` leaves the learned weights as they are (a failing 0/1 set never overwrites them).

Why weight 1 and not the learned weights: the minimal set is a *set of heads*; its effect is then that
of patching exactly those heads, the quantity exhaustive subset search (`analyses.exhaustive`) measures and
every baseline's subsets are scored by, so "L0 = minimal L0 with effect ≥ R" is a claim one can check.
Fractional weights would mix two questions (which heads, and how far to move them) — an OR pair learned
at 0.65/0.65 is two half-patches, not a set.

`mixing` is the exception (`LearnedFamily.mask_weights`): its units are entries of a map across heads,
signed off the diagonal, so kept entries keep their learned values — weight 1 would flip negative entries,
and an off-diagonal entry at 1 is no set of heads. Its minimal set is the smallest support of the learned map.

1-minimal is not minimum: a set from which no single unit can go may still be larger than the smallest
reaching set (exhaustive search, `analyses.exhaustive`, is the reference where it is affordable).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ioi_superpose.combinations import LearnedFamily
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.data.roles import batch_roles
from ioi_superpose.engine.fast_forward import Runner
from ioi_superpose.engine.metric import answer_metric
from ioi_superpose.engine.rest import Rest, check_rest, run_tokens, with_rest
from ioi_superpose.engine.runs import DEFAULT_MAX_ROWS, BaseRun, patched_end_logits, reference_runs
from ioi_superpose.engine.vocabulary import Direction, base_and_source
from ioi_superpose.fitting.fitted import FittedCombination
from ioi_superpose.models import HookedTransformer

Unit = tuple[int, ...]




@dataclass
class PruneResult:
    """What the minimal-set step kept, how it got there, and what it cost."""

    mask: Tensor
    """Bool, in the family's shape: the units kept (patched with weight 1). When `reached` is false: the
    binarised start, which the step leaves as it is."""
    support: list[Unit]
    effect: float
    """Effect of the kept set on the pruning prompts (recovery for denoising, 1 − recovery for noising)."""
    start_effect: float
    """Effect of the binarised learned support before any unit was removed."""
    start_l0: int
    reached: bool
    """Whether the kept set reaches `target` (false only when the binarised start already did not)."""
    target: float
    rest: Rest = "free"
    rows: int = 0
    """Patched rows the step ran (prompts × variants, summed over every evaluation)."""
    evaluations: int = 0
    """Variants evaluated (sets whose effect was measured)."""
    best_effect: float = float("nan")
    """The highest effect of any set evaluated."""
    best_reaching: list[Unit] | None = None
    """The smallest set evaluated that reaches `target` (ties: the first); None when none did."""
    dropped: list[dict[str, Any]] = field(default_factory=list)
    """Per accepted removal: the units removed and the effect after removing them."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "rest": self.rest, "support": [list(u) for u in self.support],
            "l0": len(self.support), "effect": round(self.effect, 5), "start_effect": round(self.start_effect, 5),
            "start_l0": self.start_l0, "reached": self.reached, "best_effect": round(self.best_effect, 5),
            "best_reaching": None if self.best_reaching is None else [list(u) for u in self.best_reaching],
            "rows": self.rows, "evaluations": self.evaluations, "dropped": self.dropped,
        }  # fmt: skip


class MaskEffects:
    """The effect of patching masks (weight 1 inside, `mask_weights` of the family) on `batches`, pooled over
    prompts. The reference runs and the run's residual prefixes are computed once, here; every call is one
    folded run per batch for all its variants, and adds prompts × variants to `rows`."""

    @torch.no_grad()
    def __init__(
        self,
        model: HookedTransformer,
        batches: Sequence[ContrastBatch],
        direction: Direction,
        family: LearnedFamily,
        rest: Rest = "free",
        max_rows: int = DEFAULT_MAX_ROWS,
        runner: Runner = "auto",
    ) -> None:
        self.family, self.rest, self.max_rows, self.runner = family, check_rest(rest), max_rows, runner
        self.rows = self.evaluations = 0
        self.prepared: list[tuple[ContrastBatch, Tensor, BaseRun, Tensor]] = []
        base_sum = source_sum = 0.0
        device = model.cfg.device
        for batch in batches:
            batch = batch.to(device)
            reference = reference_runs(
                model, batch.clean_tokens, batch.corrupted_tokens, batch.end_pos, batch.answer_tokens, direction,
                runner=runner, rest=rest, answer_weights=batch.answer_weights, metric=batch.metric,
            )  # fmt: skip
            base_tokens, source_tokens = base_and_source(batch.clean_tokens, batch.corrupted_tokens, direction)
            # Prefixes: a chunk of variants that leaves the first layers alone starts at its first changed layer.
            run = BaseRun.prepare(model, run_tokens(base_tokens, source_tokens, rest), prefixes=True)
            self.prepared.append((batch, reference.source_z, run, batch_roles(batch)))
            base_sum += float(reference.measure(reference.base_answer_logits).sum())
            source_sum += float(reference.measure(reference.source_answer_logits).sum())
        self.n_prompts = sum(len(batch) for batch, *_ in self.prepared)
        self.base_sum, self.denominator = base_sum, source_sum - base_sum
        if abs(self.denominator) < 1e-9:
            raise ValueError("the base and source runs have the same mean logit difference: the effect is undefined")

    @torch.no_grad()
    def __call__(self, masks: Bool[Tensor, "variants *shape"]) -> Float[Tensor, " variants"]:
        patched_sum = None
        for batch, recorded_z, run, roles in self.prepared:
            fixed = self.family.fixed(self.family.mask_weights(masks.to(recorded_z.device)))
            variants = with_rest(fixed, self.rest)
            logits = patched_end_logits(run, recorded_z, variants, batch.end_pos, batch.answer_tokens, roles=roles,
                                        max_rows=self.max_rows, runner=self.runner, metric=batch.metric)  # fmt: skip
            total = answer_metric(logits, batch.answer_weights, batch.metric).sum(-1)
            patched_sum = total if patched_sum is None else patched_sum + total
        self.rows += masks.shape[0] * self.n_prompts
        self.evaluations += masks.shape[0]
        return ((patched_sum - self.base_sum) / self.denominator).cpu()


@torch.no_grad()
def mask_effects(
    model: HookedTransformer,
    batches: Sequence[ContrastBatch],
    direction: Direction,
    family: LearnedFamily,
    masks: Bool[Tensor, "variants *shape"],
    max_rows: int = DEFAULT_MAX_ROWS,
    rest: Rest = "free",
) -> Float[Tensor, " variants"]:
    """Effect of patching each mask (weight 1 inside, 0 outside) on all `batches`, pooled over prompts."""
    return MaskEffects(model, batches, direction, family, rest, max_rows)(masks)


def _units(mask: Tensor) -> list[Unit]:
    return [tuple(int(i) for i in unit) for unit in mask.nonzero().tolist()]


class _Pruner:
    """The block-removal state: the current mask and effect, and the records every evaluation updates."""

    def __init__(self, evaluate: MaskEffects, mask: Tensor, effect: float, target: float) -> None:
        self.evaluate, self.mask, self.effect, self.target = evaluate, mask.clone(), effect, target
        self.best_effect = effect
        self.best_reaching: Tensor | None = mask.clone() if effect >= target else None
        self.dropped: list[dict[str, Any]] = []

    def measure(self, candidates: Tensor) -> Tensor:
        effects = self.evaluate(candidates)
        self.best_effect = max(self.best_effect, float(effects.max()))
        for candidate, effect in zip(candidates, effects.tolist()):
            if effect >= self.target and (
                self.best_reaching is None or int(candidate.sum()) < int(self.best_reaching.sum())
            ):
                self.best_reaching = candidate.clone()
        return effects

    def accept(self, candidate: Tensor, effect: float, units: Sequence[Unit]) -> None:
        self.mask, self.effect = candidate, effect
        self.dropped.append({"units": [list(u) for u in units], "effect": round(effect, 5)})

    def try_remove(self, units: Sequence[Unit]) -> bool:
        """Remove `units` if the effect stays ≥ target."""
        candidate = self.mask.clone()
        for unit in units:
            candidate[unit] = False
        effect = float(self.measure(candidate[None])[0])
        if effect >= self.target:
            self.accept(candidate, effect, units)
            return True
        return False

    def bisect(self, block: Sequence[Unit]) -> None:
        """`block` cannot go as a whole: try its halves, bisecting a failing half, down to single units (kept)."""
        if len(block) == 1:
            return
        left, right = block[: len(block) // 2], block[len(block) // 2 :]
        if self.try_remove(left):
            # The current set is now the failed block's removal minus `right`: removing `right` whole would
            # reproduce the failed set, so go straight to its halves.
            self.bisect(right)
            return
        self.bisect(left)
        if not self.try_remove(right):
            self.bisect(right)

    def blocks(self, ordered: Sequence[Unit]) -> None:
        """Walk `ordered` in blocks: a removed block doubles the next one, a bisected block halves it."""
        start, size = 0, 1
        while start < len(ordered):
            block = ordered[start : start + size]
            if self.try_remove(block):
                size *= 2
            else:
                self.bisect(block)
                size = max(1, size // 2)
            start += len(block)

    def one_minimal(self) -> None:
        """Certify 1-minimality: every "kept minus one" set in one folded run; while some reach the target,
        drop the best, try the other passing units one at a time (best first) against the shrinking set, and
        certify again. (Re-running every "minus one" set after each single drop, as greedy elimination does,
        cost F variants per dropped unit.)"""
        while self.mask.any():
            units = _units(self.mask)
            candidates = self.mask[None].repeat(len(units), *([1] * self.mask.dim()))
            for row, unit in enumerate(units):
                candidates[(row, *unit)] = False
            effects = self.measure(candidates)
            passing = [row for row in effects.argsort(descending=True).tolist() if effects[row] >= self.target]
            if not passing:
                return
            self.accept(candidates[passing[0]], float(effects[passing[0]]), [units[passing[0]]])
            for row in passing[1:]:
                self.try_remove([units[row]])


def order_scores(ranking: Sequence[tuple[int, ...]], shape: Sequence[int]) -> Float[Tensor, "*shape"]:
    """A ranking of units (the first tried first) as `minimal_set`'s `order` score; unranked units go last."""
    score = torch.full(tuple(shape), float(len(ranking)))
    for position, unit in enumerate(ranking):
        score[tuple(unit)] = float(position)
    return score


@torch.no_grad()
def minimal_set(
    model: HookedTransformer,
    batches: Sequence[ContrastBatch],
    direction: Direction,
    family: LearnedFamily,
    target: float,
    l0_threshold: float,
    max_rows: int = DEFAULT_MAX_ROWS,
    rest: Rest = "free",
    order: Float[Tensor, "*shape"] | None = None,
    runner: Runner = "auto",
) -> PruneResult:
    """Block removal with back-off from the learned support, then a 1-minimality pass (module docstring).

    `order`: an importance score per unit in the family's shape (e.g. an attribution score); units with the
    lowest score are tried first. None: |weight|. Ties keep the units' index order.
    """
    weights = family.coefficients.detach().abs().cpu()
    mask = weights > l0_threshold
    score = weights if order is None else order.detach().float().cpu()
    if score.shape != mask.shape:
        raise ValueError(f"order has shape {tuple(score.shape)}; expected the family's {tuple(mask.shape)}")
    evaluate = MaskEffects(model, batches, direction, family, rest, max_rows, runner)
    start = float(evaluate(mask[None])[0])
    pruner = _Pruner(evaluate, mask, start, target)
    if start >= target:
        units = _units(mask)
        ordered = sorted(units, key=lambda unit: float(score[unit]))  # stable: ties stay in index order
        pruner.blocks(ordered)
        pruner.one_minimal()
    best = pruner.best_reaching
    return PruneResult(
        mask=pruner.mask, support=_units(pruner.mask), effect=pruner.effect, start_effect=start,
        start_l0=int(mask.sum()), reached=pruner.effect >= target, target=target, rest=rest, rows=evaluate.rows,
        evaluations=evaluate.evaluations, best_effect=pruner.best_effect,
        best_reaching=None if best is None else _units(best), dropped=pruner.dropped,
    )  # fmt: skip


@torch.no_grad()
def prune_fitted(
    fitted: FittedCombination, batches: Sequence[ContrastBatch], name: Callable[[str], str] = str
) -> PruneResult:
    """The minimal-set step on a fitted combination (its `prune_target`, notion and L0 threshold) on `batches`: a
    kept set that reaches the target is written into the combination (weight 1 inside); one that misses it leaves
    the learned weights as they are, with a warning naming the settings by `name` (the CLI's flags, the API's
    arguments)."""
    target = fitted.settings.prune.prune_target
    if target is None:
        raise ValueError("prune_fitted needs a fit with prune_target set")
    with fitted.evaluating():
        result = minimal_set(fitted.model, batches, fitted.direction, fitted.combination, float(target),
                             fitted.l0_threshold, rest=fitted.rest)  # fmt: skip
        if result.reached:
            fitted.combination.set_mask_(result.mask)
        else:  # the learned weights stay: a 0/1 set that misses the target must not replace them
            warnings.warn(
                f"The minimal-set step did not reach {name('prune_target')} {result.target}: the binarised support "
                f"({len(result.support)} units above {name('l0_threshold')}) has effect {result.start_effect:.4f} "
                f"(best seen {result.best_effect:.4f}). The learned weights are kept unchanged; summary.json's prune "
                "section records reached: false. Lower the target, or train closer to 0/1 weights.",
                stacklevel=2,
            )
    return result
