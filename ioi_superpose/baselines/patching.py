"""Fast exact activation patching, attribution patching and exact (two-stage) path patching.

Vocabulary used throughout:

- **base run**: the run we intervene on; **source**: where patched values come from.
  Denoising (TransformerLens's convention) = base corrupted, source clean; noising = base clean,
  source corrupted (`runs.base_and_source`).
- **variant**: one patched forward (one entry of a sweep), folded into the batch by `runs.BaseRun`
  (row `v * batch + b` is prompt `b` of variant `v`), chunked to at most `max_batch` rows.

Why it is fast: every variant patched at layer L shares the base run's residual stream before L, so
its forward starts at L from that cached prefix; variants run as one batch; metric values stay on
the device; with a `LogitDiffMetric` only the two answer logits at END are unembedded.
The `get_act_patch_*` functions are drop-ins for `transformer_lens.patching`'s functions of the
same names (same arguments, result shape and values; metric = black box on full logits).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Union

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from torchmetrics.functional import pearson_corrcoef
from tqdm.auto import tqdm

from ioi_superpose.engine.metric import LogitDiffMetric
from ioi_superpose.engine.runs import (
    DEFAULT_MAX_ROWS,
    BaseRun,
    capture,
    check_hooks_exist,
    chunks,
    fold,
    variants_per_chunk,
)
from ioi_superpose.engine.vocabulary import Head, Hook, hook_name, layer_of
from ioi_superpose.models import ActivationCache, HookedTransformer, HookPoint

Metric = Callable[[Float[Tensor, "batch pos d_vocab"]], Float[Tensor, ""]]
Source = Union[ActivationCache, Mapping[str, Tensor], Int[Tensor, "batch pos"]]
Activation = Literal["z", "q", "k", "v", "pattern", "resid_pre", "resid_mid", "attn_out", "mlp_out"]
QKV = Literal["q", "k", "v"]
Sender = Union[Head, Literal["embed"]]
_HEAD_VECTORS = ("z", "q", "k", "v")  # per-prompt shape [pos, head, d_head]


def _check_same_shape(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} has shape {tuple(a.shape)} but {name_b} has shape {tuple(b.shape)}")


def _source_activations(
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


# --------------------------------------------------------------------------------------------------
# Metric evaluation on a folded batch.


def _uses_answer_logits(model: HookedTransformer, metric: Metric) -> bool:
    """LogitDiffMetric reads two logits at END: skip the full unembedding when the model allows it."""
    return isinstance(metric, LogitDiffMetric) and getattr(model.cfg, "output_logits_soft_cap", -1.0) <= 0


def _evaluate(
    run: BaseRun, resid: Float[Tensor, "rows pos d_model"], start: int, hooks: Sequence[Hook], metric: Metric
) -> Float[Tensor, " variants"]:
    """Finish a folded forward from layer `start` and return the metric per variant."""
    if _uses_answer_logits(run.model, metric):
        assert isinstance(metric, LogitDiffMetric)
        if metric.answer_tokens.shape[0] != run.batch:
            raise ValueError(
                f"metric.answer_tokens has shape {tuple(metric.answer_tokens.shape)} but the tokens have "
                f"batch {run.batch}"
            )
        answers = run.end_logits(resid, start, hooks, metric.end_positions, metric.answer_tokens)
        return metric.from_answer_logits(answers).float()
    logits = run.run(resid, start, hooks, full_logits=True)
    # A generic metric is a black box on [batch, pos, vocab]: call it once per variant on its slice.
    values = [torch.as_tensor(metric(chunk), device=logits.device) for chunk in logits.split(run.batch)]
    if any(v.numel() != 1 for v in values):
        raise ValueError("the patching metric must return a scalar")
    return torch.stack([v.reshape(()) for v in values]).float()


# --------------------------------------------------------------------------------------------------
# Exact activation patching sweeps.


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
        sources = _source_activations(model, source, names, base)
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
            out[layer, chunk.start : chunk.stop] = _evaluate(base, resid, layer, [(names[layer], hook)], metric)
    return out.view(model.cfg.n_layers, *grid)


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
        model, base_tokens, source, metric, activation, _index_axes(activation, by_pos),
        max_batch=max_batch, progress=progress,
    )  # fmt: skip


def _index_axes(activation: str, by_pos: bool) -> tuple[int, ...]:
    if activation in _HEAD_VECTORS:  # [pos, head, d_head]
        return (0, 1) if by_pos else (1,)
    if activation == "pattern":  # [head, dest_pos, src_pos]
        return (0, 1) if by_pos else (0,)
    return (0,)  # [pos, d_model]


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


# --------------------------------------------------------------------------------------------------
# Attribution patching: (source − base) · ∂metric/∂activation, one forward and one backward.


def attribution_patch(
    model: HookedTransformer,
    base_tokens: Int[Tensor, "batch pos"],
    source: Source,
    metric: Metric,
    activation: Activation = "z",
    *,
    by_pos: bool = False,
) -> Tensor:
    """Linear estimate of `activation_patch(...) − metric(base run)`, same layout, every index at once.

    Summed over the batch and the axes not swept (positions unless `by_pos`, d_head / d_model).
    """
    index_axes = _index_axes(activation, by_pos)
    names = [hook_name(activation, layer) for layer in range(model.cfg.n_layers)]
    with torch.no_grad():
        base = BaseRun.prepare(model, base_tokens)
        sources = _source_activations(model, source, names, base)
    base_acts, grads = _activations_and_gradients(base, names, metric)
    effects = []
    for name in names:
        # Sum over batch (axis 0) and every per-prompt axis not swept.
        summed = [0] + [a + 1 for a in range(base_acts[name].dim() - 1) if a not in index_axes]
        effects.append(((sources[name] - base_acts[name]) * grads[name]).sum(summed))
    return torch.stack(effects).detach()


def _activations_and_gradients(
    base: BaseRun, names: Sequence[str], metric: Metric
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Base activations at `names` and the metric's gradient w.r.t. each of them."""
    acts: dict[str, Tensor] = {}
    leaves: dict[str, Tensor] = {}

    def add_leaf(act: Tensor, hook: HookPoint) -> Tensor:
        # act + zero leaf, not a detached copy: the leaf's gradient is ∂metric/∂act and the paths
        # from earlier activations through this one stay intact.
        acts[hook.name] = act.detach()
        leaves[hook.name] = torch.zeros_like(act, requires_grad=True)
        return act + leaves[hook.name]

    with torch.enable_grad():
        value = _evaluate(base, base.embed, 0, [(n, add_leaf) for n in names], metric)[0]
        grads = torch.autograd.grad(value, [leaves[n] for n in names])
    return acts, dict(zip(names, grads))


