"""The field's circuit-discovery methods as head scorers: EAP with integrated gradients and head-level ACDC.

Both have the head-scorer signature `fn(model, batch, direction) -> Tensor[n_layers, n_heads]` (the
baselines registry), with the project's vocabulary (`runs`): the **base run** is the run intervened on, the
**source run** where patched values come from; denoising = base corrupted, source clean.

- `eap_ig_scores`: edge attribution patching with integrated gradients at head level (Hanna et al. 2024,
  "Have faith in faithfulness"; Marks et al. 2024), in two interpolations — the inputs (Hanna et al.) or
  every block's output (what auto-circuit 1.0.1's `mask_gradient_prune_scores(integrated_grad_samples=…)`
  computes on its node-level graph). See the function for the exact definitions.
- `acdc`: head-level ACDC (Conmy et al. 2023) in the *circuit* notion (heads outside the set keep the base
  run's z; the set recomputes on the source input); `acdc_head_scores` returns its kept set as 0/1.

`experiments/peers/compare_auto_circuit.py` checks both against auto-circuit 1.0.1 (its own venv).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ioi_superpose.data.answer_metrics import answer_values
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.metric import answer_metric
from ioi_superpose.engine.patch import HeadWeights
from ioi_superpose.engine.runs import BaseRun, capture, end_logits, head_z, patched_end_logits, unembed_at_end
from ioi_superpose.engine.vocabulary import Direction, Head, base_and_source, check_direction, hook_name, z_names
from ioi_superpose.errors import ConfigError
from ioi_superpose.models import HookedTransformer, HookPoint

Interpolation = Literal["inputs", "activations"]
ACDCMetric = Literal["kl", "logit_diff"]

DEFAULT_STEPS = 5
"""Gradient evaluations of EAP-IG (Hanna et al. 2024 find 5 enough on IOI-sized tasks)."""
DEFAULT_TAU = 0.01
"""ACDC threshold on the metric's increase (KL in nats by default)."""


# --------------------------------------------------------------------------------------------------
# EAP with integrated gradients.


def interpolation_points(steps: int, endpoint: bool) -> list[float]:
    """α of each gradient evaluation: j/steps for j < steps (left Riemann sum; steps = 1 is plain attribution
    patching), or with `endpoint` j/(steps − 1) for j < steps, both ends included (auto-circuit's grid)."""
    if steps < 1 or (endpoint and steps < 2):
        raise ConfigError(f"steps must be >= 1 (>= 2 with endpoint=True), got steps={steps}, endpoint={endpoint}.")
    return [j / (steps - 1) for j in range(steps)] if endpoint else [j / steps for j in range(steps)]


