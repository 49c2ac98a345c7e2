"""Tasks as data (ioi_superpose/tasks): the registry, the built-in generators, their seeds, corruptions and refusals."""

from __future__ import annotations

import hashlib

import pytest
import torch

from ioi_superpose.data.datamodule import IOIDataModule
from ioi_superpose.errors import ConfigError
from ioi_superpose.models import WordTokenizer, gpt2_tokenizer
from ioi_superpose.models.word_tokenizer import BOS, PAD
from ioi_superpose.tasks import TASKS, TaskPrompts, make_task
from ioi_superpose.tasks.induction import token_pool
from ioi_superpose.toy import toy_ioi_tokenizer

GENERATED = ("ioi", "induction", "greater_than", "agreement")
TOY = "checkpoints/toy_ioi.pt"


@pytest.fixture(scope="module")
def gpt2():
    return gpt2_tokenizer()


def _sets(name: str, encoder, n: int = 8, seed: int = 0) -> dict[str, TaskPrompts]:
    task = make_task(name)
    return task.splits(encoder, {set_name: n for set_name in task.set_names}, seed)


def test_registry_names_every_built_in_task_and_refuses_unknown_ones() -> None:
    assert list(TASKS) == ["ioi", "induction", "greater_than", "agreement", "file"]
    with pytest.raises(ConfigError, match="Unknown task 'docstring'"):
        make_task("docstring")
    with pytest.raises(ConfigError, match="Task 'induction'.*unexpected keyword"):
        make_task("induction", lenght=5)
    assert make_task("greater_than").metric == "prob_diff"
    assert {make_task(name).metric for name in ("ioi", "induction", "agreement")} == {"logit_diff"}


@pytest.mark.parametrize("name", GENERATED)
def test_every_set_is_seeded_and_well_formed_for_gpt2(name: str, gpt2) -> None:
    task = make_task(name)
    first, again, other = _sets(name, gpt2), _sets(name, gpt2), _sets(name, gpt2, seed=1)
    assert set(first) == set(task.set_names) and task.off_distribution
    for set_name, prompts in first.items():
        batch = prompts.batch
        assert torch.equal(batch.clean_tokens, again[set_name].batch.clean_tokens)  # same seed, same prompts
        assert not torch.equal(batch.clean_tokens, other[set_name].batch.clean_tokens)  # another seed, others
        assert batch.clean_tokens.shape == batch.corrupted_tokens.shape
        rows = torch.arange(len(batch))
        assert (batch.clean_tokens[rows, batch.end_pos] != gpt2.pad_token_id).all()  # END is a real token
        assert (batch.clean_tokens != batch.corrupted_tokens).any(-1).all()  # every pair differs
        weights = batch.weights
        assert torch.allclose(weights.clamp(min=0).sum(-1), torch.ones(len(batch)))  # mean of the correct set
        assert torch.allclose(weights.clamp(max=0).sum(-1), -torch.ones(len(batch)))  # minus mean of incorrect
        assert set(prompts.roles) == set(task.role_names) and set(prompts.features) == set(task.feature_names)
    # train, val and the in-distribution test set are drawn from separate streams
    assert not torch.equal(first["train"].batch.clean_tokens, first["val"].batch.clean_tokens)


@pytest.mark.parametrize("name", ["ioi", "greater_than", "agreement"])
def test_gpt2_tokenizes_each_prompt_text_as_the_generator_did(name: str, gpt2) -> None:
    """Pieces are tokenized one by one; for GPT-2 that must equal tokenizing the whole prompt string."""
    for prompts in _sets(name, gpt2, n=16).values():
        batch = prompts.batch
        for tokens, end in zip(batch.clean_tokens.tolist(), batch.end_pos.tolist()):
            text = gpt2.decode(tokens[1 : end + 1])
            assert gpt2.encode(text) == tokens[1 : end + 1], text


