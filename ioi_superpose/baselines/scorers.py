"""The head scorers: one function per baseline, `scorer(model, batch, direction) -> [layer, head]`, by name.

One registry (`SCORERS`) serves the baseline callbacks of a run (`baselines/callbacks.py`) and the ground-truth
benchmark (`groundtruth/benchmark.py`), so a baseline is computed one way wherever it is compared, and a new baseline
is one entry: its function, its benchmark label, its heatmap title. The patching
scores are normalised effects in the run's direction: 0 = the base run, 1 = the source run (`patching_metric`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from jaxtyping import Float
from torch import Tensor

from ioi_superpose.baselines.activation_patching import activation_patch
from ioi_superpose.baselines.attribution_patching import attribution_patch
from ioi_superpose.baselines.circuit import acdc_head_scores, eap_ig_scores
from ioi_superpose.baselines.logit_attribution import direct_logit_attribution
from ioi_superpose.baselines.path_patching import path_patch_sweep
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.ablations import Ablation, ablated_reference, check_ablation
from ioi_superpose.engine.metric import ContrastMetric
from ioi_superpose.engine.patch import HeadWeights
from ioi_superpose.engine.rest import Rest, check_rest, run_tokens, with_rest
from ioi_superpose.engine.runs import BaseRun, Reference, patched_end_logits, reference_runs
from ioi_superpose.engine.vocabulary import Direction, base_and_source, hook_name
from ioi_superpose.models import HookedTransformer


def patching_metric(model: HookedTransformer, batch: ContrastBatch, direction: Direction) -> ContrastMetric:
    """Normalised logit difference at END: 0 = the base run, 1 = the source run."""
    reference = reference_runs(
        model, batch.clean_tokens, batch.corrupted_tokens, batch.end_pos, batch.answer_tokens, direction,
        answer_weights=batch.answer_weights, metric=batch.metric,
    )
    return metric_of(batch, reference)


def metric_of(batch: ContrastBatch, reference: Reference) -> ContrastMetric:
    """The batch's patching metric normalised between `reference`'s base (0) and source (1) runs."""
    base = float(reference.measure(reference.base_answer_logits).mean())
    source = float(reference.measure(reference.source_answer_logits).mean())
    return ContrastMetric(batch.answer_tokens, batch.end_pos, corrupted_value=base, clean_value=source,
                          answer_weights=batch.answer_weights, metric=batch.metric)  # fmt: skip


def activation_patching(
    model: HookedTransformer,
    batch: ContrastBatch,
    direction: Direction,
    metric: ContrastMetric | None = None,
    *,
    ablation: Ablation = "corrupted",
    rest: Rest = "free",
) -> Float[Tensor, "layer head"]:
    """Exact per-head activation patching of z (all positions): the normalised effect of each head alone.

    `ablation` (`ioi_superpose.engine.ablations`): the source z of a *noising* patch — `corrupted` (the paired
    prompt), `resample`, `mean` or `zero`; for the last three the default metric reads 1 for the clean run with
    every head ablated (`circuit.ablated_reference`, as `--model.ablation`). Refused with `direction="denoising"`:
    denoising patches the clean run's z into the corrupted run, and an ablation is what a removed head's z becomes.
    `rest="frozen"` (`ioi_superpose.engine.rest`): each head alone as a circuit — the source run with every
    other head held at its base-run z (`metric` is then not used: the effect is normalised by the two runs);
    it takes only the corrupted source.
    """
    check_ablation(ablation, direction, check_rest(rest))
    if rest == "frozen":
        return _single_head_circuits(model, batch, direction)
    if ablation == "corrupted":
        base_tokens, source_tokens = base_and_source(batch.clean_tokens, batch.corrupted_tokens, direction)
        return activation_patch(model, base_tokens, source_tokens, metric or patching_metric(model, batch, direction))
    reference = ablated_reference(model, batch, ablation)
    metric = metric or metric_of(batch, reference)
    source_z = {hook_name("z", layer): z for layer, z in enumerate(reference.source_z)}
    return activation_patch(model, batch.clean_tokens, source_z, metric)


def _single_head_circuits(
    model: HookedTransformer, batch: ContrastBatch, direction: Direction
) -> Float[Tensor, "layer head"]:
    """One folded run of every one-head circuit (`FrozenRest` of the one-hot head weights)."""
    reference = reference_runs(model, batch.clean_tokens, batch.corrupted_tokens, batch.end_pos, batch.answer_tokens,
                               direction, rest="frozen", answer_weights=batch.answer_weights,
                               metric=batch.metric)  # fmt: skip
    base_tokens, source_tokens = base_and_source(batch.clean_tokens, batch.corrupted_tokens, direction)
    run = BaseRun.prepare(model, run_tokens(base_tokens, source_tokens, "frozen"))
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    variants = with_rest(HeadWeights.single_heads(n_layers, n_heads), "frozen")
    logits = patched_end_logits(run, reference.source_z, variants, batch.end_pos, batch.answer_tokens,
                                metric=batch.metric)  # fmt: skip
    base = float(reference.measure(reference.base_answer_logits).mean())
    source = float(reference.measure(reference.source_answer_logits).mean())
    return ((reference.measure(logits).mean(-1) - base) / (source - base)).view(n_layers, n_heads)


def attribution_patching(
    model: HookedTransformer, batch: ContrastBatch, direction: Direction, metric: ContrastMetric | None = None
) -> Float[Tensor, "layer head"]:
    """Attribution patching: one forward and one backward for all heads (the linear estimate of the above)."""
    base_tokens, source_tokens = base_and_source(batch.clean_tokens, batch.corrupted_tokens, direction)
    # attribution_patch sums over the batch; the metric is a batch mean, so this is its estimate.
    return attribution_patch(model, base_tokens, source_tokens, metric or patching_metric(model, batch, direction))


def path_patching(
    model: HookedTransformer,
    batch: ContrastBatch,
    direction: Direction,
    receivers: list[tuple[int, int]] | Literal["logits"] = "logits",
    receiver_input: Literal["q", "k", "v"] = "q",
) -> Float[Tensor, "layer head"]:
    """Exact path patching from each head to `receivers` (heads' q/k/v inputs, or the logits)."""
    base_tokens, source_tokens = base_and_source(batch.clean_tokens, batch.corrupted_tokens, direction)
    return path_patch_sweep(
        model, base_tokens, source_tokens, receivers, patching_metric(model, batch, direction),
        receiver_input=receiver_input,
    )  # fmt: skip


def direct_logit_attribution_of_heads(
    model: HookedTransformer, batch: ContrastBatch, direction: Direction
) -> Float[Tensor, "layer head"]:
    """Each head's direct contribution to the clean logit difference at END (the direction does not apply)."""
    return direct_logit_attribution(
        model, batch.clean_tokens, batch.answer_tokens, batch.end_pos, batch.answer_weights, batch.metric
    ).heads


@dataclass(frozen=True)
class Scorer:
    """One baseline of the registry: its head score and how it is shown and compared."""

    score: Callable[..., Float[Tensor, "layer head"]]
    """`score(model, batch, direction, **options) -> [layer, head]`, larger = more important."""
    label: str
    """Its name in the benchmark's rows (`groundtruth/benchmark.py`)."""
    title: str | None = None
    """Its heatmap's title in a run (None: its registry name; the run adds the direction and the prompts)."""
    unit: str = "score"
    """What its heatmap's colour bar measures, with the unit."""
    top_k: bool = False
    """The benchmark also takes its k best heads, k chosen leave-one-case-out (a `top-k` row)."""
    notion: bool = False
    """It answers in the run's notion (`rest=`, `ablation=` keywords): exact activation patching."""


SCORERS: dict[str, Scorer] = {
    "activation_patching": Scorer(activation_patching, "activation patching", "Activation patching: each head alone",
                                  "recovery (0: base, 1: source)", top_k=True, notion=True),
    "attribution_patching": Scorer(attribution_patching, "attribution patching",
                                   "Attribution patching (linear estimate of each head alone)", "estimated recovery"),
    "eap_ig": Scorer(eap_ig_scores, "EAP-IG", "EAP-IG per head", "EAP-IG score (normalised effect)"),
    "direct_logit_attribution": Scorer(direct_logit_attribution_of_heads, "direct logit attribution",
                                       "Direct logit attribution per head", "direct effect on IO − S logit"),
    "path_patching": Scorer(path_patching, "path patching → logits", "Path patching: each head's path to the receivers",
                            "recovery via the path"),
    "acdc": Scorer(acdc_head_scores, "ACDC (heads, τ 0.01)", "Heads ACDC keeps", "kept (1) or not (0)"),
}  # fmt: skip
"""The baselines by name: the names are the run's baseline summary keys and figure stems (`baselines/callbacks.py`
configures them), and the benchmark scores each (`groundtruth/benchmark.py`). A new baseline is one entry here."""
