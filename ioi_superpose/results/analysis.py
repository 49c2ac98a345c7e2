"""Turning runs into answers: stability of the selected heads across seeds, noising against denoising,
and the per-prompt distribution of recovery (is a recovery above 1 real, or an averaging effect?).
Plain statistics of summaries and tensors; `per_prompt.py` computes the per-prompt recoveries of a trained module."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the report reads these statistics of JSON files without loading torch
    from jaxtyping import Float
    from torch import Tensor

DIRECTION_KEY = "model.direction"

SEED_KEYS = ("seed_everything", "model.init", "data.seed")
"""Grid keys whose values change only randomness: points differing in them are compared for stability."""


def iou(a: Iterable, b: Iterable) -> float | None:
    """|a ∩ b| / |a ∪ b|; None when both are empty."""
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a | b else None


def _heads(row: Mapping[str, Any]) -> set[tuple[int, ...]]:
    return {tuple(head) for head in row["heads"]}


def _group(rows: Sequence[Mapping[str, Any]], ignored: Sequence[str]) -> dict[str, list[Mapping[str, Any]]]:
    """Rows with equal settings once the `ignored` keys are dropped, keyed by those settings."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        kept = {key: value for key, value in row["settings"].items() if key not in ignored}
        groups.setdefault(" ".join(f"{k}={v}" for k, v in kept.items()) or "all", []).append(row)
    return groups


def stability(rows: Sequence[Mapping[str, Any]], seed_keys: Sequence[str]) -> list[dict[str, Any]]:
    """For each setting run with several seeds/inits: the heads selected by every run (intersection), by
    any (union), their ratio, and the mean pairwise intersection over union. A run (`run_dir`, else `point`)
    listed twice counts once: a run compared with itself would fake agreement."""
    out = []
    unique = {row.get("run_dir", row["point"]): row for row in rows}
    for setting, group in _group(list(unique.values()), seed_keys).items():
        if len(group) < 2:
            continue
        head_sets = [_heads(row) for row in group]
        pairwise = [iou(a, b) for a, b in itertools.combinations(head_sets, 2)]
        pairwise = [value for value in pairwise if value is not None]
        union = set().union(*head_sets)
        common = set.intersection(*head_sets)
        out.append({
            "setting": setting,
            "runs": [row["point"] for row in group],
            "heads_in_every_run": sorted(common),
            "heads_in_any_run": sorted(union),
            "intersection_over_union": len(common) / len(union) if union else None,
            "mean_pairwise_iou": sum(pairwise) / len(pairwise) if pairwise else None,
        })  # fmt: skip
    return out


def compare_directions(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Where the grid has both directions for the same other settings: the heads each selects, their
    overlap, and the heads one finds and the other misses (the seed notebook suspects denoising misses
    backup heads: a head needed only when another is missing is not sufficient alone)."""
    out = []
    for setting, group in _group(rows, [DIRECTION_KEY]).items():
        by_direction = {row["settings"].get(DIRECTION_KEY): row for row in group}
        if not {"denoising", "noising"} <= set(by_direction):
            continue
        denoising, noising = _heads(by_direction["denoising"]), _heads(by_direction["noising"])
        out.append({
            "setting": setting,
            "denoising_heads": sorted(denoising),
            "noising_heads": sorted(noising),
            "both": sorted(denoising & noising),
            "only_denoising": sorted(denoising - noising),
            "only_noising": sorted(noising - denoising),
            "iou": iou(denoising, noising),
        })  # fmt: skip
    return out


def distribution(values: Float[Tensor, " n"]) -> dict[str, float | int | None]:
    """What a per-prompt recovery distribution looks like: mean against median (a mean above 1 with a median
    below it is an averaging effect of a few prompts), the share above 1, and quantiles."""
    import torch

    values = values.double()
    finite = values[torch.isfinite(values)]
    if len(finite) == 0:
        return {"n_prompts": len(values), "mean": None, "median": None, "share_above_1": None}
    quantiles = torch.quantile(finite, torch.tensor([0.1, 0.25, 0.75, 0.9], dtype=finite.dtype)).tolist()
    return {
        "n_prompts": len(values),
        "mean": float(finite.mean()),
        "median": float(finite.median()),
        "share_above_1": float((finite > 1).double().mean()),
        "q10": quantiles[0], "q25": quantiles[1], "q75": quantiles[2], "q90": quantiles[3],
    }  # fmt: skip
