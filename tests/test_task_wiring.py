"""Any task through the learned combination: `--data.task` / `task=`, answer sets through the one metric, the
refusals of what a task cannot give (roles for per_position, prompts longer than the model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ioi_superpose.api import learn_combination, learn_combinations
from ioi_superpose.baselines.logit_attribution import direct_logit_attribution
from ioi_superpose.data.answer_metrics import set_weights
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.metric import ContrastMetric, logit_diff
from ioi_superpose.errors import ConfigError
from ioi_superpose.models import gpt2_tokenizer, load_frozen_model, load_tokenizer
from ioi_superpose.tasks import make_task, write_pair_file
from ioi_superpose.tasks.datamodule import TaskDataModule
from ioi_superpose.toy import toy_ioi_tokenizer
from tests.helpers import QUIET, REPO, TOY_IOI, random_model, run_cli

EXAMPLE = REPO / "experiments" / "tasks" / "ioi_prompts.json"
TOY_INDUCTION = str(REPO / "checkpoints" / "toy_induction.pt")


def test_logit_diff_of_answer_sets_is_the_mean_correct_minus_the_mean_incorrect_logit() -> None:
    logits = torch.tensor([[[3.0, 1.0, 5.0, 0.0], [2.0, 4.0, 0.0, 9.0]]])  # [variants 1, batch 2, k 4]
    weights = torch.tensor([set_weights(2, 1, 4), set_weights(1, 1, 4)])  # 2 correct + 1 incorrect; a pair + padding
    assert torch.allclose(logit_diff(logits, weights), torch.tensor([[(3 + 1) / 2 - 5, 2 - 4]]))
    pair = torch.tensor([[1.5, -2.0]])
    assert torch.equal(logit_diff(pair), logit_diff(pair, torch.tensor([[1.0, -1.0]])))  # the pair, bit for bit
    metric = ContrastMetric(torch.tensor([[0, 1, 2, 3]]), torch.tensor([0]), answer_weights=weights[:1])
    assert torch.allclose(metric(logits[0, :1, None, :].expand(1, 1, 4)), torch.tensor(0.0 + (3 + 1) / 2 - 5))


def test_direct_logit_attribution_reads_the_answer_sets() -> None:
    model = random_model(attn_only=True)
    tokens = torch.randint(1, 50, (4, 6), generator=torch.Generator().manual_seed(0))
    answers = torch.tensor([[3, 4, 5, 6]] * 4)
    weights = torch.tensor([set_weights(3, 1, 4)] * 4)
    result = direct_logit_attribution(model, tokens, answers, torch.full((4,), 5), weights)
    end_logits = model(tokens)[:, -1]
    expected = float(logit_diff(end_logits.gather(-1, answers), weights).mean())
    assert result.logit_diff == pytest.approx(expected, abs=1e-5)
    assert result.decomposed.sum() + result.constant == pytest.approx(expected, abs=1e-4)


def test_the_same_ioi_prompts_as_a_file_learn_the_same_alpha_as_the_built_in_task() -> None:
    model = load_frozen_model(TOY_IOI)
    encoder = toy_ioi_tokenizer()
    built_in = make_task("ioi").splits(encoder, {"in_distribution": 96}, seed=0)["in_distribution"].batch
    settings = {"steps": 40, "l1": 1e-2, "lr": 0.05, "prune_target": None}
    direct = learn_combination(model, built_in.clean_tokens, built_in.corrupted_tokens, built_in.answer_tokens,
                               end_positions=built_in.end_pos, **settings)  # fmt: skip
    from_file = learn_combination(model, task="file", task_options={"path": str(EXAMPLE)}, n_prompts=96,
                                  tokenizer=encoder, **settings)  # fmt: skip
    assert not torch.allclose(direct.coefficients, torch.ones_like(direct.coefficients), atol=0.05)  # α was learned
    # The file task shuffles the records into its split: the same prompts in another order (sums in another order).
    assert torch.allclose(from_file.coefficients, direct.coefficients, atol=1e-4)
    assert from_file.recovery == pytest.approx(direct.recovery, abs=1e-4)
    assert from_file.support == direct.support


def test_answer_sets_reach_the_api_and_the_pair_written_as_a_set_learns_the_same_alpha() -> None:
    model = random_model(attn_only=True, seed=1)
    generator = torch.Generator().manual_seed(0)
    clean = torch.randint(1, 50, (16, 6), generator=generator)
    corrupted = clean.clone()
    corrupted[:, 2] = torch.randint(1, 50, (16,), generator=generator)
    pair = torch.randint(1, 50, (16, 2), generator=generator)
    pair[:, 1] = (pair[:, 0] + 1) % 49 + 1
    settings = {"steps": 20, "l1": 1e-3, "prune_target": None}
    as_pair = learn_combination(model, clean, corrupted, pair, **settings)
    as_set = learn_combination(model, clean, corrupted, torch.cat([pair, pair[:, :1]], 1),
                               answer_weights=torch.tensor([[1.0, -1.0, 0.0]] * 16), **settings)  # fmt: skip
    assert torch.allclose(as_set.coefficients, as_pair.coefficients, atol=1e-6)
    # A real set: correct = {a, b} changes the objective, so α differs.
    two = learn_combination(model, clean, corrupted, torch.cat([pair, (pair[:, :1] + 2) % 49 + 1], 1)[:, [0, 2, 1]],
                            answer_weights=torch.tensor([set_weights(2, 1, 3)] * 16), **settings)  # fmt: skip
    assert not torch.allclose(two.coefficients, as_pair.coefficients, atol=1e-3)


def test_per_position_is_refused_for_a_task_without_ioi_roles() -> None:
    model = load_frozen_model(TOY_IOI)
    with pytest.raises(ConfigError, match="per_position.*task 'file' has none"):
        learn_combination(model, task="file", task_options={"path": str(EXAMPLE)}, n_prompts=8,
                          tokenizer=toy_ioi_tokenizer(), combination="per_position", steps=1)  # fmt: skip
    with pytest.raises(ConfigError, match="reads IOI's roles.*task 'induction' names"):
        learn_combination(model, task="induction", n_prompts=8, tokenizer=toy_ioi_tokenizer(),
                          combination="per_position", steps=1)  # fmt: skip


def test_the_datamodule_refuses_what_a_task_cannot_take() -> None:
    with pytest.raises(ConfigError, match="--data.path"):
        TaskDataModule(task="file")
    with pytest.raises(ConfigError, match="file task's"):
        TaskDataModule(task="induction", path="x.json")
    with pytest.raises(ConfigError, match="--data.corruption is a setting of the IOI task"):
        TaskDataModule(task="induction", corruption="abc")
    with pytest.raises(ConfigError, match="no prompt set"):
        TaskDataModule(task="induction", off_distribution=("held_out_names",))


def test_induction_runs_through_the_cli_on_a_toy_model(tmp_path: Path, monkeypatch, capsys) -> None:
    args = ["fit", "--model.model_name", TOY_INDUCTION, "--data.task", "induction", "--data.task_options",
            "{length: 6, repeat: 3}",
            "--data.n_train", "16", "--data.n_val", "8", "--data.n_test", "8", "--data.batch_size", "8",
            "--trainer.max_steps", "2", *QUIET]  # fmt: skip
    run_cli(args, tmp_path, monkeypatch)
    summaries = list(tmp_path.glob("runs/**/summary.json"))
    assert len(summaries) == 1
    summary = json.loads(summaries[0].read_text())
    assert summary["config"]["data"]["task"] == "induction"
    assert list(summary["recovery"]["test"]) == ["in_distribution", "long_sequences", "short_sequences"]
    assert "no max-activating table" in capsys.readouterr().out
    assert summary["recovery"]["val"] > 0.5  # the model does induction: the gap is there, α near its start of 1


def test_prompts_longer_than_the_models_context_are_refused_before_training(tmp_path: Path, monkeypatch) -> None:
    args = ["fit", "--model.model_name", TOY_IOI, "--data.task", "induction", "--data.task_options", "{length: 20, repeat: 8}",
            "--data.n_train", "8", "--data.n_val", "8", "--data.n_test", "8", "--trainer.max_steps", "1", *QUIET]  # fmt: skip
    with pytest.raises(SystemExit):
        run_cli(args, tmp_path, monkeypatch)
    assert not list(tmp_path.glob("runs/**/checkpoints/*.ckpt"))


def test_a_file_of_answer_sets_keeps_its_weights_through_the_datamodule(tmp_path: Path) -> None:
    years = make_task("greater_than").splits(gpt2_tokenizer(), {"val": 12}, seed=0)["val"]
    path = write_pair_file(years, gpt2_tokenizer(), tmp_path / "years.jsonl")
    datamodule = TaskDataModule(task="file", path=str(path), model_name="gpt2-small", n_train=6, n_val=3, n_test=3)
    datamodule.setup("fit")
    batch = datamodule.splits["train"]
    assert isinstance(batch, ContrastBatch) and batch.answer_weights is not None and batch.answer_tokens.shape[1] > 2
    assert datamodule.test_set_names == ["in_distribution"]


@pytest.mark.parametrize("name", ["ioi_prompts.json", "greater_than_prompts.jsonl"])
def test_the_shipped_example_files_read_whole(name: str) -> None:
    # greater_than_prompts.jsonl held one record twice (drawn with replacement), which the file task refuses.
    path = REPO / "experiments" / "tasks" / name
    n = sum(1 for line in path.read_text().splitlines() if line.strip()) if path.suffix == ".jsonl" else 96
    prompts = make_task("file", path=str(path)).splits(gpt2_tokenizer(), {"train": n}, seed=0)["train"]
    assert len(prompts) == n


def test_agreement_runs_through_the_cli_on_a_random_weight_gpt2(tiny_gpt2_dir, tmp_path: Path, monkeypatch) -> None:
    args = ["fit", "--model.model_name", str(tiny_gpt2_dir), "--data.task", "agreement", "--data.n_train", "16",
            "--data.n_val", "8", "--data.n_test", "8", "--data.batch_size", "8", "--trainer.max_steps", "2",
            "--max_activating.per_set", "0", *QUIET]  # fmt: skip
    run_cli(args, tmp_path, monkeypatch)
    summary = json.loads(next(tmp_path.glob("runs/**/summary.json")).read_text())
    assert summary["config"]["data"]["task"] == "agreement"
    assert list(summary["recovery"]["test"]) == ["in_distribution", "no_attractor", "opposite_attractor"]


def test_a_batched_fit_draws_the_tasks_prompts_too() -> None:
    model = load_frozen_model(TOY_INDUCTION)
    results = learn_combinations(model, task="induction", n_prompts=16, tokenizer=load_tokenizer(TOY_INDUCTION),
                                 members=[{"l1": 1e-3}, {"l1": 3e-2}], steps=20, prune_target=None)  # fmt: skip
    assert len(results) == 2 and results[0].clean_logit_diff > 1.0  # the model does induction on them
    assert not torch.equal(results[0].coefficients, results[1].coefficients)
