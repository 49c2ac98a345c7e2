"""The patching baselines, as one public module: exact activation patching (`activation_patching.py`, with drop-ins
for TransformerLens's `get_act_patch_*` functions: same arguments, result shape and values), attribution patching
(`attribution_patching.py`) and exact two-stage path patching (`path_patching.py`), all on the generic runner
(`sweep.py`). Denoising (TransformerLens's convention) = base corrupted, source clean; noising = base clean, source
corrupted (`engine.vocabulary.base_and_source`)."""

from ioi_superpose.baselines.activation_patching import (
    activation_patch,
    get_act_patch_attn_head_k_all_pos,
    get_act_patch_attn_head_k_by_pos,
    get_act_patch_attn_head_out_all_pos,
    get_act_patch_attn_head_out_by_pos,
    get_act_patch_attn_head_pattern_all_pos,
    get_act_patch_attn_head_pattern_by_pos,
    get_act_patch_attn_head_pattern_dest_src_pos,
    get_act_patch_attn_head_q_all_pos,
    get_act_patch_attn_head_q_by_pos,
    get_act_patch_attn_head_v_all_pos,
    get_act_patch_attn_head_v_by_pos,
    get_act_patch_attn_out,
    get_act_patch_mlp_out,
    get_act_patch_resid_mid,
    get_act_patch_resid_pre,
)
from ioi_superpose.baselines.attribution_patching import attribution_agreement, attribution_patch, pearson
from ioi_superpose.baselines.path_patching import path_patch, path_patch_sweep
from ioi_superpose.baselines.sweep import Activation, Metric, Source, sweep

__all__ = [
    "Activation",
    "Metric",
    "Source",
    "activation_patch",
    "attribution_agreement",
    "attribution_patch",
    "get_act_patch_attn_head_k_all_pos",
    "get_act_patch_attn_head_k_by_pos",
    "get_act_patch_attn_head_out_all_pos",
    "get_act_patch_attn_head_out_by_pos",
    "get_act_patch_attn_head_pattern_all_pos",
    "get_act_patch_attn_head_pattern_by_pos",
    "get_act_patch_attn_head_pattern_dest_src_pos",
    "get_act_patch_attn_head_q_all_pos",
    "get_act_patch_attn_head_q_by_pos",
    "get_act_patch_attn_head_v_all_pos",
    "get_act_patch_attn_head_v_by_pos",
    "get_act_patch_attn_out",
    "get_act_patch_mlp_out",
    "get_act_patch_resid_mid",
    "get_act_patch_resid_pre",
    "path_patch",
    "path_patch_sweep",
    "pearson",
    "sweep",
]
