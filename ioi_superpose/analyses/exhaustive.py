"""Which heads implement a feature: exhaustive patching of head subsets.

For every subset of heads, the corrupted run is repeated with the clean z of those heads patched in
(denoising, all positions); recovery = (patched − corrupted) / (clean − corrupted) of the mean logit
difference at END. A feature's *support* is the smallest subset reaching the threshold (ties: highest
recovery). All subsets of a chunk run as one batch: a toy model's 2^heads forwards cost one.

In a one-layer attention-only model without LayerNorm the logits are the direct path plus a sum of
per-head terms, so recovery is additive over heads; with LayerNorm or more layers it is not, which is
why the search patches subsets instead of adding single-head numbers.

**Ablations** (`ablation=`, noising only; `ioi_superpose.engine.ablations` defines them): the source z of the
patched heads is the paired corrupted prompt's (`corrupted`, the default and the only source with tokens of its
own), another clean prompt's (`resample`), the mean per position role (`mean`, over the prompts themselves) or zero
(`zero`), computed by `circuit.ablation_values`. Effect 0 is the clean run; effect 1 is the corrupted run for
`corrupted` and, for the other three (which have no source prompt), the clean run with *every* head ablated — the
normalisation of `circuit.ablated_reference`, as the learned families' `--model.ablation`. Refused: any ablation but
`corrupted` with `direction="denoising"` (denoising patches the clean run's z *into* a base run; an ablation says
what a removed head's z becomes, a question of the noising direction, as `OptimConfig` refuses it) and with
`rest="frozen"` (a circuit runs on the *source* tokens, which an ablation has none of; the circuit question under
an ablation is the noising cut of the set's complement — `rest.py`'s duality — or `circuit.circuit_scores`).
Prompts are any `ContrastBatch`; the `mean` ablation's roles are IOI's for an IOI batch, only END and other for
any other (a toy task's feature prompts: `data.roles.position_roles`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.ablations import Ablation, ablated_reference, check_ablation
from ioi_superpose.engine.metric import answer_metric, normalised_recovery
from ioi_superpose.engine.patch import HeadWeights
from ioi_superpose.engine.rest import Rest, check_rest, run_tokens, with_rest
from ioi_superpose.engine.runs import BaseRun, end_logits, head_z, patched_end_logits
from ioi_superpose.engine.vocabulary import Head
from ioi_superpose.models import HookedTransformer


def head_subsets(
    n_layers: int, n_heads: int, max_size: int | None = None, heads: Sequence[Head] | None = None
) -> Bool[Tensor, "subsets n_layers n_heads"]:
    """Every subset of `heads` (default: all heads) up to `max_size` (all when None), as masks over the
    whole model, by size then lexicographically."""
    heads = (
        [(layer, head) for layer in range(n_layers) for head in range(n_heads)] if heads is None
        else sorted(set(map(tuple, heads)))
    )  # fmt: skip
    outside = [(layer, head) for layer, head in heads if not (0 <= layer < n_layers and 0 <= head < n_heads)]
    if outside:
        raise ValueError(f"heads {outside} are outside the model's {n_layers} layers × {n_heads} heads")
    max_size = len(heads) if max_size is None else min(max_size, len(heads))
    masks = []
    for size in range(max_size + 1):
        for subset in itertools.combinations(heads, size):
            mask = torch.zeros(n_layers, n_heads, dtype=torch.bool)
            for layer, head in subset:
                mask[layer, head] = True
            masks.append(mask)
    return torch.stack(masks)


def subset_name(mask: Bool[Tensor, "n_layers n_heads"]) -> str:
    """`layer.head` names joined by `+` (`none` for the empty set), e.g. `0.0+0.2`."""
    heads = [f"{layer}.{head}" for layer, head in mask.nonzero().tolist()]
    return "+".join(heads) if heads else "none"


@torch.no_grad()
def patched_logit_diffs(
    model: HookedTransformer,
    prompts: ContrastBatch,
    subsets: Bool[Tensor, "subsets n_layers n_heads"],
    max_batch_rows: int = 16_384,
) -> Float[Tensor, " subsets"]:
    """The prompts' mean metric at END (`prompts.metric`: the logit difference, or the probability difference) of the
    corrupted run with each subset's clean z patched in."""
    device = model.cfg.device
    answers, ends = prompts.answer_tokens.to(device), prompts.end_pos.to(device)
    source_z, _ = head_z(model, prompts.clean_tokens.to(device))
    base = BaseRun.prepare(model, prompts.corrupted_tokens.to(device))
    logits = patched_end_logits(base, source_z, HeadWeights(subsets.float()), ends, answers, max_rows=max_batch_rows,
                                metric=prompts.metric)  # fmt: skip
    return answer_metric(logits, prompts.answer_weights, prompts.metric).mean(-1).cpu()


