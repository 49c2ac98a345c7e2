"""Issue 24, the API, the data and the messages: prompts read at or through padding, ranges that make a result
meaningless, repeated names, corpus texts cut at the context, and the settings that ended in a traceback (or only
failed after training) — each is one `error:` line naming the option, before any work. Each test failed on the code
before the fix."""

from __future__ import annotations

import json
import re

import pytest
import torch

from ioi_superpose import learn_combination
from ioi_superpose.cli.train import main as train_main
from ioi_superpose.cli.train_toy import main as toy_main
from ioi_superpose.data.prompts import ioi_prompts
from ioi_superpose.errors import ConfigError
from ioi_superpose.models import load_frozen_model
from ioi_superpose.results.report import main as report_main
from tests.helpers import EXPERIMENTS, TOY_IOI

TINY = ["--model.model_name", TOY_IOI, "--data.n_train", "16", "--data.n_val", "8", "--data.n_test", "8",
        "--data.batch_size", "8", "--data.off_distribution", "[held_out_names]", "--trainer.enable_progress_bar",
        "false", "--trainer.enable_model_summary", "false", "--max_activating.per_set", "0"]  # fmt: skip


@pytest.fixture(scope="module")
def toy():
    return load_frozen_model(TOY_IOI)


@pytest.fixture(scope="module")
def prompts():
    return ioi_prompts(TOY_IOI, n=16)


def fit_fails(args: list[str], tmp_path, monkeypatch, capsys, config: list[str] = ()) -> str:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        train_main(["fit", *config, *TINY, *args])
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return captured.err + captured.out


# ---- END positions at padding, left padding -----------------------------------------------------------


def test_end_positions_at_the_pad_token_are_refused_naming_the_rows(toy):
    padded = ioi_prompts(TOY_IOI, n=16, equal_length=False)
    ends = padded.end_pos.clone()
    long_rows = (padded.end_pos < padded.clean_tokens.shape[1] - 1).nonzero().flatten()
    ends[long_rows[:2]] = padded.clean_tokens.shape[1] - 1  # these rows are padded there
    with pytest.raises(ConfigError, match=re.escape(f"pad token in 2 of 16 prompts (rows {long_rows[:2].tolist()})")):
        learn_combination(toy, padded.clean_tokens, padded.corrupted_tokens, padded.answer_tokens, steps=1,
                          end_positions=ends)  # fmt: skip


def test_left_padded_prompts_are_refused_naming_the_rows(toy, prompts):
    pad = toy.tokenizer.pad_token_id
    clean, corrupted = prompts.clean_tokens.clone(), prompts.corrupted_tokens.clone()
    shifted = lambda t: torch.cat([torch.full((1,), pad), t[:-1]])  # noqa: E731 — one row moved right by one pad
    clean[3], corrupted[3] = shifted(clean[3]), shifted(corrupted[3])
    with pytest.raises(ConfigError, match=r"1 of 16 prompts hold the pad token before END \(rows \[3\]\)"):
        learn_combination(toy, clean, corrupted, prompts.answer_tokens, steps=1)


def test_right_padded_prompts_with_their_end_positions_still_train(toy):
    padded = ioi_prompts(TOY_IOI, n=16, equal_length=False)
    result = learn_combination(toy, padded.clean_tokens, padded.corrupted_tokens, padded.answer_tokens, steps=1,
                               end_positions=padded.end_pos)  # fmt: skip
    assert result.recovery == pytest.approx(1.0, abs=0.05)  # α = 1 after one step: the full patch


# ---- ranges that make a result meaningless; say what was evaluated ----------------------------------------


def test_an_l0_threshold_no_bounded_weight_can_exceed_is_refused(toy, prompts):
    with pytest.raises(ConfigError, match="l0_threshold must be < 1 with bounded true"):
        learn_combination(toy, prompts.clean_tokens, prompts.corrupted_tokens, prompts.answer_tokens, steps=1,
                          l0_threshold=1.0)  # fmt: skip
    unbounded = learn_combination(toy, prompts.clean_tokens, prompts.corrupted_tokens, prompts.answer_tokens,
                                  steps=1, l0_threshold=1.0, bounded=False, init=2.0)  # fmt: skip
    assert unbounded.l0 > 0  # unbounded weights can exceed it: allowed, and counted


