"""The baselines of a run, computed by one pure function: `compute_baselines(model, sets, direction, specs)`.

A spec says what to compute (`ScoreSpec`: a head score of the registry, `baselines/scorers.py`;
`CombinationsSpec`: the top-k curves of every ranking); a result holds what was computed, α-independent
(`HeadScores`, `CombinationCurves`). Their figures are drawn by `baselines/figures.py`, their comparison with a
learned α is written by `results/baselines.py`. The baseline callback of a fit (`baselines/callbacks.py`) and the
members of a batched fit (`cli/train_batched.py`) call the same function, the latter once per group: the baselines
do not depend on α, and the members of a group share model, prompts and direction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from ioi_superpose.baselines.attribution_patching import attribution_agreement
from ioi_superpose.baselines.logit_attribution import LogitAttribution, direct_logit_attribution
from ioi_superpose.baselines.scorers import SCORERS, activation_patching, attribution_patching, patching_metric
from ioi_superpose.baselines.top_k import attention_to_io, attention_weighted_alpha, top_k_curves, uniform_top_k_alphas
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.data.ioi import IOIBatch
from ioi_superpose.data.splits import VAL_SET
from ioi_superpose.engine.ablations import Ablation, check_ablation
from ioi_superpose.engine.rest import Rest
from ioi_superpose.engine.vocabulary import Direction
from ioi_superpose.errors import ConfigError
from ioi_superpose.fitting.fitted import FittedCombination
from ioi_superpose.models import HookedTransformer


@dataclass(frozen=True)
class ScoreSpec:
    """A head score of the registry (`SCORERS[name]`) on the first `n_prompts` validation prompts."""

    name: str
    """The scorer's name in `SCORERS`; also the result's summary key and figure stem."""
    n_prompts: int = 64
    title: str | None = None
    """The heatmap's title (None: the registry's for the name)."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Further keyword arguments of the scorer (path patching: `receivers`, `receiver_input`)."""

    def __post_init__(self) -> None:
        if self.name not in SCORERS:
            raise ConfigError(f"no head scorer {self.name!r}; the registry (baselines/scorers.py) has "
                              f"{sorted(SCORERS)}.")  # fmt: skip


@dataclass(frozen=True)
class CombinationsSpec:
    """The top-k curves of every ranking of the same call (see `CombinationCurves`)."""

    max_heads: int = 20
    """Largest k evaluated."""
    n_prompts: int = 64
    """Validation prompts the attention to the IO (and an absent activation patching) is computed on."""
    curve_prompts: int | None = None
    """Prompts of each set the curves are computed on (None: all, as the learned recoveries in summary.json)."""


BaselineSpec = ScoreSpec | CombinationsSpec


@dataclass
class HeadScores:
    """One head score [layer, head] and what came with it."""

    name: str
    title: str
    effect: Float[Tensor, "n_layers n_heads"]
    extras: dict[str, Any] = field(default_factory=dict)
    """Added to the summary as they are: attribution patching's Pearson r with exact patching, direct logit
    attribution's logit difference and its decomposition per component."""
    logit_attribution: LogitAttribution | None = None
    """Direct logit attribution only: the whole decomposition (the logit lens and per-component figures)."""
    label: str = "score"
    """What the heatmap's colour bar measures."""
    n_prompts: int | None = None
    """The validation prompts the score was computed on."""


@dataclass
class CombinationCurves:
    """Hand-made combinations against the number of heads k (the Pareto fronts the learned α is drawn
    against), on validation and on every test set:

    - one uniform curve per ranking: α = 1 on the k heads of largest score, for every head score computed in
      the same call (single-head activation patching is computed when no spec asked for it) and
      `attention_to_io`. Scores are signed: a head whose patch moves the answer the wrong way ranks last;
    - `attention_weighted`: the k heads that attend most from END to the IO (mean over the clean prompts),
      each with α = its attention divided by the largest attention among the k (`top_k.attention_weighted_alpha`).

    Rankings and attention come from the validation prompts (like the learned α, they are not refitted per
    set); each set's curves are the recovery of those α on the set's first `curve_prompts` prompts (all by
    default: the prompts summary.json's learned recoveries use, so the learned points of a Pareto front and
    its curves are measured on the same prompts), null where the set's clean − corrupted gap is below
    `engine.metric.MIN_GAP`.
    """

    attention: Float[Tensor, "n_layers n_heads"]
    """Attention from END to the IO per head (its heatmap; the attention-weighted curve)."""
    curves_by_set: dict[str, dict[str, list[float | None]]]
    prompts_by_set: dict[str, int]
    val_batch: ContrastBatch
    """The validation prompts of the curves: the learned α's point is measured on them."""
    name: str = "combinations"
    title: str = "attention from END to IO"
    direction: str = "denoising"
    """The run's direction (the curves' titles)."""


BaselineResult = HeadScores | CombinationCurves


def learned_point(curves: CombinationCurves, fitted: FittedCombination) -> tuple[int, float]:
    """(heads used, recovery) of the fitted combination on the validation prompts of the curves: its point on
    their front. Heads, not units: per_position's (head, role) pairs and mixing's map entries can outnumber them."""
    return len(fitted.heads()), fitted.recovery(curves.val_batch)