def eap_ig_scores(
    model: HookedTransformer,
    batch: ContrastBatch,
    direction: Direction = "denoising",
    *,
    steps: int = DEFAULT_STEPS,
    interpolation: Interpolation = "inputs",
    endpoint: bool = False,
    normalise: bool = True,
) -> Float[Tensor, "n_layers n_heads"]:
    """EAP-IG score of every head: an estimate of the change in M when the head's z is patched from the
    base run to the source run, every position at once.

    M is the mean over prompts of the task's metric at END (`batch.metric`: the logit difference correct − incorrect,
    or the probability difference), divided, when
    `normalise`, by M(source run) − M(base run) (so scores are in units of the base → source gap, like the
    project's activation-patching effects). With α_j the points of `interpolation_points(steps, endpoint)`:

    - `interpolation="inputs"` (Hanna et al. 2024, `get_scores_eap_ig` of their EAP-IG code: the same left
      grid j/steps from the base input): the forward runs on the embeddings (the residual stream before
      block 0) e(α) = e_base + α (e_source − e_base), and

          score[l, h] = Σ_{prompt, pos, d} (z_source − z_base)[l, h] · mean_j ∂M/∂z[l, h] |_{e(α_j)}

      (at head level: the sum of their edge scores over the head's outgoing edges, since ∂M/∂z collects
      every path out of the head).
    - `interpolation="activations"` (auto-circuit's "Integrated Edge Gradients" on its node-level graph,
      where every incoming edge of every residual-stream node has the same mask α): the stream after each
      attention layer and after each MLP becomes r(α) = (1 − α) F(r_below(α)) + α r_source (F the sublayer
      plus its skip connection, applied to the interpolated stream below), and

          score[l, h] = Σ_{prompt, pos} ((z_source − z(α_j))[l, h] W_O[l, h]) · mean_j ∂M/∂r_l |_{α_j},

      r_l the stream right after attention layer l (`resid_mid`, or `resid_post` without MLPs) and z(α_j)
      the head's own z in that interpolated forward: the mask gradient of auto-circuit's edge head → r_l.
      auto-circuit with `integrated_grad_samples=k`, `grad_function="logit"`, `answer_function="avg_diff"`,
      its clean batch = our base tokens and its corrupt batch = our source tokens returns
      −(k + 1) · gap · score for `steps=k + 1, endpoint=True` (its loss is −M unnormalised, and it sums
      over its k + 1 points where we average).

    At α = 0 both are plain attribution patching (`attribution_patching.attribution_patch` of z, normalised metric), so
    `steps=1` reproduces it. On a model whose metric is linear in z (one attention layer, no LayerNorm) every
    gradient is the same constant and the score is the exact single-head patching effect at any `steps`.
    """
    check_direction(direction)
    if interpolation not in ("inputs", "activations"):
        raise ConfigError(f"interpolation must be 'inputs' or 'activations', got {interpolation!r}.")
    points = interpolation_points(steps, endpoint)
    device = model.cfg.device
    batch = batch.to(device)
    base_tokens, source_tokens = base_and_source(batch.clean_tokens, batch.corrupted_tokens, direction)
    n_layers = model.cfg.n_layers
    start = hook_name("resid_pre", 0)
    with torch.no_grad():
        base_acts = capture(model, base_tokens, [*z_names(model), start])
        source_acts = capture(model, source_tokens, [*z_names(model), start, *interpolated_streams(model)])
        gap = 1.0
        if normalise:
            base_m, source_m = (
                float(_mean_metric(end_logits(model, tokens, batch.end_pos, batch.answer_tokens, batch.metric), batch))
                for tokens in (base_tokens, source_tokens)
            )
            gap = source_m - base_m
            if abs(gap) < 1e-6:
                raise ConfigError(
                    f"The source and base runs have the same mean {batch.metric}: a normalised EAP-IG score is "
                    "undefined. Pass normalise=False, or prompts whose clean and corrupted answers differ."
                )
    total = torch.zeros(n_layers, model.cfg.n_heads, device=device)
    for alpha in points:
        if interpolation == "inputs":
            total += _inputs_step(model, batch, base_tokens, base_acts, source_acts, alpha)
        else:
            total += _activations_step(model, batch, base_tokens, source_acts, alpha)
    return (total / (len(points) * gap)).detach()


def _mean_metric(answer_values: Float[Tensor, "batch k"], batch: ContrastBatch) -> Float[Tensor, ""]:
    """The batch's mean metric of its answer values at END (its weights and metric: `engine.metric.answer_metric`)."""
    return answer_metric(answer_values, batch.answer_weights, batch.metric).mean()


def _metric_with_hooks(
    model: HookedTransformer, batch: ContrastBatch, tokens: Int[Tensor, "batch pos"], hooks: list
) -> Float[Tensor, ""]:
    """The batch's mean metric at END of a forward of `tokens` with `hooks` (under grad)."""
    with model.hooks(fwd_hooks=hooks):
        final = model(tokens, stop_at_layer=model.cfg.n_layers)
    return _mean_metric(unembed_at_end(model, final, batch.end_pos, batch.answer_tokens, batch.metric), batch)


def _inputs_step(
    model: HookedTransformer,
    batch: ContrastBatch,
    base_tokens: Int[Tensor, "batch pos"],
    base_acts: dict[str, Tensor],
    source_acts: dict[str, Tensor],
    alpha: float,
) -> Float[Tensor, "n_layers n_heads"]:
    """Σ (z_source − z_base) · ∂M/∂z at inputs e_base + α (e_source − e_base), per head."""
    start = hook_name("resid_pre", 0)
    embedded = base_acts[start] + alpha * (source_acts[start] - base_acts[start])
    leaves: dict[str, Tensor] = {}

    def set_input(act: Tensor, hook: HookPoint) -> Tensor:
        return embedded

    def add_leaf(act: Tensor, hook: HookPoint) -> Tensor:
        # act + zero leaf: the leaf's gradient is ∂M/∂z and paths through z to later heads stay intact.
        leaves[hook.name] = torch.zeros_like(act, requires_grad=True)
        return act + leaves[hook.name]

    names = z_names(model)
    with torch.enable_grad():
        value = _metric_with_hooks(model, batch, base_tokens, [(start, set_input), *[(n, add_leaf) for n in names]])
        grads = torch.autograd.grad(value, [leaves[n] for n in names])
    # [batch, pos, head, d_head] summed over all but the head axis.
    return torch.stack([((source_acts[n] - base_acts[n]) * g).sum((0, 1, 3)) for n, g in zip(names, grads)])