@pytest.mark.parametrize("target", [1e-9, 0.0])
def test_a_prune_target_below_float_noise_is_refused(toy, prompts, target):
    with pytest.raises(ConfigError, match=r"prune_target must be in \[0.001, 1\]"):
        learn_combination(toy, prompts.clean_tokens, prompts.corrupted_tokens, prompts.answer_tokens, steps=1,
                          prune_target=target)  # fmt: skip


def test_a_minimal_set_with_no_head_is_said():
    from ioi_superpose.results.caveats import prune_caveat

    line = prune_caveat({"reached": True, "l0": 0, "effect": 0.02, "target": 0.01})
    assert line is not None and "kept no unit" in line and "0.01" in line
    assert prune_caveat({"reached": True, "l0": 2, "effect": 0.95, "target": 0.9}) is None


def test_a_fit_without_steps_whose_initial_alpha_is_pruned_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    train_main(["fit", *TINY, "--trainer.max_steps", "0", "--model.prune_target", "0.9"])
    out = capsys.readouterr().out
    assert "Initial α pruned to a minimal set" in out and "Learned α" not in out
    run = next(tmp_path.rglob("summary.json")).parent
    summary = json.loads((run / "summary.json").read_text())
    assert summary["alpha"] == "initial, pruned to a minimal set (no steps taken)" and summary["prune"]["reached"]
    report_main([str(run), "--out", str(tmp_path / "report")])
    assert "pruned to a minimal set, not of a learned combination" in (tmp_path / "report" / "report.md").read_text()


# ---- names and corpus ---------------------------------------------------------------------------------


@pytest.mark.parametrize("corruption", ["name_swap", "abc"])
def test_repeated_names_are_refused(corruption):
    names = ["Michael", "Jessica", "Michael", "Daniel", "James", "Robert"]
    with pytest.raises(ConfigError, match=r"names lists \['Michael'\] more than once"):
        ioi_prompts(TOY_IOI, n=8, corruption=corruption, names=names)


def test_the_abc_corruption_with_too_few_names_is_refused_and_with_enough_never_reuses_one():
    with pytest.raises(ConfigError, match="needs at least 5 names"):
        ioi_prompts(TOY_IOI, n=8, corruption="abc", names=["Michael", "Jessica", "Daniel", "James"])
    batch = ioi_prompts(TOY_IOI, n=64, corruption="abc", names=["Michael", "Jessica", "Daniel", "James", "Robert"])
    for clean, corrupted in zip(batch.clean_tokens.tolist(), batch.corrupted_tokens.tolist()):
        changed = [position for position, (a, b) in enumerate(zip(clean, corrupted)) if a != b]
        assert len(changed) >= 3 and not {corrupted[p] for p in changed} & {clean[p] for p in changed}


