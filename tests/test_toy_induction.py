"""The toy induction model (checkpoints/toy_induction.pt) and its data: labels, seeds, its tokenizer, and that it
does induction on the `induction` task's prompts."""

from __future__ import annotations

import torch

from ioi_superpose.engine.metric import logit_diff
from ioi_superpose.models import load_frozen_model, load_tokenizer
from ioi_superpose.tasks import make_task
from ioi_superpose.toy import IGNORE_INDEX, ToyInductionDataModule, evaluate_groups
from tests.helpers import CHECKPOINTS

TOY_INDUCTION = str(CHECKPOINTS / "toy_induction.pt")


def test_the_second_copy_is_labelled_with_the_token_that_followed_in_the_first() -> None:
    data = ToyInductionDataModule(n_tokens=12, min_length=3, max_length=5, batch_size=4)
    batch = data.evaluation_batch(4, seed=0)
    tokens, labels = batch["tokens"], batch["labels"]
    length = (tokens.shape[1] - 1) // 2
    assert torch.equal(tokens[:, 1 : 1 + length], tokens[:, 1 + length :])  # the sequence, twice
    assert (tokens[:, 1:] >= 2).all() and (tokens[:, 0] == data.tokenizer.bos_token_id).all()
    for row in range(4):
        first = tokens[row, 1 : 1 + length]
        assert len(set(first.tolist())) == length  # distinct tokens: each has one successor
        labelled = (labels[row] != IGNORE_INDEX).nonzero().flatten()
        assert labelled.tolist() == list(range(1 + length, 2 * length))
        assert torch.equal(labels[row, labelled], first[1:])
    assert torch.equal(tokens, data.evaluation_batch(4, seed=0)["tokens"])  # seeded
    assert data.n_ctx == 11 and data.d_vocab == 14


def test_one_group_is_evaluated_as_a_list() -> None:
    # torchmetrics squeezes a one-element result to a scalar; the export and the logged accuracy read a list.
    data = ToyInductionDataModule(n_tokens=12, min_length=3, max_length=5)
    model = load_frozen_model(TOY_INDUCTION)
    accuracy = evaluate_groups(model, ToyInductionDataModule().evaluation_batch(64, seed=1), data.group_names)
    assert list(accuracy) == ["induction"] and accuracy["induction"] > 0.95


def test_the_shipped_model_does_induction_on_the_tasks_prompts() -> None:
    model = load_frozen_model(TOY_INDUCTION)
    tokenizer = load_tokenizer(TOY_INDUCTION)
    for set_name in ("in_distribution", "long_sequences", "short_sequences"):
        batch = make_task("induction").splits(tokenizer, {set_name: 64}, seed=0)[set_name].batch
        rows = torch.arange(len(batch))
        clean = model(batch.clean_tokens)[rows, batch.end_pos].gather(-1, batch.answer_tokens)
        corrupted = model(batch.corrupted_tokens)[rows, batch.end_pos].gather(-1, batch.answer_tokens)
        assert (logit_diff(clean) > 0).float().mean() > 0.95, set_name  # the clean answer wins
        assert (logit_diff(corrupted) < 0).float().mean() > 0.95, set_name  # the corrupted prompt's own answer wins