def test_ioi_task_draws_the_ioi_datamodules_prompts() -> None:
    data = IOIDataModule(model_name=TOY, n_train=32, n_val=16, n_test=16, seed=3)
    data.setup("fit")
    split = (data.held_out_names, data.train_names)  # the toy checkpoint's own split
    task = make_task("ioi", name_split=split)
    sizes = {name: len(batch) for name, batch in data.splits.items()}
    prompts = task.splits(data.encoder, sizes, seed=3)
    for name, batch in data.splits.items():
        for field, theirs in batch.tensors().items():  # every per-prompt field (the batch's name is a label)
            mine = getattr(prompts[name].batch, field)
            assert (mine is None and theirs is None) or torch.equal(mine, theirs), (name, field)
    # features: the IO and S names decoded from the answers, the order from the positions
    first = prompts["train"]
    assert first.features["io"][0] == data.encoder.decode([int(first.batch.answer_tokens[0, 0])])
    expected = ["ABBA" if i < s else "BABA" for i, s in zip(first.roles["IO"].tolist(), first.roles["S1"].tolist())]
    assert first.features["order"] == expected
    assert {"ABBA", "BABA"} <= set(first.features["order"])


def test_the_main_jobs_prompts_are_unchanged() -> None:
    """Fingerprint of every split of the main job (experiments/toy_ioi.yaml's data settings), recorded on main
    at 1b9d20e before answer sets existed: the ContrastBatch change and the IOI-set refactor leave them as they were."""
    data = IOIDataModule(model_name=TOY, corruption="name_swap", n_train=1024, n_val=256, n_test=256,
                         batch_size=64, held_out_name_fraction=0.2, seed=0)  # fmt: skip
    data.setup("fit")
    digest = hashlib.sha256()
    for name, batch in data.splits.items():
        digest.update(name.encode())
        for field, value in batch.tensors().items():  # every per-prompt field (the batch's name is a label)
            if value is not None:
                digest.update(field.encode())
                digest.update(value.numpy().tobytes())
    assert digest.hexdigest() == "3d03b72c787623e2cd7d03fb59f2eabed4589f6cfa7a5cd04d6502228d875e07"


def test_task_prompts_index_rows_roles_and_features_together(gpt2) -> None:
    prompts = make_task("agreement").splits(gpt2, {"val": 10}, seed=0)["val"]
    picked = prompts[[7, 2]]
    assert torch.equal(picked.batch.clean_tokens, prompts.batch.clean_tokens[[7, 2]])
    assert picked.features["subject"] == [prompts.features["subject"][7], prompts.features["subject"][2]]
    assert picked.roles["attractor"].tolist() == prompts.roles["attractor"][[7, 2]].tolist()
    assert len(prompts[2:5]) == 3 and len(prompts[torch.arange(10) < 4]) == 4


def test_induction_answers_are_what_followed_the_trigger(gpt2) -> None:
    for encoder in (gpt2, toy_ioi_tokenizer()):
        task = make_task("induction", length=8, repeat=5)
        prompts = task.splits(encoder, {"val": 16}, seed=0)["val"]
        clean, corrupted = prompts.batch.clean_tokens, prompts.batch.corrupted_tokens
        answers, trigger, after = prompts.batch.answer_tokens, prompts.roles["first_trigger"], prompts.roles["first_answer"]
        rows = torch.arange(16)
        assert (clean[:, -1] == clean[rows, trigger]).all() and (clean[rows, after] == answers[:, 0]).all()
        assert torch.equal(clean[:, 9:], clean[:, 1:9][:, :5])  # the second half repeats the first
        # resampled first half: same second half and trigger place, the corrupted run's own answer is the wrong one
        assert torch.equal(corrupted[:, 9:], clean[:, 9:]) and (corrupted[rows, trigger] == clean[rows, trigger]).all()
        assert (corrupted[rows, after] == answers[:, 1]).all()
        resampled = set(corrupted[0, 1:9].tolist()) - {int(clean[0, trigger[0]])}
        assert not resampled & set(clean[0, 1:9].tolist())  # every other first-half token is new
        assert set(clean.flatten().tolist()) - {encoder.bos_token_id} <= set(token_pool(encoder))
    swapped = make_task("induction", length=8, repeat=5, corruption="trigger").splits(gpt2, {"val": 16}, seed=0)["val"]
    batch = swapped.batch
    assert torch.equal(batch.corrupted_tokens[:, :-1], batch.clean_tokens[:, :-1])
    wrong_place = (batch.clean_tokens[:, 1:9] == batch.corrupted_tokens[:, -1:]).float().argmax(-1) + 1
    assert (batch.clean_tokens[torch.arange(16), wrong_place + 1] == batch.answer_tokens[:, 1]).all()


