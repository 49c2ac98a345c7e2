"""Toy models: skip-trigram data, training, checkpoints, ground-truth head supports, the training CLI."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from ioi_superpose.analyses.exhaustive import find_support, head_subsets, patched_logit_diffs
from ioi_superpose.cli.train_toy import main
from ioi_superpose.models.toy import attn_only_config, build_toy_model, load_toy_checkpoint, save_toy_checkpoint
from ioi_superpose.toy.batches import IGNORE_INDEX
from ioi_superpose.toy.export import evaluate_groups
from ioi_superpose.toy.skip_trigrams import (
    SeededBatches,
    SkipTrigramDataModule,
    SkipTrigramTask,
    feature_prompts,
    sample_batch,
)
from ioi_superpose.toy.training import ToyModelTraining
from tests.helpers import REPO, hooks_attached

SHIPPED = {
    "single": REPO / "checkpoints" / "toy_superposition_single.pt",
    "conjunction": REPO / "checkpoints" / "toy_superposition_conjunction.pt",
}


# --- data ----------------------------------------------------------------------------------------------
def test_default_layout_is_the_designs_12_token_vocabulary():
    task = SkipTrigramTask()
    assert task.d_vocab == 12 and task.bos == 11
    assert task.b_tokens.tolist() == [1, 2, 3, 4, 5]
    assert [task.answer(0, i) for i in range(5)] == [6, 7, 8, 9, 10]  # C = B + 5
    conjunction = SkipTrigramTask("two_source_conjunction", n_b_tokens=3)
    assert conjunction.d_vocab == 12 and conjunction.n_features == 6


@pytest.mark.parametrize("kind", ["single_source", "two_source_conjunction"])
def test_sampling_is_deterministic_and_labels_follow_the_rule(kind):
    task = SkipTrigramTask(kind, n_b_tokens=3 if kind != "single_source" else 5)
    first = sample_batch(task, 512, torch.Generator().manual_seed(7))
    again = sample_batch(task, 512, torch.Generator().manual_seed(7))
    other = sample_batch(task, 512, torch.Generator().manual_seed(8))
    for key in first:
        assert torch.equal(first[key], again[key])
    assert not torch.equal(first["tokens"], other["tokens"])
    assert torch.equal(SeededBatches(task, 64, 5, seed=3)[4]["tokens"], SeededBatches(task, 64, 9, seed=3)[4]["tokens"])

    tokens, labels = first["tokens"], first["labels"]
    assert (tokens[:, 0] == task.bos).all() and (labels[:, :-1] == IGNORE_INDEX).all()
    b_index = tokens[:, -1] - task.n_sources
    for row in range(len(tokens)):
        sources = [s for s in range(task.n_sources) if (tokens[row, 1:-1] == s).any()]
        assert len(sources) <= 1
        expected = task.answer(sources[0], b_index[row]) if sources else task.absent_answer(b_index[row])
        assert labels[row, -1] == expected
    if kind == "single_source":  # both the planted and the background groups occur
        assert first["group"].unique().numel() == len(task.group_names)


def test_feature_prompts_are_deterministic_and_differ_only_at_the_source():
    task = SkipTrigramTask()
    prompts = feature_prompts(task, feature=2, n=64, seed=5)
    again = feature_prompts(task, feature=2, n=64, seed=5)
    assert torch.equal(prompts.clean_tokens, again.clean_tokens)
    assert torch.equal(prompts.corrupted_tokens, again.corrupted_tokens)
    differ = prompts.clean_tokens != prompts.corrupted_tokens
    assert (differ.sum(-1) == 1).all()
    assert (prompts.clean_tokens[differ] == 0).all()  # the source was replaced
    assert (prompts.clean_tokens[:, -1] == 3).all() and (prompts.end_pos == 10).all()
    assert prompts.answer_tokens[0].tolist() == [8, 9]  # C(B3) = 8, absent answer C(B4) = 9
    conjunction = feature_prompts(SkipTrigramTask("two_source_conjunction", 3), feature=4, n=8, seed=0)
    assert conjunction.answer_tokens[0].tolist() == [9, 6]  # A1…B3 → C2(B3) = 9; with A0 instead → C1(B3) = 6


@pytest.mark.parametrize(
    "kwargs, option",
    [
        (dict(n_b_tokens=1), "n_b_tokens"),
        (dict(kind="two_source_conjunction", source_probability=0.5), "source_probability"),
        (dict(source_probability=1.5), "source_probability"),
        (dict(n_positions=2), "n_positions"),
        (dict(kind="three_source"), "kind"),
    ],
)
def test_bad_task_options_name_the_option(kwargs, option):
    with pytest.raises(ValueError, match=option):
        SkipTrigramTask(**kwargs)


# --- models and checkpoints ----------------------------------------------------------------------------
def test_checkpoint_reloads_to_identical_logits(tmp_path):
    model = build_toy_model(attn_only_config(1, 3, 16, 4, 12, 11, layer_norm=True), seed=3)
    tokens = sample_batch(SkipTrigramTask(), 32, torch.Generator().manual_seed(0))["tokens"]
    path = save_toy_checkpoint(model, tmp_path / "sub" / "toy.pt", {"task": "test", "metrics": {"acc": 1.0}})
    loaded, metadata = load_toy_checkpoint(path)
    assert metadata == {"task": "test", "metrics": {"acc": 1.0}}
    assert torch.equal(model(tokens), loaded(tokens))
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training
    assert path.stat().st_size < 1_000_000 and list(path.parent.iterdir()) == [path]  # no temp file left
    with pytest.raises(TypeError, match="JSON"):
        save_toy_checkpoint(model, tmp_path / "bad.pt", {"tensor": torch.zeros(1)})


def test_build_is_seeded_and_leaves_the_global_rng_alone():
    cfg = attn_only_config(1, 2, 16, 4, 12, 11)
    state = torch.random.get_rng_state()
    first, second, third = build_toy_model(cfg, seed=1), build_toy_model(cfg, seed=1), build_toy_model(cfg, seed=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(first.W_Q, second.W_Q) and not torch.equal(first.W_Q, third.W_Q)


def test_tiny_model_loss_falls_within_seconds():
    data = SkipTrigramDataModule(batch_size=128, train_batches=150, seed=1)
    module = ToyModelTraining(n_heads=2, d_model=16, d_head=4, d_vocab=data.d_vocab, n_ctx=data.n_ctx, lr=0.02)
    batch = data.evaluation_batch(1024, seed=99)

    def loss() -> float:
        with torch.no_grad():
            logits = module.model(batch["tokens"])
        return float(F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE_INDEX))

    before = loss()
    trainer = L.Trainer(
        max_steps=150,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(module, data)
    assert loss() < 0.5 * before, (before, loss())


# --- ground truth --------------------------------------------------------------------------------------
def _planted_model(active: list[int], copy_from: int = 0) -> torch.nn.Module:
    """A random 1-layer, 3-head model in which only `active` heads write to the residual stream, all of
    them copies of head `copy_from`: each active head then carries an equal share of every feature."""
    model = build_toy_model(attn_only_config(1, 3, 16, 4, 12, 11), seed=0)
    with torch.no_grad():
        model.W_O.mul_(8.0)  # large head effects, so clean and corrupted runs differ clearly
        for name in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V"):
            weight = getattr(model.blocks[0].attn, name)
            for head in active:
                weight[head] = weight[copy_from]
        for head in set(range(3)) - set(active):
            model.blocks[0].attn.W_O[head] = 0.0
    return model.eval()


def test_search_finds_a_planted_two_head_support():
    model = _planted_model(active=[0, 2])
    prompts = feature_prompts(SkipTrigramTask(), feature=1, n=64, seed=0)
    result = find_support(model, prompts)
    assert result.support == [(0, 0), (0, 2)] and result.reached_threshold
    assert result.support_recovery == pytest.approx(1.0, abs=1e-4)
    assert result.single_head_recovery[0] == pytest.approx([0.5, 0.0, 0.5], abs=1e-4)
    assert result.subset_recovery["none"] == pytest.approx(0.0, abs=1e-5)
    assert result.subset_recovery["0.0+0.1+0.2"] == pytest.approx(1.0, abs=1e-5)
    assert len(result.subset_recovery) == 8
    assert hooks_attached(model) == 0


def test_search_finds_a_planted_single_head_support():
    model = _planted_model(active=[1], copy_from=1)
    result = find_support(model, feature_prompts(SkipTrigramTask(), feature=3, n=64, seed=1))
    assert result.support == [(0, 1)]
    assert result.single_head_recovery[0] == pytest.approx([0.0, 1.0, 0.0], abs=1e-4)


def test_folded_subsets_equal_one_subset_per_forward():
    model = build_toy_model(attn_only_config(2, 2, 16, 4, 12, 11, layer_norm=True), seed=4).eval()
    prompts = feature_prompts(SkipTrigramTask(), feature=0, n=16, seed=2)
    subsets = head_subsets(2, 2)
    assert subsets.shape == (16, 2, 2)
    folded = patched_logit_diffs(model, prompts, subsets)
    one_by_one = patched_logit_diffs(model, prompts, subsets, max_batch_rows=1)
    torch.testing.assert_close(folded, one_by_one, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="max_heads"):
        find_support(model, prompts, max_heads=3)


# --- shipped checkpoints -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["single", "conjunction"])
def test_shipped_checkpoints_reach_95_percent_on_every_feature(name):
    model, metadata = load_toy_checkpoint(SHIPPED[name])
    task = SkipTrigramTask(**metadata["task_parameters"])
    accuracy = evaluate_groups(model, sample_batch(task, 8192, torch.Generator().manual_seed(2024)), task.group_names)
    assert min(accuracy.values()) >= 0.95, accuracy
    assert task.n_features > model.cfg.n_layers * model.cfg.n_heads  # more features than heads
    supports = [find_support(model, feature_prompts(task, f, 128, seed=77 + f)).support for f in range(task.n_features)]
    if name == "conjunction":
        assert any(len(support) >= 2 for support in supports), supports

    # The JSON beside the checkpoint describes these weights: recompute what ExportToyModel wrote, with
    # its seeds and sizes (eval_seed + feature index, the default 256 prompts per feature).
    shipped = json.loads(SHIPPED[name].with_suffix(".json").read_text())["metrics"]
    recomputed = evaluate_groups(
        model,
        sample_batch(task, shipped["eval_size"], torch.Generator().manual_seed(shipped["eval_seed"])),
        task.group_names,
    )
    assert recomputed == pytest.approx(shipped["group_accuracy"], abs=1e-5)
    assert [record["feature"] for record in shipped["ground_truth"]] == task.group_names[: task.n_features]
    for index, record in enumerate(shipped["ground_truth"]):
        result = find_support(
            model, feature_prompts(task, index, 256, shipped["eval_seed"] + index), threshold=record["threshold"]
        )
        assert [list(head) for head in result.support] == record["support"], record["feature"]
        assert result.subset_recovery == pytest.approx(record["subset_recovery"], abs=1e-4)
        assert (result.clean_logit_diff, result.corrupted_logit_diff) == pytest.approx(
            (record["clean_logit_diff"], record["corrupted_logit_diff"]), abs=1e-3
        )
        # The recorded support is the smallest subset reaching the threshold.
        size = len(record["support"])
        assert record["reached_threshold"] and record["support_recovery"] >= record["threshold"]
        assert all(
            value < record["threshold"]
            for key, value in record["subset_recovery"].items()
            if (0 if key == "none" else len(key.split("+"))) < size
        ), record["feature"]


# --- the training entry --------------------------------------------------------------------------------
@pytest.mark.smoke
def test_cli_fit_writes_checkpoint_and_metrics(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "toy.yaml"
    config.write_text(
        """
