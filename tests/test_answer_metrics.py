"""Answer sets on a ContrastBatch and the two contrast metrics (data/answer_metrics.py), on hand-computed logits."""

from __future__ import annotations

import math

import pytest
import torch

from ioi_superpose.data.answer_metrics import (
    answer_logit_diff,
    answer_prob_diff,
    check_metric,
    contrast_metric,
    set_weights,
)
from ioi_superpose.data.batch import ContrastBatch, collate
from ioi_superpose.engine.metric import logit_diff
from ioi_superpose.errors import ConfigError


def _batch(answers: list[list[int]], weights: list[list[float]] | None = None) -> ContrastBatch:
    n = len(answers)
    return ContrastBatch(
        clean_tokens=torch.arange(3 * n).view(n, 3),
        corrupted_tokens=torch.arange(3 * n).view(n, 3) + 1,
        answer_tokens=torch.tensor(answers),
        end_pos=torch.full((n,), 2),
        index=torch.arange(n),
        answer_weights=None if weights is None else torch.tensor(weights),
    )


def test_logit_diff_of_a_set_is_mean_correct_minus_mean_incorrect() -> None:
    # Correct {1.0, 2.0} (mean 1.5), incorrect {3.0} -> 1.5 - 3.0 = -1.5; the padded answer (weight 0) is ignored.
    answer_logits = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    weights = torch.tensor([set_weights(2, 1, 4)])
    assert weights.tolist() == [[0.5, 0.5, -1.0, 0.0]]
    assert answer_logit_diff(answer_logits, weights).tolist() == [-1.5]


def test_prob_diff_is_probability_of_correct_set_minus_incorrect_set() -> None:
    # softmax(log [1, 2, 3, 4]) = [0.1, 0.2, 0.3, 0.4]; correct {3, 1}, incorrect {0}, token 2 padding:
    # (0.4 + 0.2) - 0.1 = 0.5, whatever the weights' magnitudes (only their signs count).
    logits = torch.log(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    answers = torch.tensor([[3, 1, 0, 2]])
    weights = torch.tensor([[0.5, 0.5, -1.0, 0.0]])
    assert answer_prob_diff(logits, answers, weights).item() == pytest.approx(0.5, abs=1e-6)
    assert contrast_metric("prob_diff", logits, answers, weights).item() == pytest.approx(0.5, abs=1e-6)
    # logit_diff from the same full logits: mean(log 4, log 2) - log 1.
    expected = (math.log(4) + math.log(2)) / 2
    assert contrast_metric("logit_diff", logits, answers, weights).item() == pytest.approx(expected, abs=1e-6)


def test_metrics_broadcast_over_variants() -> None:
    logits = torch.randn(5, 3, 11)  # [variants, batch, vocab]
    answers, weights = torch.tensor([[1, 2], [3, 4], [5, 6]]), torch.tensor([[1.0, -1.0]] * 3)
    values = contrast_metric("prob_diff", logits, answers, weights)
    assert values.shape == (5, 3)
    probabilities = logits.softmax(-1)
    assert torch.allclose(values[2, 1], probabilities[2, 1, 3] - probabilities[2, 1, 4])


def test_pair_weights_reproduce_todays_logit_diff_bit_for_bit() -> None:
    batch = _batch([[1, 2], [3, 4], [5, 6]])  # no answer_weights: the (correct, incorrect) pair
    assert batch.weights.tolist() == [[1.0, -1.0]] * 3
    answer_logits = torch.randn(7, 3, 2, generator=torch.Generator().manual_seed(0)) * 30
    assert torch.equal(answer_logit_diff(answer_logits, batch.weights), logit_diff(answer_logits))
    # set_weights of one correct and one incorrect answer is the same pair
    assert set_weights(1, 1, 2) == [1.0, -1.0]


def test_unknown_metric_and_empty_sets_are_refused() -> None:
    with pytest.raises(ConfigError, match="prob_diff"):
        check_metric("accuracy")
    with pytest.raises(ConfigError, match="at least one correct and one incorrect"):
        set_weights(0, 2, 2)


def test_contrast_batch_checks_answer_weights() -> None:
    with pytest.raises(ConfigError, match=r"answer sets need answer_weights"):
        _batch([[1, 2, 3]])
    with pytest.raises(ConfigError, match="answer_weights must be floats"):
        _batch([[1, 2, 3]], weights=[[1, 0, -1]])  # integers
    with pytest.raises(ConfigError, match="answer_weights must be floats"):
        ContrastBatch(torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.long),
                      torch.tensor([[1, 2, 3]]), torch.tensor([2]), torch.tensor([0]),
                      answer_weights=torch.tensor([[1.0, -1.0]]))  # fmt: skip


def test_answer_sets_survive_indexing_moving_and_collating() -> None:
    batch = _batch([[1, 2, 3], [4, 5, 6]], weights=[[0.5, 0.5, -1.0], [1.0, -0.5, -0.5]])
    row = batch[1]
    assert row.answer_weights.tolist() == [1.0, -0.5, -0.5]
    assert batch.to("cpu").answer_weights.tolist() == batch.answer_weights.tolist()
    stacked = collate([batch[0], batch[1]])
    assert torch.equal(stacked.answer_tokens, batch.answer_tokens)
    assert torch.equal(stacked.answer_weights, batch.answer_weights)
    # A batch without weights keeps none through the same steps (today's callers).
    pair = _batch([[1, 2], [3, 4]])
    assert pair[0].answer_weights is None and collate([pair[0], pair[1]]).answer_weights is None
