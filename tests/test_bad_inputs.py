"""Issue 19: bad inputs that used to pass silently (exit 0, a wrong or misleading result) or end in an unclear
message. One test per item; each failed before its fix."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from ioi_superpose import learn_combination
from ioi_superpose.cli.sweep_points import parse_grid
from ioi_superpose.cli.train import main as train_main
from ioi_superpose.data.prompts import ioi_prompts
from ioi_superpose.errors import ConfigError
from ioi_superpose.models import load_frozen_model
from ioi_superpose.results.analysis import stability

REPO = Path(__file__).resolve().parents[1]
TOY_IOI = str(REPO / "checkpoints" / "toy_ioi.pt")
TINY = ["--data.n_train", "16", "--data.n_val", "8", "--data.n_test", "8", "--data.batch_size", "8",
        "--data.off_distribution", "[held_out_names]", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false"]  # fmt: skip


def train(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train_main(args)


def train_fails(args, tmp_path, monkeypatch, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        train(args, tmp_path, monkeypatch)
    assert exit_info.value.code == 1
    return capsys.readouterr().err


@pytest.fixture(scope="module")
def toy():
    return load_frozen_model(TOY_IOI)


# ---- Silent 1: a repeated grid value -------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["model.l1=0.001,0.001", "model.l1=0.001,1e-3", "model.direction=noising,noising"])
def test_a_repeated_grid_value_is_refused(spec):
    with pytest.raises(ConfigError, match="repeats the value"):
        parse_grid([spec])


def test_stability_counts_a_run_listed_twice_once():
    row = {"point": "p", "run_dir": "OUT/p", "settings": {"model.init": "1.0"}, "heads": [[0, 1]]}
    other = {"point": "q", "run_dir": "OUT/q", "settings": {"model.init": "0.5"}, "heads": [[1, 2]]}
    assert stability([row, dict(row)], ["model.init"]) == []  # one run: nothing to compare
    (entry,) = stability([row, dict(row), other], ["model.init"])
    assert entry["runs"] == ["p", "q"] and entry["mean_pairwise_iou"] == 0.0


# ---- Silent 2: every entry point parses its arguments; the benchmark writes only to --out ---------------


@pytest.mark.parametrize("module", ["train", "sweep", "report", "benchmark", "train_toy", "train_batched"])
def test_every_entry_point_answers_help_and_refuses_unknown_arguments(module, capsys):
    main = __import__(f"ioi_superpose.{module}", fromlist=["main"]).main
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "usage" in capsys.readouterr().out.lower()
    with pytest.raises(SystemExit) as exit_info:
        main(["--no_such_option", "1"])
    assert exit_info.value.code != 0


# The benchmark's --out: tests/test_benchmark.py::test_cli_writes_only_under_out.


# ---- Silent 3: padded prompts ----------------------------------------------------------------------------


def test_padded_prompts_are_refused_without_end_positions_and_read_at_end_with_them(toy):
    prompts = ioi_prompts(TOY_IOI, n=16, equal_length=False)
    assert (prompts.end_pos < prompts.clean_tokens.shape[1] - 1).any()  # some rows are padded
    with pytest.raises(ConfigError, match="end in padding.*Pass end_positions"):
        learn_combination(toy, prompts.clean_tokens, prompts.corrupted_tokens, prompts.answer_tokens, steps=1)
    result = learn_combination(toy, prompts.clean_tokens, prompts.corrupted_tokens, prompts.answer_tokens, steps=1,
                               end_positions=prompts.end_pos)  # fmt: skip
    # Independently: the unpatched model's logits at each row's END (a plain forward, no patching code).
    with torch.no_grad():
        logits = toy(prompts.clean_tokens)[torch.arange(16), prompts.end_pos]
    expected = (logits.gather(1, prompts.answer_tokens)[:, 0] - logits.gather(1, prompts.answer_tokens)[:, 1]).mean()
    assert result.clean_logit_diff == pytest.approx(float(expected), rel=1e-4)
    assert result.clean_logit_diff > 8  # the toy model's ~12.6 on equal-length prompts; 2.3 when read at pads


# ---- Silent 4: an α that took no step ---------------------------------------------------------------------


def test_validate_without_a_checkpoint_says_it_evaluates_the_initial_alpha(tmp_path, monkeypatch, capsys):
    train(["validate", "--model.model_name", TOY_IOI, *TINY], tmp_path, monkeypatch)
    assert "evaluates the initial α" in capsys.readouterr().out


def test_a_fit_without_steps_labels_its_summary_initial(tmp_path, monkeypatch, capsys):
    train(["fit", "--model.model_name", TOY_IOI, *TINY, "--trainer.max_steps", "0"], tmp_path, monkeypatch)
    out = capsys.readouterr().out
    assert "Initial α" in out and "Learned α" not in out
    summary = json.loads(next(tmp_path.rglob("summary.json")).read_text())
    assert summary["alpha"] == "initial (no steps taken)" and summary["steps"] == 0


# ---- Silent 5: resume with other data settings -----------------------------------------------------------


def test_resuming_with_other_data_settings_is_refused(tmp_path, monkeypatch, capsys):
    args = ["fit", "--model.model_name", TOY_IOI, *TINY, "--trainer.max_steps", "2"]
    train(args, tmp_path, monkeypatch)
    last = next(tmp_path.rglob("last.ckpt"))
    capsys.readouterr()
    for option, value in (("--data.seed", "3"), ("--data.corruption", "abc")):
        error = train_fails([*args, option, value, "--ckpt_path", str(last)], tmp_path, monkeypatch, capsys)
        assert f"{option}: the checkpoint has" in error and "other settings" in error


# ---- Silent 6: a toy model's name split ------------------------------------------------------------------


def test_held_out_names_of_a_toy_model_are_names_it_never_saw_whatever_the_seed():
    from ioi_superpose.data.datamodule import IOIDataModule

    metadata = torch.load(TOY_IOI, weights_only=True)["metadata"]
    data = IOIDataModule(model_name=TOY_IOI, seed=1, n_train=8, n_val=8, n_test=8)
    data.setup("test")
    assert data.held_out_names == metadata["held_out_names"]
    assert not set(data.held_out_names) & set(metadata["train_names"])
    with pytest.raises(ConfigError, match="held_out_name_fraction 0.2"):
        IOIDataModule(model_name=TOY_IOI, held_out_name_fraction=0.3).setup("test")


# ---- Silent 7: an unreachable prune target ----------------------------------------------------------------


def test_an_unreachable_prune_target_is_said_on_the_console_and_in_the_report(tmp_path, monkeypatch, capsys):
    from ioi_superpose.cli.report import main as report_main

    train(["fit", "--model.model_name", TOY_IOI, *TINY, "--trainer.max_steps", "1", "--model.combination", "mixing",
           "--model.mixing_target", "1", "--model.prune_target", "1.0"], tmp_path, monkeypatch)  # fmt: skip
    summary_path = next(tmp_path.rglob("summary.json"))
    prune = json.loads(summary_path.read_text())["prune"]
    assert prune["reached"] is False  # layer 1 alone cannot recover the whole effect of the toy model
    out = capsys.readouterr().out
    assert "did not reach --model.prune_target 1.0" in out
    report_main([str(summary_path.parent), "--out", str(tmp_path / "report")])
    assert "did not reach --model.prune_target 1.0" in (tmp_path / "report" / "report.md").read_text()


# ---- Unclear ---------------------------------------------------------------------------------------------


def test_an_empty_held_out_templates_list_names_the_option(tmp_path, monkeypatch, capsys):
    error = train_fails(["fit", "--model.model_name", TOY_IOI, *TINY, "--data.off_distribution", "[held_out_templates]",
                         "--data.held_out_templates", "[]"], tmp_path, monkeypatch, capsys)  # fmt: skip
    assert "--data.held_out_templates is empty" in error and "Traceback" not in error


@pytest.fixture(scope="module")
def equal_prompts():
    return ioi_prompts(TOY_IOI, n=8)


def fit(model, prompts, **settings):
    return learn_combination(model, prompts.clean_tokens, prompts.corrupted_tokens, prompts.answer_tokens, **settings)


def test_a_nan_l1_or_init_is_named_not_the_learning_rate(toy, equal_prompts):
    # Refused before any step (the config's finite check), naming the setting, not the learning rate.
    with pytest.raises(ConfigError, match="^l1=nan is not a finite number") as error:
        fit(toy, equal_prompts, steps=1, l1=float("nan"))
    assert "lr" not in str(error.value)
    with pytest.raises(ConfigError, match="^init=nan is not a finite number") as error:
        fit(toy, equal_prompts, steps=1, init=float("nan"), bounded=False)
    assert "lr" not in str(error.value)


def test_a_zero_clean_corrupted_gap_is_named(toy, equal_prompts):
    p = equal_prompts
    with pytest.raises(ConfigError, match="same mean logit difference"):
        learn_combination(toy, p.clean_tokens, p.clean_tokens, p.answer_tokens, steps=1)
    same = p.answer_tokens[:, [0, 0]]
    with pytest.raises(ConfigError, match="same token as correct and incorrect"):
        learn_combination(toy, p.clean_tokens, p.corrupted_tokens, same, steps=1)
    some = p.answer_tokens.clone()
    some[0, 1] = some[0, 0]
    with pytest.warns(UserWarning, match=r"rows \[0\] hold the same token"):
        learn_combination(toy, p.clean_tokens, p.corrupted_tokens, some, steps=1)


@pytest.mark.parametrize("argument", ["clean_tokens", "corrupted_tokens", "answer_tokens"])
def test_float_tokens_are_refused_before_transformer_lens(toy, equal_prompts, argument):
    tensors = dict(clean_tokens=equal_prompts.clean_tokens, corrupted_tokens=equal_prompts.corrupted_tokens,
                   answer_tokens=equal_prompts.answer_tokens)  # fmt: skip
    tensors[argument] = tensors[argument].float()
    with pytest.raises(ConfigError, match=f"{argument} must hold integer token ids"):
        learn_combination(toy, **tensors, steps=1)


def test_api_errors_name_the_api_argument(toy, equal_prompts):
    with pytest.raises(ConfigError) as error:
        fit(toy, equal_prompts, steps=1, l1=-1.0)
    assert str(error.value).startswith("l1 must be >= 0") and "--model" not in str(error.value)


def test_report_on_a_truncated_summary_names_the_file(tmp_path, capsys):
    from ioi_superpose.cli.report import main as report_main

    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text('{"model_name": "x", "recov')
    with pytest.raises(SystemExit) as exit_info:
        report_main([str(run), "--out", str(tmp_path / "report")])
    assert exit_info.value.code == 1
    assert f"{run / 'summary.json'} is not valid JSON" in capsys.readouterr().err


def test_out_pointing_at_a_file_names_the_option(tmp_path, capsys):
    from ioi_superpose.cli.report import main as report_main
    from ioi_superpose.cli.sweep import main as sweep_main

    a_file = tmp_path / "taken"
    a_file.write_text("")
    config = tmp_path / "config.yaml"
    config.write_text("model: {}\n")
    for main, args in ((sweep_main, ["--config", str(config)]), (report_main, [str(tmp_path)])):
        with pytest.raises(SystemExit) as exit_info:
            main([*args, "--out", str(a_file)])
        assert exit_info.value.code == 1
        assert f"--out {a_file} is a file" in capsys.readouterr().err


# ---- Also: a flag given before --config ----------------------------------------------------------------------


def test_a_flag_the_config_would_replace_is_refused(tmp_path, monkeypatch, capsys):
    # jsonargparse applies arguments in order: the YAML's l1 (0.001) replaced -1 and the run trained, exit 0.
    config = str(REPO / "experiments" / "toy_ioi.yaml")
    error = train_fails(["fit", "--model.l1=-1", "--config", config], tmp_path, monkeypatch, capsys)
    assert f"--model.l1 is given before --config {config}, which also sets model.l1" in error
    assert not list(tmp_path.iterdir())  # refused before anything is written


def test_a_flag_before_a_config_that_does_not_set_it_is_kept(tmp_path):
    from ioi_superpose.cli.flag_order import refuse_flags_replaced_by_config

    config = tmp_path / "config.yaml"
    config.write_text("model:\n  l1: 0.001\n")
    refuse_flags_replaced_by_config(["fit", "--model.lr", "0.1", "--config", str(config), "--model.l1", "0.5"])
    with pytest.raises(ConfigError, match="--model.l1 is given before"):
        refuse_flags_replaced_by_config(["fit", "--model.l1", "0.5", f"--config={config}"])


# ---- Also: Ctrl-C prints the resume command ----------------------------------------------------------------


def test_ctrl_c_prints_the_command_that_resumes(tmp_path, monkeypatch, capsys):
    handler = signal.getsignal(signal.SIGINT)  # Lightning ignores SIGINT after a Ctrl-C: restore it
    try:
        error = train_fails(["fit", "--model.model_name", TOY_IOI, *TINY, "--trainer.max_epochs", "3",
                             "--trainer.callbacks+=tests.helpers.kill.InterruptAtStep",
                             "--trainer.callbacks.step", "3"], tmp_path, monkeypatch, capsys)  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, handler)
    last = next(tmp_path.rglob("last.ckpt"))
    assert "Stopped at step 3; step 3 is saved in" in error and "Resume exactly from there with:" in error
    assert f"--ckpt_path {last.relative_to(tmp_path)}" in error and "--trainer.max_epochs 3" in error


def test_recovery_of_a_wrongly_shaped_alpha_names_the_shape(toy, equal_prompts):
    from ioi_superpose import recovery_of

    with pytest.raises(ConfigError, match=r"alpha must be \[..., n_layers, n_heads\] = \[..., 2, 4\]"):
        recovery_of(toy, equal_prompts, torch.ones(3, 3))