def pearson(a: Tensor, b: Tensor) -> float:
    """Pearson correlation of two flattened tensors (e.g. attribution vs exact patching)."""
    _check_same_shape(a, b, "first tensor", "second tensor")
    return float(pearson_corrcoef(a.flatten().double(), b.flatten().double()))


def attribution_agreement(attribution: Tensor, exact: Tensor) -> float:
    """How well attribution patching ranks like exact patching: Pearson r of the flattened effects.

    Exact results may be raw metric values (as returned by the sweeps): r ignores the constant offset.
    """
    return pearson(attribution, exact)


# --------------------------------------------------------------------------------------------------
# Exact path patching (two-stage, IOI-paper convention).


def path_patch(
    model: HookedTransformer,
    base_tokens: Int[Tensor, "batch pos"],
    source: Source,
    senders: Sequence[Sender],
    receivers: Sequence[Head] | Literal["logits"],
    metric: Metric,
    *,
    receiver_input: QKV | Sequence[QKV] = "q",
) -> Float[Tensor, ""]:
    """Metric after patching only the paths senders → receivers' `receiver_input` (or → logits).

    Stage 1: base run with the senders' z from the source and every other head's z frozen to its base
    value; MLPs recompute (IOI paper, Wang et al. 2022), so sender → MLP → receiver paths count.
    Stage 2: base run with the receivers' q/k/v inputs set to their stage-1 values. For "logits",
    the stage-1 logits are read directly. A sender "embed" patches the embeddings (resid_pre of layer 0).
    """
    masks = _sender_masks(model, [list(senders)])
    return _path_patch_variants(model, base_tokens, source, masks, receivers, metric, receiver_input, 1, False)[0]


