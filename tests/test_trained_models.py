"""The shipped GPT-2-shaped models trained on the task mixture (checkpoints/trained_task_mixture_seed{0,1}.pt,
docs/trained_models.md): GPT-2 small's head count with MLPs and LayerNorm, under 20 MB, their stored tokenizer the
task mixture's, and every task solved on fresh prompts measured here (not read from the export's JSON)."""

from __future__ import annotations

import os

import pytest

from ioi_superpose.models import load_frozen_model, shipped_checkpoint
from ioi_superpose.models.loading import load_toy_metadata
from ioi_superpose.toy.task_mixture import TaskMixtureDataModule, task_scores


@pytest.mark.parametrize("seed", [0, 1])
def test_a_shipped_trained_model_has_gpt2s_head_count_and_solves_every_task(seed):
    path = shipped_checkpoint(f"trained_task_mixture_seed{seed}")
    assert os.path.getsize(path) < 20 * 2**20
    model, metadata = load_frozen_model(path), load_toy_metadata(path)
    cfg = model.cfg
    assert (cfg.n_layers, cfg.n_heads, cfg.attn_only, cfg.normalization_type) == (12, 12, False, "LN")
    data = TaskMixtureDataModule(**{k: v for k, v in metadata["task_parameters"].items() if not k.startswith("_")})
    assert data.tokenizer.to_dict() == metadata["tokenizer"]
    for name, task in data.tasks.items():
        scores = task_scores(model, data.task_prompts(name, "in_distribution", 64, seed=123), task.metric)
        assert scores["accuracy"] >= 0.95, (name, scores)
        assert scores[f"clean_{task.metric}"] > scores[f"corrupted_{task.metric}"], (name, scores)
