"""Direct logit attribution of the logit difference: the notebook's first check of every experiment.

The residual stream at END is a sum of components (embeddings, each attention layer — itself a sum of
heads plus `b_O` — and each MLP). The final LayerNorm is linear once its scale is fixed to the value
of the actual run, so the logit difference splits exactly into one term per component, plus a
constant (LayerNorm bias and unembedding bias).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ioi_superpose.engine.metric import gather_end
from ioi_superpose.models import HookedTransformer


@dataclass
class LogitAttribution:
    accumulated: Float[Tensor, " n_accumulated"]
    """Logit difference read from the residual stream before each layer's attention and MLP (logit lens)."""
    accumulated_labels: list[str]
    decomposed: Float[Tensor, " n_components"]
    """Contribution of each component: embed, pos_embed, then each layer's attention and MLP output."""
    decomposed_labels: list[str]
    heads: Float[Tensor, "n_layers n_heads"]
    """Contribution of each head's output (its share of `attn_out`, without `b_O`)."""
    constant: float
    """Bias terms outside the residual stream: LayerNorm bias and unembedding bias."""
    logit_diff: float
    """The model's actual mean logit difference; equals decomposed.sum() + constant."""


@torch.no_grad()
def direct_logit_attribution(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    answer_tokens: Int[Tensor, "batch 2"],
    end_positions: Int[Tensor, " batch"],
) -> LogitAttribution:
    """Mean over prompts of each component's direct effect on (correct − incorrect) logit at END."""
    logits, cache = model.run_with_cache(tokens)
    rows = torch.arange(tokens.shape[0], device=tokens.device)
    direction = (model.W_U[:, answer_tokens[:, 0]] - model.W_U[:, answer_tokens[:, 1]]).T  # [batch, d_model]
    constant = model.b_U[answer_tokens[:, 0]] - model.b_U[answer_tokens[:, 1]]
    if hasattr(
        getattr(model, "ln_final", None), "w"
    ):  # unfolded LayerNorm: weight scales the direction, bias is constant
        constant = constant + direction @ model.ln_final.b
        direction = direction * model.ln_final.w
    has_scale = "ln_final.hook_scale" in cache.cache_dict
    scale = (
        gather_end(cache["ln_final.hook_scale"], end_positions)
        if has_scale
        else torch.ones(len(rows), 1, device=tokens.device)
    )
    centre = model.cfg.normalization_type in ("LN", "LNPre")

    def read(stack: Float[Tensor, "... batch d_model"]) -> Float[Tensor, "..."]:
        if centre:
            stack = stack - stack.mean(-1, keepdim=True)
        return ((stack / scale) * direction).sum(-1).mean(-1)

    def at_end(name: str) -> Float[Tensor, "batch d_model"]:
        return gather_end(cache[name], end_positions)

    n_layers = model.cfg.n_layers
    accumulated_labels, accumulated = [], []
    for layer in range(n_layers):
        accumulated_labels += [f"{layer}_pre"] + ([] if model.cfg.attn_only else [f"{layer}_mid"])
        accumulated.append(at_end(f"blocks.{layer}.hook_resid_pre"))
        if not model.cfg.attn_only:
            accumulated.append(at_end(f"blocks.{layer}.hook_resid_mid"))
    accumulated_labels.append("final")
    accumulated.append(at_end(f"blocks.{n_layers - 1}.hook_resid_post"))

    decomposed_labels, decomposed = ["embed"], [at_end("hook_embed")]
    if "hook_pos_embed" in cache.cache_dict and model.cfg.positional_embedding_type == "standard":
        decomposed_labels.append("pos_embed")
        decomposed.append(at_end("hook_pos_embed"))
    head_outputs = []
    for layer in range(n_layers):
        decomposed_labels.append(f"{layer}_attn_out")
        decomposed.append(at_end(f"blocks.{layer}.hook_attn_out"))
        z = at_end(f"blocks.{layer}.attn.hook_z")  # [batch, head, d_head]
        head_outputs.append(torch.einsum("bhd,hdm->hbm", z, model.blocks[layer].attn.W_O))
        if not model.cfg.attn_only:
            decomposed_labels.append(f"{layer}_mlp_out")
            decomposed.append(at_end(f"blocks.{layer}.hook_mlp_out"))

    rows_logits = logits[rows, end_positions]
    actual = (rows_logits.gather(-1, answer_tokens)[:, 0] - rows_logits.gather(-1, answer_tokens)[:, 1]).mean()
    return LogitAttribution(
        accumulated=read(torch.stack(accumulated)).cpu(),
        accumulated_labels=accumulated_labels,
        decomposed=read(torch.stack(decomposed)).cpu(),
        decomposed_labels=decomposed_labels,
        heads=read(torch.stack(head_outputs)).cpu(),
        constant=float(constant.mean()),
        logit_diff=float(actual),
    )