def path_patch_sweep(
    model: HookedTransformer,
    base_tokens: Int[Tensor, "batch pos"],
    source: Source,
    receivers: Sequence[Head] | Literal["logits"],
    metric: Metric,
    *,
    receiver_input: QKV | Sequence[QKV] = "q",
    max_batch: int = DEFAULT_MAX_ROWS,
    progress: bool = False,
) -> Float[Tensor, "layer head"]:
    """`path_patch` with each single head as the sender, for a fixed receiver set: [n_layers, n_heads]."""
    heads = [[(layer, head)] for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads)]
    masks = _sender_masks(model, heads)
    values = _path_patch_variants(
        model, base_tokens, source, masks, receivers, metric, receiver_input, max_batch, progress
    )
    return values.view(model.cfg.n_layers, model.cfg.n_heads)


@dataclass
class _SenderMasks:
    heads: Bool[Tensor, "variants layer head"]
    embed: Bool[Tensor, " variants"]

    def first_layer(self, rows: range) -> int:
        """Earliest layer a chunk of variants changes: its forwards start there."""
        if bool(self.embed[rows.start : rows.stop].any()):
            return 0
        layers = self.heads[rows.start : rows.stop].any(-1).any(0).nonzero()
        return int(layers[0]) if len(layers) else self.heads.shape[1]


def _sender_masks(model: HookedTransformer, sender_sets: Sequence[Sequence[Sender]]) -> _SenderMasks:
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    heads = torch.zeros(len(sender_sets), n_layers, n_heads, dtype=torch.bool)
    embed = torch.zeros(len(sender_sets), dtype=torch.bool)
    for i, senders in enumerate(sender_sets):
        for sender in senders:
            if sender == "embed":
                embed[i] = True
            elif isinstance(sender, tuple) and 0 <= sender[0] < n_layers and 0 <= sender[1] < n_heads:
                heads[i, sender[0], sender[1]] = True
            else:
                raise ValueError(f"bad sender {sender!r}: expected (layer, head) within the model or 'embed'")
    device = model.cfg.device
    return _SenderMasks(heads.to(device), embed.to(device))


def _path_patch_variants(
    model: HookedTransformer,
    base_tokens: Int[Tensor, "batch pos"],
    source: Source,
    senders: _SenderMasks,
    receivers: Sequence[Head] | Literal["logits"],
    metric: Metric,
    receiver_input: QKV | Sequence[QKV],
    max_batch: int,
    progress: bool,
) -> Float[Tensor, " variants"]:
    inputs = [receiver_input] if isinstance(receiver_input, str) else list(receiver_input)
    if any(i not in ("q", "k", "v") for i in inputs):
        raise ValueError(f"receiver_input must be 'q', 'k', 'v' or a sequence of them, got {receiver_input!r}")
    if model.cfg.n_key_value_heads is not None and {"k", "v"} & set(inputs):
        raise ValueError("path patching into k/v of grouped-query attention is not supported")
    recv = _receiver_masks(model, receivers)
    z_names = [hook_name("z", layer) for layer in range(model.cfg.n_layers)]
    with torch.no_grad():
        base = BaseRun.prepare(model, base_tokens, z_names)
        src_names = z_names + ([hook_name("resid_pre", 0)] if bool(senders.embed.any()) else [])
        sources = _source_activations(model, source, src_names, base)
        n = senders.heads.shape[0]
        out = torch.zeros(n, device=model.cfg.device)
        variant_chunks = list(_path_chunks(senders, variants_per_chunk(max_batch, base.batch)))
        for rows in tqdm(variant_chunks, disable=not progress, desc="path patching"):
            stage1 = _PathStage1(base, sources, senders, rows, recv, inputs)
            out[rows.start : rows.stop] = (
                stage1.logits_metric(metric) if recv is None else stage1.receivers_metric(metric)
            )
    return out


def _path_chunks(senders: _SenderMasks, per_chunk: int) -> Iterator[range]:
    """Chunks of consecutive variants sharing their first changed layer (so they share a prefix)."""
    n = senders.heads.shape[0]
    first = [senders.first_layer(range(i, i + 1)) for i in range(n)]
    start = 0
    for i in range(1, n + 1):
        if i == n or first[i] != first[start] or i - start == per_chunk:
            yield range(start, i)
            start = i


def _receiver_masks(
    model: HookedTransformer, receivers: Sequence[Head] | Literal["logits"]
) -> Bool[Tensor, "layer head"] | None:
    if isinstance(receivers, str):
        if receivers != "logits":
            raise ValueError(f"receivers must be a list of (layer, head) or 'logits', got {receivers!r}")
        return None
    mask = torch.zeros(model.cfg.n_layers, model.cfg.n_heads, dtype=torch.bool)
    for layer, head in receivers:
        if not (0 <= layer < model.cfg.n_layers and 0 <= head < model.cfg.n_heads):
            raise ValueError(f"receiver {(layer, head)} is outside the model")
        mask[layer, head] = True
    if not mask.any():
        raise ValueError("receivers is empty")
    return mask.to(model.cfg.device)


