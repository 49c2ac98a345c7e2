"""What the tests share besides fixtures: the repository's paths, tiny random models and prompts, the CLI's
small-run options, and a complete fake run summary. Imported as `from tests.helpers import …` (the repository
root is on `sys.path`: pytest's `pythonpath`); the subprocesses' helpers (`tests.helpers.kill`) live here too."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub: tests never touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path
from typing import Any

import torch

from ioi_superpose.models import HookedTransformer, HookedTransformerConfig, freeze

REPO = Path(__file__).resolve().parents[2]
"""The repository root: the one definition every test uses."""
CHECKPOINTS = REPO / "checkpoints"
TOY_IOI = str(CHECKPOINTS / "toy_ioi.pt")
EXPERIMENTS = REPO / "experiments"

SMALL = ["--data.n_train", "32", "--data.n_val", "16", "--data.n_test", "8", "--data.batch_size", "16"]
"""A training run small enough for a test (`python -m ioi_superpose.train fit … *SMALL`)."""
SWEEP_CONFIG = """
seed_everything: 0
trainer:
  max_epochs: 1
  accelerator: cpu
  devices: 1
  enable_model_summary: false
  logger:
    class_path: lightning.pytorch.loggers.TensorBoardLogger
    init_args: {save_dir: runs}
model:
  model_name: MODEL
data: {n_train: 32, n_val: 16, n_test: 8, batch_size: 16, off_distribution: [held_out_names]}
max_activating: {per_set: 0}
"""
"""A sweep's base config (MODEL: the model's path), one epoch of a tiny run; no max-activating table (the
sweep tests read summaries, and each point's table cost ~2 s)."""

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def run_cli(args: list[str], tmp_path: Path, monkeypatch: Any) -> None:
    """`python -m ioi_superpose.train ARGS` in this process, with `tmp_path` as the working directory."""
    from ioi_superpose.cli.train import main

    monkeypatch.chdir(tmp_path)
    main(args)


def random_model(
    n_layers: int = 2,
    n_heads: int = 4,
    d_model: int = 32,
    d_vocab: int = 50,
    attn_only: bool = False,
    seed: int = 0,
    scale: float = 3.0,
) -> HookedTransformer:
    """A frozen random HookedTransformer whose weights are scaled up so patches have visible effects."""
    cfg = HookedTransformerConfig(
        n_layers=n_layers,
        n_heads=n_heads,
        d_model=d_model,
        d_head=d_model // n_heads,
        d_mlp=None if attn_only else 2 * d_model,
        d_vocab=d_vocab,
        n_ctx=32,
        act_fn=None if attn_only else "gelu",
        attn_only=attn_only,
        normalization_type="LN",
        seed=seed,
    )
    model = HookedTransformer(cfg)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim > 1:
                parameter.mul_(scale)
    return freeze(model)


def prompt_pairs(
    d_vocab: int, batch: int = 6, length: int = 7, seed: int = 0, share_last: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random clean/corrupted token pairs with answer tokens (correct, incorrect)."""
    generator = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, d_vocab, (batch, length), generator=generator)
    corrupted = torch.randint(0, d_vocab, (batch, length), generator=generator)
    if share_last:
        corrupted[:, -1] = clean[:, -1]
    answers = torch.randint(0, d_vocab, (batch, 2), generator=generator)
    return clean, corrupted, answers


def hooks_attached(model: HookedTransformer) -> int:
    return sum(len(point.fwd_hooks) + len(point.bwd_hooks) for point in model.hook_dict.values())




def fake_summary(
    direction: str, family: str, val: float | None, support: list[list[int]], **fields: Any
) -> dict[str, Any]:
    """A complete summary.json (current schema) of a run that never ran: `val` recovery on validation, none on
    held_out_names, the given support, and one top-k baseline curve per set; `fields` override any key."""
    from ioi_superpose.results.schema import SCHEMA_VERSION

    summary: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "model_name": "toy", "direction": direction, "objective": "logit_diff",
        "recovery": {"val": val, "test": {"held_out_names": None}}, "min_gap_for_recovery": 0.5,
        "clean_logit_diff": 2.0, "corrupted_logit_diff": -2.0, "patched_logit_diff": None, "clean_accuracy": 1.0,
        "patched_accuracy": None, "l0": len(support), "l0_threshold": 0.05, "n_heads_total": 8,
        "top_heads": [{"layer": unit[0], "head": unit[1], "alpha": 1.0} for unit in support],
        "combination": family, "rest": "free", "support": support, "prune": None, "rotation": None, "circuit": None,
        "val": {}, "test": {}, "per_prompt_recovery": {},
        "baselines": {"combinations": {"curves_by_set": {"val": {"activation_patching": [0.3, 0.9]},
                                                         "held_out_names": {"activation_patching": [None, None]}},
                                       "prompts_by_set": {"val": 64, "held_out_names": 64}}},
        "ioi_circuit": None, "config": {"model": {"combination": family}},
    }  # fmt: skip
    summary.update(fields)
    return summary


def hooks_only(model, prompts, subset, direction, capture=False):
    """Normalised effect of patching `subset` (TransformerLens's forward, a hook_z replacement, full
    logits, no fast runner), and with `capture` every layer's z of the patched run."""
    base, source = (
        (prompts.corrupted_tokens, prompts.clean_tokens) if direction == "denoising"
        else (prompts.clean_tokens, prompts.corrupted_tokens)
    )  # fmt: skip
    rows, ends, answers = torch.arange(len(base)), prompts.end_pos, prompts.answer_tokens

    def logit_diff(logits):
        at_end = logits[rows, ends]
        return float((at_end.gather(1, answers[:, :1]) - at_end.gather(1, answers[:, 1:])).mean())

    patched_z = {}
    with torch.no_grad():
        source_logits, cache = model.run_with_cache(source)

        def patch(z, hook):
            layer = int(hook.name.split(".")[1])
            for patched_layer, head in subset:
                if patched_layer == layer:
                    z[:, :, head] = cache[hook.name][:, :, head]
            patched_z[layer] = z.clone()
            return z

        hooks = [(f"blocks.{layer}.attn.hook_z", patch) for layer in range(model.cfg.n_layers)]
        patched = logit_diff(model.run_with_hooks(base, fwd_hooks=hooks))
        base_ld, source_ld = logit_diff(model(base)), logit_diff(source_logits)
    effect = (patched - base_ld) / (source_ld - base_ld)
    if not capture:
        return effect
    source_z = torch.stack([cache[f"blocks.{layer}.attn.hook_z"] for layer in range(model.cfg.n_layers)])
    return effect, torch.stack([patched_z[layer] for layer in range(model.cfg.n_layers)]), source_z
