"""A fast runner for GPT-2-style HookedTransformers: the engine's patched forward without hooks.

`runs.patched_end_logits` only ever intervenes on head outputs z and only reads the logits at END. This
module evaluates a TransformerLens `HookedTransformer`'s own weights with fused PyTorch kernels
(`F.layer_norm`, `F.gelu`, `F.scaled_dot_product_attention`) and calls a function of `(layer, z)`
exactly where TransformerLens's `blocks.{layer}.attn.hook_z` would fire. Because only END is read,
the last block computes its attention output and MLP at END only (its keys and values, and z, still
cover every position, so a combination always sees whole-sequence z).

Runners (the `runner` option of `runs.patched_end_logits` and `runs.reference_runs`):

- `"auto"` (default): this runner where `unsupported(model)` is None and it agrees with TransformerLens
  on the model (`disagreement`), else TransformerLens hooks with a `FastRunnerWarning` that says why;
- `"fast"`: this runner, or a `ConfigError` saying why it cannot be used;
- `"hooks"`: always TransformerLens's forward with hooks (every hook point fires).

Supported, and tested against TransformerLens to 1e-4 (`tests/test_fast_forward.py`): causal
GPT-2-style blocks (`TransformerBlock`, `Attention`, `MLP`), LayerNorm (`LN`), folded LayerNorm
(`LNPre`) or none, standard or shortformer positional embeddings, attention-only or MLP with `gelu`,
`gelu_new` or `relu`, with or without a padding attention mask. Anything else (rotary, grouped-query attention,
gated MLPs, parallel attention/MLP, soft caps, local attention, …) and any model with hooks attached
(they would not fire) falls back.

The allow-list reads the config and classes, not the weights and buffers: a model whose attention
`IGNORE` buffer was overwritten (0 instead of −inf: TransformerLens then attends to future positions),
or any other state the fast forward does not read, passes it. So the first time a model object meets the
engine, `disagreement` runs one small batch through both runners and compares the END logits; the fast
runner is used only where they agree to `AGREEMENT_ATOL`.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from ioi_superpose.engine.patch import ZFunction
from ioi_superpose.errors import ConfigError
from ioi_superpose.models import HookedTransformer
from ioi_superpose.models.architecture import (
    MLP,
    Attention,
    LayerNorm,
    LayerNormPre,
    TransformerBlock,
    attached_hooks,
    post_norm_architectures,
)

Runner = Literal["auto", "fast", "hooks"]
RUNNERS: tuple[Runner, ...] = get_args(Runner)


class FastRunnerWarning(UserWarning):
    """`runner="auto"` fell back to TransformerLens hooks (correct, slower)."""


_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),  # TransformerLens's formula, fused
    "relu": F.relu,
}
# Config fields that change the forward of the supported classes, and the values we implement.
_REQUIRED_CONFIG: dict[str, tuple[object, ...]] = {
    "positional_embedding_type": ("standard", "shortformer"),
    "normalization_type": ("LN", "LNPre", None),
    "attention_dir": ("causal",),
    "n_key_value_heads": (None,),
    "gated_mlp": (False,),
    "parallel_attn_mlp": (False,),
    "use_split_qkv_input": (False,),
    "use_attn_in": (False,),
    "use_local_attn": (False,),
    "use_normalization_before_and_after": (False,),
    "attn_scores_soft_cap": (-1.0, None),
    "output_logits_soft_cap": (-1.0, None),
    "clip_qkv": (None,),
    "use_logn_attn": (False,),
    "use_attention_sinks": (False,),
    "post_embedding_ln": (False,),
    "load_in_4bit": (False,),
    "n_devices": (1,),
    "use_qk_norm": (False,),
}


def unsupported(model: HookedTransformer) -> str | None:
    """Why the fast runner cannot evaluate `model` exactly, or None when it can."""
    cfg = model.cfg
    for field, allowed in _REQUIRED_CONFIG.items():
        if hasattr(cfg, field) and getattr(cfg, field) not in allowed:
            return f"cfg.{field}={getattr(cfg, field)!r} (supported: {allowed})"
    if not cfg.attn_only and cfg.act_fn not in _ACTIVATIONS:
        return f"cfg.act_fn={cfg.act_fn!r} (supported: {sorted(_ACTIVATIONS)})"
    if cfg.original_architecture in post_norm_architectures():
        return f"post-norm architecture {cfg.original_architecture}"
    norms = (LayerNorm, LayerNormPre, torch.nn.Identity)
    for layer, block in enumerate(model.blocks):
        if type(block) is not TransformerBlock or type(block.attn) is not Attention:
            return f"block {layer} is {type(block).__name__} with {type(block.attn).__name__}"
        if not cfg.attn_only and type(block.mlp) is not MLP:
            return f"block {layer}'s MLP is {type(block.mlp).__name__}"
        if not all(isinstance(getattr(block, ln, torch.nn.Identity()), norms) for ln in ("ln1", "ln2")):
            return f"block {layer}'s normalisation is {type(block.ln1).__name__}"
    attached = attached_hooks(model)
    if attached:
        return f"hooks are attached to {attached[:3]}{' …' if len(attached) > 3 else ''} (they would not fire)"
    return None


AGREEMENT_ATOL = 1e-4
"""Largest END-logit difference (fp32; scaled by the dtype's resolution below it) the fast runner may
have from TransformerLens on a model before it is not used for that model."""
_AGREEMENT: weakref.WeakKeyDictionary[HookedTransformer, str | None] = weakref.WeakKeyDictionary()


@torch.no_grad()
def disagreement(model: HookedTransformer) -> str | None:
    """Why the fast runner's END logits differ from TransformerLens's on `model`, or None when they agree.

    One small seeded batch (2 prompts of up to 8 tokens) through both runners, once per model object
    (cached weakly: a model is frozen while the engine uses it)."""
    if model in _AGREEMENT:
        return _AGREEMENT[model]
    cfg = model.cfg
    generator = torch.Generator().manual_seed(0)
    pos = min(cfg.n_ctx, 8)
    tokens = torch.randint(cfg.d_vocab, (2, pos), generator=generator).to(cfg.device)
    embed, _, shortformer, _ = model.input_to_embed(tokens)
    ends = torch.full((2,), pos - 1, device=embed.device)
    final = end_residual(model, embed, 0, ends, shortformer_pos_embed=shortformer)
    if hasattr(model, "ln_final"):
        final = model.ln_final(final[:, None, :])[:, 0, :]
    fast = (final @ model.W_U + model.b_U).float()
    reference = model(tokens, attention_mask=torch.ones_like(tokens))[:, -1].float()
    largest = float((fast - reference).abs().max())
    resolution = torch.finfo(cfg.dtype).eps * max(1.0, float(reference.abs().max()))
    tolerance = max(AGREEMENT_ATOL, 8 * resolution)
    _AGREEMENT[model] = (
        None if largest <= tolerance
        else f"its END logits differ from TransformerLens's by up to {largest:.3g} (tolerance {tolerance:.1g}) on "
        "this model: it computes something the fast forward does not read (an overwritten attention IGNORE "
        "buffer or mask, a patched module)"
    )  # fmt: skip
    return _AGREEMENT[model]


def resolve_runner(model: HookedTransformer, runner: Runner) -> Literal["fast", "hooks"]:
    """The runner `runner` means for `model`: "auto" warns when it falls back to hooks."""
    if runner not in RUNNERS:
        raise ConfigError(f"runner must be one of {RUNNERS}, got {runner!r}.")
    if runner == "hooks":
        return "hooks"
    reason = unsupported(model) or disagreement(model)
    if reason is None:
        return "fast"
    if runner == "fast":
        raise ConfigError(f"runner='fast' cannot run this model: {reason}. Use runner='auto' or 'hooks'.")
    warnings.warn(
        f"The fast runner does not support this model ({reason}); using TransformerLens hooks, which is "
        "slower. Pass runner='hooks' to choose that explicitly.",
        FastRunnerWarning,
        stacklevel=3,
    )
    return "hooks"


# --------------------------------------------------------------------------------------------------
# The forward.


def _norm(block_ln: torch.nn.Module | None, x: Tensor, eps: float) -> Tensor:
    if block_ln is None or isinstance(block_ln, torch.nn.Identity):
        return x
    weight, bias = getattr(block_ln, "w", None), getattr(block_ln, "b", None)
    return F.layer_norm(x, x.shape[-1:], weight, bias, eps)


def _heads_linear(x: Tensor, weight: Float[Tensor, "head d_model d_head"], bias: Tensor) -> Tensor:
    """x @ W per head: [rows, pos, d_model] -> [rows, head, pos, d_head] (the layout SDPA wants)."""
    n_heads, d_model, d_head = weight.shape
    flat = weight.permute(1, 0, 2).reshape(d_model, n_heads * d_head)
    out = torch.addmm(bias.reshape(-1), x.reshape(-1, d_model), flat)
    return out.view(x.shape[0], x.shape[1], n_heads, d_head).transpose(1, 2)


def _attention_mask(attention_mask: Tensor | None, pos: int) -> tuple[Tensor | None, Tensor | None]:
    """(SDPA boolean mask [rows, 1, q, k], rows with no allowed key [rows, 1, q, 1]) for a padding
    mask; (None, None) for plain causal attention."""
    if attention_mask is None:
        return None, None
    causal = torch.ones(pos, pos, dtype=torch.bool, device=attention_mask.device).tril()
    allowed = causal & attention_mask.bool()[:, None, None, :]
    empty = ~allowed.any(-1, keepdim=True)  # TransformerLens turns their NaN pattern into 0: z = 0
    eye = torch.eye(pos, dtype=torch.bool, device=allowed.device)
    return allowed | (empty & eye), empty


def end_residual(
    model: HookedTransformer,
    resid: Float[Tensor, "rows pos d_model"],
    start: int,
    end_positions: Int[Tensor, " rows"],
    z_fn: ZFunction | None = None,
    shortformer_pos_embed: Float[Tensor, "rows pos d_model"] | None = None,
    attention_mask: Int[Tensor, "rows pos"] | None = None,
) -> Float[Tensor, "rows d_model"]:
    """Blocks `start..n_layers` on `resid`; the final residual stream (before `ln_final`) at END.

    `z_fn(layer, z)` replaces every layer's z (shape [rows, pos, head, d_head], as TransformerLens's
    `hook_z`); the last block then computes its output at END only. Runs under the caller's grad mode.
    """
    cfg = model.cfg
    rows, pos = resid.shape[:2]
    mask, empty = _attention_mask(attention_mask, pos)
    end_positions = end_positions.to(resid.device)
    row_index = torch.arange(rows, device=resid.device)
    for layer in range(start, cfg.n_layers):
        block = model.blocks[layer]
        attn = block.attn
        normed = _norm(getattr(block, "ln1", None), resid, cfg.eps)
        qk_in = normed if shortformer_pos_embed is None else normed + shortformer_pos_embed
        q = _heads_linear(qk_in, attn.W_Q, attn.b_Q)
        k = _heads_linear(qk_in, attn.W_K, attn.b_K)
        v = _heads_linear(normed, attn.W_V, attn.b_V)
        scale = 1.0 / float(attn.attn_scale)
        if mask is None:
            z = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
        else:
            z = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale).masked_fill(empty, 0.0)
        z = z.transpose(1, 2)  # [rows, pos, head, d_head], as hook_z
        if z_fn is not None:
            z = z_fn(layer, z)
        last = layer == cfg.n_layers - 1
        if last:  # only END is read: the rest of the last block at END only
            z, resid = z[row_index, end_positions], resid[row_index, end_positions]
        attn_out = z.reshape(*z.shape[:-2], -1) @ attn.W_O.reshape(-1, cfg.d_model) + attn.b_O
        resid = resid + attn_out
        if not cfg.attn_only:
            mlp = block.mlp
            hidden = _ACTIVATIONS[cfg.act_fn](_norm(getattr(block, "ln2", None), resid, cfg.eps) @ mlp.W_in + mlp.b_in)
            resid = resid + (hidden @ mlp.W_out + mlp.b_out)
    return resid
