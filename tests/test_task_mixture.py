"""The task-mixture corpus (toy/task_mixture.py) that trains GPT-2-shaped models, and the per-task head effects."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import yaml
from transformer_lens import patching as tl_patching

from ioi_superpose.baselines.single_head import single_head_effects
from ioi_superpose.cli.train_toy import main as train_toy
from ioi_superpose.data.answer_metrics import contrast_metric
from ioi_superpose.engine.metric import ContrastMetric
from ioi_superpose.engine.runs import gather_end
from ioi_superpose.errors import ConfigError
from ioi_superpose.models import freeze, load_frozen_model
from ioi_superpose.models.toy import build_toy_model, toy_config
from ioi_superpose.toy.batches import IGNORE_INDEX
from ioi_superpose.toy.task_mixture import TaskMixtureDataModule, task_scores


@pytest.fixture(scope="module")
def data() -> TaskMixtureDataModule:
    return TaskMixtureDataModule(batch_size=16)


@pytest.fixture(scope="module")
def model(data: TaskMixtureDataModule):
    cfg = toy_config(2, 3, 16, 4, data.d_vocab, data.n_ctx, layer_norm=True, d_mlp=32)
    return freeze(build_toy_model(cfg, seed=1))


def test_documents_are_next_token_labelled_and_seeded(data: TaskMixtureDataModule) -> None:
    batch = data.token_batch(64, seed=3)
    assert torch.equal(batch["tokens"], data.token_batch(64, seed=3)["tokens"])
    assert not torch.equal(batch["tokens"], data.token_batch(64, seed=4)["tokens"])
    pad = data.tokenizer.pad_token_id
    for tokens, labels in zip(batch["tokens"], batch["labels"]):
        length = int((tokens != pad).sum())
        assert tokens[0] == data.tokenizer.bos_token_id and (tokens[length:] == pad).all()
        assert torch.equal(labels[: length - 1], tokens[1:length])  # the next token everywhere
        assert (labels[length - 1 :] == IGNORE_INDEX).all()  # nothing after the last token, nothing on padding
    assert set(batch["group"].tolist()) == set(range(len(data.group_names)))  # every task and filler drawn
    balanced = data.evaluation_batch(25, seed=0)["group"]
    assert torch.bincount(balanced).tolist() == [5] * 5


def test_task_documents_are_the_tasks_prompts_with_a_correct_answer() -> None:
    for prefix in (0.0, 1.0):
        data = TaskMixtureDataModule(filler_prefix=prefix)
        prompts = data.task_prompts("greater_than", "train", 8, seed=11)
        for row in range(8):
            document = data._task_document(prompts, row, random.Random(row))
            end = int(prompts.batch.end_pos[row])
            prompt = prompts.batch.clean_tokens[row, : end + 1].tolist()
            correct = prompts.batch.answer_tokens[row][prompts.batch.weights[row] > 0].tolist()
            assert document[-1] in correct and document[-1 - end : -1] == prompt[1:] and document[0] == prompt[0]
            filler = document[1 : -1 - end]
            assert (filler == []) == (prefix == 0.0)
            if filler:  # one sentence of 3 to 8 random words and a full stop
                assert filler[-1] == data.full_stop and 3 <= len(filler) - 1 <= 8


def test_task_options_reach_the_tasks_for_training_and_evaluation() -> None:
    data = TaskMixtureDataModule(task_options={"induction": {"repeat": 9}})
    prompts = data.task_prompts("induction", "val", 4, seed=0)
    assert prompts.batch.clean_tokens.shape[1] == 1 + 10 + 9 and (prompts.roles["first_answer"] == 10).all()
    assert data.tasks["ioi"].name_split == (data.held_out_names, data.train_names)


def test_ioi_held_out_names_never_reach_ioi_training_documents(data: TaskMixtureDataModule) -> None:
    held_out = set(data.held_out_names)
    assert len(held_out) == 20 and not held_out & set(data.train_names)
    for seed in range(3):
        prompts = data.task_prompts("ioi", "train", 64, seed)
        assert not held_out & (set(prompts.features["io"]) | set(prompts.features["s"]))
    assert set(data.task_prompts("ioi", "held_out_names", 32, 0).features["io"]) <= held_out
    assert data.metadata()["held_out_names"] == data.held_out_names


def test_bad_mixture_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="generated tasks"):
        TaskMixtureDataModule(tasks=("ioi", "file"), task_weights=(1.0, 1.0))
    with pytest.raises(ConfigError, match="one positive weight per task"):
        TaskMixtureDataModule(tasks=("ioi",), task_weights=(1.0, 2.0))
    with pytest.raises(ConfigError, match=r"task_options names tasks not in .*\['greater_than'\]"):
        TaskMixtureDataModule(tasks=("ioi",), task_weights=(1.0,), task_options={"greater_than": {}})
    with pytest.raises(ConfigError, match="exceeds --data.init_args.n_ctx 8"):
        TaskMixtureDataModule(n_ctx=8).token_batch(8, seed=0)


def test_single_head_effects_equal_transformer_lens_patching_under_the_task_metric(data, model) -> None:
    # single_head_effects is the project's activation patching with the metric given (baselines/single_head.py);
    # here against TransformerLens's own sweep with the probability difference computed by hand.
    batch = data.task_prompts("greater_than", "val", 12, seed=0).batch.trimmed()
    rows = torch.arange(len(batch))

    def prob_diff(logits: torch.Tensor) -> torch.Tensor:
        answers = logits[rows, batch.end_pos].softmax(-1).gather(-1, batch.answer_tokens)
        return (answers * batch.weights.sign()).sum(-1).mean()

    with torch.no_grad():
        clean_logits, clean_cache = model.run_with_cache(batch.clean_tokens)
        clean, corrupted = float(prob_diff(clean_logits)), float(prob_diff(model(batch.corrupted_tokens)))
        expected = tl_patching.get_act_patch_attn_head_out_all_pos(
            model, batch.corrupted_tokens, clean_cache, lambda logits: (prob_diff(logits) - corrupted) / (clean - corrupted)
        )
    ours = single_head_effects(model, batch, "prob_diff", "denoising")
    assert ours.shape == (2, 3) and torch.allclose(ours, expected, atol=1e-4)


def test_the_patching_metric_reads_0_on_the_base_run_and_1_on_the_source_run(data, model) -> None:
    prompts = data.task_prompts("greater_than", "val", 12, seed=0)
    batch = prompts.batch.trimmed()
    logits = {name: model(tokens) for name, tokens in (("clean", batch.clean_tokens), ("corrupted", batch.corrupted_tokens))}
    values = {name: float(contrast_metric("prob_diff", gather_end(value, batch.end_pos), batch.answer_tokens,
                                          batch.weights).mean()) for name, value in logits.items()}  # fmt: skip
    metric = ContrastMetric(batch.answer_tokens, batch.end_pos, values["corrupted"], values["clean"], batch.weights,
                            "prob_diff")  # fmt: skip
    assert float(metric(logits["corrupted"])) == pytest.approx(0.0, abs=1e-4)
    assert float(metric(logits["clean"])) == pytest.approx(1.0, abs=1e-4)
    scores = task_scores(model, prompts, "prob_diff")
    assert scores["clean_prob_diff"] == pytest.approx(values["clean"], abs=1e-4) and scores["n_prompts"] == 12


def _tiny_config(tmp_path: Path, name: str, max_steps: int, checkpoints: bool = False) -> Path:
    """experiments/trained_task_mixture_seed0.yaml shrunk to a 2-layer model and a few steps, writing under tmp_path."""
    config = yaml.safe_load(Path("experiments/trained_task_mixture_seed0.yaml").read_text())
    checkpoint, curve, export = config["trainer"]["callbacks"]
    checkpoint["init_args"].update(dirpath=str(tmp_path / f"{name}_ckpt"), every_n_train_steps=2)
    curve["init_args"]["n_prompts"] = 8
    export["init_args"].update(path=str(tmp_path / f"{name}.pt"), prompts_per_set=8, eval_size=20)
    config["trainer"].update(max_steps=max_steps, val_check_interval=1, logger=False, default_root_dir=str(tmp_path),
                             enable_checkpointing=checkpoints,
                             callbacks=[checkpoint, curve, export] if checkpoints else [curve, export])  # fmt: skip
    config["model"].update(n_layers=2, n_heads=2, d_model=16, d_head=4, d_mlp=16)
    config["data"]["init_args"].update(batch_size=8, eval_prompts_per_task=4)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_train_toy_trains_and_exports_a_task_mixture_model(tmp_path: Path) -> None:
    train_toy(["fit", "--config", str(_tiny_config(tmp_path, "model", max_steps=2))])
    metrics = json.loads((tmp_path / "model.json").read_text())
    assert set(metrics["metrics"]["tasks"]) == {"ioi", "induction", "greater_than", "agreement"}
    assert set(metrics["metrics"]["tasks"]["greater_than"]) == {"metric", "in_distribution", "other_centuries",
                                                                "paraphrase"}  # fmt: skip
    assert [point["step"] for point in metrics["metrics"]["curve"]] == [1, 2]
    model = load_frozen_model(str(tmp_path / "model.pt"))
    assert model.cfg.d_mlp == 16 and model.tokenizer.vocab == TaskMixtureDataModule().tokenizer.vocab


def test_a_resumed_run_trains_exactly_as_the_uninterrupted_one(tmp_path: Path) -> None:
    train_toy(["fit", "--config", str(_tiny_config(tmp_path, "straight", max_steps=4))])
    stopped = _tiny_config(tmp_path, "resumed", max_steps=2, checkpoints=True)
    train_toy(["fit", "--config", str(stopped)])
    train_toy(["fit", "--config", str(stopped), "--trainer.max_steps", "4",
               "--ckpt_path", str(tmp_path / "resumed_ckpt" / "last.ckpt")])  # fmt: skip
    straight, resumed = (load_frozen_model(str(tmp_path / f"{name}.pt")) for name in ("straight", "resumed"))
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
