import pytest
import torch

from ioi_superpose.data.batch import PromptDataset, collate
from ioi_superpose.data.datamodule import OFF_DISTRIBUTION_SETS, IOIDataModule
from ioi_superpose.data.ioi import _encode_prompt, default_names, generate_ioi, prompt_text
from ioi_superpose.data.templates import (
    ABBA_TEMPLATES,
    BABA_TEMPLATES,
    DUPLICATED_IO_TEMPLATES,
    IOI_TEMPLATES,
    LONG_TEMPLATES,
    NAMES,
)
from ioi_superpose.engine.metric import ContrastMetric
from ioi_superpose.errors import ConfigError
from ioi_superpose.models import gpt2_tokenizer, load_frozen_model
from tests.helpers import REPO

ALL_TEMPLATES = IOI_TEMPLATES + LONG_TEMPLATES + DUPLICATED_IO_TEMPLATES


def draw(n=32, corruption="name_swap", seed=0, templates=IOI_TEMPLATES):
    tokenizer = gpt2_tokenizer()
    return generate_ioi(tokenizer, n, templates, range(len(templates)), default_names(tokenizer), corruption, seed)


def test_template_and_name_counts():
    assert len(BABA_TEMPLATES) == len(ABBA_TEMPLATES) == 15
    assert len(NAMES) == len(set(NAMES)) == 99
    assert len(default_names(gpt2_tokenizer())) == 99  # all single tokens for GPT-2
    for baba, abba in zip(BABA_TEMPLATES, ABBA_TEMPLATES):
        assert baba != abba and baba.replace("[B] and [A]", "[A] and [B]", 1) == abba


@pytest.mark.parametrize("template", ALL_TEMPLATES)
def test_slotwise_tokenization_equals_whole_string(template):
    tokenizer = gpt2_tokenizer()
    words = {"A": "Mary", "B": "John", "PLACE": "restaurant", "OBJECT": "basketball"}
    tokens, slots = _encode_prompt(tokenizer, template, words)
    text = prompt_text(template, "Mary", "John", "restaurant", "basketball")
    assert tokens == [tokenizer.bos_token_id] + tokenizer.encode(text)
    assert all(tokens[p] == 5335 for p in slots["A"]) and all(tokens[p] == 1757 for p in slots["B"])


def test_roles_and_name_swap_corruption():
    batch = draw(64)
    rows = torch.arange(len(batch))
    io, s = batch.answer_tokens[:, 0], batch.answer_tokens[:, 1]
    assert torch.equal(batch.clean_tokens[rows, batch.io_pos], io)
    assert torch.equal(batch.clean_tokens[rows, batch.s1_pos], s)
    assert torch.equal(batch.clean_tokens[rows, batch.s2_pos], s)
    assert (batch.s1_pos < batch.s2_pos).all() and (batch.s2_pos < batch.end_pos).all()
    assert torch.equal(batch.clean_tokens[rows, batch.end_pos], torch.full_like(io, gpt2_tokenizer().encode(" to")[0]))
    # name_swap changes exactly S2, into the IO: the clean answer becomes the wrong one.
    differs = batch.clean_tokens != batch.corrupted_tokens
    assert torch.equal(differs.sum(1), torch.ones(len(batch), dtype=torch.long))
    assert torch.equal(batch.corrupted_tokens[rows, batch.s2_pos], io)


def test_abc_corruption_replaces_all_three_names_by_others():
    batch = draw(64, corruption="abc")
    rows = torch.arange(len(batch))
    replaced = [batch.corrupted_tokens[rows, position] for position in (batch.io_pos, batch.s1_pos, batch.s2_pos)]
    for row in range(len(batch)):
        names = {int(r[row]) for r in replaced}
        assert len(names) == 3
        assert not names & set(batch.answer_tokens[row].tolist())
    unchanged = torch.ones_like(batch.clean_tokens, dtype=torch.bool)
    for position in (batch.io_pos, batch.s1_pos, batch.s2_pos):
        unchanged[rows, position] = False
    assert torch.equal(batch.clean_tokens[unchanged], batch.corrupted_tokens[unchanged])


def test_seed_fixes_the_prompts():
    assert torch.equal(draw(seed=3).clean_tokens, draw(seed=3).clean_tokens)
    assert not torch.equal(draw(seed=3).clean_tokens, draw(seed=4).clean_tokens)


def test_multi_token_names_are_listed_in_the_error():
    tokenizer = gpt2_tokenizer()
    with pytest.raises(ConfigError, match="Zebulonius"):
        generate_ioi(tokenizer, 4, IOI_TEMPLATES, range(30), ["Mary", "John", "Zebulonius"], "name_swap")


def test_padded_batch_gives_the_same_metric_as_one_prompt_at_a_time(tiny_gpt2_dir):
    model = load_frozen_model(str(tiny_gpt2_dir))
    batch = draw(12, templates=ALL_TEMPLATES)
    assert len(set(batch.end_pos.tolist())) > 1  # prompts of different lengths really are padded
    with torch.no_grad():
        together = ContrastMetric(batch.answer_tokens, batch.end_pos)(model(batch.clean_tokens))
        one_by_one = []
        for row in range(len(batch)):
            single = batch[row : row + 1].trimmed()
            one_by_one.append(ContrastMetric(single.answer_tokens, single.end_pos)(model(single.clean_tokens)))
    assert torch.allclose(together, torch.stack(one_by_one).mean(), atol=1e-5)


