"""Exact activation patching: the metric after patching each (layer, index) of an activation from the source into
the base run, one variant per index (`sweep.sweep`). The `get_act_patch_*` functions are drop-ins for
`transformer_lens.patching`'s functions of the same names (same arguments, result shape and values; metric = black
box on full logits)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from jaxtyping import Int
from torch import Tensor

from ioi_superpose.baselines.sweep import Activation, Metric, Source, index_axes_of, sweep
from ioi_superpose.engine.runs import DEFAULT_MAX_ROWS
from ioi_superpose.models import ActivationCache, HookedTransformer


def activation_patch(
    model: HookedTransformer,
    base_tokens: Int[Tensor, "batch pos"],
    source: Source,
    metric: Metric,
    activation: Activation = "z",
    *,
    by_pos: bool = False,
    max_batch: int = DEFAULT_MAX_ROWS,
    progress: bool = False,
) -> Tensor:
    """A sweep in TransformerLens's layout: heads [layer, head] / [layer, pos, head]; pattern
    [layer, head] / [layer, head, dest_pos]; residual-stream sites [layer, pos] (always by position).
    """
    return sweep(
        model, base_tokens, source, metric, activation, index_axes_of(activation, by_pos),
        max_batch=max_batch, progress=progress,
    )  # fmt: skip


def _drop_in(name: str, activation: Activation, index_axes: tuple[int, ...], shape: str) -> Callable[..., Tensor]:
    """A function with TransformerLens's `get_act_patch_*` signature (denoising by construction)."""

    def patch(
        model: HookedTransformer,
        corrupted_tokens: Int[Tensor, "batch pos"],
        clean_cache: ActivationCache | Mapping[str, Tensor],
        patching_metric: Metric,
        *,
        max_batch: int = DEFAULT_MAX_ROWS,
        progress: bool = False,
    ) -> Tensor:
        return sweep(
            model, corrupted_tokens, clean_cache, patching_metric, activation, index_axes,
            max_batch=max_batch, progress=progress,
        )  # fmt: skip

    patch.__name__ = patch.__qualname__ = name
    patch.__doc__ = (
        f"Drop-in for `transformer_lens.patching.{name}`: patch {activation} from the clean cache into "
        f"the corrupted run; returns [{shape}]. For noising pass clean tokens and a corrupted cache."
    )
    return patch


# fmt: off
get_act_patch_resid_pre = _drop_in("get_act_patch_resid_pre", "resid_pre", (0,), "n_layers, pos")
get_act_patch_resid_mid = _drop_in("get_act_patch_resid_mid", "resid_mid", (0,), "n_layers, pos")
get_act_patch_attn_out = _drop_in("get_act_patch_attn_out", "attn_out", (0,), "n_layers, pos")
get_act_patch_mlp_out = _drop_in("get_act_patch_mlp_out", "mlp_out", (0,), "n_layers, pos")
get_act_patch_attn_head_out_all_pos = _drop_in(
    "get_act_patch_attn_head_out_all_pos", "z", (1,), "n_layers, n_heads")
get_act_patch_attn_head_q_all_pos = _drop_in("get_act_patch_attn_head_q_all_pos", "q", (1,), "n_layers, n_heads")
get_act_patch_attn_head_k_all_pos = _drop_in("get_act_patch_attn_head_k_all_pos", "k", (1,), "n_layers, n_heads")
get_act_patch_attn_head_v_all_pos = _drop_in("get_act_patch_attn_head_v_all_pos", "v", (1,), "n_layers, n_heads")
get_act_patch_attn_head_pattern_all_pos = _drop_in(
    "get_act_patch_attn_head_pattern_all_pos", "pattern", (0,), "n_layers, n_heads")
get_act_patch_attn_head_out_by_pos = _drop_in(
    "get_act_patch_attn_head_out_by_pos", "z", (0, 1), "n_layers, pos, n_heads")
get_act_patch_attn_head_q_by_pos = _drop_in(
    "get_act_patch_attn_head_q_by_pos", "q", (0, 1), "n_layers, pos, n_heads")
get_act_patch_attn_head_k_by_pos = _drop_in(
    "get_act_patch_attn_head_k_by_pos", "k", (0, 1), "n_layers, pos, n_heads")
get_act_patch_attn_head_v_by_pos = _drop_in(
    "get_act_patch_attn_head_v_by_pos", "v", (0, 1), "n_layers, pos, n_heads")
get_act_patch_attn_head_pattern_by_pos = _drop_in(
    "get_act_patch_attn_head_pattern_by_pos", "pattern", (0, 1), "n_layers, n_heads, dest_pos")
get_act_patch_attn_head_pattern_dest_src_pos = _drop_in(
    "get_act_patch_attn_head_pattern_dest_src_pos", "pattern", (0, 1, 2), "n_layers, n_heads, dest_pos, src_pos")
# fmt: on
