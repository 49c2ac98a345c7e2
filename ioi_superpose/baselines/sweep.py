"""The generic runner of the patching baselines: one metric per patched (layer, index) of an activation, in folded
forwards (`sweep`), and the metric's evaluation on a folded batch. Activation patching (`activation_patching.py`)
is its specialisation; attribution and path patching read its helpers.

Vocabulary: **base run** (patched), **source** (where patched values come from: `engine.vocabulary`); a **variant**
is one patched forward (one entry of a sweep), folded into the batch by `runs.BaseRun` (row `v * batch + b` is prompt
`b` of variant `v`), chunked to at most `max_batch` rows.

Why it is fast: every variant patched at layer L shares the base run's residual stream before L, so its forward starts
at L from that cached prefix; variants run as one batch; metric values stay on the device; with a `ContrastMetric`
only the two answer logits at END are unembedded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, Union

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from ioi_superpose.engine.metric import ContrastMetric
from ioi_superpose.engine.runs import (
    DEFAULT_MAX_ROWS,
    BaseRun,
    capture,
    check_hooks_exist,
    chunks,
    fold,
    variants_per_chunk,
)
from ioi_superpose.engine.vocabulary import Hook, hook_name
from ioi_superpose.models import ActivationCache, HookedTransformer, HookPoint

Metric = Callable[[Float[Tensor, "batch pos d_vocab"]], Float[Tensor, ""]]
Source = Union[ActivationCache, Mapping[str, Tensor], Int[Tensor, "batch pos"]]
Activation = Literal["z", "q", "k", "v", "pattern", "resid_pre", "resid_mid", "attn_out", "mlp_out"]
HEAD_VECTORS = ("z", "q", "k", "v")  # per-prompt shape [pos, head, d_head]


def check_same_shape(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} has shape {tuple(a.shape)} but {name_b} has shape {tuple(b.shape)}")


def source_activations(
    model: HookedTransformer, source: Source, names: Sequence[str], base: BaseRun
) -> dict[str, Tensor]:
    """The source run's activations at `names`, on the model's device, checked against the base batch."""
    check_hooks_exist(model, names)
    if isinstance(source, Tensor):
        if source.is_floating_point():
            raise ValueError("source must be an ActivationCache, a dict of activations, or integer tokens")
        if tuple(source.shape) != (base.batch, base.pos):
            raise ValueError(
                f"source tokens have shape {tuple(source.shape)} but base tokens have shape {(base.batch, base.pos)}"
            )
        return capture(model, source, names)
    acts = {}
    for name in names:
        try:
            act = source[name].to(model.cfg.device)
        except KeyError:
            raise ValueError(f"the source cache has no activation {name!r}") from None
        batch_and_pos = (act.shape[0], act.shape[-2 if name.endswith("hook_pattern") else 1])
        if batch_and_pos != (base.batch, base.pos):
            raise ValueError(
                f"source activation {name!r} has shape {tuple(act.shape)}, which does not match the base "
                f"tokens' shape {(base.batch, base.pos)} (clean and corrupted prompts must align)"
            )
        acts[name] = act
    return acts


def _uses_answer_logits(model: HookedTransformer, metric: Metric) -> bool:
    """ContrastMetric reads the answer values at END (`engine.runs.unembed_residual`): skip the full unembedding at
    every position when the model allows it."""
    return isinstance(metric, ContrastMetric) and getattr(model.cfg, "output_logits_soft_cap", -1.0) <= 0


def evaluate(
    run: BaseRun, resid: Float[Tensor, "rows pos d_model"], start: int, hooks: Sequence[Hook], metric: Metric
) -> Float[Tensor, " variants"]:
    """Finish a folded forward from layer `start` and return the metric per variant."""
    if _uses_answer_logits(run.model, metric):
        assert isinstance(metric, ContrastMetric)
        if metric.answer_tokens.shape[0] != run.batch:
            raise ValueError(
                f"metric.answer_tokens has shape {tuple(metric.answer_tokens.shape)} but the tokens have "
                f"batch {run.batch}"
            )
        answers = run.end_logits(resid, start, hooks, metric.end_positions, metric.answer_tokens, metric=metric.metric)
        return metric.from_answer_logits(answers).float()
    logits = run.run(resid, start, hooks, full_logits=True)
    # A generic metric is a black box on [batch, pos, vocab]: call it once per variant on its slice.
    values = [torch.as_tensor(metric(chunk), device=logits.device) for chunk in logits.split(run.batch)]
    if any(v.numel() != 1 for v in values):
        raise ValueError("the patching metric must return a scalar")
    return torch.stack([v.reshape(()) for v in values]).float()


def _one_hot_mask(
    flat_indices: Tensor, act_shape: Sequence[int], index_axes: Sequence[int]
) -> Bool[Tensor, "variants *act"]:
    """Mask per variant over one prompt's activation: True where that variant patches.

    Variant i patches the entry `flat_indices[i]` of the grid spanned by `index_axes` (row-major), and
    every entry of the other axes.
    """
    variants = len(flat_indices)
    grid_size = math.prod(act_shape[a] for a in index_axes)
    mask = torch.zeros(variants, grid_size, dtype=torch.bool, device=flat_indices.device)
    mask[torch.arange(variants, device=mask.device), flat_indices] = True
    # Grid axes in activation order (index_axes is increasing), size 1 on the axes patched whole.
    return mask.view(variants, *[act_shape[a] if a in index_axes else 1 for a in range(len(act_shape))])


def _where_hook(mask: Tensor, source: Tensor) -> Callable[[Tensor, HookPoint], Tensor]:
    """A hook writing `source` where `mask` [variants, *act] is True, per variant of the folded batch."""

    def hook(act: Tensor, hook: HookPoint) -> Tensor:
        folded = act.reshape(mask.shape[0], -1, *act.shape[1:])  # [variants, batch, *act]
        return torch.where(mask[:, None], source[None], folded).reshape(act.shape)

    return hook


def sweep(
    model: HookedTransformer,
    base_tokens: Int[Tensor, "batch pos"],
    source: Source,
    metric: Metric,
    activation: Activation,
    index_axes: Sequence[int],
    *,
    max_batch: int = DEFAULT_MAX_ROWS,
    progress: bool = False,
) -> Float[Tensor, "layer *index"]:
    """Metric after patching each (layer, index) of `activation` from the source into the base run.

    `index_axes` are axes of one prompt's activation (no batch axis) swept one entry at a time, in
    row-major order; the other axes are patched whole. E.g. z ([pos, head, d_head]) by head: (1,).
    """
    names = [hook_name(activation, layer) for layer in range(model.cfg.n_layers)]
    with torch.no_grad():
        base = BaseRun.prepare(model, base_tokens)
        per_chunk = variants_per_chunk(max_batch, base.batch)
        sources = source_activations(model, source, names, base)
        act_shape = sources[names[0]].shape[1:]
        if list(index_axes) != sorted(set(index_axes)) or not all(0 <= a < len(act_shape) for a in index_axes):
            raise ValueError(f"index_axes must be increasing axes of {tuple(act_shape)}, got {tuple(index_axes)}")
        grid = [act_shape[a] for a in index_axes]
        out = torch.zeros(model.cfg.n_layers, math.prod(grid), device=model.cfg.device)
        jobs = [(layer, c) for layer in range(model.cfg.n_layers) for c in chunks(math.prod(grid), per_chunk)]
        for layer, chunk in tqdm(jobs, disable=not progress, desc=f"patching {activation}"):
            indices = torch.arange(chunk.start, chunk.stop, device=model.cfg.device)
            hook = _where_hook(_one_hot_mask(indices, act_shape, index_axes), sources[names[layer]])
            resid = fold(base.resid_pre(layer), len(chunk))
            out[layer, chunk.start : chunk.stop] = evaluate(base, resid, layer, [(names[layer], hook)], metric)
    return out.view(model.cfg.n_layers, *grid)


def index_axes_of(activation: str, by_pos: bool) -> tuple[int, ...]:
    if activation in HEAD_VECTORS:  # [pos, head, d_head]
        return (0, 1) if by_pos else (1,)
    if activation == "pattern":  # [head, dest_pos, src_pos]
        return (0, 1) if by_pos else (0,)
    return (0,)  # [pos, d_model]
