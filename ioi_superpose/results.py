"""What a run leaves behind: `coefficients.pt`, `summary.json` and a heatmap, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from ioi_superpose.files import atomic_write, write_json
from ioi_superpose.ioi_heads import circuit_precision_recall, is_gpt2_small
from ioi_superpose.plots import head_heatmap, save_figure
from ioi_superpose.system import HeadSuperposition


def top_heads(
    values: Float[Tensor, "n_layers n_heads"], k: int = 20, threshold: float = 0.0, key: str = "alpha"
) -> list[dict[str, float | int]]:
    """The (at most k) heads of largest |value| above `threshold`, largest first."""
    flat = values.flatten()
    order = flat.abs().argsort(descending=True)[:k]
    n_heads = values.shape[1]
    return [
        {"layer": int(i) // n_heads, "head": int(i) % n_heads, key: round(float(flat[i]), 4)}
        for i in order
        if abs(float(flat[i])) > threshold
    ]


def _stage_metrics(metrics: dict[str, float], stage: str, set_name: str) -> dict[str, float]:
    prefix = stage if set_name == "in_distribution" else f"{stage}/{set_name}"
    return {key[len(prefix) + 1 :]: float(value) for key, value in metrics.items() if key.rsplit("/", 1)[0] == prefix}


def build_summary(
    system: HeadSuperposition,
    val_metrics: dict[str, float],
    test_metrics: dict[str, float],
    test_set_names: list[str],
    config: dict,
    baselines: dict[str, dict] | None = None,
) -> dict:
    alpha = system.combination.coefficients.detach().cpu()
    val = _stage_metrics(val_metrics, "val", "in_distribution")
    tests = {name: _stage_metrics(test_metrics, "test", name) for name in test_set_names}
    return {
        "model_name": system.hparams.model_name,
        "direction": system.hparams.direction,
        "objective": system.hparams.objective,
        "recovery": {"val": val.get("recovery"), "test": {name: m.get("recovery") for name, m in tests.items()}},
        "clean_logit_diff": val.get("clean_logit_diff"),
        "corrupted_logit_diff": val.get("corrupted_logit_diff"),
        "patched_logit_diff": val.get("logit_diff"),
        "clean_accuracy": val.get("clean_accuracy"),
        "patched_accuracy": val.get("accuracy"),
        "l0": system.combination.l0(system.hparams.l0_threshold),
        "l0_threshold": system.hparams.l0_threshold,
        "n_heads_total": alpha.numel(),
        "top_heads": top_heads(alpha, threshold=system.hparams.l0_threshold),
        "val": val,
        "test": tests,
        "baselines": baselines or {},
        "ioi_circuit": (
            circuit_precision_recall(alpha, system.hparams.l0_threshold)
            if is_gpt2_small(system.hparams.model_name, *alpha.shape)
            else None
        ),
        "config": config,
    }


def write_run_results(run_dir: Path, system: HeadSuperposition, summary: dict) -> dict[str, Path]:
    """coefficients.pt (α and what it was learned for), summary.json, coefficients.png."""
    alpha = system.combination.coefficients.detach().cpu().clone()
    paths = {
        "coefficients": run_dir / "coefficients.pt",
        "summary": run_dir / "summary.json",
        "heatmap": run_dir / "coefficients.png",
    }
    payload = {"coefficients": alpha, **{k: summary[k] for k in ("model_name", "direction", "objective")}}
    atomic_write(paths["coefficients"], lambda name: torch.save(payload, name))
    figure = head_heatmap(alpha, f"learned α ({system.hparams.model_name}, L0 = {summary['l0']})")
    atomic_write(paths["heatmap"], lambda name: save_figure(figure, name))
    write_json(paths["summary"], summary)
    return paths
