"""The `rotation` family's report after fit: how many dimensions of the learned basis carry the behaviour, and the
head loadings of those dimensions (`combinations/rotation.py` defines both; this module runs the model for them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ioi_superpose.analyses.pruning import mask_effects
from ioi_superpose.combinations.rotation import RotationCombination
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.vocabulary import Direction
from ioi_superpose.models import HookedTransformer


@torch.no_grad()
def rotation_dimensions(
    model: HookedTransformer,
    family: RotationCombination,
    batches: Sequence[ContrastBatch],
    direction: Direction,
    target: float,
) -> dict[str, Any]:
    """The dimension count — dimensions sorted by their mask logit, the smallest k whose hard 0/1 mask on the top k
    reaches `target` on `batches`, found by evaluating every k — and the head loadings of the kept dimensions
    (`family.layer_report`)."""
    masks = family.coefficients.detach().cpu()
    logits = family.mask_logits.detach().cpu()
    units = [(layer, dim) for layer in family.layers for dim in range(family.dim)]
    # By the logits, not by m: at a low temperature many m are 1.0 in float32, their logits still differ.
    order = sorted(units, key=lambda unit: -float(logits[family.layers.index(unit[0]), unit[1]]))
    # Variant k keeps the top k dimensions (k = 0 … all), hard 0/1.
    prefixes = torch.zeros(len(order) + 1, family.n_layers, family.dim, dtype=torch.bool)
    for k, unit in enumerate(order, start=1):
        prefixes[k:, unit[0], unit[1]] = True
    effects = mask_effects(model, batches, direction, family, prefixes)
    reaching = (effects >= target).nonzero()
    needed = int(reaching[0]) if len(reaching) else None
    kept = prefixes[needed] if needed is not None else masks > 0.5
    return {
        "target": target,
        "dims_needed": needed,
        "kept_by": "top dims_needed of the sorted mask" if needed is not None else "mask > 0.5 (target missed)",
        "effect_of_top_k": [round(float(e), 5) for e in effects],
        "joint": family.joint,
        "layers": family.layer_report(kept, masks),
        "temperature": round(family.temperature(), 5),
    }