torch_threads: 1
trainer:
  max_steps: 20
  enable_progress_bar: false
  enable_model_summary: false
  enable_checkpointing: false
  limit_val_batches: 1
  callbacks:
    - class_path: ioi_superpose.toy.ExportToyModel
      init_args: {path: out/toy.pt, eval_size: 256, prompts_per_feature: 16}
model: {n_heads: 2, d_model: 16, d_head: 4}
data:
  class_path: ioi_superpose.toy.SkipTrigramDataModule
  init_args: {kind: two_source_conjunction, n_b_tokens: 2, batch_size: 32, train_batches: 20, eval_batches: 1}
"""
    )
    main(["fit", "--config", str(config)])
    model, metadata = load_toy_checkpoint(tmp_path / "out" / "toy.pt")
    assert model.cfg.d_vocab == SkipTrigramTask("two_source_conjunction", 2).d_vocab  # linked from the data
    metrics = json.loads((tmp_path / "out" / "toy.json").read_text())["metrics"]
    assert set(metrics["group_accuracy"]) == set(metadata["group_names"]) and len(metrics["ground_truth"]) == 4
    assert "out/toy.pt" in capsys.readouterr().out
    assert any((tmp_path / "runs").rglob("events.out.tfevents.*"))  # TensorBoard by default


def test_cli_options_reach_torch_and_the_optimiser(tmp_path, monkeypatch):
    """--torch_threads sets torch's threads before training; --model.weight_decay / --model.betas are the
    AdamW the fit steps with (not just documented in --help)."""
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(2)  # the autouse one_thread fixture restores it
    cli = main([
        "fit", "--torch_threads", "1", *SKIP_TRIGRAMS, "--data.init_args.batch_size", "8",
        "--data.init_args.train_batches", "1", "--data.init_args.eval_batches", "1",
        "--model.n_heads", "2", "--model.d_model", "16", "--model.d_head", "4",
        "--model.weight_decay", "0.25", "--model.betas", "[0.8, 0.9]", "--trainer.fast_dev_run", "true",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
    ])  # fmt: skip
    assert torch.get_num_threads() == 1
    (optimiser,) = cli.trainer.optimizers
    assert type(optimiser) is torch.optim.AdamW
    assert optimiser.param_groups[0]["weight_decay"] == 0.25 and tuple(optimiser.param_groups[0]["betas"]) == (0.8, 0.9)
    assert cli.trainer.global_step == 1  # it trained with them


SKIP_TRIGRAMS = ["--data", "ioi_superpose.toy.SkipTrigramDataModule", "--data.init_args.kind", "two_source_conjunction"]


@pytest.mark.parametrize(
    "arguments, flag",
    [
        ([*SKIP_TRIGRAMS, "--model.n_heads", "0"], "--model.n_heads must be >= 1, got 0."),
        ([*SKIP_TRIGRAMS, "--data.init_args.n_b_tokens", "0"], "--data.init_args.n_b_tokens must be >= 1"),
        ([*SKIP_TRIGRAMS, "--data.init_args.batch_size", "0"], "--data.init_args.batch_size must be >= 1, got 0."),
        ([*SKIP_TRIGRAMS, "--model.init_from", "no/such/toy.pt"], "--model.init_from=no/such/toy.pt: no such file"),
        (
            ["--data", "ioi_superpose.toy.ToyIOIDataModule", "--data.init_args.held_out_name_fraction", "1.5"],
            "--data.init_args.held_out_name_fraction must be in (0, 1), got 1.5.",
        ),
    ],
)
def test_cli_reports_a_bad_setting_in_one_line(arguments, flag, tmp_path, monkeypatch, capsys):
    # The datamodule's errors reach main wrapped by jsonargparse (subclass mode): still one line, exit 1.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--trainer.logger", "false", *arguments])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and flag in err and "Traceback" not in err, err
