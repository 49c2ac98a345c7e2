"""Toy models with MLPs (`d_mlp`), and the attention-only toys' configs unchanged by them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
import yaml

from ioi_superpose.errors import ConfigError
from ioi_superpose.models import load_frozen_model
from ioi_superpose.models.toy import (
    build_toy_model,
    load_toy_checkpoint,
    save_toy_checkpoint,
    toy_config,
    toy_config_kwargs,
)
from ioi_superpose.toy.training import ToyModelTraining

SHIPPED = {  # training config -> (checkpoint, sha256 prefix of the freshly initialised weights, on main at 1b9d20e)
    "toy_ioi_model": ("toy_ioi", "3874b4f48291c04e"),
    "toy_superposition_single": ("toy_superposition_single", "b2694da1c3cf76a0"),
    "toy_superposition_conjunction": ("toy_superposition_conjunction", "a72005dbb7a6290b"),
    "toy_ioi_redundant_model": ("toy_ioi_redundant", "3874b4f48291c04e"),
    "toy_ioi_backups_model": ("toy_ioi_backups", "3874b4f48291c04e"),
}


@pytest.mark.parametrize("config", list(SHIPPED))
def test_the_shipped_attention_only_configs_build_the_same_model(config: str) -> None:
    checkpoint, digest = SHIPPED[config]
    model_settings = yaml.safe_load(Path(f"experiments/{config}.yaml").read_text())["model"]
    payload = torch.load(f"checkpoints/{checkpoint}.pt", weights_only=True)
    stored = payload["config"]
    module = ToyModelTraining(**model_settings, d_vocab=stored["d_vocab"], n_ctx=stored["n_ctx"])
    weights = hashlib.sha256()
    for name, value in module.model.state_dict().items():
        weights.update(name.encode())
        weights.update(value.numpy().tobytes())
    assert weights.hexdigest()[:16] == digest  # same architecture, same initial weights
    assert module.model.cfg.attn_only and not any("mlp" in name for name in module.model.state_dict())
    assert toy_config_kwargs(module.model.cfg) == stored  # what a checkpoint stores: no new keys
    module.model.load_state_dict(payload["state_dict"], strict=True)


def test_a_toy_model_with_mlps_trains_saves_and_loads(tmp_path: Path) -> None:
    module = ToyModelTraining(n_layers=2, n_heads=3, d_model=16, d_head=4, d_vocab=20, n_ctx=8, layer_norm=True,
                              d_mlp=32)  # fmt: skip
    cfg = module.model.cfg
    assert not cfg.attn_only and cfg.d_mlp == 32 and cfg.act_fn == "gelu_new"
    assert module.model.blocks[1].mlp.W_in.shape == (16, 32)
    tokens = torch.randint(0, 20, (4, 8))
    loss = module.training_step({"tokens": tokens, "labels": tokens.roll(-1, 1), "group": torch.zeros(4).long()}, 0)
    loss.backward()
    assert module.model.blocks[0].mlp.W_in.grad is not None
    path = save_toy_checkpoint(module.model, tmp_path / "mlp.pt", {"task": "test"})
    loaded, metadata = load_toy_checkpoint(path)
    assert torch.load(path, weights_only=True)["config"]["d_mlp"] == 32 and metadata == {"task": "test"}
    assert torch.allclose(loaded(tokens), module.model.eval()(tokens), atol=1e-6)
    frozen = load_frozen_model(str(path))
    assert frozen.cfg.d_mlp == 32 and not any(p.requires_grad for p in frozen.parameters())


def test_an_mlp_width_below_zero_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"--model.d_mlp must be >= 0"):
        toy_config(1, 2, 8, 4, 10, 5, d_mlp=-1)
    assert build_toy_model(toy_config(1, 2, 8, 4, 10, 5, d_mlp=0)).cfg.attn_only


def test_the_learning_rate_warms_up_linearly_when_asked() -> None:
    settings = dict(n_layers=1, n_heads=2, d_model=8, d_head=4, d_vocab=10, n_ctx=5, lr=0.01)
    assert isinstance(ToyModelTraining(**settings).configure_optimizers(), torch.optim.AdamW)  # as before: no schedule
    configured = ToyModelTraining(**settings, lr_warmup_steps=4).configure_optimizers()
    optimiser, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(6):
        rates.append(optimiser.param_groups[0]["lr"])
        optimiser.step()
        scheduler.step()
    assert rates == pytest.approx([0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01])
    with pytest.raises(ConfigError, match="lr_warmup_steps must be >= 0"):
        ToyModelTraining(**settings, lr_warmup_steps=-1)