def compute_baselines(
    model: HookedTransformer,
    sets: Mapping[str, ContrastBatch],
    direction: Direction,
    specs: Sequence[BaselineSpec],
    *,
    rest: Rest = "free",
    ablation: Ablation = "corrupted",
) -> list[BaselineResult]:
    """Every spec's result, in the order of `specs`.

    `sets`: the run's evaluation sets, whole (validation under `data.splits.VAL_SET`, then every test set;
    each spec takes its first prompts); `direction`, `rest` and `ablation`: the run's, so exact activation
    patching and the top-k curves answer the question its learned α answers (a cut or a circuit; the patch
    source). The combinations' rankings are the head scores of this call. Exact activation patching is computed
    once per prompt count and shared by the activation baseline and the combinations' ranking. Attribution
    patching, the linear estimate of the paired-prompt cut, is compared with exact patching of that cut. No
    collective calls: under DDP, call it on rank 0 only.
    """
    device = next(model.parameters()).device
    check_ablation(ablation, direction, rest)

    def first(n_prompts: int | None, set_name: str = VAL_SET) -> ContrastBatch:
        return sets[set_name][:n_prompts].trimmed().to(device)

    exact: dict[tuple[int, str, str], Tensor] = {}

    def activation(n_prompts: int, as_run: bool = True) -> Tensor:
        """Exact activation patching in the run's notion, or (`as_run=False`) of the paired-prompt cut."""
        notion = (rest, ablation) if as_run else ("free", "corrupted")
        if (n_prompts, *notion) not in exact:
            effect = activation_patching(model, first(n_prompts), direction, rest=notion[0], ablation=notion[1])
            exact[(n_prompts, *notion)] = _cpu(effect)
        return exact[(n_prompts, *notion)]

    results: dict[int, BaselineResult] = {}
    for i, spec in enumerate(specs):  # the scores first: the combinations rank heads by them
        if isinstance(spec, ScoreSpec):
            results[i] = head_scores(model, first(spec.n_prompts), direction, spec, activation)
    for i, spec in enumerate(specs):
        if isinstance(spec, CombinationsSpec):
            scores = [result for result in results.values() if isinstance(result, HeadScores)]
            results[i] = combination_curves(model, sets, direction, spec, scores, activation, first, rest, ablation)
    return [results[i] for i in range(len(specs))]


def head_scores(
    model: HookedTransformer,
    batch: ContrastBatch,
    direction: Direction,
    spec: ScoreSpec,
    activation: Callable[..., Tensor],
) -> HeadScores:
    """`spec`'s score on `batch`, with attribution patching's and direct logit attribution's extras."""
    n = len(batch)
    scorer = SCORERS[spec.name]
    what = dict(label=scorer.unit, n_prompts=n)
    title = f"{spec.title or scorer.title or spec.name}: {direction}, {n} validation prompts"
    if spec.name == "activation_patching":
        return HeadScores(spec.name, title, activation(spec.n_prompts), **what)
    if spec.name == "attribution_patching":
        # Attribution patching is the linear estimate of exact patching: its agreement is the point of it.
        effect = _cpu(attribution_patching(model, batch, direction, patching_metric(model, batch, direction)))
        agreement = attribution_agreement(effect, activation(spec.n_prompts, as_run=False))
        return HeadScores(spec.name, title, effect, {"pearson_with_exact_patching": agreement}, **what)
    if spec.name == "direct_logit_attribution":
        result = direct_logit_attribution(
            model, batch.clean_tokens, batch.answer_tokens, batch.end_pos, batch.answer_weights, batch.metric
        )
        extras = {"logit_diff": result.logit_diff,
                  "per_component": dict(zip(result.decomposed_labels, result.decomposed.tolist()))}  # fmt: skip
        title = f"{spec.title or scorer.title or spec.name}: {n} clean validation prompts (no direction: the clean run)"
        return HeadScores(spec.name, title, _cpu(result.heads), extras, logit_attribution=result, **what)
    return HeadScores(spec.name, title, _cpu(scorer.score(model, batch, direction, **spec.options)), **what)


def combination_curves(
    model: HookedTransformer,
    sets: Mapping[str, ContrastBatch],
    direction: Direction,
    spec: CombinationsSpec,
    scores: Sequence[HeadScores],
    activation: Callable[..., Tensor],
    first: Callable[..., ContrastBatch],
    rest: Rest = "free",
    ablation: Ablation = "corrupted",
) -> CombinationCurves:
    """The top-k curves of `scores`' rankings, activation patching's (when absent) and the attention to the IO."""
    batch = first(spec.n_prompts)
    if not isinstance(batch, IOIBatch):
        raise TypeError("The combinations baseline needs IOI prompts (the attention to the IO position).")
    attention = attention_to_io(model, batch).detach().float().cpu()
    rankings = {score.name: score.effect for score in scores}
    if "activation_patching" not in rankings:
        rankings["activation_patching"] = activation(spec.n_prompts)
    rankings["attention_to_io"] = attention
    max_heads = min(spec.max_heads, attention.numel())
    alphas = {name: uniform_top_k_alphas(score, max_heads) for name, score in rankings.items()}
    alphas["attention_weighted"] = torch.stack([attention_weighted_alpha(attention, k)
                                                for k in range(1, max_heads + 1)])  # fmt: skip
    batches = {name: first(spec.curve_prompts, name) for name in sets}
    return CombinationCurves(
        attention=attention,
        curves_by_set=top_k_curves(model, batches, alphas, direction, rest=rest, ablation=ablation),
        prompts_by_set={name: len(batch) for name, batch in batches.items()},
        val_batch=batches[VAL_SET],
        direction=direction,
    )


def _cpu(effect: Tensor) -> Tensor:
    return effect.detach().float().cpu()