def test_corpus_texts_longer_than_the_context_are_named(toy):
    from ioi_superpose.analyses.corpus import corpus_examples
    from ioi_superpose.models import load_tokenizer
    from ioi_superpose.results.tables import corpus_markdown

    tokenizer = load_tokenizer(TOY_IOI)
    short = "Then, Mary and John went to the store."
    long = " ".join([short] * (toy.cfg.n_ctx // 8 + 2))
    examples = corpus_examples(toy, tokenizer, [short, long, short, long], torch.ones(2, 4), k=2)
    assert examples.cut == [1, 3]
    assert f"longer than the model's context ({toy.cfg.n_ctx} tokens)" in corpus_markdown(examples)
    assert "line 1, 3" in corpus_markdown(examples) and examples.to_dict()["cut"] == [1, 3]


# ---- messages that say why, before any work ------------------------------------------------------------


def test_a_trainer_setting_lightning_refuses_is_one_error_line(tmp_path, monkeypatch, capsys):
    said = fit_fails(["--trainer.strategy", "bogus"], tmp_path, monkeypatch, capsys)  # after the model: Lightning's
    assert "a --trainer setting is refused by Lightning" in said and "strategy" in said and said.count("error:") == 1


@pytest.mark.parametrize(
    "args, named",
    [
        (["--seed_everything", "-1"], "--seed_everything must be a whole number in [0, 4294967295], got -1"),
        (["--data.seed", "-1"], "--data.seed must be a whole number in [0, 4294967295], got -1"),
        (["--trainer.accelerator", "gpu"], "--trainer.accelerator gpu needs a CUDA GPU"),
        (["--trainer.devices", "0"], "--trainer.devices 0 runs on no device"),
        (["--trainer.max_steps", "-5"], "--trainer.max_steps must be -1 (no limit) or a whole number >= 0, got -5"),
        (["--trainer.max_epochs", "-3"], "--trainer.max_epochs must be"),
        (["--trainer.accumulate_grad_batches", "0"], "--trainer.accumulate_grad_batches must be"),
        (["--trainer.val_check_interval", "0"], "--trainer.val_check_interval must be"),
        (["--data.off_distribution", "[held_out_names,held_out_names]"], "--data.off_distribution lists"),
        (["--model.gate_seed", "-2", "--model.combination", "hard_concrete"], "--model.gate_seed must be a whole"),
        (["--model.combination", "rotation", "--model.rotation_layers", "[0,0]"], "--model.rotation_layers lists"),
    ],
)
def test_a_bad_setting_is_one_error_line_before_any_work(args, named, tmp_path, monkeypatch, capsys):
    import ioi_superpose.training.system as system

    def no_model(*args, **kwargs):  # the check must come before the model is loaded (the first work)
        raise AssertionError("the model was loaded before the setting was checked")

    monkeypatch.setattr(system, "load_frozen_model", no_model)
    said = fit_fails(args, tmp_path, monkeypatch, capsys)
    assert named in said and said.count("error:") == 1


def test_the_gpt2_config_with_the_toy_model_names_the_receivers_before_training(tmp_path, monkeypatch, capsys):
    said = fit_fails(["--trainer.max_steps", "2"], tmp_path, monkeypatch, capsys,
                     config=["--config", str(EXPERIMENTS / "gpt2_small_ioi.yaml")])  # fmt: skip
    assert "path patching receivers [(9, 9), (9, 6), (10, 0)] are outside the model (2 layers × 4 heads)" in said
    assert "receivers: logits" in said
    assert not list(tmp_path.rglob("*.ckpt"))  # refused before any step


@pytest.mark.parametrize(
    "args, named",
    [
        (["--seed_everything", "-1"], "--seed_everything must be a whole number"),
        (["--trainer.devices", "0"], "--trainer.devices 0 runs on no device"),
        (["--data.init_args.seed", "-1"], "--data.init_args.seed must be a whole number"),
        (["--model.model_seed", "-1"], "--model.model_seed must be a whole number"),
    ],
)
def test_the_toy_cli_checks_the_same_settings(args, named, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        toy_main(["fit", "--data", "ioi_superpose.toy.SkipTrigramDataModule", "--data.init_args.kind",
                  "single_source", "--trainer.logger", "false", "--trainer.max_steps", "2", *args])  # fmt: skip
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert named in error and "Traceback" not in error



def test_the_other_entry_points_check_their_seeds(tmp_path, monkeypatch, capsys):
    import ioi_superpose.cli.benchmark as benchmark_cli

    monkeypatch.setattr(benchmark_cli, "run_benchmark", lambda *args, **kwargs: pytest.fail("the benchmark ran"))
    with pytest.raises(SystemExit):
        benchmark_cli.main(["--out", str(tmp_path / "out"), "--seed", "-1"])
    assert "--seed must be a whole number in [0, 4294967295], got -1" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="seed must be a whole number"):
        ioi_prompts(TOY_IOI, n=4, seed=-1)