@dataclass
class SupportResult:
    """The head support of one feature, and the recovery of every subset searched."""

    feature: str
    support: list[Head]
    """(layer, head) pairs of the smallest subset reaching the threshold (the best subset if none did)."""
    support_recovery: float
    reached_threshold: bool
    threshold: float
    clean_logit_diff: float
    corrupted_logit_diff: float
    single_head_recovery: list[list[float]]
    """[layer][head] recovery of patching that head alone."""
    subset_recovery: dict[str, float]
    """Recovery of every subset searched, keyed by `subset_name`."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: heads as lists; a single-head recovery that was not searched (NaN, when
        `max_subset_size` is 0) as None, since JSON cannot hold NaN."""
        out = asdict(self)
        out["support"] = [list(head) for head in self.support]
        out["single_head_recovery"] = [
            [None if math.isnan(value) else value for value in row] for row in self.single_head_recovery
        ]
        return out


def find_support(
    model: HookedTransformer,
    prompts: ContrastBatch,
    threshold: float = 0.9,
    max_subset_size: int | None = None,
    max_heads: int = 16,
    max_batch_rows: int = 16_384,
) -> SupportResult:
    """Exhaustive head-subset patching for one feature's clean/corrupted prompts."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    if max_subset_size is None and n_layers * n_heads > max_heads:
        raise ValueError(
            f"exhaustive search over 2^{n_layers * n_heads} head subsets exceeds max_heads={max_heads}; "
            "raise max_heads or pass max_subset_size to search small subsets only"
        )
    subsets = head_subsets(n_layers, n_heads, max_subset_size)
    with torch.no_grad():
        clean, corrupted = (
            float(answer_metric(end_logits(model, tokens, prompts.end_pos, prompts.answer_tokens, prompts.metric),
                                prompts.answer_weights, prompts.metric).mean())
            for tokens in (prompts.clean_tokens, prompts.corrupted_tokens)
        )
    if abs(clean - corrupted) < 1e-6:
        raise ValueError(
            f"feature {prompts.name}: clean and corrupted mean logit differences are equal ({clean:.3g}); "
            "recovery is undefined — the model does not tell these prompts apart"
        )
    recovery = normalised_recovery(patched_logit_diffs(model, prompts, subsets, max_batch_rows), corrupted, clean)
    sizes = subsets.flatten(1).sum(-1)
    reaching = recovery >= threshold
    if reaching.any():
        smallest = sizes[reaching].min()
        candidates = reaching & (sizes == smallest)
        best = int(torch.where(candidates, recovery, -torch.inf).argmax())
    else:
        best = int(recovery.argmax())
    single = torch.full((n_layers, n_heads), float("nan"))
    for mask, value in zip(subsets[sizes == 1], recovery[sizes == 1]):
        single[mask] = value
    return SupportResult(
        feature=prompts.name,
        support=[tuple(pair) for pair in subsets[best].nonzero().tolist()],
        support_recovery=round(float(recovery[best]), 5),
        reached_threshold=bool(reaching.any()),
        threshold=threshold,
        clean_logit_diff=round(clean, 5),
        corrupted_logit_diff=round(corrupted, 5),
        single_head_recovery=[[round(v, 5) for v in row] for row in single.tolist()],
        subset_recovery={subset_name(m): round(float(r), 5) for m, r in zip(subsets, recovery)},
    )


# --------------------------------------------------------------------------------------------------
# Both directions, every minimal set.


@dataclass
class SubsetSearch:
    """Exhaustive subset patching of one prompt set in one direction.

    The *effect* of a subset is the patch's normalised move from the base run (0) to the source run (1):
    denoising (base corrupted) it is the recovery; noising (base clean) it is 1 − recovery, so "≥
    threshold" means the set is sufficient (denoising) or that removing it destroys the behaviour (noising).
    """

    feature: str
    direction: str
    threshold: float
    minimal_sets: list[list[Head]]
    """Every subset of the smallest size whose effect reaches the threshold (ties all kept); [] if none."""
    min_size: int | None
    """Their size (None: no subset reaches the threshold — the feature never does)."""
    reached: bool
    single_head_effect: list[list[float]]
    """[layer][head] effect of patching that head alone."""
    subset_effect: dict[str, float]
    """Effect of every subset, keyed by `subset_name`."""
    rest: str = "free"
    """`free`: the subsets as cuts; `frozen`: as circuits (`ioi_superpose.engine.rest`)."""
    ablation: str = "corrupted"
    """The patch source (noising only; module docstring)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: heads as lists; a single-head effect not searched (NaN: a head outside the candidates
        of `search_head_subsets`) as None, since JSON cannot hold NaN."""
        out = asdict(self)
        out["minimal_sets"] = [[list(h) for h in s] for s in self.minimal_sets]
        out["single_head_effect"] = [
            [None if math.isnan(value) else value for value in row] for row in self.single_head_effect
        ]
        return out


@torch.no_grad()
def subset_effects(
    model: HookedTransformer, prompts: ContrastBatch, subsets: Bool[Tensor, "subsets n_layers n_heads"],
    direction: str, max_batch_rows: int = 16_384, rest: Rest = "free", *, ablation: Ablation = "corrupted",
    seed: int = 0,
) -> Float[Tensor, " subsets"]:  # fmt: skip
    """Normalised effect of patching each subset (all positions) in `direction`, pooled over prompts.
    `rest="frozen"`: each subset as a circuit — the source run with every head outside it at its base-run z
    (`ioi_superpose.engine.rest`). `ablation` (noising, `rest="free"` only): the patched heads' source z, and
    effect 1 = every head ablated (module docstring); `seed`: the resample ablation's derangement."""
    device = model.cfg.device
    batch = prompts.to(device)
    answers, ends = batch.answer_tokens, batch.end_pos
    feature = prompts.name or "prompts"
    if check_ablation(ablation, direction, rest) != "corrupted":
        reference = ablated_reference(model, batch, ablation, seed=seed)
        base_ld = float(reference.measure(reference.base_answer_logits).mean())
        source_ld = float(reference.measure(reference.source_answer_logits).mean())
        if abs(source_ld - base_ld) < 1e-6:
            raise ValueError(f"{feature}: ablating every head ({ablation}) leaves the logit difference unchanged")
        run = BaseRun.prepare(model, batch.clean_tokens)
        logits = patched_end_logits(run, reference.source_z, HeadWeights(subsets.float()), ends, answers,
                                    max_rows=max_batch_rows, metric=batch.metric)  # fmt: skip
        return normalised_recovery(reference.measure(logits).mean(-1), base_ld, source_ld).cpu()
    weights, metric = batch.answer_weights, batch.metric
    clean, corrupted = batch.clean_tokens, batch.corrupted_tokens
    base_tokens, source_tokens = (corrupted, clean) if direction == "denoising" else (clean, corrupted)
    recorded_z, _ = head_z(model, source_tokens if check_rest(rest) == "free" else base_tokens)
    base_ld = float(answer_metric(end_logits(model, base_tokens, ends, answers, metric), weights, metric).mean())
    source_ld = float(answer_metric(end_logits(model, source_tokens, ends, answers, metric), weights, metric).mean())
    if abs(source_ld - base_ld) < 1e-6:
        raise ValueError(f"feature {feature}: clean and corrupted runs have the same logit difference")
    run = BaseRun.prepare(model, run_tokens(base_tokens, source_tokens, rest))
    variants = with_rest(HeadWeights(subsets.float()), rest)
    logits = patched_end_logits(run, recorded_z, variants, ends, answers, max_rows=max_batch_rows, metric=metric)
    return normalised_recovery(answer_metric(logits, weights, metric).mean(-1), base_ld, source_ld).cpu()


