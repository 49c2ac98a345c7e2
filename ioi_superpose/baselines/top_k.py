"""Hand-made combinations against the number of heads k: α on the k heads of largest score, and their
recovery curves on every evaluation set (the baseline lines of the Pareto fronts, `results/pareto.py`)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from jaxtyping import Float
from torch import Tensor

from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.data.ioi import IOIBatch
from ioi_superpose.engine.ablations import Ablation, notion_reference
from ioi_superpose.engine.metric import has_gap
from ioi_superpose.engine.rest import Rest
from ioi_superpose.engine.runs import recovery_of
from ioi_superpose.engine.vocabulary import Direction, hook_name
from ioi_superpose.models import HookedTransformer


def top_k_alpha(score: Tensor, k: int, weights: Tensor) -> Tensor:
    """α equal to `weights` on the k heads of largest `score`, 0 elsewhere."""
    alpha = torch.zeros_like(weights)
    top = score.flatten().topk(k).indices
    alpha.view(-1)[top] = weights.flatten()[top]
    return alpha


def uniform_top_k_alphas(
    score: Float[Tensor, "n_layers n_heads"], max_heads: int
) -> Float[Tensor, "k n_layers n_heads"]:
    """α = 1 on the k heads of largest score, for k = 1..max_heads."""
    return torch.stack([top_k_alpha(score, k, torch.ones_like(score)) for k in range(1, max_heads + 1)])


def attention_weighted_alpha(attention: Float[Tensor, "n_layers n_heads"], k: int) -> Tensor:
    """The k most attending heads, α = attention / the largest attention among them: the most attending
    head is patched fully and the others in proportion. (Raw attention probabilities as α, 0.02–0.05 on
    toy IOI, patch almost nothing and could not recover the behaviour whichever heads they pick.)"""
    alpha = top_k_alpha(attention, k, attention)
    return alpha / alpha.max().clamp_min(1e-12)


@torch.no_grad()
def attention_to_io(model: HookedTransformer, batch: IOIBatch) -> Float[Tensor, "n_layers n_heads"]:
    """Mean attention probability from END to the IO position, per head, on the clean prompts."""
    names = [hook_name("pattern", layer) for layer in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(batch.clean_tokens, names_filter=lambda name: name in names)
    rows = torch.arange(len(batch), device=batch.end_pos.device)
    # pattern: [batch, head, query, key]
    return torch.stack([cache[n][rows, :, batch.end_pos, batch.io_pos].mean(0) for n in names]).cpu()


@torch.no_grad()
def top_k_curves(
    model: HookedTransformer,
    batches: Mapping[str, ContrastBatch],
    alphas: Mapping[str, Float[Tensor, "k n_layers n_heads"]],
    direction: Direction,
    *,
    rest: Rest = "free",
    ablation: Ablation = "corrupted",
) -> dict[str, dict[str, list[float | None]]]:
    """`curves[set][name][k - 1]`: the recovery of `alphas[name][k - 1]` on `batches[set]`, or None for a set
    whose clean − corrupted gap is below `engine.metric.MIN_GAP` (there recovery is noise, as in summary.json).
    `rest` and `ablation`: the run's notion and patch source, so the curves are measured as its learned α is
    (`engine.ablations.notion_reference`).

    One folded run per set for every curve together; α that several curves share (e.g. the same top
    heads) run once.
    """
    names = list(alphas)
    lengths = [len(alphas[name]) for name in names]
    unique, inverse = torch.unique(torch.cat([alphas[name].float().cpu() for name in names]), dim=0,
                                   return_inverse=True)  # fmt: skip
    curves = {}
    for set_name, batch in batches.items():
        batch = batch.to(model.cfg.device)
        reference = notion_reference(model, batch, direction, rest, ablation)
        clean, corrupted = (float(reference.measure(logits).mean()) for logits in reference.clean_and_corrupted())
        if has_gap(clean, corrupted, reference.metric):
            recoveries = recovery_of(model, batch, unique, direction, rest, reference=reference)
            values: list[float | None] = recoveries[inverse].tolist()
        else:
            values = [None] * len(inverse)
        curves[set_name] = {name: values[sum(lengths[:i]) : sum(lengths[: i + 1])] for i, name in enumerate(names)}
    return curves
