"""The `file` task: the user's prompt pairs in auto-circuit's JSON format or JSON Lines, and the refusals of bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.errors import ConfigError
from ioi_superpose.models import gpt2_tokenizer
from ioi_superpose.tasks import TaskPrompts, make_task, read_pair_file, write_pair_file
from ioi_superpose.toy import toy_ioi_tokenizer

EXAMPLE = Path("experiments/tasks/ioi_prompts.json")
GOOD = {"clean": "Then, Mary and John went to the store. John gave a ring to",
        "corrupt": "Then, Mary and John went to the store. Mary gave a ring to",
        "answers": [" Mary"], "wrong_answers": [" John"]}  # fmt: skip


@pytest.fixture(scope="module")
def gpt2():
    return gpt2_tokenizer()


def _in_file_order(prompts: TaskPrompts) -> ContrastBatch:
    """The file task's rows sorted back into the order of the file's records."""
    return prompts[torch.tensor(prompts.features["record"]).argsort()].batch


def _same_prompts(a: ContrastBatch, b: ContrastBatch) -> None:
    length = max(a.clean_tokens.shape[1], b.clean_tokens.shape[1])
    a, b = a.trimmed(), b.trimmed()
    assert a.clean_tokens.shape[1] == b.clean_tokens.shape[1] <= length
    for name in ("clean_tokens", "corrupted_tokens", "answer_tokens", "end_pos"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert (a.answer_weights is None) == (b.answer_weights is None)


@pytest.mark.parametrize("tokenizer", ["toy", "gpt2"])
def test_the_shipped_ioi_file_gives_the_built_in_tasks_contrast_batch(tokenizer: str, gpt2) -> None:
    encoder = toy_ioi_tokenizer() if tokenizer == "toy" else gpt2
    built_in = make_task("ioi").splits(encoder, {"in_distribution": 96}, seed=0)["in_distribution"].batch
    from_file = make_task("file", path=str(EXAMPLE)).splits(encoder, {"train": 96}, seed=5)["train"]
    _same_prompts(_in_file_order(from_file), built_in)


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_answer_sets_round_trip_through_a_file(suffix: str, gpt2, tmp_path: Path) -> None:
    prompts = make_task("greater_than").splits(gpt2, {"val": 12}, seed=0)["val"]
    path = write_pair_file(prompts, gpt2, tmp_path / f"years{suffix}")
    back = make_task("file", path=str(path)).splits(gpt2, {"val": 12}, seed=0)["val"]
    ordered = _in_file_order(back)
    _same_prompts(ordered, prompts.batch)
    assert torch.allclose(ordered.answer_weights, prompts.batch.answer_weights)
    if suffix == ".jsonl":  # one record a line
        assert sorted(back.features["line"]) == list(range(1, 13))


def test_splits_are_seeded_disjoint_and_a_test_file_is_optional(gpt2, tmp_path: Path) -> None:
    task = make_task("file", path=str(EXAMPLE))
    sizes = {"train": 64, "val": 16, "in_distribution": 16}
    first, again, other = (task.splits(gpt2, sizes, seed) for seed in (0, 0, 1))
    records = {name: set(prompts.features["record"]) for name, prompts in first.items()}
    assert set().union(*records.values()) == set(range(1, 97))  # every record in exactly one set
    assert sum(len(r) for r in records.values()) == 96
    assert all(first[n].features["record"] == again[n].features["record"] for n in sizes)
    assert first["train"].features["record"] != other["train"].features["record"]
    test_file = tmp_path / "test.jsonl"
    test_file.write_text(json.dumps(GOOD) + "\n" + json.dumps({**GOOD, "corrupt": GOOD["corrupt"].replace("store", "house")}) + "\n")
    with_test = make_task("file", path=str(EXAMPLE), test_path=str(test_file)).splits(gpt2, {**sizes, "in_distribution": 2}, 0)
    assert len(with_test["in_distribution"]) == 2 and sorted(with_test["in_distribution"].features["line"]) == [1, 2]
    assert len(set(with_test["train"].features["record"]) | set(with_test["val"].features["record"])) == 80


def test_token_id_prompts_and_word_idxs_become_roles(tmp_path: Path, gpt2) -> None:
    path = tmp_path / "ids.json"
    records = [{"clean": [50256, 10, 11, 12], "corrupt": [50256, 10, 13, 12], "answers": [5], "wrong_answers": [6, 7]},
               {"clean": [50256, 20, 21, 22], "corrupt": [50256, 20, 23, 22], "answers": [8], "wrong_answers": [9, 3]}]
    path.write_text(json.dumps({"word_idxs": {"changed": 2, "end": 3}, "seq_labels": ["BOS", "a", "b", "c"],
                                "prompts": records}))  # fmt: skip
    task = make_task("file", path=str(path))
    prompts = task.splits(gpt2, {"train": 2}, seed=0)["train"]
    assert task.role_names == ("changed", "end")
    assert prompts.roles["changed"].tolist() == [2, 2] and prompts.roles["end"].tolist() == [3, 3]
    ordered = _in_file_order(prompts)
    assert ordered.clean_tokens.tolist() == [[50256, 10, 11, 12], [50256, 20, 21, 22]]
    assert ordered.answer_tokens.tolist() == [[5, 6, 7], [8, 9, 3]]
    assert ordered.answer_weights.tolist() == [[1.0, -0.5, -0.5], [1.0, -0.5, -0.5]]
    assert read_pair_file(path).seq_labels == ["BOS", "a", "b", "c"]


def _json(*records: object, **top: object) -> str:
    return json.dumps({"prompts": list(records), **top}, indent=1)


BAD_FILES = {  # name: (suffix, contents, what the message must say)
    "bad JSON": (".json", '{"prompts": [\n  {"clean": "a",}\n]}', r"line 2 column \d+: not valid JSON"),
    "bad JSON line": (".jsonl", json.dumps(GOOD) + "\n{clean: 1}\n", r"line 2 column \d+: not valid JSON"),
    "not auto-circuit's object": (".json", json.dumps([GOOD]), r'line 1: expected an object \{"prompts"'),
    "unknown top-level key": (".json", _json(GOOD, prompt_labels=[]), r"unknown key\(s\) \['prompt_labels'\]"),
    "no prompts": (".json", _json(), "holds no prompt pairs"),
    "record not an object": (".json", _json(GOOD, "Then, Mary"), r"line 13 \(record 2\): a record must be an object"),
    "missing key": (".jsonl", json.dumps({k: v for k, v in GOOD.items() if k != "wrong_answers"}),
                    r"line 1 \(record 1\): missing key\(s\) \['wrong_answers'\]"),
    "unknown key": (".jsonl", json.dumps({**GOOD, "wrong_answer": [" John"]}), r"unknown key\(s\) \['wrong_answer'\]"),
    "answers not a list": (".jsonl", json.dumps({**GOOD, "answers": " Mary"}), r"'answers' must be a list"),
    "empty prompt": (".jsonl", json.dumps({**GOOD, "clean": " "}), r"'clean' must be a non-empty string"),
    "empty answers": (".jsonl", json.dumps({**GOOD, "wrong_answers": []}), r"'wrong_answers' is empty"),
    "answer listed twice": (".jsonl", json.dumps({**GOOD, "answers": [" Mary", " Mary"]}), r"lists \[' Mary'\] more"),
    "answer both right and wrong": (".jsonl", json.dumps({**GOOD, "wrong_answers": [" John", " Mary"]}),
                                    r"\[' Mary'\] are in both"),
    "answer of several tokens": (".jsonl", "\n" + json.dumps({**GOOD, "answers": [" Maryanne"]}),
                                 r"line 2 \(record 1\): the answer ' Maryanne' is 2 tokens"),
    "lengths differ": (".jsonl", json.dumps({**GOOD, "corrupt": GOOD["corrupt"].replace("Mary gave", "Mary Ann gave")}),
                       r"line 1 \(record 1\): the clean prompt is 16 tokens and the corrupted one 17"),
    "no contrast": (".jsonl", json.dumps({**GOOD, "corrupt": GOOD["clean"]}), "are the same tokens"),
    "duplicate record": (".json", _json(GOOD, GOOD), r"line 13 \(record 2\): the same prompt pair as .*line 3 \(record 1\)"),
    "mixed prompt forms": (".jsonl", json.dumps(GOOD) + "\n" + json.dumps({**GOOD, "clean": [1, 2], "corrupt": [1, 3],
                                                                        "answers": [4], "wrong_answers": [5]}),
                           r"line 2 \(record 2\): prompts are token ids here but strings"),
    "token id outside the vocabulary": (".jsonl", json.dumps({"clean": [1, 99999], "corrupt": [1, 2], "answers": [4],
                                                               "wrong_answers": [5]}), r"token ids \[99999\] are outside"),
    "word_idxs past the prompt": (".json", _json(GOOD, word_idxs={"END": 40}), r'"word_idxs" \{\'END\': 40\} point past'),
    "seq_labels of another length": (".json", _json(GOOD, seq_labels=["a", "b"]), r'"seq_labels" names 2 positions'),
    "wrong suffix": (".txt", json.dumps(GOOD), r"must be \.json .* or \.jsonl"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_files_are_refused_naming_the_problem_and_line(kind: str, tmp_path: Path, gpt2) -> None:
    suffix, contents, message = BAD_FILES[kind]
    path = tmp_path / f"pairs{suffix}"
    path.write_text(contents)
    with pytest.raises(ConfigError, match=message) as error:
        make_task("file", path=str(path)).splits(gpt2, {"train": 1}, seed=0)
    assert str(path) in str(error.value)


def test_the_file_task_takes_the_metric_the_user_names() -> None:
    assert make_task("file", path=str(EXAMPLE)).metric == "logit_diff"
    assert make_task("file", path=str(EXAMPLE), metric="prob_diff").metric == "prob_diff"
    with pytest.raises(ConfigError, match="Unknown metric 'kl'"):
        make_task("file", path=str(EXAMPLE), metric="kl")


def test_a_file_too_small_for_the_requested_splits_is_refused(tmp_path: Path, gpt2) -> None:
    with pytest.raises(ConfigError, match=r"holds 96 prompt pairs but the requested sets need 120 \(train 100, val 20\)"):
        make_task("file", path=str(EXAMPLE)).splits(gpt2, {"train": 100, "val": 20}, seed=0)
    with pytest.raises(ConfigError, match="no such prompt file"):
        make_task("file", path=str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="has no prompt set"):
        make_task("file", path=str(EXAMPLE)).splits(gpt2, {"held_out_names": 4}, seed=0)


def test_a_word_level_tokenizer_names_the_unknown_word_and_line(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps({**GOOD, "clean": GOOD["clean"].replace("store", "castle")}))
    with pytest.raises(ConfigError, match=r"line 2 \(record 2\): Words not in the toy-IOI vocabulary: \['castle'\]"):
        make_task("file", path=str(path)).splits(toy_ioi_tokenizer(), {"train": 2}, seed=0)


def test_texts_that_do_not_tokenize_back_are_not_written(tmp_path: Path, gpt2) -> None:
    prompts = make_task("induction").splits(gpt2, {"val": 4}, seed=0)["val"]  # random GPT-2 tokens
    with pytest.raises(ConfigError, match="does not tokenize back"):
        write_pair_file(prompts, gpt2, tmp_path / "induction.json")
    assert not (tmp_path / "induction.json").exists()