def search_subsets(
    model: HookedTransformer, prompts: ContrastBatch, direction: str = "denoising", threshold: float = 0.9,
    max_heads: int = 16, rest: Rest = "free", *, ablation: Ablation = "corrupted", seed: int = 0,
) -> SubsetSearch:  # fmt: skip
    """Every subset of heads patched in `direction`; all smallest subsets reaching `threshold`. `rest`:
    `free` (cuts) or `frozen` (circuits; `ioi_superpose.engine.rest`). `ablation`, `seed`: the noising patch's
    source (module docstring)."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    if n_layers * n_heads > max_heads:
        raise ValueError(f"exhaustive search over 2^{n_layers * n_heads} subsets exceeds max_heads={max_heads}")
    return search_head_subsets(
        model, prompts, None, direction, threshold, max_heads, rest, ablation=ablation, seed=seed
    )


def search_head_subsets(
    model: HookedTransformer, prompts: ContrastBatch, heads: Sequence[Head] | None, direction: str = "denoising",
    threshold: float = 0.9, max_heads: int = 16, rest: Rest = "free", *, ablation: Ablation = "corrupted",
    seed: int = 0,
) -> SubsetSearch:  # fmt: skip
    """Every subset of the candidate `heads` (None: all) patched in `direction`, every other head left to
    recompute; all smallest subsets reaching `threshold`. `single_head_effect` is NaN outside `heads`.
    `ablation`, `seed`: the noising patch's source (module docstring)."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    n_candidates = n_layers * n_heads if heads is None else len(set(map(tuple, heads)))
    if n_candidates > max_heads:
        raise ValueError(f"exhaustive search over 2^{n_candidates} subsets of heads exceeds max_heads={max_heads}")
    subsets = head_subsets(n_layers, n_heads, heads=heads)
    effect = subset_effects(model, prompts, subsets, direction, rest=rest, ablation=ablation, seed=seed)
    sizes = subsets.flatten(1).sum(-1)
    reaching = effect >= threshold
    min_size = int(sizes[reaching].min()) if reaching.any() else None
    minimal = [] if min_size is None else [
        [tuple(h) for h in subsets[i].nonzero().tolist()]
        for i in torch.nonzero(reaching & (sizes == min_size))[:, 0].tolist()
    ]  # fmt: skip
    single = torch.full((n_layers, n_heads), float("nan"))
    for mask, value in zip(subsets[sizes == 1], effect[sizes == 1]):
        single[mask] = value
    return SubsetSearch(
        feature=prompts.name or "prompts", direction=direction, threshold=threshold,
        minimal_sets=minimal, min_size=min_size,
        reached=min_size is not None, single_head_effect=[[round(v, 5) for v in row] for row in single.tolist()],
        subset_effect={subset_name(m): round(float(r), 5) for m, r in zip(subsets, effect)}, rest=rest,
        ablation=ablation,
    )  # fmt: skip