def test_collate_trims_padding_and_keeps_rows():
    batch = draw(8, templates=ALL_TEMPLATES)
    dataset = PromptDataset(batch)
    collated = collate([dataset[i] for i in range(3)])
    assert collated.clean_tokens.shape[1] == int(batch.end_pos[:3].max()) + 1
    assert torch.equal(collated.index, torch.arange(3))
    assert torch.equal(collated.answer_tokens, batch.answer_tokens[:3])


def test_datamodule_splits_hold_out_names_and_templates():
    datamodule = IOIDataModule(n_train=200, n_val=20, n_test=50, batch_size=16, seed=1)
    datamodule.setup("fit")
    train = datamodule.splits["train"]
    held_out_template_ids = {12, 13, 14, 27, 28, 29}
    assert not set(train.template_id.tolist()) & held_out_template_ids
    assert set(datamodule.splits["held_out_templates"].template_id.tolist()) <= held_out_template_ids
    train_names = set(train.answer_tokens.flatten().tolist())
    held_out_names = set(datamodule.splits["held_out_names"].answer_tokens.flatten().tolist())
    assert held_out_names and not train_names & held_out_names
    assert datamodule.test_set_names == ["in_distribution", *OFF_DISTRIBUTION_SETS]
    assert len(datamodule.test_dataloader()) == 1 + len(OFF_DISTRIBUTION_SETS)
    again = IOIDataModule(n_train=200, n_val=20, n_test=50, batch_size=16, seed=1)
    again.setup("fit")
    assert torch.equal(again.splits["duplicated_io"].clean_tokens, datamodule.splits["duplicated_io"].clean_tokens)


@pytest.mark.parametrize(
    "kwargs, option",
    [
        ({"n_train": 0}, "--data.n_train"),
        ({"held_out_templates": (15,)}, "--data.held_out_templates"),
        ({"off_distribution": ("nonsense",)}, "--data.off_distribution"),
        ({"held_out_name_fraction": 1.0}, "--data.held_out_name_fraction"),
    ],
)
def test_datamodule_rejects_bad_options_by_name(kwargs, option):
    with pytest.raises(ConfigError, match=option):
        IOIDataModule(**kwargs)


def test_off_distribution_sets_are_seeded_by_name_not_by_position():
    alone = IOIDataModule(model_name="gpt2-small", off_distribution=("held_out_names",))
    after_others = IOIDataModule(
        model_name="gpt2-small", off_distribution=("duplicated_io", "long_templates", "held_out_names")
    )
    for data in (alone, after_others):
        data.setup("test")
    assert torch.equal(alone.splits["held_out_names"].clean_tokens, after_others.splits["held_out_names"].clean_tokens)
    assert not torch.equal(alone.splits["val"].clean_tokens[:8], alone.splits["in_distribution"].clean_tokens[:8])


class FakeTrainer:
    def __init__(self, world_size, global_rank):
        self.world_size, self.global_rank = world_size, global_rank


def test_evaluation_sets_are_split_over_ranks_without_repeating_a_prompt():
    data = IOIDataModule(model_name="gpt2-small", n_val=33, batch_size=8)
    data.setup("fit")
    seen = []
    for rank in range(2):
        data.trainer = FakeTrainer(2, rank)
        seen += [int(i) for batch in data.val_dataloader() for i in batch.index]
    assert sorted(seen) == list(range(33))  # each prompt once: the summed metrics count it once


def test_the_training_order_is_a_function_of_seed_and_epoch():
    data = IOIDataModule(model_name="gpt2-small", n_train=40, batch_size=8)
    data.setup("fit")

    def order(epoch):
        loader = data.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return [int(i) for batch in loader for i in batch.index]

    torch.manual_seed(123)  # the global RNG must not matter
    first = order(1)
    torch.manual_seed(456)
    assert order(1) == first and order(2) != first and sorted(first) == list(range(40))


@pytest.mark.parametrize("model_name", ["gpt2-small", "checkpoints/toy_ioi.pt"])
def test_off_distribution_sets_beyond_ioi_shape(model_name):

    from ioi_superpose.data.templates import BABA_TEMPLATES, OBJECTS
    from ioi_superpose.models import load_tokenizer

    name = model_name if model_name == "gpt2-small" else str(REPO / model_name)
    data = IOIDataModule(model_name=name, n_test=32)
    data.setup("test")
    encoder = load_tokenizer(name)
    splits = data.splits
    assert bool((splits["baba_only"].template_id < len(BABA_TEMPLATES)).all())
    assert bool((splits["abba_only"].template_id >= len(BABA_TEMPLATES)).all())
    rows = torch.arange(32)
    gave = encoder.encode(" gave", add_special_tokens=False)
    before_end = splits["no_preposition"].clean_tokens[rows, splits["no_preposition"].end_pos]
    assert set(before_end.tolist()) <= set(gave) | set(encoder.encode(" give", add_special_tokens=False))
    objects = {encoder.encode(" " + word, add_special_tokens=False)[0] for word in OBJECTS}
    assert set(splits["objects_as_names"].answer_tokens.flatten().tolist()) <= objects