def interpolated_streams(model: HookedTransformer) -> list[str]:
    """The residual-stream points auto-circuit's node-level graph patches, in order: after each attention layer
    (`resid_mid`, when the block has an MLP) and after each block (`resid_post`)."""
    mid = [] if model.cfg.attn_only else ["resid_mid"]
    return [hook_name(point, layer) for layer in range(model.cfg.n_layers) for point in (*mid, "resid_post")]


def _activations_step(
    model: HookedTransformer,
    batch: ContrastBatch,
    base_tokens: Int[Tensor, "batch pos"],
    source_acts: dict[str, Tensor],
    alpha: float,
) -> Float[Tensor, "n_layers n_heads"]:
    """Σ ((z_source − z(α)) W_O) · ∂M/∂r with the residual stream after every attention layer and every MLP
    interpolated towards the source run's, r the point right after the head's attention layer."""
    leaves: dict[str, Tensor] = {}
    z_alpha: dict[str, Tensor] = {}

    def interpolate(act: Tensor, hook: HookPoint) -> Tensor:
        leaves[hook.name] = torch.zeros_like(act, requires_grad=True)
        return (1 - alpha) * act + alpha * source_acts[hook.name] + leaves[hook.name]

    def record(act: Tensor, hook: HookPoint) -> None:
        z_alpha[hook.name] = act.detach()

    streams = interpolated_streams(model)
    hooks = [*[(n, record) for n in z_names(model)], *[(n, interpolate) for n in streams]]
    after_attention = [hook_name("resid_post" if model.cfg.attn_only else "resid_mid", layer)
                       for layer in range(model.cfg.n_layers)]  # fmt: skip
    with torch.enable_grad():
        value = _metric_with_hooks(model, batch, base_tokens, hooks)
        grads = torch.autograd.grad(value, [leaves[n] for n in after_attention])
    scores = []
    for layer, (name, grad) in enumerate(zip(z_names(model), grads)):
        delta = source_acts[name] - z_alpha[name]  # [batch, pos, head, d_head]
        written = torch.einsum("bphd,hdm->bphm", delta, model.blocks[layer].attn.W_O)
        scores.append(torch.einsum("bphm,bpm->h", written, grad))
    return torch.stack(scores)


# --------------------------------------------------------------------------------------------------
# Head-level ACDC, circuit notion.


def backward_order(n_layers: int, n_heads: int) -> list[Head]:
    """ACDC's visiting order: from the output backwards — layers last to first, and within a layer heads
    from the highest index to the lowest (the reverse of the row-major (layer, head) order)."""
    return [(layer, head) for layer in reversed(range(n_layers)) for head in reversed(range(n_heads))]


@dataclass
class ACDCResult:
    kept: Bool[Tensor, "n_layers n_heads"]
    """The circuit: heads not removed."""
    order: list[Head]
    """Heads in the order they were visited."""
    increase: Float[Tensor, "n_layers n_heads"]
    """The metric's increase when each head was tentatively removed (given the removals before it)."""
    metric: float
    """The metric of the returned circuit (0 = the source run itself)."""
    tau: float

    @property
    def heads(self) -> list[Head]:
        return [(int(layer), int(head)) for layer, head in self.kept.nonzero().tolist()]


