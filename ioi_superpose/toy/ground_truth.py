"""Which heads implement a feature: exhaustive patching of head subsets.

For every subset of heads, the corrupted run is repeated with the clean z of those heads patched in
(denoising, all positions); recovery = (patched − corrupted) / (clean − corrupted) of the mean logit
difference at END. A feature's *support* is the smallest subset reaching the threshold (ties: highest
recovery). All subsets of a chunk run as one batch: a toy model's 2^heads forwards cost one.

In a one-layer attention-only model without LayerNorm the logits are the direct path plus a sum of
per-head terms, so recovery is additive over heads; with LayerNorm or more layers it is not, which is
why the search patches subsets instead of adding single-head numbers.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ioi_superpose.interventions import HeadWeights
from ioi_superpose.models import HookedTransformer
from ioi_superpose.runs import BaseRun, Head, end_logits, head_z, logit_diff, normalised_recovery, patched_end_logits
from ioi_superpose.toy.batches import FeaturePrompts


def head_subsets(n_layers: int, n_heads: int, max_size: int | None = None) -> Bool[Tensor, "subsets n_layers n_heads"]:
    """Every subset of heads up to `max_size` (all when None), as masks, by size then lexicographically."""
    heads = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
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
    prompts: FeaturePrompts,
    subsets: Bool[Tensor, "subsets n_layers n_heads"],
    max_batch_rows: int = 16_384,
) -> Float[Tensor, " subsets"]:
    """Mean logit difference at END of the corrupted run with each subset's clean z patched in."""
    device = model.cfg.device
    answers, ends = prompts.answer_tokens.to(device), prompts.end_positions.to(device)
    source_z, _ = head_z(model, prompts.clean_tokens.to(device))
    base = BaseRun.prepare(model, prompts.corrupted_tokens.to(device))
    logits = patched_end_logits(base, source_z, HeadWeights(subsets.float()), ends, answers, max_rows=max_batch_rows)
    return logit_diff(logits).mean(-1).cpu()


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
    prompts: FeaturePrompts,
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
            float(logit_diff(end_logits(model, tokens, prompts.end_positions, prompts.answer_tokens)).mean())
            for tokens in (prompts.clean_tokens, prompts.corrupted_tokens)
        )
    if abs(clean - corrupted) < 1e-6:
        raise ValueError(
            f"feature {prompts.feature}: clean and corrupted mean logit differences are equal ({clean:.3g}); "
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
        feature=prompts.feature,
        support=[tuple(pair) for pair in subsets[best].nonzero().tolist()],
        support_recovery=round(float(recovery[best]), 5),
        reached_threshold=bool(reaching.any()),
        threshold=threshold,
        clean_logit_diff=round(clean, 5),
        corrupted_logit_diff=round(corrupted, 5),
        single_head_recovery=[[round(v, 5) for v in row] for row in single.tolist()],
        subset_recovery={subset_name(m): round(float(r), 5) for m, r in zip(subsets, recovery)},
    )