def test_greater_than_is_the_papers_task(gpt2) -> None:
    sets = _sets("greater_than", gpt2, n=32)
    prompts = sets["in_distribution"]
    batch = prompts.batch
    years = [gpt2.encode(f"{y:02d}")[0] for y in range(100)]
    for row, yy in enumerate(prompts.features["yy"]):
        assert 2 <= yy <= 98
        correct = batch.answer_tokens[row][batch.weights[row] > 0].tolist()
        incorrect = batch.answer_tokens[row][batch.weights[row] < 0].tolist()
        assert correct == years[yy + 1 :] and incorrect == years[: yy + 1]
        assert gpt2.decode(batch.clean_tokens[row, 1:].tolist()).startswith(f"The {prompts.features['noun'][row]} lasted")
        assert gpt2.decode(batch.clean_tokens[row].tolist()).endswith(f"year 17{yy:02d} to the year 17")
        assert gpt2.decode(batch.corrupted_tokens[row].tolist()).endswith("year 1701 to the year 17")
        assert int(batch.clean_tokens[row, prompts.roles["YY"][row]]) == years[yy]
    assert set(sets["other_centuries"].features["century"]) <= set(range(11, 17))
    assert "started in the year" in gpt2.decode(sets["paraphrase"].batch.clean_tokens[0].tolist())


def test_agreement_corruption_flips_the_subjects_number(gpt2) -> None:
    sets = _sets("agreement", gpt2, n=32)
    prompts = sets["in_distribution"]
    batch = prompts.batch
    singular = [gpt2.encode(" " + w)[0] for w in ("is", "was", "has")]
    plural = [gpt2.encode(" " + w)[0] for w in ("are", "were", "have")]
    for row in range(len(batch)):
        correct = batch.answer_tokens[row][batch.weights[row] > 0].tolist()
        expected = singular if prompts.features["number"][row] == "singular" else plural
        assert correct == expected and len(batch.answer_tokens[row]) == 6
        subject = int(prompts.roles["subject"][row])
        words = [gpt2.decode([int(batch.clean_tokens[row, subject])]), gpt2.decode([int(batch.corrupted_tokens[row, subject])])]
        assert words[0].strip() in (prompts.features["subject"][row], prompts.features["subject"][row] + "s")
        assert {w.strip().removesuffix("s") for w in words} == {prompts.features["subject"][row]} and words[0] != words[1]
        differs = (batch.clean_tokens[row] != batch.corrupted_tokens[row]).nonzero().flatten().tolist()
        assert differs == [subject]
    opposite = sets["opposite_attractor"].features
    assert all(a != n for a, n in zip(opposite["attractor_number"], opposite["number"]))
    assert sets["no_attractor"].batch.clean_tokens.shape[1] == 3  # BOS, "The", subject


def test_tokenizers_that_cannot_express_a_task_are_refused_naming_the_word(gpt2) -> None:
    toy = toy_ioi_tokenizer()  # the toy-IOI vocabulary holds IOI's words only
    for name in ("ioi", "induction"):
        _sets(name, toy, n=2)
    with pytest.raises(ConfigError, match=r"greater_than.*event nouns \['war'"):
        _sets("greater_than", toy)
    with pytest.raises(ConfigError, match=r"greater_than.*'00'"):
        make_task("greater_than", nouns=["Then"]).splits(toy, {"val": 2}, seed=0)
    with pytest.raises(ConfigError, match=r"agreement.*noun pairs are one token"):
        _sets("agreement", toy)
    with pytest.raises(ConfigError, match=r"agreement.*' aardvark' is 4 tokens"):
        make_task("agreement", nouns=[("cat", "cats"), ("aardvark", "aardvarks")]).splits(gpt2, {"val": 2}, seed=0)
    tiny = WordTokenizer([BOS, PAD, "a", "b", "c", "d", "e"])
    with pytest.raises(ConfigError, match="induction.*distinct tokens"):
        make_task("induction", length=4, repeat=2).splits(tiny, {"val": 2}, seed=0)
    with pytest.raises(ConfigError, match="no prompt set"):
        make_task("agreement").splits(gpt2, {"held_out_names": 2}, seed=0)
    with pytest.raises(ConfigError, match="positive integer"):
        make_task("agreement").splits(gpt2, {"val": 0}, seed=0)


def test_a_vocabulary_of_the_tasks_words_expresses_every_task() -> None:
    vocabulary = [BOS, PAD, *dict.fromkeys(w for name in GENERATED for w in make_task(name).words())]
    encoder = WordTokenizer(vocabulary)
    for name in GENERATED:
        for prompts in _sets(name, encoder, n=4).values():
            assert len(prompts) == 4
