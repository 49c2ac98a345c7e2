import copy

import pytest
import torch

from ioi_superpose.engine.metric import ContrastMetric, logit_diff, normalised_recovery
from ioi_superpose.engine.runs import unembed_at_end
from ioi_superpose.training.metrics import IOAccuracy, MeanLogitDiff, NormalisedRecovery
from tests.helpers import random_model


def answer_logits(n, seed):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))


def test_normalised_recovery_hand_computed():
    # (patched − corrupted) / (clean − corrupted), by hand.
    assert normalised_recovery(torch.tensor(2.0), 1.0, 5.0).item() == 0.25
    assert normalised_recovery(torch.tensor(0.0), 1.0, 5.0).item() == -0.25  # worse than corrupted
    assert normalised_recovery(torch.tensor(7.0), 1.0, 5.0).item() == 1.5  # better than clean
    assert normalised_recovery(torch.tensor(3.0), 5.0, 1.0).item() == 0.5  # clean below corrupted
    assert normalised_recovery(torch.tensor(-1.0), -3.0, 5.0).item() == 0.25
    elementwise = normalised_recovery(torch.tensor([1.0, 3.0, 5.0]), torch.tensor(1.0), torch.tensor(5.0))
    assert elementwise.tolist() == [0.0, 0.5, 1.0]


def test_recovery_is_a_ratio_of_means_hand_computed():
    # Per-prompt logit differences: patched [1, 3], clean [4, 4], corrupted [0, 2].
    patched = torch.tensor([[1.0, 0.0], [4.0, 1.0]])
    clean = torch.tensor([[5.0, 1.0], [2.0, -2.0]])
    corrupted = torch.tensor([[0.5, 0.5], [3.0, 1.0]])
    metric = NormalisedRecovery()
    metric.update(patched[:1], clean[:1], corrupted[:1])
    metric.update(patched[1:], clean[1:], corrupted[1:])
    # Means 2, 4, 1 → (2 − 1) / (4 − 1) = 1/3; the mean of per-prompt ratios would be (1/4 + 1/2) / 2.
    assert metric.compute().item() == pytest.approx(1 / 3, abs=1e-6)


def test_recovery_is_a_ratio_of_means_whatever_the_batching():
    patched, clean, corrupted = answer_logits(12, 0), answer_logits(12, 1) + 2, answer_logits(12, 2)
    expected = normalised_recovery(logit_diff(patched).mean(), logit_diff(corrupted).mean(), logit_diff(clean).mean())
    metric = NormalisedRecovery()
    for rows in (slice(0, 5), slice(5, 7), slice(7, 12)):
        metric.update(patched[rows], clean[rows], corrupted[rows])
    assert torch.allclose(metric.compute(), expected, atol=1e-6)


def ddp_shards():
    """12 prompts' answer logits on 3 ranks with uneven shards (1, 3, 8 prompts), rank-dependent
    offsets so that per-rank values differ and any mean over ranks (instead of over prompts) is wrong."""
    generator = torch.Generator().manual_seed(0)
    sizes, offsets = (1, 3, 8), (3.0, -1.0, 0.0)

    def logits(shift: float) -> torch.Tensor:
        shards = [
            torch.randn(n, 2, generator=generator) + torch.tensor([o * shift, 0.0]) for n, o in zip(sizes, offsets)
        ]
        return torch.cat(shards)

    patched, clean, corrupted = logits(1.0), logits(2.0) + torch.tensor([2.0, 0.0]), logits(-1.0)
    bounds = [0, 1, 4, 12]
    shards = [slice(a, b) for a, b in zip(bounds, bounds[1:])]
    return patched, clean, corrupted, shards


def merged(metric_class, shard_args):
    """One metric per rank, merged as DDP's sync does (each state reduced with its dist_reduce_fx)."""
    ranks = []
    for args in shard_args:
        rank = metric_class()
        rank.update(*args)
        ranks.append(rank)
    by_merge_state = copy.deepcopy(ranks[0])
    for rank in ranks[1:]:
        by_merge_state.merge_state(rank)
    # The same by summing the state tensors by hand (dist_reduce_fx="sum" across ranks).
    by_sum = metric_class()
    by_sum.update(*shard_args[0])  # marks it updated; its states are overwritten below
    for name in by_sum.metric_state:
        setattr(by_sum, name, sum(rank.metric_state[name] for rank in ranks))
    return by_merge_state.compute(), by_sum.compute(), [rank.compute() for rank in ranks]


def test_metrics_merged_across_uneven_ranks_equal_one_metric_that_saw_everything():
    patched, clean, corrupted, shards = ddp_shards()
    diff = lambda x: x[:, 0] - x[:, 1]  # noqa: E731  (independent of the package's logit_diff)
    expected = {
        NormalisedRecovery: (diff(patched).mean() - diff(corrupted).mean())
        / (diff(clean).mean() - diff(corrupted).mean()),
        MeanLogitDiff: diff(patched).mean(),
        IOAccuracy: (diff(patched) > 0).double().mean(),
    }
    inputs = {
        NormalisedRecovery: lambda rows: (patched[rows], clean[rows], corrupted[rows]),
        MeanLogitDiff: lambda rows: (patched[rows],),
        IOAccuracy: lambda rows: (patched[rows],),
    }
    for metric_class, value in expected.items():
        whole = metric_class()
        whole.update(*inputs[metric_class](slice(None)))
        from_merge, from_sum, per_rank = merged(metric_class, [inputs[metric_class](rows) for rows in shards])
        name = metric_class.__name__
        assert whole.compute().item() == pytest.approx(value.item(), abs=1e-6), name
        assert from_merge.item() == pytest.approx(value.item(), abs=1e-6), name
        assert from_sum.item() == pytest.approx(value.item(), abs=1e-6), name
        # The data make the reduction matter: the mean of per-rank values is far from the answer.
        assert abs(torch.stack(per_rank).mean().item() - value.item()) > 0.05, name
    # And for recovery, a mean of per-prompt ratios is far from the ratio of means too.
    per_prompt = ((diff(patched) - diff(corrupted)) / (diff(clean) - diff(corrupted))).mean()
    assert abs(per_prompt.item() - expected[NormalisedRecovery].item()) > 0.05


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
    assert torch.allclose(
        unembed_at_end(model, residual, end, answers), logits[rows, end].gather(-1, answers), atol=1e-5
    )
    metric = ContrastMetric(answers, end)
    assert torch.allclose(metric(logits), metric.from_answer_logits(logits[rows, end].gather(-1, answers)))
    normalised = ContrastMetric(answers, end, corrupted_value=1.0, clean_value=3.0)
    assert torch.allclose(normalised(logits), (metric(logits) - 1.0) / 2.0)
