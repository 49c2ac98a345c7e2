"""Does a learned head combination find the heads that implement a feature?

For each feature of a skip-trigram toy model, the *ground-truth support* is the smallest head subset
whose denoising patch reaches `threshold` recovery (exhaustive search, `analyses.exhaustive.find_support`);
the *learned support* is the set of heads with |α| > `l0_threshold` after `api.learn_combination` is
trained on the same clean/corrupted prompts. Both read the logit difference at the last position.

Why the default settings select the same heads as the subset search (one-layer models without
LayerNorm, where recovery is additive over heads, r(α) = Σ αₕ cₕ with cₕ the single-head recovery):
the `logit_diff` objective (1 − r)² + λ‖α‖₁ keeps a head at α > 0 only while its marginal gain
2(1 − r)·cₕ exceeds λ. Starting from α = 1 (the full clean run, r = 1) the L1 term prunes every head
whose removal costs less than that; a head that is the last missing piece of the recovery is dropped
iff cₕ < √(λ/2). λ = 1e-3 drops pieces below ≈ 0.022 recovery — stricter than a 0.9 threshold, so a
model with a head contributing 0.02–0.1 would be kept by the learner but not by the 0.9 search;
λ = 2(1 − τ)² (0.02 for τ = 0.9) matches a threshold τ for the last head but also shrinks the kept α.
The `kl` objective is a poor fit here: a confident clean run (logit differences of 20–120) has a
near one-hot distribution whose KL barely moves as α shrinks, so L1 prunes needed heads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ioi_superpose.analyses.exhaustive import find_support
from ioi_superpose.api import learn_combination
from ioi_superpose.engine.vocabulary import Head
from ioi_superpose.models import HookedTransformer
from ioi_superpose.toy.skip_trigrams import SkipTrigramTask, feature_prompts

DEFAULT_LEARN_KWARGS: dict[str, Any] = dict(
    objective="logit_diff",
    direction="denoising",
    l1=1e-3,
    steps=200,
    lr=0.05,
    bounded=True,
    init=1.0,
    l0_threshold=0.05,
    seed=0,
)
"""`learn_combination` settings that recover the exact supports of both shipped toy models."""


def precision_recall(learned: Iterable[Head], truth: Iterable[Head]) -> tuple[float | None, float | None]:
    """(|learned ∩ truth| / |learned|, |learned ∩ truth| / |truth|); None where the denominator is 0."""
    learned, truth = set(learned), set(truth)
    hits = len(learned & truth)
    return (hits / len(learned) if learned else None, hits / len(truth) if truth else None)


@dataclass
class FeatureSupport:
    """One feature: the subset-search support next to the learned one."""

    feature: str
    truth: list[Head]
    """Smallest head subset reaching the ground-truth threshold (`find_support`)."""
    truth_recovery: float
    truth_reached_threshold: bool
    learned: list[Head]
    """Heads with |α| > l0_threshold."""
    alpha: list[list[float]]
    """Learned α[layer][head]."""
    learned_recovery: float
    precision: float | None
    recall: float | None

    @property
    def exact(self) -> bool:
        return set(self.learned) == set(self.truth)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["truth"] = [list(head) for head in self.truth]
        out["learned"] = [list(head) for head in self.learned]
        out["exact"] = self.exact
        return out


@dataclass
class SupportComparison:
    """Per-feature records and their micro-averaged precision / recall (pooled over features)."""

    records: list[FeatureSupport]
    threshold: float
    learn_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def precision(self) -> float | None:
        return micro_precision_recall(self.records)[0]

    @property
    def recall(self) -> float | None:
        return micro_precision_recall(self.records)[1]

    @property
    def n_exact(self) -> int:
        return sum(record.exact for record in self.records)

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "learn_kwargs": self.learn_kwargs,
            "precision": self.precision,
            "recall": self.recall,
            "n_exact": self.n_exact,
            "n_features": len(self.records),
            "features": [record.to_dict() for record in self.records],
        }


def micro_precision_recall(records: Sequence[FeatureSupport]) -> tuple[float | None, float | None]:
    """Σ hits / Σ |learned| and Σ hits / Σ |truth| over all records (None where a sum is 0)."""
    hits = sum(len(set(r.learned) & set(r.truth)) for r in records)
    n_learned = sum(len(r.learned) for r in records)
    n_truth = sum(len(r.truth) for r in records)
    return (hits / n_learned if n_learned else None, hits / n_truth if n_truth else None)


def compare_supports(
    model: HookedTransformer,
    task: SkipTrigramTask,
    features: Sequence[int] | None = None,
    n_prompts: int = 128,
    seed: int = 0,
    learn_kwargs: Mapping[str, Any] | None = None,
    threshold: float = 0.9,
) -> SupportComparison:
    """Ground-truth vs learned head support for each feature index in `features` (all when None).

    Both use the same `n_prompts` clean/corrupted prompts of the feature (`feature_prompts(task,
    feature, n_prompts, seed)`); `learn_kwargs` override `DEFAULT_LEARN_KWARGS`.
    """
    settings = {**DEFAULT_LEARN_KWARGS, **(learn_kwargs or {})}
    l0_threshold = float(settings["l0_threshold"])
    indices = range(task.n_features) if features is None else features
    records = []
    for index in indices:
        prompts = feature_prompts(task, index, n_prompts, seed)
        # learn_combination reads the answers at the last position; so does this task's END.
        length = prompts.clean_tokens.shape[1]
        if not bool((prompts.end_pos == length - 1).all()):
            raise ValueError(
                f"feature {prompts.name}: END is not the last position; learn_combination would misread it"
            )
        truth = find_support(model, prompts, threshold=threshold)
        learned = learn_combination(
            model, prompts.clean_tokens, prompts.corrupted_tokens, prompts.answer_tokens, **settings
        )
        alpha = learned.coefficients
        learned_heads = [(int(layer), int(head)) for layer, head in (alpha.abs() > l0_threshold).nonzero().tolist()]
        precision, recall = precision_recall(learned_heads, truth.support)
        records.append(
            FeatureSupport(
                feature=prompts.name,
                truth=[tuple(head) for head in truth.support],
                truth_recovery=truth.support_recovery,
                truth_reached_threshold=truth.reached_threshold,
                learned=learned_heads,
                alpha=[[round(v, 4) for v in row] for row in alpha.tolist()],
                learned_recovery=round(learned.recovery, 4),
                precision=precision,
                recall=recall,
            )
        )
    return SupportComparison(records=records, threshold=threshold, learn_kwargs=settings)
