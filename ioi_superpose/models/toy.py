"""Toy transformers: a config factory, a seeded builder, and a one-file checkpoint format.

Most toys are attention-only (`attn_only_config`); `toy_config` with `d_mlp > 0` adds GPT-2's MLPs (the
GPT-2-shaped models trained on the task mixture, `toy/task_mixture.py`).
A toy checkpoint is a single `.pt` file holding `{"format", "config", "state_dict", "metadata"}`:
`config` is the keyword arguments of `toy_config` (plain ints/bools/strings; `d_mlp` and `act_fn` only for a
model with MLPs, so an attention-only checkpoint stores what it always stored), so the file loads
with `torch.load(weights_only=True)` and never depends on TransformerLens's config class layout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from ioi_superpose.errors import ConfigError
from ioi_superpose.files import atomic_write
from ioi_superpose.models.frozen import freeze

PositionalEmbedding = Literal["standard", "shortformer", "rotary"]
"""The positional embeddings TransformerLens 3.9 supports without extra settings (`alibi` needs more)."""

CHECKPOINT_FORMAT = "ioi_superpose.toy/1"
TOY_PAD_ATTRIBUTE = "toy_pad_token_id"
"""Attribute a toy model loaded from a checkpoint with a tokenizer carries: the pad token id of that tokenizer
(TransformerLens's `model.tokenizer` must be a Hugging Face tokenizer; the toy one is not), so the API can
tell a padded prompt row (`prompt_checks.padded_rows`)."""


def attn_only_config(
    n_layers: int,
    n_heads: int,
    d_model: int,
    d_head: int,
    d_vocab: int,
    n_ctx: int,
    layer_norm: bool = False,
    positional_embedding: PositionalEmbedding = "standard",
) -> HookedTransformerConfig:
    """The config of an attention-only transformer (no MLPs) on CPU: `toy_config` with `d_mlp=0`.

    `layer_norm=False` keeps the model linear in every head's z (for one layer, the logits are the direct
    path plus a sum of per-head terms), which makes head patching exactly additive.
    The seed is an argument of `build_toy_model`, not of the config: TransformerLens's `cfg.seed`
    re-seeds Python's, NumPy's and torch's global generators whenever a config is created.
    """
    return toy_config(n_layers, n_heads, d_model, d_head, d_vocab, n_ctx, layer_norm, positional_embedding)


def toy_config(
    n_layers: int,
    n_heads: int,
    d_model: int,
    d_head: int,
    d_vocab: int,
    n_ctx: int,
    layer_norm: bool = False,
    positional_embedding: PositionalEmbedding = "standard",
    d_mlp: int = 0,
    act_fn: str = "gelu_new",
) -> HookedTransformerConfig:
    """The config of a toy transformer on CPU: attention-only when `d_mlp` is 0, else with an MLP of width
    `d_mlp` and activation `act_fn` in every block (GPT-2's: `gelu_new`)."""
    # The flags are `train_toy`'s (`ToyModelTraining` passes these straight through); d_vocab and n_ctx
    # are linked there from the datamodule.
    for name, value in dict(n_layers=n_layers, n_heads=n_heads, d_model=d_model, d_head=d_head).items():
        if value < 1:
            raise ConfigError(f"--model.{name} must be >= 1, got {value}.")
    for name, value in dict(d_vocab=d_vocab, n_ctx=n_ctx).items():
        if value < 1:
            raise ConfigError(
                f"--model.{name} must be >= 1, got {value} (train_toy links it from the datamodule's {name})."
            )
    if d_mlp < 0:
        raise ConfigError(f"--model.d_mlp must be >= 0 (0: attention-only), got {d_mlp}.")
    if positional_embedding not in get_args(PositionalEmbedding):
        raise ConfigError(
            f"--model.positional_embedding must be one of {get_args(PositionalEmbedding)}, "
            f"got {positional_embedding!r}."
        )
    return HookedTransformerConfig(
        n_layers=n_layers,
        n_heads=n_heads,
        d_model=d_model,
        d_head=d_head,
        d_vocab=d_vocab,
        n_ctx=n_ctx,
        attn_only=d_mlp == 0,
        normalization_type="LN" if layer_norm else None,
        positional_embedding_type=positional_embedding,
        act_fn=act_fn if d_mlp else None,
        **({"d_mlp": d_mlp} if d_mlp else {}),
        # Lightning moves the module later; building on CPU keeps construction device-independent.
        device="cpu",
        default_prepend_bos=False,
    )


def toy_config_kwargs(cfg: HookedTransformerConfig) -> dict[str, Any]:
    """The `toy_config` arguments that rebuild `cfg` (what a checkpoint stores); `d_mlp` and `act_fn` only
    for a model with MLPs."""
    mlp = {} if cfg.attn_only else dict(d_mlp=cfg.d_mlp, act_fn=cfg.act_fn)
    return dict(
        n_layers=cfg.n_layers,
        n_heads=cfg.n_heads,
        d_model=cfg.d_model,
        d_head=cfg.d_head,
        d_vocab=cfg.d_vocab,
        n_ctx=cfg.n_ctx,
        layer_norm=cfg.normalization_type is not None,
        positional_embedding=cfg.positional_embedding_type,
        **mlp,
    )


def build_toy_model(cfg: HookedTransformerConfig, seed: int = 0) -> HookedTransformer:
    """A freshly initialised model; the same seed gives the same weights, global RNG state untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return HookedTransformer(cfg, move_to_device=False)


def save_toy_checkpoint(model: HookedTransformer, path: str | Path, metadata: dict[str, Any]) -> Path:
    """Write model config + weights + metadata to one `.pt` file, atomically.

    `metadata` (task name and parameters, metrics, …) must be JSON-serialisable: the file is read back
    with `weights_only=True`, which accepts plain containers and tensors only.
    """
    path = Path(path)
    try:
        json.dumps(metadata)
    except TypeError as error:
        raise TypeError(f"metadata must be JSON-serialisable (plain dicts, lists, numbers, strings): {error}") from None
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": toy_config_kwargs(model.cfg),
        "state_dict": {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()},
        "metadata": metadata,
    }
    # Readers see the old file or the new one, never half of one.
    return atomic_write(path, lambda temporary: torch.save(payload, temporary))


def load_toy_checkpoint(path: str | Path) -> tuple[HookedTransformer, dict[str, Any]]:
    """The frozen model (CPU, eval, no grad) and the metadata saved with it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"No toy checkpoint at {path}. The shipped ones are regenerated with "
            "`python -m ioi_superpose.train_toy fit --config experiments/toy_superposition_<kind>.yaml`."
        )
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path} is not a toy checkpoint of format {CHECKPOINT_FORMAT!r} (found {found!r})")
    model = HookedTransformer(toy_config(**payload["config"]), move_to_device=False)
    model.load_state_dict(payload["state_dict"], strict=True)
    tokenizer = payload["metadata"].get("tokenizer") if isinstance(payload["metadata"], dict) else None
    if isinstance(tokenizer, dict):
        from ioi_superpose.models.word_tokenizer import WordTokenizer

        try:
            setattr(model, TOY_PAD_ATTRIBUTE, WordTokenizer.from_dict(tokenizer).pad_token_id)
        except ValueError:  # an invalid tokenizer is reported where it is used (`load_tokenizer`), not here
            pass
    return freeze(model), payload["metadata"]
