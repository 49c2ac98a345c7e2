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

from ioi_superpose.data.answer_metrics import MetricName
from ioi_superpose.engine.metric import gather_end, logit_diff
from ioi_superpose.errors import ConfigError
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


def check_linear_metric(metric: MetricName) -> None:
    """Direct logit attribution decomposes a metric linear in the logits: refuse any other (docs/tasks.md)."""
    if metric != "logit_diff":
        raise ConfigError(
            f"Direct logit attribution decomposes the logit difference, which is linear in the residual stream at END; "
            f"this task measures {metric}, which is not (the softmax's normaliser mixes every component), so its "
            "parts would not add up to it. Leave out the DirectLogitAttribution baseline for this task, or measure "
            "the same prompts by the logit difference (--data.task file with metric logit_diff)."
        )


@torch.no_grad()
def direct_logit_attribution(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    answer_tokens: Int[Tensor, "batch k"],
    end_positions: Int[Tensor, " batch"],
    answer_weights: Float[Tensor, "batch k"] | None = None,
    metric: MetricName = "logit_diff",
) -> LogitAttribution:
    """Mean over prompts of each component's direct effect on the logit difference at END: correct − incorrect,
    or with answer sets Σ weights · logits (`answer_weights`, `engine.metric.logit_diff`).

    Refused for a `prob_diff` task (`check_linear_metric`): the decomposition is exact because the logit difference
    is linear in the final residual stream; a probability difference is not (its softmax normaliser mixes every
    component's contribution), so the per-component parts would not sum to it.
    """
    check_linear_metric(metric)
    logits, cache = model.run_with_cache(tokens)
    rows = torch.arange(tokens.shape[0], device=tokens.device)
    if answer_weights is None:
        direction = (model.W_U[:, answer_tokens[:, 0]] - model.W_U[:, answer_tokens[:, 1]]).T  # [batch, d_model]
        constant = model.b_U[answer_tokens[:, 0]] - model.b_U[answer_tokens[:, 1]]
    else:
        weights = answer_weights.to(model.W_U)
        direction = torch.einsum("dbk,bk->bd", model.W_U[:, answer_tokens], weights)
        constant = (model.b_U[answer_tokens] * weights).sum(-1)
    ln_final = getattr(model, "ln_final", None)
    if hasattr(ln_final, "w"):  # unfolded LayerNorm / RMSNorm: weight scales the direction, a bias is constant
        if hasattr(ln_final, "b"):  # RMSNorm has none
            constant = constant + direction @ ln_final.b
        direction = direction * ln_final.w
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
        # Parallel attention and MLP (GPT-J, NeoX) have no residual between them: no `mid`.
        mid = not model.cfg.attn_only and f"blocks.{layer}.hook_resid_mid" in cache.cache_dict
        accumulated_labels += [f"{layer}_pre"] + ([f"{layer}_mid"] if mid else [])
        accumulated.append(at_end(f"blocks.{layer}.hook_resid_pre"))
        if f"{layer}_mid" in accumulated_labels:
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
    actual = logit_diff(rows_logits.gather(-1, answer_tokens), answer_weights).mean()
    return LogitAttribution(
        accumulated=read(torch.stack(accumulated)).cpu(),
        accumulated_labels=accumulated_labels,
        decomposed=read(torch.stack(decomposed)).cpu(),
        decomposed_labels=decomposed_labels,
        heads=read(torch.stack(head_outputs)).cpu(),
        constant=float(constant.mean()),
        logit_diff=float(actual),
    )
