import torch

from ioi_superpose.metrics import IOAccuracy, LogitDiffMetric, MeanLogitDiff, NormalisedRecovery
from ioi_superpose.runs import logit_diff, normalised_recovery, unembed_at_end
from conftest import random_model


def answer_logits(n, seed):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))


def test_recovery_is_a_ratio_of_means_whatever_the_batching():
    patched, clean, corrupted = answer_logits(12, 0), answer_logits(12, 1) + 2, answer_logits(12, 2)
    expected = normalised_recovery(logit_diff(patched).mean(), logit_diff(corrupted).mean(), logit_diff(clean).mean())
    metric = NormalisedRecovery()
    for rows in (slice(0, 5), slice(5, 7), slice(7, 12)):
        metric.update(patched[rows], clean[rows], corrupted[rows])
    assert torch.allclose(metric.compute(), expected, atol=1e-6)
    assert torch.allclose(normalised_recovery(logit_diff(clean).mean(), logit_diff(corrupted).mean(), logit_diff(clean).mean()), torch.tensor(1.0))


def test_logit_diff_and_accuracy_accumulate():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, -1.0], [1.0, 1.5]])
    mean_diff, accuracy = MeanLogitDiff(), IOAccuracy()
    mean_diff.update(logits[:1]), mean_diff.update(logits[1:])
    accuracy.update(logits[:3]), accuracy.update(logits[3:])
    assert mean_diff.compute().item() == (1.0 - 3.0 + 6.0 - 0.5) / 4
    assert accuracy.compute().item() == 0.5


def test_end_only_unembedding_matches_full_logits():
    model = random_model()
    tokens = torch.randint(0, model.cfg.d_vocab, (4, 9), generator=torch.Generator().manual_seed(0))
    end = torch.tensor([8, 3, 5, 0])
    answers = torch.randint(0, model.cfg.d_vocab, (4, 2), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(tokens)
        residual = model(tokens, stop_at_layer=model.cfg.n_layers)
    rows = torch.arange(4)
    assert torch.allclose(unembed_at_end(model, residual, end), logits[rows, end], atol=1e-5)
    assert torch.allclose(unembed_at_end(model, residual, end, answers), logits[rows, end].gather(-1, answers), atol=1e-5)
    metric = LogitDiffMetric(answers, end)
    assert torch.allclose(metric(logits), metric.from_answer_logits(logits[rows, end].gather(-1, answers)))
    normalised = LogitDiffMetric(answers, end, corrupted_value=1.0, clean_value=3.0)
    assert torch.allclose(normalised(logits), (metric(logits) - 1.0) / 2.0)