@torch.no_grad()
def acdc(
    model: HookedTransformer,
    batch: ContrastBatch,
    direction: Direction = "denoising",
    *,
    tau: float = DEFAULT_TAU,
    metric: ACDCMetric = "kl",
    order: Sequence[Head] | None = None,
) -> ACDCResult:
    """Head-level ACDC (Conmy et al. 2023) in the circuit notion.

    A circuit K is evaluated as the source run's input with every head outside K holding the base run's z
    (all positions) and the heads in K recomputing from whatever reaches them — so a circuit must hold
    whole paths. Denoising: input clean, heads outside K corrupted (ACDC's own setting: clean run, corrupted
    ablations). Noising: input corrupted, heads outside K clean. Through the engine this is
    `patched_end_logits` on the source tokens with the base run's z as the patched value and weight 1 on
    the heads outside K: the project's cut notion (patch a set, the rest recompute) applied to the
    complement of K in the opposite direction. It is auto-circuit's node-level ACDC restricted to head
    nodes (removing its edge head → residual stream gives the head its corrupt-run output while every
    other node recomputes); experiments/peers/compare_auto_circuit.py checks the kept sets are equal.

    Start from every head (the source run, metric 0); visit heads in `order` (default `backward_order`:
    output backwards); tentatively remove a head; keep it removed when the metric rises by less than `tau`
    (`new − current < tau`, strictly, as ACDC and auto-circuit do; a fall always removes), and then take
    the new value as current. `metric`:

    - "kl" (auto-circuit's default `faithfulness_target="kl_div"`): mean over prompts of
      KL(p_source ‖ p_circuit) of the full next-token distributions at END, in nats;
    - "logit_diff": |M(circuit) − M(source)| / |M(source) − M(base)|, M the mean of the task's metric at END (the
      logit difference, or for a `prob_diff` task the probability difference: `batch.metric`).

    With tau = 0 only removals that change nothing (or lower the metric) stick; a tau above every increase
    removes every head.
    """
    check_direction(direction)
    if metric not in ("kl", "logit_diff"):
        raise ConfigError(f"metric must be 'kl' or 'logit_diff', got {metric!r}.")
    if not tau >= 0:  # also catches NaN
        raise ConfigError(f"tau must be >= 0 (the largest metric increase a removal may cause), got {tau}.")
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    order = list(backward_order(n_layers, n_heads) if order is None else order)
    inside = all(0 <= layer < n_layers and 0 <= head < n_heads for layer, head in order)
    if len(order) != len(set(order)) or not inside:
        raise ConfigError(f"order must list distinct (layer, head) pairs of the model's {n_layers}x{n_heads} heads.")
    batch = batch.to(model.cfg.device)
    base_tokens, source_tokens = base_and_source(batch.clean_tokens, batch.corrupted_tokens, direction)
    frozen_z, _ = head_z(model, base_tokens)  # what a removed head holds
    run = BaseRun.prepare(model, source_tokens)  # the circuit runs on the source input
    score = _acdc_metric(model, batch, base_tokens, source_tokens, metric)

    def evaluate(removed: Tensor) -> float:
        logits = patched_end_logits(run, frozen_z, HeadWeights(removed.float()), batch.end_pos, None)[0]
        return score(logits)

    removed = torch.zeros(n_layers, n_heads, dtype=torch.bool)
    increase = torch.full((n_layers, n_heads), float("nan"))
    current = 0.0
    for layer, head in order:
        trial = removed.clone()
        trial[layer, head] = True
        value = evaluate(trial)
        increase[layer, head] = value - current
        if value - current < tau:
            removed, current = trial, value
    return ACDCResult(kept=~removed, order=order, increase=increase, metric=current, tau=tau)


def _acdc_metric(
    model: HookedTransformer,
    batch: ContrastBatch,
    base_tokens: Int[Tensor, "batch pos"],
    source_tokens: Int[Tensor, "batch pos"],
    metric: ACDCMetric,
) -> Callable[[Float[Tensor, "batch vocab"]], float]:
    """The metric of a circuit's END logits (full vocabulary) against the source run's."""
    source_logits = end_logits(model, source_tokens, batch.end_pos)
    answers = batch.answer_tokens.to(source_logits.device)
    if metric == "kl":
        target = source_logits.log_softmax(-1)

        def kl(logits: Tensor) -> float:
            return float(torch.nn.functional.kl_div(logits.log_softmax(-1), target, reduction="sum", log_target=True)
                         / logits.shape[0])  # fmt: skip

        return kl
    source_m = float(_mean_metric(answer_values(batch.metric, source_logits, answers), batch))
    base_m = float(_mean_metric(end_logits(model, base_tokens, batch.end_pos, answers, batch.metric), batch))
    if abs(source_m - base_m) < 1e-6:
        raise ConfigError(
            f"ACDC with metric='logit_diff' needs source and base runs whose mean {batch.metric} differ."
        )

    def normalised_change(logits: Tensor) -> float:
        return abs(float(_mean_metric(answer_values(batch.metric, logits, answers), batch)) - source_m) / abs(
            source_m - base_m
        )

    return normalised_change


def acdc_head_scores(
    model: HookedTransformer, batch: ContrastBatch, direction: Direction = "denoising"
) -> Float[Tensor, "n_layers n_heads"]:
    """ACDC as a head scorer: 1 for the heads of the circuit found at `DEFAULT_TAU` (KL), 0 elsewhere."""
    return acdc(model, batch, direction).kept.float()
