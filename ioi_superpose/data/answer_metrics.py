"""The two contrast metrics a task can use, on the answer sets of a `ContrastBatch` (`answer_tokens`, `weights`).

- `logit_diff`: mean logit of the correct answers − mean logit of the incorrect ones, Σ weights · logits at END
  (weights +1/|correct|, −1/|incorrect|, 0 for padding). For the pair (correct, incorrect), weights (+1, −1),
  it is bit for bit `logits[0] − logits[1]` (x·1 and y·(−1) are exact, and x + (−y) is x − y in IEEE).
- `prob_diff`: the probability of the correct set − that of the incorrect set, Σ sign(weight) · softmax(logits)
  over the whole vocabulary at END. Greater-than's metric (Hanna et al. 2023): P(year > YY) − P(year ≤ YY).

What a metric reads per answer token is `answer_values` (the logit, or the log-probability); `metric_of_values`
makes the metric of them. Every method reads and measures through these two (docs/tasks.md).

Recovery is normalised over either one as today: (patched − corrupted) / (clean − corrupted).
"""

from __future__ import annotations

from typing import Literal, get_args

from jaxtyping import Float, Int
from torch import Tensor

from ioi_superpose.errors import ConfigError

MetricName = Literal["logit_diff", "prob_diff"]
METRICS: tuple[MetricName, ...] = get_args(MetricName)


def check_metric(metric: str) -> MetricName:
    if metric not in METRICS:
        raise ConfigError(f"Unknown metric {metric!r}: choose one of {list(METRICS)}.")
    return metric  # type: ignore[return-value]


def answer_logit_diff(
    answer_logits: Float[Tensor, "*variants batch k"], weights: Float[Tensor, "batch k"]
) -> Float[Tensor, "*variants batch"]:
    """Σ weights · answer logits per prompt: mean(correct) − mean(incorrect) with the batch's weights."""
    return (answer_logits * weights.to(answer_logits)).sum(-1)


def answer_values(
    metric: MetricName, end_logits: Float[Tensor, "*variants batch vocab"], answer_tokens: Int[Tensor, "batch k"]
) -> Float[Tensor, "*variants batch k"]:
    """What the metric reads of each answer token from the whole vocabulary's logits at END: its logit
    (`logit_diff`), or its log-probability, logit − logsumexp over the vocabulary (`prob_diff`).

    The engine reads these per prompt (`engine.runs.unembed_residual`); `metric_of_values` turns them into the
    metric, so a patched run, its reference runs and every baseline measure a task the same way.
    """
    index = answer_tokens.to(end_logits.device).expand(*end_logits.shape[:-1], answer_tokens.shape[-1])
    if check_metric(metric) == "prob_diff":
        return end_logits.float().log_softmax(-1).gather(-1, index)
    return end_logits.gather(-1, index)


def metric_of_values(
    metric: MetricName, answer_values: Float[Tensor, "*variants batch k"], weights: Float[Tensor, "batch k"]
) -> Float[Tensor, "*variants batch"]:
    """The task's metric per prompt from `answer_values`: Σ weights · logits (`logit_diff`), or
    Σ sign(weight) · exp(log-probability), P(correct set) − P(incorrect set) (`prob_diff`; padding, weight 0,
    counts 0)."""
    if check_metric(metric) == "prob_diff":
        return (answer_values.exp() * weights.to(answer_values).sign()).sum(-1)
    return answer_logit_diff(answer_values, weights)


def answer_prob_diff(
    end_logits: Float[Tensor, "*variants batch vocab"],
    answer_tokens: Int[Tensor, "batch k"],
    weights: Float[Tensor, "batch k"],
) -> Float[Tensor, "*variants batch"]:
    """Σ sign(weight) · softmax(logits at END)[answer]: P(correct set) − P(incorrect set) per prompt.

    Needs the whole vocabulary's logits (the softmax's normaliser); padding answers (weight 0) count 0.
    """
    return contrast_metric("prob_diff", end_logits, answer_tokens, weights)


def contrast_metric(
    metric: MetricName,
    end_logits: Float[Tensor, "*variants batch vocab"],
    answer_tokens: Int[Tensor, "batch k"],
    weights: Float[Tensor, "batch k"],
) -> Float[Tensor, "*variants batch"]:
    """The task's metric per prompt from the whole vocabulary's logits at END."""
    return metric_of_values(metric, answer_values(metric, end_logits, answer_tokens), weights)


def set_weights(n_correct: int, n_incorrect: int, width: int) -> list[float]:
    """One prompt's weights: +1/|correct| on its correct answers, −1/|incorrect| on its incorrect ones, 0 up to
    `width` (the padding to the widest prompt of a batch)."""
    if n_correct < 1 or n_incorrect < 1:
        raise ConfigError(f"A prompt needs at least one correct and one incorrect answer, got {n_correct} and "
                          f"{n_incorrect}.")  # fmt: skip
    if n_correct + n_incorrect > width:
        raise ValueError(f"{n_correct} + {n_incorrect} answers do not fit in width {width}")
    return [1.0 / n_correct] * n_correct + [-1.0 / n_incorrect] * n_incorrect + [0.0] * (
        width - n_correct - n_incorrect
    )