class _PathStage1:
    """Stage 1 of path patching for a chunk of variants; records what the receivers read."""

    def __init__(
        self,
        base: BaseRun,
        sources: dict[str, Tensor],
        senders: _SenderMasks,
        rows: range,
        receivers: Bool[Tensor, "layer head"] | None,
        inputs: Sequence[str],
    ) -> None:
        self.base, self.sources, self.receivers, self.inputs = base, sources, receivers, inputs
        self.heads = senders.heads[rows.start : rows.stop]
        self.variants = len(rows)
        n_layers = base.model.cfg.n_layers
        self.stop = n_layers if receivers is None else int(receivers.any(-1).nonzero()[-1]) + 1
        # A sender at or after the last receiver layer changes nothing the receivers read.
        self.start = min(senders.first_layer(rows), self.stop - 1)
        self.resid = self._initial_resid(senders.embed[rows.start : rows.stop])
        self.recorded: dict[str, Tensor] = {}

    def _initial_resid(self, embed_mask: Bool[Tensor, " variants"]) -> Float[Tensor, "rows pos d_model"]:
        resid = fold(self.base.resid_pre(self.start), self.variants)
        if self.start == 0 and bool(embed_mask.any()):
            folded = resid.view(self.variants, self.base.batch, *resid.shape[1:])
            source = self.sources[hook_name("resid_pre", 0)]
            resid = torch.where(embed_mask[:, None, None, None], source[None], folded).view(resid.shape)
        return resid

    def _hooks(self) -> list[Hook]:
        hooks: list[Hook] = []
        for layer in range(self.start, self.stop):
            z = hook_name("z", layer)
            # Senders from the source, every other head frozen to the base run.
            mask = self.heads[:, layer][:, None, :, None]  # [variants, pos=1, head, d_head=1]
            hooks.append((z, _frozen_hook(mask, self.sources[z], self.base.acts[z])))
        if self.receivers is not None:
            for layer in self.receivers.any(-1).nonzero().flatten().tolist():
                hooks += [(hook_name(i, layer), self._record) for i in self.inputs]
        return hooks

    def _record(self, act: Tensor, hook: HookPoint) -> None:
        self.recorded[hook.name] = act.detach()

    def logits_metric(self, metric: Metric) -> Float[Tensor, " variants"]:
        """Receivers = logits: the metric of the stage-1 run itself."""
        return _evaluate(self.base, self.resid, self.start, self._hooks(), metric)

    def receivers_metric(self, metric: Metric) -> Float[Tensor, " variants"]:
        """Run stage 1 to the last receiver layer, then the base run with the receivers' inputs patched."""
        assert self.receivers is not None
        self.base.run(self.resid, self.start, self._hooks(), stop=self.stop)
        first = int(self.receivers.any(-1).nonzero()[0])
        hooks: list[Hook] = []
        for name, recorded in self.recorded.items():
            layer = layer_of(name)
            mask = self.receivers[layer][None, None, :, None]  # [variants=1, pos=1, head, d_head=1]
            hooks.append((name, _recorded_hook(mask, recorded)))
        return _evaluate(self.base, fold(self.base.resid_pre(first), self.variants), first, hooks, metric)


def _frozen_hook(
    sender_mask: Bool[Tensor, "variants 1 head 1"], source: Tensor, base: Tensor
) -> Callable[[Tensor, HookPoint], Tensor]:
    """z = source for the variant's senders, base-run z for every other head (ignores the computed z)."""

    def hook(act: Tensor, hook: HookPoint) -> Tensor:
        return torch.where(sender_mask[:, None], source[None], base[None]).view(act.shape)

    return hook


def _recorded_hook(
    receiver_mask: Bool[Tensor, "1 1 head 1"], recorded: Tensor
) -> Callable[[Tensor, HookPoint], Tensor]:
    """Receiver heads' q/k/v from stage 1 (same folded layout), other heads as computed."""

    def hook(act: Tensor, hook: HookPoint) -> Tensor:
        return torch.where(receiver_mask, recorded, act)

    return hook
