"""Attribution patching: (source − base) · ∂metric/∂activation, one forward and one backward for every index at
once, the linear estimate of exact activation patching, and its agreement with it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Int
from torch import Tensor
from torchmetrics.functional import pearson_corrcoef

from ioi_superpose.baselines.sweep import (
    Activation,
    Metric,
    Source,
    check_same_shape,
    evaluate,
    index_axes_of,
    source_activations,
)
from ioi_superpose.engine.runs import BaseRun
from ioi_superpose.engine.vocabulary import hook_name
from ioi_superpose.models import HookedTransformer, HookPoint


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
    index_axes = index_axes_of(activation, by_pos)
    names = [hook_name(activation, layer) for layer in range(model.cfg.n_layers)]
    with torch.no_grad():
        base = BaseRun.prepare(model, base_tokens)
        sources = source_activations(model, source, names, base)
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
        value = evaluate(base, base.embed, 0, [(n, add_leaf) for n in names], metric)[0]
        grads = torch.autograd.grad(value, [leaves[n] for n in names])
    return acts, dict(zip(names, grads))


def pearson(a: Tensor, b: Tensor) -> float:
    """Pearson correlation of two flattened tensors (e.g. attribution vs exact patching)."""
    check_same_shape(a, b, "first tensor", "second tensor")
    return float(pearson_corrcoef(a.flatten().double(), b.flatten().double()))


def attribution_agreement(attribution: Tensor, exact: Tensor) -> float:
    """How well attribution patching ranks like exact patching: Pearson r of the flattened effects.

    Exact results may be raw metric values (as returned by the sweeps): r ignores the constant offset.
    """
    return pearson(attribution, exact)
