"""Exact path patching (two-stage, IOI-paper convention): the effect of each sender's path to the receivers (heads'
q/k/v inputs, or the logits), with every other path held at the base run."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Union

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from ioi_superpose.baselines.sweep import Metric, Source, evaluate, source_activations
from ioi_superpose.engine.runs import DEFAULT_MAX_ROWS, BaseRun, fold, variants_per_chunk
from ioi_superpose.engine.vocabulary import Head, Hook, hook_name, layer_of
from ioi_superpose.models import HookedTransformer, HookPoint

QKV = Literal["q", "k", "v"]
Sender = Union[Head, Literal["embed"]]


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
        sources = source_activations(model, source, src_names, base)
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
        return evaluate(self.base, self.resid, self.start, self._hooks(), metric)

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
        return evaluate(self.base, fold(self.base.resid_pre(first), self.variants), first, hooks, metric)


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
